/* The introspection client against a real HTTP/1.1 server on 127.0.0.1 (threads with blocking
 * sockets, so the server side is simple and independent of the code under test), on a real libev
 * loop. The server records each request's raw bytes and answers from a per-test script. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr, strndup */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "introspect.h"
#include "log.h"
#include "memdup.h"

/* ---- the test server ------------------------------------------------------------------------ */

/* One scripted answer. The first route whose match occurs anywhere in the raw request answers. */
struct route {
    const char *match; /* NULL matches everything */
    int status;
    const char *content_type;  /* NULL: no header */
    const char *cache_control; /* NULL: no header */
    const char *extra_header;  /* a whole "Name: value" line, or NULL */
    const char *body;          /* NULL: empty */
    size_t body_len;           /* 0: strlen(body); for bodies of repeated 'x' use fill */
    size_t fill;               /* > 0: a body of this many 'x' instead of body */
    int delay_ms;              /* before answering */
    bool close;                /* Connection: close after the answer */
    bool no_length;            /* no Content-Length: body delimited by closing */
    bool hangup;               /* close without answering */
};

#define MAX_REQS 4096
#define MAX_CONNS 256

struct server {
    int lfd, port;
    pthread_t acceptor;
    pthread_mutex_t mu;
    const struct route *routes;
    int stop;
    int accepts, cur, max_cur, nreq;
    char *reqs[MAX_REQS];
    pthread_t conns[MAX_CONNS];
    int nconns;
};

struct conn_arg {
    struct server *srv;
    int fd;
};

static bool stopping(struct server *s)
{
    return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE);
}

/* Reads more bytes, waking every 20 ms to notice a stop. Returns bytes read, 0 on EOF/stop. */
static ssize_t read_some(struct server *s, int fd, char *buf, size_t cap)
{
    while (!stopping(s)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, 20);
        if (n < 0 && errno != EINTR)
            return 0;
        if (n > 0) {
            ssize_t r = read(fd, buf, cap);
            return r < 0 ? 0 : r;
        }
    }
    return 0;
}

static void sleep_ms(struct server *s, int ms)
{
    for (int t = 0; t < ms && !stopping(s); t += 5) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static size_t content_length(const char *hdrs)
{
    const char *p = hdrs;
    while ((p = strchr(p, '\n'))) {
        p++;
        if (strncasecmp(p, "content-length:", 15) == 0)
            return (size_t)strtoul(p + 15, NULL, 10);
    }
    return 0;
}

/* Reads one whole request (headers and Content-Length body) into buf. Returns its length or 0. */
static size_t read_request(struct server *s, int fd, char *buf, size_t cap)
{
    size_t len = 0;
    char *end;
    buf[0] = '\0';
    while (!(end = strstr(buf, "\r\n\r\n"))) {
        ssize_t r = read_some(s, fd, buf + len, cap - 1 - len);
        if (r <= 0)
            return 0;
        len += (size_t)r;
        buf[len] = '\0';
        if (buf[0] == 0x16) { /* a TLS ClientHello: answer like a plain HTTP server would */
            send_all(fd, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
            return 0;
        }
    }
    size_t want = (size_t)(end + 4 - buf) + content_length(buf);
    while (len < want) {
        ssize_t r = read_some(s, fd, buf + len, cap - 1 - len);
        if (r <= 0)
            return 0;
        len += (size_t)r;
        buf[len] = '\0';
    }
    return len;
}

static const struct route *pick(const struct server *s, const char *req)
{
    for (const struct route *r = s->routes;; r++)
        if (!r->match || strstr(req, r->match))
            return r;
}

static void answer(int fd, const struct route *rt)
{
    size_t blen = rt->fill   ? rt->fill
                  : rt->body ? (rt->body_len ? rt->body_len : strlen(rt->body))
                             : 0;
    char *body = malloc(blen + 1);
    if (rt->fill)
        memset(body, 'x', blen);
    else if (blen)
        memcpy(body, rt->body, blen);
    char head[1024];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %d Whatever\r\n", rt->status);
    if (rt->content_type)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Type: %s\r\n", rt->content_type);
    if (rt->cache_control)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Cache-Control: %s\r\n",
                      rt->cache_control);
    if (rt->extra_header)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "%s\r\n", rt->extra_header);
    if (!rt->no_length && rt->status != 204)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n", blen);
    if (rt->close || rt->no_length)
        n += snprintf(head + n, sizeof(head) - (size_t)n, "Connection: close\r\n");
    n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
    send_all(fd, head, (size_t)n);
    send_all(fd, body, blen);
    free(body);
}

