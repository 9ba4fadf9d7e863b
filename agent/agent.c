/* The worker: glue between SPOP connections, the token cache and the introspection client.
 * A NOTIFY is answered at once when the credentials are unusable or the token is cached; otherwise
 * it becomes a pending request queued on the token's flight and is answered when the flight ends.
 * The flight belongs to the cache, not to the connection that started it, so a connection that
 * goes away never strands the other requests waiting for the same token. */
#include "agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bearer.h"
#include "conn.h"
#include "decision.h"
#include "listener.h"
#include "log.h"

/* A NOTIFY waiting for an introspection. The waiter must stay the first member. */
struct pending {
    struct cache_waiter waiter;
    struct agent *agent;
    struct conn *conn;
    struct list link; /* in its connection's pending list while it has one */
    uint64_t stream_id, frame_id;
    struct cache_key key;
    unsigned auth_count;
    const char *cache_tag; /* "miss" for the request that started the flight, else "coalesced" */
    bool scopes_invalid;
    ev_tstamp queued_at; /* loop time when it started waiting, for the access log */
    char token_id[13];
    char *scopes, *realm; /* owned copies of the message arguments */
    size_t scopes_len, realm_len;
};

/* One introspection in flight, owned by the introspector callback. */
struct flight {
    struct agent *agent;
    struct cache_key key;
};

/* The arguments of the message, borrowed from the frame. */
struct request {
    const struct spop_value *auth;
    unsigned auth_count;
    struct spop_str scopes, realm;
    bool scopes_invalid; /* present, but neither NULL nor a string */
};

static int64_t now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec;
}

/* ---- answering ---- */

/* idp_ms: how long the request waited for the IdP, or < 0 when it did not (hit, no token). */
static void access_log(const struct conn *c, const struct decision *d, const char *token_id,
                       double idp_ms)
{
    if (!c->agent->cfg->access_log)
        return;
    char wait[32] = "-"; /* sub goes last: it may hold spaces, never a field that follows */
    if (idp_ms >= 0)
        snprintf(wait, sizeof(wait), "%.1f", idp_ms);
    log_info("decision token=%s status=%d error=%s cache=%s idp_ms=%s sub=%s",
             token_id ? token_id : "-", d->status, d->error ? d->error : "-",
             d->cache ? d->cache : "-", wait, d->sub ? d->sub : "-");
}

/* Writes the ACK; a JWT that cannot fit the negotiated frame is answered 502 rather than cut. */
static void send_ack(struct conn *c, uint64_t sid, uint64_t fid, struct decision *d)
{
    struct spop_writer w;
    conn_begin(c, &w);
    spop_frame_begin(&w, SPOP_FRM_ACK, SPOP_FLAG_FIN, sid, fid);
    decision_put_actions(&w, d);
    if (spop_frame_end(&w, c->max_frame) == 0 && conn_commit(c, &w) == 0)
        return;

    c->agent->metrics.ack_too_big++;
    if (d->jwt_len)
        log_error("spop %s: the JWT (%zu bytes) does not fit the negotiated max-frame-size %u: "
                  "answering 502; raise HAProxy's tune.bufsize and the agent's --max-frame-size",
                  c->peer, d->jwt_len, c->max_frame);
    else
        log_error("spop %s: a %d answer does not fit the negotiated max-frame-size %u: answering "
                  "502",
                  c->peer, d->status, c->max_frame);
    struct decision fallback = {.status = 502, .error = "server_error", .cache = d->cache};
    conn_begin(c, &w);
    spop_frame_begin(&w, SPOP_FRM_ACK, SPOP_FLAG_FIN, sid, fid);
    decision_put_actions(&w, &fallback);
    if (spop_frame_end(&w, c->max_frame) < 0 || conn_commit(c, &w) < 0)
        conn_disconnect(c, SPOP_ST_RES, "cannot queue an ACK");
    d->status = 502;
}

static void answer(struct conn *c, uint64_t sid, uint64_t fid, const struct decision_input *in,
                   const char *token_id, double idp_ms)
{
    struct decision d;
    decide(in, &d);
    send_ack(c, sid, fid, &d);
    c->agent->metrics.ack_total++;
    metrics_count_decision(&c->agent->metrics, d.status);
    access_log(c, &d, token_id, idp_ms);
    decision_clear(&d);
}

/* ---- pending requests ---- */

