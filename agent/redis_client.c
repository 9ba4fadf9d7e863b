/* Redis over hiredis' async API. Each command gets a record that hiredis holds as privdata until
 * the reply (or the connection's end) comes back, plus an ev_timer: when the timer fires first,
 * the caller hears RC_TIMEOUT at once and the record stays, marked done, until hiredis returns
 * it, so a late reply is dropped without touching freed memory. A connection that goes away is
 * retried with capped exponential backoff; its state is logged once per change. No call here
 * blocks: host names are resolved once when the client is made, the rest is hiredis' own
 * non-blocking connect and socket I/O driven by the loop. */
#include "redis_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <ev.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "addr.h"
#include "log.h"

const uint32_t rc_latency_bounds_us[RC_LATENCY_BUCKETS] = {250,   500,   1000,  2000,   5000,
                                                           10000, 25000, 50000, 100000, 250000};

/* One hiredis connection: the command one, or the subscriber one. */
struct rconn {
    struct redis_client *rc;
    redisAsyncContext *ac; /* NULL while waiting to retry */
    bool subscriber;
    bool ready;         /* connected and AUTH / SELECT / SUBSCRIBE answered */
    bool ever_up;       /* for "up again" rather than "connected" */
    bool down_logged;   /* one log line per outage, however many retries fail */
    unsigned handshake; /* handshake replies still awaited */
    uint32_t backoff_ms;
    uint32_t failures; /* attempts failed since the last time it was ready */
    uint32_t timeouts_in_row;
    ev_timer retry;    /* backoff wait */
    ev_timer deadline; /* connect + handshake bound */
};

struct redis_client {
    struct ev_loop *loop;
    struct redis_client_settings s;
    char *password;
    char addr[INET6_ADDRSTRLEN];
    char desc[REDIS_URL_HOST_MAX + 64];
    struct redis_client_ops ops;
    void *ud;
    struct rconn cmd, sub;
    char *channel;
    rc_message_fn msg_fn;
    void *msg_ud;
    struct rc_stats st;
    bool freeing;
};

struct rc_cmd {
    struct redis_client *rc;
    struct rconn *k;
    rc_reply_fn fn;
    void *ud;
    ev_timer timer;
    ev_tstamp t0;
    bool is_get;
    bool done; /* the caller heard (timeout) or cancelled: drop the reply */
};

static void conn_start(struct rconn *k);

void redis_client_settings_default(struct redis_client_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->url.port = REDIS_URL_DEFAULT_PORT;
    strcpy(s->url.host, "127.0.0.1");
    s->command_timeout_ms = 100;
    s->connect_timeout_ms = 1000;
    s->backoff_min_ms = 100;
    s->backoff_max_ms = 5000;
    s->max_inflight = 1024;
    s->stall_timeouts = 16;
    s->name = "redis";
}

const char *rc_result_name(enum rc_result r)
{
    static const char *const names[] = {"ok", "nil", "error", "timeout", "down"};
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "unknown";
}

uint32_t rc_backoff_next(uint32_t prev_ms, uint32_t min_ms, uint32_t max_ms)
{
    if (max_ms < min_ms)
        max_ms = min_ms;
    if (prev_ms < min_ms)
        return min_ms;
    return prev_ms > max_ms / 2 ? max_ms : prev_ms * 2;
}

/* ---- connection state ---- */

static const char *conn_what(const struct rconn *k)
{
    return k->subscriber ? "subscriber connection" : "connection";
}

static void conn_ready(struct rconn *k)
{
    struct redis_client *rc = k->rc;
    ev_timer_stop(rc->loop, &k->deadline);
    k->ready = true;
    k->timeouts_in_row = 0;
    k->backoff_ms = 0;
    rc->st.connects++;
    if (!k->ever_up)
        log_info("%s: %s to %s established", rc->s.name, conn_what(k), rc->desc);
    else
        log_warn("%s: %s to %s up again after %u failed attempt(s)", rc->s.name, conn_what(k),
                 rc->desc, k->failures);
    k->ever_up = true;
    k->down_logged = false;
    k->failures = 0;
    if (!k->subscriber)
        rc->st.up = true;
    if (rc->ops.state)
        rc->ops.state(rc->ud, k->subscriber, true);
}