/* Serves one connection: requests until the client closes, a route closes, or stop. */
static void *conn_main(void *arg)
{
    struct conn_arg *ca = arg;
    struct server *s = ca->srv;
    int fd = ca->fd;
    free(ca);
    char *buf = malloc(1 << 20);
    size_t len;
    while ((len = read_request(s, fd, buf, 1 << 20)) > 0) {
        const struct route *rt = pick(s, buf);
        pthread_mutex_lock(&s->mu);
        if (s->nreq < MAX_REQS)
            s->reqs[s->nreq++] = mem_strdup(buf, len);
        if (++s->cur > s->max_cur)
            s->max_cur = s->cur;
        pthread_mutex_unlock(&s->mu);
        sleep_ms(s, rt->delay_ms);
        if (!rt->hangup)
            answer(fd, rt);
        pthread_mutex_lock(&s->mu);
        s->cur--;
        pthread_mutex_unlock(&s->mu);
        if (rt->close || rt->no_length || rt->hangup)
            break;
    }
    free(buf);
    close(fd);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct server *s = arg;
    while (!stopping(s)) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        struct conn_arg *ca = malloc(sizeof(*ca));
        ca->srv = s;
        ca->fd = fd;
        pthread_mutex_lock(&s->mu);
        s->accepts++;
        int slot = s->nconns < MAX_CONNS ? s->nconns++ : -1;
        pthread_mutex_unlock(&s->mu);
        if (slot < 0) {
            close(fd);
            free(ca);
            continue;
        }
        pthread_create(&s->conns[slot], NULL, conn_main, ca);
    }
    return NULL;
}

static struct server *server_start(const struct route *routes)
{
    struct server *s = calloc(1, sizeof(*s));
    s->routes = routes;
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 128), 0);
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->acceptor, NULL, accept_main, s);
    return s;
}

static void server_stop(struct server *s)
{
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    pthread_join(s->acceptor, NULL);
    for (int i = 0; i < s->nconns; i++)
        pthread_join(s->conns[i], NULL);
    close(s->lfd);
    for (int i = 0; i < s->nreq; i++)
        free(s->reqs[i]);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int server_get(struct server *s, int *field)
{
    pthread_mutex_lock(&s->mu);
    int v = *field;
    pthread_mutex_unlock(&s->mu);
    return v;
}

static const char *server_req(struct server *s, int i)
{
    pthread_mutex_lock(&s->mu);
    const char *r = i < s->nreq ? s->reqs[i] : NULL;
    pthread_mutex_unlock(&s->mu);
    return r;
}

static char url_buf[256];

static const char *url_of(const struct server *s, const char *path)
{
    snprintf(url_buf, sizeof(url_buf), "http://127.0.0.1:%d%s", s->port, path);
    return url_buf;
}

/* ---- the client side ------------------------------------------------------------------------ */

#define MAX_RESULTS 2100

struct result {
    struct ctx *ctx;
    int fired, order;
    struct token_info *ti;
    double latency_ms;
};

struct ctx {
    struct ev_loop *loop;
    struct introspector *in;
    bool in_start; /* done() must never run while this is set */
    int done, order;
    int chain_left; /* > 0: each done() starts the next request (sequential keep-alive test) */
    const char *chain_token;
    struct result res[MAX_RESULTS];
};

static void on_done(void *ud, struct token_info *ti, double latency_ms)
{
    struct result *r = ud;
    struct ctx *c = r->ctx;
    assert_false(c->in_start);
    assert_non_null(ti);
    r->fired++;
    r->order = ++c->order;
    token_unref(r->ti); /* only if fired twice; that is then reported by the caller */
    r->ti = ti;
    r->latency_ms = latency_ms;
    c->done++;
    if (c->chain_left > 0) {
        c->chain_left--;
        struct result *next = &c->res[c->done];
        next->ctx = c;
        assert_int_equal(
            introspector_start(c->in, c->chain_token, strlen(c->chain_token), on_done, next), 0);
    }
}

static struct ctx *ctx_new(void)
{
    struct ctx *c = calloc(1, sizeof(*c));
    c->loop = ev_loop_new(EVFLAG_AUTO);
    for (int i = 0; i < MAX_RESULTS; i++)
        c->res[i].ctx = c;
    return c;
}

static void ctx_free(struct ctx *c)
{
    if (c->in)
        introspector_free(c->in);
    for (int i = 0; i < MAX_RESULTS; i++)
        token_unref(c->res[i].ti);
    ev_loop_destroy(c->loop);
    free(c);
}

static void start(struct ctx *c, const char *token, int i)
{
    c->in_start = true;
    assert_int_equal(introspector_start(c->in, token, strlen(token), on_done, &c->res[i]), 0);
    c->in_start = false;
}

static void guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(bool *)w->data = true;
}