static void pending_unlink(struct pending *p)
{
    struct conn *c = p->conn;
    if (!c)
        return;
    list_del(&p->link);
    p->conn = NULL;
    c->npending--;
    if (c->npending == 0)
        agent_conn_idle(c->agent, c);
}

static void pending_link(struct pending *p, struct conn *c)
{
    p->conn = c;
    list_insert(&c->pending, &p->link);
    c->npending++;
}

static void pending_free(struct pending *p)
{
    free(p->scopes);
    free(p->realm);
    free(p);
}

static void pending_done(struct cache_waiter *w, struct token_info *ti)
{
    struct pending *p = (struct pending *)w;
    struct conn *c = p->conn;
    if (c && conn_is_open(c)) {
        struct decision_input in = {
            .bearer = BEARER_OK,
            .auth_count = p->auth_count,
            .ti = ti,
            .required_scopes = p->scopes,
            .required_scopes_len = p->scopes_len,
            .scopes_invalid = p->scopes_invalid,
            .realm = p->realm,
            .realm_len = p->realm_len,
            .now = now_seconds(),
            .cache = p->cache_tag,
        };
        answer(c, p->stream_id, p->frame_id, &in, p->token_id,
               (ev_now(c->agent->loop) - p->queued_at) * 1000.0);
    }
    pending_unlink(p);
    pending_free(p);
}

static struct pending *pending_take(struct agent *a)
{
    struct pending *p = a->spare;
    a->spare = NULL;
    if (!p)
        p = calloc(1, sizeof(*p));
    if (p) {
        memset(p, 0, sizeof(*p));
        list_init(&p->link);
        p->agent = a;
        p->waiter.done = pending_done;
    }
    return p;
}

static char *dup_str(struct spop_str s)
{
    char *d = malloc(s.len + 1);
    if (d) {
        memcpy(d, s.ptr, s.len);
        d[s.len] = '\0';
    }
    return d;
}

/* Copies what the pending request needs once the frame buffer is reused. */
static int pending_keep_args(struct pending *p, const struct request *r)
{
    if (r->scopes.len && !(p->scopes = dup_str(r->scopes)))
        return -1;
    if (r->realm.len && !(p->realm = dup_str(r->realm)))
        return -1;
    p->scopes_len = r->scopes.len;
    p->realm_len = r->realm.len;
    return 0;
}

/* ---- introspection ---- */

static void on_introspected(void *ud, struct token_info *ti, double latency_ms)
{
    struct flight *fl = ud;
    struct agent *a = fl->agent;
    metrics_observe_idp(&a->metrics, ti->outcome, latency_ms);
    cache_resolve(a->cache, &fl->key, ti);
    free(fl);
}

static void start_flight(struct agent *a, const struct cache_key *k, const char *tok, size_t len)
{
    struct flight *fl = malloc(sizeof(*fl));
    if (fl) {
        fl->agent = a;
        fl->key = *k;
    }
    if (fl && introspector_start(a->idp, tok, len, on_introspected, fl) == 0)
        return;
    free(fl);
    log_error("cannot start an introspection: out of memory");
    cache_resolve(a->cache, k, token_info_new(TOKEN_IDP_ERROR, "out of memory"));
}

/* ---- NOTIFY ---- */

static struct spop_str arg_str(const struct spop_message *m, const char *name)
{
    const struct spop_value *v = spop_message_arg(m, name);
    struct spop_str none = {NULL, 0};
    if (!v || (v->type != SPOP_DATA_STR && v->type != SPOP_DATA_BIN))
        return none;
    return v->u.s;
}

static unsigned arg_uint(const struct spop_message *m, const char *name)
{
    const struct spop_value *v = spop_message_arg(m, name);
    if (!v)
        return 0;
    if (v->type == SPOP_DATA_INT32 || v->type == SPOP_DATA_INT64)
        return v->u.i < 0 ? 0 : (v->u.i > 1000 ? 1000 : (unsigned)v->u.i);
    if (v->type == SPOP_DATA_UINT32 || v->type == SPOP_DATA_UINT64)
        return v->u.u > 1000 ? 1000 : (unsigned)v->u.u;
    return 0;
}

static void request_from_message(const struct spop_message *m, struct request *r)
{
    r->auth = spop_message_arg(m, "authorization");
    r->auth_count = arg_uint(m, "auth_count");
    r->scopes = arg_str(m, "scopes");
    const struct spop_value *sv = spop_message_arg(m, "scopes");
    r->scopes_invalid = sv && sv->type != SPOP_DATA_NULL && sv->type != SPOP_DATA_STR &&
                        sv->type != SPOP_DATA_BIN; /* a requirement we cannot read is no pass */
    r->realm = arg_str(m, "realm");
}