/* The context is already gone or being freed by the caller (k->ac is NULL). */
static void conn_failed(struct rconn *k, const char *why)
{
    struct redis_client *rc = k->rc;
    bool was_ready = k->ready;
    ev_timer_stop(rc->loop, &k->deadline);
    k->ready = false;
    k->handshake = 0;
    if (!was_ready)
        k->failures++; /* attempts that failed, not the loss itself */
    if (!k->subscriber)
        rc->st.up = false;
    if (rc->freeing)
        return;
    if (!k->down_logged) {
        log_warn("%s: %s to %s down (%s); going on without it, retrying every %u ms at most",
                 rc->s.name, conn_what(k), rc->desc, why, rc->s.backoff_max_ms);
        k->down_logged = true;
    }
    if (was_ready) {
        rc->st.disconnects++;
        if (rc->ops.state)
            rc->ops.state(rc->ud, k->subscriber, false);
    }
    k->backoff_ms = rc_backoff_next(k->backoff_ms, rc->s.backoff_min_ms, rc->s.backoff_max_ms);
    ev_timer_set(&k->retry, k->backoff_ms / 1000.0, 0.);
    ev_timer_start(rc->loop, &k->retry);
}

/* Drops the connection on our initiative. Safe inside a hiredis callback (hiredis then frees the
 * context when the callback returns); pending commands hear RC_DOWN. */
static void conn_reset(struct rconn *k, const char *why)
{
    redisAsyncContext *ac = k->ac;
    if (!ac)
        return;
    k->ac = NULL; /* the disconnect callback sees a stranger and keeps out */
    conn_failed(k, why);
    redisAsyncFree(ac);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rconn *k = ac->data;
    if (k->ac != ac)
        return;
    if (status != REDIS_OK) {
        k->ac = NULL; /* hiredis frees it when we return */
        conn_failed(k, ac->c.errstr[0] ? ac->c.errstr : "connect failed");
        return;
    }
    redisEnableKeepAlive((redisContext *)&ac->c); /* a vanished host is noticed eventually */
    if (k->handshake == 0)
        conn_ready(k);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rconn *k = ac->data;
    if (k->ac != ac)
        return;
    k->ac = NULL;
    conn_failed(k, status == REDIS_OK ? "closed" : ac->c.errstr[0] ? ac->c.errstr : "lost");
}

static void handshake_step(struct rconn *k)
{
    if (k->handshake > 0 && --k->handshake == 0 && k->ac && (k->ac->c.flags & REDIS_CONNECTED))
        conn_ready(k);
}

static void on_handshake(redisAsyncContext *ac, void *r, void *priv)
{
    struct rconn *k = priv;
    redisReply *rep = r;
    if (!rep || k->ac != ac)
        return; /* the connection is going away: its own callback reports it */
    if (rep->type == REDIS_REPLY_ERROR) {
        char why[128];
        log_printable(rep->str, rep->len, why,
                      sizeof(why)); /* e.g. WRONGPASS; never the password */
        conn_reset(k, why);
        return;
    }
    handshake_step(k);
}