/* Runs the loop until n done() calls happened or seconds passed. */
static void run_until(struct ctx *c, int n, double seconds)
{
    bool expired = false;
    ev_timer guard;
    ev_timer_init(&guard, guard_cb, seconds, 0.);
    guard.data = &expired;
    ev_timer_start(c->loop, &guard);
    while (c->done < n && !expired)
        ev_run(c->loop, EVRUN_ONCE);
    ev_timer_stop(c->loop, &guard);
    assert_int_equal(c->done, n);
}

/* Runs the loop for a while regardless of completions. */
static void run_for(struct ctx *c, double seconds)
{
    bool expired = false;
    ev_timer guard;
    ev_timer_init(&guard, guard_cb, seconds, 0.);
    guard.data = &expired;
    ev_timer_start(c->loop, &guard);
    while (!expired)
        ev_run(c->loop, EVRUN_ONCE);
}

static struct introspect_config base_cfg(const char *url)
{
    struct introspect_config cfg = {.url = url, .auth = CLIENT_AUTH_NONE, .timeout_ms = 3000};
    return cfg;
}

/* One request with cfg against a server answering rt; returns the answer (caller unrefs). */
static struct token_info *once(const struct route *routes, struct introspect_config *cfg,
                               const char *path, const char *token, char **raw)
{
    struct server *s = server_start(routes);
    struct ctx *c = ctx_new();
    cfg->url = url_of(s, path);
    c->in = introspector_new(c->loop, cfg);
    assert_non_null(c->in);
    start(c, token, 0);
    assert_int_equal(c->res[0].fired, 0);
    assert_int_equal(introspector_pending(c->in), 1);
    run_until(c, 1, 10.);
    assert_int_equal(introspector_pending(c->in), 0);
    struct token_info *ti = c->res[0].ti;
    c->res[0].ti = NULL;
    if (raw) {
        const char *r = server_req(s, 0);
        *raw = r ? strdup(r) : NULL;
    }
    ctx_free(c);
    server_stop(s);
    return ti;
}

static const char *body_of(const char *raw)
{
    const char *b = strstr(raw, "\r\n\r\n");
    return b ? b + 4 : NULL;
}

static bool has_header(const char *raw, const char *line)
{
    char want[512];
    snprintf(want, sizeof(want), "\r\n%s\r\n", line);
    const char *end = strstr(raw, "\r\n\r\n");
    const char *p = strstr(raw, want);
    return p && p < end;
}

static bool has_header_name(const char *raw, const char *name)
{
    char want[128];
    snprintf(want, sizeof(want), "\r\n%s:", name);
    const char *end = strstr(raw, "\r\n\r\n");
    const char *p = strcasestr(raw, want);
    return p && p < end;
}

static const struct route r204[] = {{.status = 204}};

#define JWT                                                                                        \
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."                                                        \
    "eyJzdWIiOiJhbGljZSIsImNsaWVudF9pZCI6IndlYiIsInNjb3BlIjoicmVhZCB3cml0ZSIsImV4cCI6NDEwMjQ0NDgw" \
    "MH0.c2lnbmF0dXJl"

/* ---- request format ------------------------------------------------------------------------- */

static void test_request_basic_auth(void **state)
{
    struct introspect_config cfg = base_cfg(NULL);
    cfg.auth = CLIENT_AUTH_BASIC;
    cfg.client_id = "my client:1";
    cfg.client_secret = "p@ss word/+%\xc3\xa9";
    cfg.token_type_hint = true;
    char *raw;
    struct token_info *ti = once(r204, &cfg, "/oauth/introspect?x=1", "ab+c/d=e==-._~", &raw);
    assert_int_equal(ti->outcome, TOKEN_INACTIVE);
    token_unref(ti);
    assert_non_null(raw);
    assert_true(strncmp(raw, "POST /oauth/introspect?x=1 HTTP/1.1\r\n", 37) == 0);
    assert_true(has_header(raw, "Content-Type: application/x-www-form-urlencoded"));
    assert_true(has_header(raw, "Accept: application/jwt"));
    /* base64("my+client%3A1:p%40ss+word%2F%2B%25%C3%A9"), RFC 6749 2.3.1 */
    assert_true(has_header(
        raw, "Authorization: Basic bXkrY2xpZW50JTNBMTpwJTQwc3Mrd29yZCUyRiUyQiUyNSVDMyVBOQ=="));
    assert_false(has_header_name(raw, "Expect"));
    const char *body = "token=ab%2Bc%2Fd%3De%3D%3D-._~&token_type_hint=access_token";
    char cl[64];
    snprintf(cl, sizeof(cl), "Content-Length: %zu", strlen(body));
    assert_true(has_header(raw, cl));
    assert_string_equal(body_of(raw), body);
    free(raw);
}