static enum bearer_result parse_credentials(const struct request *r, const char **tok, size_t *len)
{
    const struct spop_value *v = r->auth;
    if (!v || (v->type != SPOP_DATA_STR && v->type != SPOP_DATA_BIN))
        return bearer_parse(NULL, 0, tok, len);
    return bearer_parse((const char *)v->u.s.ptr, v->u.s.len, tok, len);
}

static void fill_input(struct decision_input *in, const struct request *r, enum bearer_result b)
{
    memset(in, 0, sizeof(*in));
    in->bearer = b;
    in->auth_count = r->auth_count;
    in->required_scopes = (const char *)r->scopes.ptr;
    in->required_scopes_len = r->scopes.len;
    in->scopes_invalid = r->scopes_invalid;
    in->realm = (const char *)r->realm.ptr;
    in->realm_len = r->realm.len;
    in->now = now_seconds();
}

/* Answers 502 when memory runs out: the request fails closed and the agent carries on. */
static void answer_oom(struct conn *c, const struct spop_frame *f, struct decision_input *in,
                       const char *token_id)
{
    struct token_info *err = token_info_new(TOKEN_IDP_ERROR, "out of memory");
    in->ti = err; /* NULL when even this fails: decide() answers 500 */
    answer(c, f->stream_id, f->frame_id, in, token_id, -1);
    token_unref(err);
}

static void handle_token(struct agent *a, struct conn *c, const struct spop_frame *f,
                         const struct request *r, struct decision_input *in, const char *tok,
                         size_t len)
{
    char token_id[13] = "-";
    if (a->cfg->access_log) /* a SHA-256 per request only when someone reads it */
        log_token_id(tok, len, token_id);
    struct pending *p = pending_take(a);
    if (!p) {
        answer_oom(c, f, in, token_id);
        return;
    }
    cache_key_of(a->cache, tok, len, &p->key);
    struct cache_key key = p->key; /* p may be gone once its flight resolves */
    struct token_info *ti = NULL;
    enum cache_lookup found = cache_lookup(a->cache, &key, &p->waiter, &ti);
    if (found == CACHE_HIT) {
        in->ti = ti;
        in->cache = ti->outcome == TOKEN_ACTIVE ? "hit" : "negative";
        answer(c, f->stream_id, f->frame_id, in, token_id, -1);
        token_unref(ti);
        a->spare = p; /* reused by the next request: a hit allocates nothing */
        return;
    }
    if (found == CACHE_NOMEM || pending_keep_args(p, r) < 0) {
        if (found != CACHE_NOMEM)
            cache_cancel(a->cache, &key, &p->waiter);
        answer_oom(c, f, in, token_id);
        pending_free(p);
        if (found == CACHE_LEAD) /* others may join this flight: it must still happen */
            start_flight(a, &key, tok, len);
        return;
    }
    /* Queued on the token's flight: answered from pending_done(). Linked before the flight starts
     * because a flight that cannot start resolves at once. */
    p->cache_tag = found == CACHE_LEAD ? "miss" : "coalesced";
    p->stream_id = f->stream_id;
    p->frame_id = f->frame_id;
    p->auth_count = r->auth_count;
    p->scopes_invalid = r->scopes_invalid;
    p->queued_at = ev_now(a->loop);
    memcpy(p->token_id, token_id, sizeof(token_id));
    pending_link(p, c);
    if (found == CACHE_LEAD)
        start_flight(a, &key, tok, len);
}