static void on_sub_message(redisAsyncContext *ac, void *r, void *priv)
{
    struct rconn *k = priv;
    struct redis_client *rc = k->rc;
    redisReply *rep = r;
    if (!rep || k->ac != ac || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *kind = rep->element[0], *payload = rep->element[2];
    if (strcmp(kind->str, "subscribe") == 0) {
        handshake_step(k);
    } else if (strcmp(kind->str, "message") == 0 && payload->type == REDIS_REPLY_STRING) {
        rc->st.messages++;
        if (rc->msg_fn)
            rc->msg_fn(rc->msg_ud, payload->str, payload->len);
    }
}

static int send_handshake(struct rconn *k)
{
    struct redis_client *rc = k->rc;
    redisAsyncContext *ac = k->ac;
    if (rc->password) {
        const char *argv[3] = {"AUTH"};
        size_t len[3] = {4};
        int n = 1;
        if (rc->s.url.user[0]) {
            argv[n] = rc->s.url.user;
            len[n++] = strlen(rc->s.url.user);
        }
        argv[n] = rc->password;
        len[n++] = strlen(rc->password);
        if (redisAsyncCommandArgv(ac, on_handshake, k, n, argv, len) != REDIS_OK)
            return -1;
        k->handshake++;
    }
    if (rc->s.url.db) {
        char db[16];
        int dl = snprintf(db, sizeof(db), "%d", rc->s.url.db);
        const char *argv[2] = {"SELECT", db};
        size_t len[2] = {6, (size_t)dl};
        if (redisAsyncCommandArgv(ac, on_handshake, k, 2, argv, len) != REDIS_OK)
            return -1;
        k->handshake++;
    }
    if (k->subscriber) {
        const char *argv[2] = {"SUBSCRIBE", rc->channel};
        size_t len[2] = {9, strlen(rc->channel)};
        if (redisAsyncCommandArgv(ac, on_sub_message, k, 2, argv, len) != REDIS_OK)
            return -1;
        k->handshake++;
    }
    return 0;
}

static void conn_start(struct rconn *k)
{
    struct redis_client *rc = k->rc;
    redisAsyncContext *ac = rc->s.url.unix_socket ? redisAsyncConnectUnix(rc->s.url.host)
                                                  : redisAsyncConnect(rc->addr, rc->s.url.port);
    if (!ac) {
        conn_failed(k, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        conn_failed(k, why);
        return;
    }
    ac->data = k;
    if (redisLibevAttach(rc->loop, ac) != REDIS_OK) {
        redisAsyncFree(ac);
        conn_failed(k, "cannot attach to the loop");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    k->ac = ac;
    k->handshake = 0;
    if (send_handshake(k) < 0) {
        conn_reset(k, "cannot queue the handshake");
        return;
    }
    ev_timer_set(&k->deadline, rc->s.connect_timeout_ms / 1000.0, 0.);
    ev_timer_start(rc->loop, &k->deadline);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    conn_start(w->data);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct rconn *k = w->data;
    if (!k->ready)
        conn_reset(k, "connect timeout");
}

static void conn_init(struct redis_client *rc, struct rconn *k, bool subscriber)
{
    k->rc = rc;
    k->subscriber = subscriber;
    ev_timer_init(&k->retry, on_retry, 0., 0.);
    k->retry.data = k;
    ev_timer_init(&k->deadline, on_deadline, 0., 0.);
    k->deadline.data = k;
}

/* ---- commands ---- */

static void count_latency(struct redis_client *rc, ev_tstamp t0)
{
    double us = (ev_time() - t0) * 1e6;
    uint64_t v = us > 0 ? (uint64_t)us : 0;
    rc->st.latency_count++;
    rc->st.latency_sum_us += v;
    size_t i = 0;
    while (i < RC_LATENCY_BUCKETS && v > rc_latency_bounds_us[i])
        i++;
    rc->st.latency_le[i]++;
}

static void classify(const redisReply *rep, struct rc_reply *out)
{
    memset(out, 0, sizeof(*out));
    if (!rep) {
        out->result = RC_DOWN;
        return;
    }
    switch (rep->type) {
    case REDIS_REPLY_NIL:
        out->result = RC_NIL;
        return;
    case REDIS_REPLY_ERROR:
        out->result = RC_ERROR;
        break;
    case REDIS_REPLY_INTEGER:
        out->result = RC_OK;
        out->integer = rep->integer;
        return;
    default:
        out->result = RC_OK;
        break;
    }
    out->str = rep->str;
    out->len = rep->str ? rep->len : 0;
}

static void count_result(struct redis_client *rc, const struct rc_cmd *c, enum rc_result r)
{
    if (r == RC_ERROR || r == RC_DOWN)
        rc->st.errors++;
    else if (c->is_get && r == RC_OK)
        rc->st.hits++;
    else if (c->is_get && r == RC_NIL)
        rc->st.misses++;
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct rc_cmd *c = priv;
    struct redis_client *rc = c->rc;
    redisReply *rep = r;
    ev_timer_stop(rc->loop, &c->timer);
    rc->st.inflight--;
    if (rep)
        c->k->timeouts_in_row = 0;
    if (c->done) {
        if (rep)
            rc->st.late++;
        free(c);
        return;
    }
    struct rc_reply out;
    classify(rep, &out);
    if (rep)
        count_latency(rc, c->t0);
    count_result(rc, c, out.result);
    c->fn(c->ud, &out);
    free(c);
}

static void on_cmd_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct rc_cmd *c = w->data;
    struct redis_client *rc = c->rc;
    struct rconn *k = c->k;
    c->done = true; /* c lives on until hiredis hands it back */
    rc->st.timeouts++;
    k->timeouts_in_row++;
    struct rc_reply out = {.result = RC_TIMEOUT};
    c->fn(c->ud, &out);
    /* Nothing at all back for a long run: the peer may be gone without a word (no RST).
     * Reconnecting is cheap, and a server that is merely slow is reached again. */
    if (rc->s.stall_timeouts && k->timeouts_in_row >= rc->s.stall_timeouts)
        conn_reset(k, "no reply to many commands in a row");
}

static struct rc_cmd *submit(struct redis_client *rc, int argc, const char **argv,
                             const size_t *len, uint32_t timeout_ms, bool is_get, rc_reply_fn fn,
                             void *ud)
{
    struct rconn *k = &rc->cmd;
    if (!k->ac || rc->freeing || rc->st.inflight >= rc->s.max_inflight) {
        rc->st.rejected++;
        return NULL;
    }
    struct rc_cmd *c = calloc(1, sizeof(*c));
    if (!c) {
        rc->st.rejected++;
        return NULL;
    }
    *c = (struct rc_cmd){.rc = rc, .k = k, .fn = fn, .ud = ud, .is_get = is_get, .t0 = ev_time()};
    if (redisAsyncCommandArgv(k->ac, on_reply, c, argc, argv, len) != REDIS_OK) {
        free(c);
        rc->st.rejected++;
        return NULL;
    }
    ev_timer_init(&c->timer, on_cmd_timeout,
                  (timeout_ms ? timeout_ms : rc->s.command_timeout_ms) / 1000.0, 0.);
    c->timer.data = c;
    ev_timer_start(rc->loop, &c->timer);
    rc->st.inflight++;
    rc->st.commands++;
    return c;
}

struct rc_cmd *redis_get(struct redis_client *rc, const char *key, size_t klen, rc_reply_fn fn,
                         void *ud)
{
    const char *argv[2] = {"GET", key};
    size_t len[2] = {3, klen};
    return submit(rc, 2, argv, len, 0, true, fn, ud);
}

struct rc_cmd *redis_set_px(struct redis_client *rc, const char *key, size_t klen, const void *val,
                            size_t vlen, uint64_t ttl_ms, rc_reply_fn fn, void *ud)
{
    if (ttl_ms == 0)
        return NULL; /* PX 0 is an error in Redis: nothing worth storing */
    char ttl[24];
    int tl = snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)ttl_ms);
    const char *argv[5] = {"SET", key, val, "PX", ttl};
    size_t len[5] = {3, klen, vlen, 2, (size_t)tl};
    return submit(rc, 5, argv, len, 0, false, fn, ud);
}