static void test_request_client_secret_post(void **state)
{
    struct introspect_config cfg = base_cfg(NULL);
    cfg.auth = CLIENT_AUTH_POST;
    cfg.client_id = "api&gw";
    cfg.client_secret = "s=e+c r/t";
    cfg.accept = "application/token-introspection+jwt";
    char *raw;
    struct token_info *ti = once(r204, &cfg, "/introspect", "tok", &raw);
    token_unref(ti);
    assert_true(has_header(raw, "Accept: application/token-introspection+jwt"));
    assert_false(has_header_name(raw, "Authorization"));
    assert_string_equal(body_of(raw), "token=tok&client_id=api%26gw&client_secret=s%3De%2Bc+r%2Ft");
    free(raw);
}

static void test_request_no_auth(void **state)
{
    struct introspect_config cfg = base_cfg(NULL);
    char *raw;
    struct token_info *ti = once(r204, &cfg, "/introspect", "a b", &raw);
    token_unref(ti);
    assert_false(has_header_name(raw, "Authorization"));
    assert_string_equal(body_of(raw), "token=a+b");
    free(raw);
}

/* ---- classification of answers -------------------------------------------------------------- */

static void test_active_jwt(void **state)
{
    static const struct route rt[] = {{.status = 200,
                                       .content_type = "application/jwt",
                                       .cache_control = "max-age=60",
                                       .body = JWT}};
    struct introspect_config cfg = base_cfg(NULL);
    struct token_info *ti = once(rt, &cfg, "/i", "tok", NULL);
    assert_int_equal(ti->outcome, TOKEN_ACTIVE);
    assert_non_null(ti->jwt);
    assert_string_equal(ti->jwt, JWT);
    assert_int_equal(ti->jwt_len, strlen(JWT));
    assert_string_equal(ti->claims.sub, "alice");
    assert_int_equal(ti->max_age, 60);
    token_unref(ti);
}

static void expect_outcome(const struct route *rt, enum token_outcome o)
{
    struct introspect_config cfg = base_cfg(NULL);
    struct token_info *ti = once(rt, &cfg, "/i", "tok", NULL);
    assert_int_equal(ti->outcome, o);
    assert_non_null(ti->reason);
    token_unref(ti);
}

static void test_status_mapping(void **state)
{
    static const struct route r500[] = {{.status = 500, .body = "oops"}};
    static const struct route r503[] = {{.status = 503}};
    static const struct route r401[] = {{.status = 401, .body = "{}"}};
    static const struct route r418[] = {{.status = 418}};
    static const struct route rjunk[] = {
        {.status = 200, .content_type = "application/jwt", .body = "not-a-jwt"}};
    expect_outcome(r204, TOKEN_INACTIVE);
    expect_outcome(r500, TOKEN_IDP_ERROR);
    expect_outcome(r503, TOKEN_IDP_UNAVAIL);
    expect_outcome(r401, TOKEN_IDP_ERROR);
    expect_outcome(r418, TOKEN_IDP_UNKNOWN);
    expect_outcome(rjunk, TOKEN_IDP_ERROR);
}

/* ---- transport failures --------------------------------------------------------------------- */