void agent_on_notify(struct agent *a, struct conn *c, const struct spop_frame *f)
{
    struct spop_reader rd = {f->payload, f->payload + f->payload_len};
    struct spop_message m;
    a->metrics.notify_total++;
    int rc = spop_notify_next(&rd, &m);
    if (rc < 0) {
        conn_disconnect(c, -rc, "malformed NOTIFY");
        return;
    }
    if (rc == 0) {
        /* HAProxy 3.1+ sends NOTIFYs without messages; an ACK must still carry an action (3.1.0
         * ignores an empty one and the stream hangs): unsetting status decides nothing. */
        struct spop_writer w;
        conn_begin(c, &w);
        spop_frame_begin(&w, SPOP_FRM_ACK, SPOP_FLAG_FIN, f->stream_id, f->frame_id);
        spop_put_unset_var(&w, SPOP_SCOPE_TXN, VAR_STATUS);
        if (spop_frame_end(&w, c->max_frame) < 0 || conn_commit(c, &w) < 0)
            conn_disconnect(c, SPOP_ST_RES, "cannot queue an ACK");
        else
            a->metrics.ack_total++;
        return;
    }

    struct request r;
    struct decision_input in;
    const char *tok = NULL;
    size_t len = 0;
    request_from_message(&m, &r);
    if (!r.auth && !a->warned_no_auth_arg) { /* a SPOE message without it denies everyone */
        char name[65];
        log_printable(m.name.ptr, m.name.len, name, sizeof(name));
        a->warned_no_auth_arg = true;
        log_warn("SPOE message '%s' has no 'authorization' argument: every request is answered "
                 "401; check the spoe-message args",
                 name);
    }
    enum bearer_result b = parse_credentials(&r, &tok, &len);
    fill_input(&in, &r, b);
    if (b != BEARER_OK || r.auth_count > 1) {
        answer(c, f->stream_id, f->frame_id, &in, NULL, -1);
        return;
    }
    handle_token(a, c, f, &r, &in, tok, len);
}

/* ---- connections and lifecycle ---- */

void agent_conn_added(struct agent *a, struct conn *c)
{
    list_insert(&a->conns, &c->link);
    a->nconns++;
    a->metrics.spop_connections_total++;
    a->metrics.spop_connections_open++;
}

void agent_conn_removed(struct agent *a, struct conn *c)
{
    while (!list_empty(&c->pending)) {
        struct pending *p = list_entry(c->pending.next, struct pending, link);
        pending_unlink(p);
        /* Still queued on its flight: take it out. Otherwise the flight is resolving right now
         * and will call pending_done(), which finds no connection and frees it. */
        if (cache_cancel(a->cache, &p->key, &p->waiter))
            pending_free(p);
    }
    list_del(&c->link);
    a->nconns--;
    a->metrics.spop_connections_open--;
}

void agent_conn_idle(struct agent *a, struct conn *c)
{
    if (a->draining && conn_is_open(c))
        conn_disconnect(c, SPOP_ST_NORMAL, "agent shutting down");
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    conn_flush_dirty(w->data);
}

int agent_init(struct agent *a, struct ev_loop *loop, const struct config *cfg, struct cache *cache)
{
    memset(a, 0, sizeof(*a));
    a->loop = loop;
    a->cfg = cfg;
    a->cache = cache;
    list_init(&a->conns);
    list_init(&a->dirty);
    ev_prepare_init(&a->flusher, on_prepare);
    a->flusher.data = a;
    ev_prepare_start(loop, &a->flusher);
    ev_unref(loop); /* flushing alone must not keep a drained loop running */
    struct introspect_config ic;
    config_introspect(cfg, &ic);
    a->idp = introspector_new(loop, &ic);
    char err[256] = "";
    if (a->idp)
        a->listener = listener_new(a, cfg->listen, err, sizeof(err));
    if (!a->listener) {
        if (a->idp)
            log_error("cannot listen on %s: %s", cfg->listen, err);
        agent_fini(a);
        return -1;
    }
    return 0;
}

int agent_reconfigure(struct agent *a, const struct config *cfg)
{
    struct introspect_config ic;
    config_introspect(cfg, &ic);
    if (introspector_reconfigure(a->idp, &ic) < 0)
        return -1;
    a->cfg = cfg;
    return 0;
}

void agent_drain(struct agent *a)
{
    a->draining = true;
    listener_stop(a->listener);
    for (struct list *l = a->conns.next; l != &a->conns; l = l->next) {
        struct conn *c = list_entry(l, struct conn, link);
        if (c->npending == 0)
            agent_conn_idle(a, c);
    }
}

bool agent_drained(const struct agent *a)
{
    return a->nconns == 0;
}

void agent_fini(struct agent *a)
{
    while (!list_empty(&a->conns))
        conn_destroy(list_entry(a->conns.next, struct conn, link));
    if (ev_is_active(&a->flusher)) {
        ev_ref(a->loop);
        ev_prepare_stop(a->loop, &a->flusher);
    }
    if (a->listener)
        listener_free(a->listener);
    if (a->idp)
        introspector_free(a->idp); /* resolves the flights left; nobody waits on them now */
    free(a->spare);
    a->listener = NULL;
    a->idp = NULL;
    a->spare = NULL;
}