struct rc_cmd *redis_del(struct redis_client *rc, const char *key, size_t klen, rc_reply_fn fn,
                         void *ud)
{
    const char *argv[2] = {"DEL", key};
    size_t len[2] = {3, klen};
    return submit(rc, 2, argv, len, 0, false, fn, ud);
}

struct rc_cmd *redis_publish(struct redis_client *rc, const char *channel, const void *msg,
                             size_t mlen, rc_reply_fn fn, void *ud)
{
    const char *argv[3] = {"PUBLISH", channel, msg};
    size_t len[3] = {7, strlen(channel), mlen};
    return submit(rc, 3, argv, len, 0, false, fn, ud);
}

struct rc_cmd *redis_command(struct redis_client *rc, int argc, const char **argv,
                             const size_t *argvlen, uint32_t timeout_ms, rc_reply_fn fn, void *ud)
{
    return submit(rc, argc, argv, argvlen, timeout_ms, false, fn, ud);
}

void redis_cancel(struct rc_cmd *c)
{
    if (!c || c->done)
        return;
    c->done = true;
    ev_timer_stop(c->rc->loop, &c->timer);
}

/* ---- lifetime ---- */

/* Once, here: later connections use the address found, so no lookup ever blocks the loop. */
static int resolve(struct redis_client *rc, char *err, size_t errlen)
{
    struct addr a = {.kind = ADDR_TCP};
    snprintf(a.host, sizeof(a.host), "%s", rc->s.url.host);
    snprintf(a.port, sizeof(a.port), "%d", rc->s.url.port);
    struct sockaddr_storage ss;
    socklen_t len;
    char why[256];
    if (addr_resolve(&a, &ss, &len, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "cache-redis-url: %s", why);
        return -1;
    }
    const void *ip = ss.ss_family == AF_INET6
                         ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                         : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    if (!inet_ntop(ss.ss_family, ip, rc->addr, sizeof(rc->addr))) {
        snprintf(err, errlen, "cache-redis-url: cannot use the address of '%s'", rc->s.url.host);
        return -1;
    }
    return 0;
}