static void test_connection_refused(void **state)
{
    /* A port that was just free: nothing listens there. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/i", ntohs(a.sin_port));
    struct ctx *c = ctx_new();
    struct introspect_config cfg = base_cfg(url);
    c->in = introspector_new(c->loop, &cfg);
    start(c, "tok", 0);
    run_until(c, 1, 5.);
    assert_int_equal(c->res[0].ti->outcome, TOKEN_IDP_ERROR);
    assert_string_equal(c->res[0].ti->reason, "IdP connection failed");
    ctx_free(c);
}

static void test_hangup(void **state)
{
    static const struct route rt[] = {{.hangup = true}};
    struct introspect_config cfg = base_cfg(NULL);
    struct token_info *ti = once(rt, &cfg, "/i", "tok", NULL);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    assert_string_equal(ti->reason, "IdP connection error");
    token_unref(ti);
}

/* Only http and https, no redirects followed, and TLS failures reported as such. */
static void test_transport_policy(void **state)
{
    static const struct route redirect[] = {
        {.match = "/i ", .status = 302, .extra_header = "Location: /next"}, {.status = 204}};
    struct server *s = server_start(redirect);
    struct ctx *c = ctx_new();
    char https[128], ftp[128];
    snprintf(https, sizeof(https), "https://127.0.0.1:%d/i", s->port);
    snprintf(ftp, sizeof(ftp), "ftp://127.0.0.1:%d/i", s->port);
    const char *urls[] = {url_of(s, "/i"), https, ftp};
    struct introspector *ins[3];
    for (int i = 0; i < 3; i++) {
        struct introspect_config cfg = base_cfg(urls[i]);
        ins[i] = c->in = introspector_new(c->loop, &cfg);
        start(c, "tok", i);
    }
    run_until(c, 3, 5.);
    c->in = NULL;
    for (int i = 0; i < 3; i++)
        introspector_free(ins[i]);
    assert_int_equal(c->res[0].ti->outcome, TOKEN_IDP_UNKNOWN); /* the 302 itself */
    assert_int_equal(c->res[1].ti->outcome, TOKEN_IDP_ERROR);
    assert_string_equal(c->res[1].ti->reason, "IdP TLS error");
    assert_int_equal(c->res[2].ti->outcome, TOKEN_IDP_ERROR);
    assert_string_equal(c->res[2].ti->reason, "bad introspection URL");
    /* The 302 was not followed; the TLS handshake reached the server but no request did. */
    assert_int_equal(server_get(s, &s->nreq), 1);
    ctx_free(c);
    server_stop(s);
}

/* The slow request times out while the fast one, started after it, completes first. */
static void test_timeout_does_not_block(void **state)
{
    static const struct route rt[] = {{.match = "token=slow", .status = 204, .delay_ms = 2000},
                                      {.status = 204, .delay_ms = 50}};
    struct server *s = server_start(rt);
    struct ctx *c = ctx_new();
    struct introspect_config cfg = base_cfg(url_of(s, "/i"));
    cfg.timeout_ms = 400;
    c->in = introspector_new(c->loop, &cfg);
    start(c, "slow", 0);
    start(c, "fast", 1);
    run_until(c, 2, 5.);
    assert_int_equal(c->res[1].order, 1);
    assert_int_equal(c->res[1].ti->outcome, TOKEN_INACTIVE);
    assert_int_equal(c->res[0].order, 2);
    assert_int_equal(c->res[0].ti->outcome, TOKEN_IDP_ERROR);
    assert_string_equal(c->res[0].ti->reason, "IdP timeout");
    assert_true(c->res[0].latency_ms >= 350. && c->res[0].latency_ms < 1500.);
    assert_true(c->res[1].latency_ms < 400.);
    ctx_free(c);
    server_stop(s);
}

static void expect_too_large(const struct route *rt)
{
    struct introspect_config cfg = base_cfg(NULL);
    cfg.max_response = 1024;
    struct token_info *ti = once(rt, &cfg, "/i", "tok", NULL);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    assert_string_equal(ti->reason, "IdP answer too large");
    assert_null(ti->jwt);
    token_unref(ti);
}

static void test_oversize(void **state)
{
    static const struct route declared[] = {
        {.status = 200, .content_type = "application/jwt", .fill = 4096}};
    static const struct route streamed[] = {
        {.status = 200, .content_type = "application/jwt", .fill = 4096, .no_length = true}};
    static const struct route exact[] = {{.status = 500, .fill = 1024}};
    expect_too_large(declared);
    expect_too_large(streamed);
    /* Exactly the bound is allowed: the answer is classified, not refused. */
    struct introspect_config cfg = base_cfg(NULL);
    cfg.max_response = 1024;
    struct token_info *ti = once(exact, &cfg, "/i", "tok", NULL);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    assert_string_not_equal(ti->reason, "IdP answer too large");
    token_unref(ti);
}

/* ---- concurrency, queueing, keep-alive ------------------------------------------------------ */

/* Position of the request carrying token=<tok> in the server's arrival order, or -1. */
static int arrival(struct server *s, const char *tok)
{
    char want[64];
    snprintf(want, sizeof(want), "\r\n\r\ntoken=%s", tok);
    for (int i = 0; server_req(s, i); i++)
        if (strstr(server_req(s, i), want))
            return i;
    return -1;
}

static void test_max_concurrent(void **state)
{
    static const struct route rt[] = {{.status = 204, .delay_ms = 40}};
    static const char *const toks[] = {"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"};
    struct server *s = server_start(rt);
    struct ctx *c = ctx_new();
    struct introspect_config cfg = base_cfg(url_of(s, "/i"));
    cfg.max_concurrent = 2;
    c->in = introspector_new(c->loop, &cfg);
    for (int i = 0; i < 10; i++)
        start(c, toks[i], i);
    assert_int_equal(introspector_pending(c->in), 10);
    run_until(c, 10, 10.);
    assert_int_equal(introspector_pending(c->in), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(c->res[i].fired, 1);
        assert_int_equal(c->res[i].ti->outcome, TOKEN_INACTIVE);
    }
    /* FIFO: with two slots, request i always reaches the server before request i + 2. */
    for (int i = 0; i + 2 < 10; i++)
        assert_true(arrival(s, toks[i]) < arrival(s, toks[i + 2]));
    assert_int_equal(server_get(s, &s->max_cur), 2);
    assert_int_equal(server_get(s, &s->nreq), 10);
    assert_true(server_get(s, &s->accepts) <= 2); /* two connections, each kept alive */
    ctx_free(c);
    server_stop(s);
}

/* One slot, a hung IdP: the queue holds 16 per slot, the next one is refused at once (503), and
 * the queued ones are refused when the slot frees, since they waited longer than the timeout:
 * only the first request ever reaches the IdP. */
static void test_queue_is_bounded_in_length_and_time(void **state)
{
    static const struct route rt[] = {{.status = 204, .delay_ms = 3000}};
    struct server *s = server_start(rt);
    struct ctx *c = ctx_new();
    struct introspect_config cfg = base_cfg(url_of(s, "/i"));
    cfg.max_concurrent = 1;
    cfg.timeout_ms = 300;
    c->in = introspector_new(c->loop, &cfg);
    for (int i = 0; i < 18; i++)
        start(c, "queued", i);
    run_until(c, 1, 5.); /* the 18th: queue full, answered from the loop */
    assert_int_equal(c->res[17].fired, 1);
    assert_int_equal(c->res[17].ti->outcome, TOKEN_IDP_UNAVAIL);
    assert_string_equal(c->res[17].ti->reason, "introspection queue full");
    run_until(c, 18, 5.);
    assert_int_equal(c->res[0].ti->outcome, TOKEN_IDP_ERROR); /* the hung transfer timed out */
    for (int i = 1; i < 17; i++) {
        assert_int_equal(c->res[i].fired, 1);
        assert_int_equal(c->res[i].ti->outcome, TOKEN_IDP_UNAVAIL);
        assert_string_equal(c->res[i].ti->reason, "waited too long for an introspection slot");
    }
    assert_int_equal(server_get(s, &s->nreq), 1);
    ctx_free(c);
    server_stop(s);
}

static void test_keep_alive(void **state)
{
    struct server *s = server_start(r204);
    struct ctx *c = ctx_new();
    struct introspect_config cfg = base_cfg(url_of(s, "/i"));
    c->in = introspector_new(c->loop, &cfg);
    c->chain_left = 9; /* each done() starts the next: strictly sequential */
    c->chain_token = "tok";
    start(c, "tok", 0);
    run_until(c, 10, 10.);
    assert_int_equal(server_get(s, &s->nreq), 10);
    assert_int_equal(server_get(s, &s->accepts), 1);
    ctx_free(c);
    server_stop(s);
}

static void test_server_closes(void **state)
{
    static const struct route rt[] = {{.status = 204, .close = true}};
    struct server *s = server_start(rt);
    struct ctx *c = ctx_new();
    struct introspect_config cfg = base_cfg(url_of(s, "/i"));
    c->in = introspector_new(c->loop, &cfg);
    c->chain_left = 4;
    c->chain_token = "tok";
    start(c, "tok", 0);
    run_until(c, 5, 10.);
    for (int i = 0; i < 5; i++)
        assert_int_equal(c->res[i].ti->outcome, TOKEN_INACTIVE);
    assert_int_equal(server_get(s, &s->accepts), 5);
    ctx_free(c);
    server_stop(s);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void test_not_configured(void **state)
{
    struct ctx *c = ctx_new();
    struct introspect_config cfg = base_cfg(NULL);
    c->in = introspector_new(c->loop, &cfg);
    assert_non_null(c->in);
    start(c, "tok", 0);
    start(c, "tok", 1);
    assert_int_equal(c->done, 0);
    assert_int_equal(introspector_pending(c->in), 2);
    run_until(c, 2, 2.);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c->res[i].ti->outcome, TOKEN_IDP_UNAVAIL);
        assert_string_equal(c->res[i].ti->reason, "introspection not configured");
    }
    assert_int_equal(introspector_pending(c->in), 0);
    ctx_free(c);
}

static void test_free_in_flight(void **state)
{
    static const struct route rt[] = {{.status = 204, .delay_ms = 3000}};
    struct server *s = server_start(rt);
    struct ctx *c = ctx_new();
    struct introspect_config cfg = base_cfg(url_of(s, "/i"));
    cfg.max_concurrent = 2;
    c->in = introspector_new(c->loop, &cfg);
    for (int i = 0; i < 3; i++)
        start(c, "tok", i); /* two in flight, one queued */
    run_for(c, 0.2);
    assert_int_equal(c->done, 0);
    assert_int_equal(server_get(s, &s->nreq), 2);
    introspector_free(c->in);
    c->in = NULL;
    assert_int_equal(c->done, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c->res[i].fired, 1);
        assert_int_equal(c->res[i].ti->outcome, TOKEN_IDP_ERROR);
    }
    ctx_free(c);
    server_stop(s);
}

/* free() before the loop ever ran: queued, freshly added and deferred requests all answer once. */
static void test_free_before_run(void **state)
{
    struct ctx *c = ctx_new();
    struct introspect_config cfg = base_cfg("http://127.0.0.1:9/i");
    c->in = introspector_new(c->loop, &cfg);
    for (int i = 0; i < 3; i++)
        start(c, "tok", i);
    introspector_free(c->in);
    cfg.url = NULL;
    c->in = introspector_new(c->loop, &cfg);
    start(c, "tok", 3);
    introspector_free(c->in);
    c->in = NULL;
    assert_int_equal(c->done, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(c->res[i].fired, 1);
        assert_int_equal(c->res[i].ti->outcome, TOKEN_IDP_ERROR);
    }
    run_for(c, 0.05); /* nothing left armed that could fire into freed memory */
    assert_int_equal(c->done, 4);
    ctx_free(c);
}