struct redis_client *redis_client_new(struct ev_loop *loop, const struct redis_client_settings *s,
                                      const struct redis_client_ops *ops, void *ud, char *err,
                                      size_t errlen)
{
    struct redis_client *rc = calloc(1, sizeof(*rc));
    if (!rc) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rc->loop = loop;
    rc->s = *s;
    if (!rc->s.name)
        rc->s.name = "redis";
    if (!rc->s.command_timeout_ms)
        rc->s.command_timeout_ms = 100;
    if (!rc->s.connect_timeout_ms)
        rc->s.connect_timeout_ms = 1000;
    if (!rc->s.max_inflight)
        rc->s.max_inflight = 1024;
    rc->s.password = NULL;
    if (ops)
        rc->ops = *ops;
    rc->ud = ud;
    if (s->password && !(rc->password = strdup(s->password))) {
        snprintf(err, errlen, "out of memory");
        free(rc);
        return NULL;
    }
    if (!rc->s.url.unix_socket && resolve(rc, err, errlen) < 0) {
        redis_client_free(rc);
        return NULL;
    }
    redis_url_describe(&rc->s.url, rc->desc, sizeof(rc->desc));
    conn_init(rc, &rc->cmd, false);
    conn_init(rc, &rc->sub, true);
    conn_start(&rc->cmd);
    return rc;
}

int redis_subscribe(struct redis_client *rc, const char *channel, rc_message_fn fn, void *ud)
{
    if (rc->channel || !channel || !*channel)
        return -1;
    if (!(rc->channel = strdup(channel)))
        return -1;
    rc->msg_fn = fn;
    rc->msg_ud = ud;
    conn_start(&rc->sub);
    return 0;
}

static void conn_close(struct redis_client *rc, struct rconn *k)
{
    ev_timer_stop(rc->loop, &k->retry);
    ev_timer_stop(rc->loop, &k->deadline);
    redisAsyncContext *ac = k->ac;
    k->ac = NULL;
    if (ac)
        redisAsyncFree(ac); /* pending commands hear RC_DOWN now */
}

void redis_client_free(struct redis_client *rc)
{
    if (!rc)
        return;
    rc->freeing = true;
    if (rc->cmd.rc)
        conn_close(rc, &rc->cmd);
    if (rc->sub.rc)
        conn_close(rc, &rc->sub);
    if (rc->password) {
        OPENSSL_cleanse(rc->password, strlen(rc->password));
        free(rc->password);
    }
    free(rc->channel);
    free(rc);
}

bool redis_client_up(const struct redis_client *rc)
{
    return rc->st.up;
}

void redis_client_get_stats(const struct redis_client *rc, struct rc_stats *st)
{
    *st = rc->st;
}