static void test_reconfigure(void **state)
{
    struct server *s = server_start(r204);
    struct ctx *c = ctx_new();
    struct introspect_config cfg = base_cfg(url_of(s, "/old"));
    c->in = introspector_new(c->loop, &cfg);
    start(c, "one", 0);
    /* The request in flight keeps its settings; the next ones use the new. */
    cfg.url = url_of(s, "/new");
    cfg.accept = "application/json";
    cfg.auth = CLIENT_AUTH_BASIC;
    cfg.client_id = "id";
    cfg.client_secret = "pw";
    assert_int_equal(introspector_reconfigure(c->in, &cfg), 0);
    memset(url_buf, 0, sizeof(url_buf)); /* the introspector must have copied the strings */
    start(c, "two", 1);
    run_until(c, 2, 5.);
    const char *a = server_req(s, 0), *b = server_req(s, 1);
    if (strstr(a, "token=two"))
        a = server_req(s, 1), b = server_req(s, 0);
    assert_true(strncmp(a, "POST /old ", 10) == 0);
    assert_true(has_header(a, "Accept: application/jwt"));
    assert_false(has_header_name(a, "Authorization"));
    assert_true(strncmp(b, "POST /new ", 10) == 0);
    assert_true(has_header(b, "Accept: application/json"));
    assert_true(has_header(b, "Authorization: Basic aWQ6cHc="));

    cfg.url = NULL;
    assert_int_equal(introspector_reconfigure(c->in, &cfg), 0);
    start(c, "three", 2);
    run_until(c, 3, 2.);
    assert_int_equal(c->res[2].ti->outcome, TOKEN_IDP_UNAVAIL);

    cfg.url = "http://127.0.0.1:9/";
    cfg.client_id = NULL; /* Basic without a client id is refused; the old settings stay */
    assert_int_equal(introspector_reconfigure(c->in, &cfg), -1);
    ctx_free(c);
    server_stop(s);
}

/* Handles keep their fixed options between transfers; new settings must still reach every handle,
 * the idle ones and the ones in flight during the reload. */
static void test_reconfigure_reaches_reused_handles(void **state)
{
    struct server *s = server_start(r204);
    struct ctx *c = ctx_new();
    struct introspect_config cfg = base_cfg(url_of(s, "/old"));
    c->in = introspector_new(c->loop, &cfg);
    start(c, "one", 0);
    run_until(c, 1, 5.); /* its handle is idle now, set up for /old */
    /* Two reloads while it is idle (the third snapshot may well be allocated where the freed
     * first one was): the handle must still get the current settings. */
    cfg.url = url_of(s, "/between");
    assert_int_equal(introspector_reconfigure(c->in, &cfg), 0);
    cfg.url = url_of(s, "/new");
    cfg.auth = CLIENT_AUTH_BASIC;
    cfg.client_id = "id";
    cfg.client_secret = "pw";
    assert_int_equal(introspector_reconfigure(c->in, &cfg), 0);
    start(c, "two", 1);
    run_until(c, 2, 5.);
    const char *b = server_req(s, 1);
    assert_true(strncmp(b, "POST /new ", 10) == 0);
    assert_true(has_header(b, "Authorization: Basic aWQ6cHc="));

    start(c, "three", 2); /* in flight on the reused handle during the next reload */
    cfg.url = url_of(s, "/third");
    assert_int_equal(introspector_reconfigure(c->in, &cfg), 0);
    start(c, "four", 3);
    run_until(c, 4, 5.);
    start(c, "five", 4); /* both handles are reused: each must use the /third settings */
    start(c, "six", 5);
    run_until(c, 6, 5.);
    for (int i = 4; i < 6; i++)
        assert_true(strncmp(server_req(s, i), "POST /third ", 12) == 0);
    ctx_free(c);
    server_stop(s);
}

/* Failures are logged, but never with the token or the client secret. */
static void test_logs_no_secrets(void **state)
{
    static const struct route rt[] = {{.status = 500, .body = "SECRETTOKEN"}};
    FILE *tmp = tmpfile();
    int saved = dup(STDERR_FILENO);
    fflush(stderr);
    dup2(fileno(tmp), STDERR_FILENO);
    struct introspect_config cfg = base_cfg(NULL);
    cfg.auth = CLIENT_AUTH_POST;
    cfg.client_id = "client";
    cfg.client_secret = "SECRETPASSWORD";
    struct token_info *ti = once(rt, &cfg, "/i", "SECRETTOKEN", NULL);
    token_unref(ti);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[8192] = {0};
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof(buf) - 1, tmp);
    fclose(tmp);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "warn"));
    assert_non_null(strstr(buf, "500"));
    assert_null(strstr(buf, "SECRET"));
}

/* Not a benchmark, but a sanity number for the report: sequential-ish load over keep-alive. */
static void test_throughput(void **state)
{
    struct server *s = server_start(r204);
    struct ctx *c = ctx_new();
    struct introspect_config cfg = base_cfg(url_of(s, "/i"));
    cfg.max_concurrent = 8;
    c->in = introspector_new(c->loop, &cfg);
    int n = 2000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++)
        start(c, "tok", i);
    run_until(c, n, 60.);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("[ INFO     ] %d introspections in %.3f s: %.0f/s over %d connection(s)\n", n, secs,
           n / secs, server_get(s, &s->accepts));
    assert_true(server_get(s, &s->accepts) <= 8);
    ctx_free(c);
    server_stop(s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* curl honours proxy variables; the test server is local and must be reached directly. */
    static const char *const proxies[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                          "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
    for (size_t i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++)
        unsetenv(proxies[i]);
    log_init(LOG_LVL_WARN, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_basic_auth),
        cmocka_unit_test(test_request_client_secret_post),
        cmocka_unit_test(test_request_no_auth),
        cmocka_unit_test(test_active_jwt),
        cmocka_unit_test(test_status_mapping),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_hangup),
        cmocka_unit_test(test_transport_policy),
        cmocka_unit_test(test_timeout_does_not_block),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_max_concurrent),
        cmocka_unit_test(test_queue_is_bounded_in_length_and_time),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_server_closes),
        cmocka_unit_test(test_not_configured),
        cmocka_unit_test(test_free_in_flight),
        cmocka_unit_test(test_free_before_run),
        cmocka_unit_test(test_reconfigure),
        cmocka_unit_test(test_reconfigure_reaches_reused_handles),
        cmocka_unit_test(test_logs_no_secrets),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
