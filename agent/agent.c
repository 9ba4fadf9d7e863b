/* The worker: glue between SPOP connections, the token cache and the resolver pipeline.
 * A NOTIFY is answered at once when the credentials are unusable or the token is cached; otherwise
 * it becomes a pending request queued on the token's cache flight (the single-flight gate in
 * front of the pipeline) and is answered when the flight ends. The flight belongs to the cache,
 * not to the connection that started it, so a connection that goes away never strands the other
 * requests waiting for the same token. Per-connection state (the waiting requests) lives here, in
 * a struct session handed to conn.c as its callbacks' user data. */
#include "agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "bearer.h"
#include "clock.h"
#include "decision.h"
#include "fastpath_writer.h"
#include "l2_codec.h"
#include "listener.h"
#include "log.h"
#include "redis_client.h"
#include "stages.h"

/* One SPOP connection as the worker sees it. */
struct session {
    struct agent *agent;
    struct conn *conn;
    struct list link;    /* in the agent's sessions */
    struct list pending; /* NOTIFYs waiting for their token's flight (struct pending) */
    unsigned npending;
};

/* A NOTIFY waiting for its token's flight. The waiter must stay the first member. */
struct pending {
    struct cache_waiter waiter;
    struct agent *agent;
    struct session *sess; /* NULL once its connection is gone */
    struct list link;     /* in its session's pending list while it has one */
    uint64_t stream_id, frame_id;
    struct cache_key key;
    unsigned auth_count;
    const char *cache_tag; /* "miss" for the request that started the flight, else "coalesced" */
    bool scopes_invalid;
    ev_tstamp queued_at; /* loop time when it started waiting, for the access log */
    char token_id[13];
    char *scopes, *realm, *audience; /* owned copies of the message arguments */
    size_t scopes_len, realm_len, audience_len;
    char *auth; /* the Authorization value as sent, for the fast path's key; NULL without one */
    size_t auth_len;
};

/* The arguments of the message, borrowed from the frame. */
struct notify_args {
    const struct spop_value *auth;
    unsigned auth_count;
    struct spop_str scopes, realm, audience;
    bool scopes_invalid; /* present, but neither NULL nor a string */
};

/* ---- answering ---- */

/* idp_ms: how long the request waited for the IdP, or < 0 when it did not (hit, no token). */
static void access_log(const struct agent *a, const struct decision *d, const char *token_id,
                       double idp_ms)
{
    if (!a->cfg->access_log)
        return;
    char wait[32] = "-"; /* sub goes last: it may hold spaces, never a field that follows */
    if (idp_ms >= 0)
        snprintf(wait, sizeof(wait), "%.1f", idp_ms);
    log_info("decision token=%s status=%d error=%s cache=%s idp_ms=%s sub=%s",
             token_id ? token_id : "-", d->status, d->error ? d->error : "-",
             d->cache ? d->cache : "-", wait, d->sub ? d->sub : "-");
}

/* Writes an ACK's actions into the frame being built. */
typedef void (*ack_actions_fn)(struct spop_writer *w, const void *arg);

/* The one way an ACK is written: frame, actions, bounded by the negotiated frame size, queued.
 * Returns 0, or -1 when it does not fit the frame or the output queue (nothing queued). */
static int queue_ack(struct conn *c, uint64_t sid, uint64_t fid, ack_actions_fn put,
                     const void *arg)
{
    struct spop_writer w;
    conn_begin(c, &w);
    spop_frame_begin(&w, SPOP_FRM_ACK, SPOP_FLAG_FIN, sid, fid);
    put(&w, arg);
    if (spop_frame_end(&w, conn_max_frame(c)) < 0 || conn_commit(c, &w) < 0)
        return -1;
    return 0;
}

static void put_decision(struct spop_writer *w, const void *d)
{
    decision_put_actions(w, d);
}

/* HAProxy 3.1+ sends NOTIFYs without messages; an ACK must still carry an action (3.1.0 ignores an
 * empty one and the stream hangs): unsetting status decides nothing. */
static void put_no_decision(struct spop_writer *w, const void *unused)
{
    spop_put_unset_var(w, SPOP_SCOPE_TXN, VAR_STATUS);
}

/* Writes the ACK; a JWT that cannot fit the negotiated frame is answered 502 rather than cut. */
static void send_ack(struct agent *a, struct conn *c, uint64_t sid, uint64_t fid,
                     struct decision *d)
{
    if (queue_ack(c, sid, fid, put_decision, d) == 0)
        return;

    a->metrics.ack_too_big++;
    if (d->jwt_len)
        log_error("spop %s: the JWT (%zu bytes) does not fit the negotiated max-frame-size %u: "
                  "answering 502; raise HAProxy's tune.bufsize and the agent's --max-frame-size",
                  conn_peer(c), d->jwt_len, conn_max_frame(c));
    else
        log_error("spop %s: a %d answer does not fit the negotiated max-frame-size %u: answering "
                  "502",
                  conn_peer(c), d->status, conn_max_frame(c));
    struct decision fallback = {.status = 502, .error = "server_error", .cache = d->cache};
    if (queue_ack(c, sid, fid, put_decision, &fallback) < 0)
        conn_disconnect(c, SPOP_ST_RES, "cannot queue an ACK");
    d->status = 502;
}

/* What the fast path needs besides the decision: the request's exact Authorization value (the map
 * key hashes it as HAProxy sees it) and the token's cache key (purges find its entries by it). */
struct fp_origin {
    const char *auth;
    size_t auth_len;
    const struct cache_key *key;
};

/* Offers a 200 to the fast path; fastpath.c decides what may enter HAProxy's map. Only an answer
 * the cache holds, and never past that entry's end: HAProxy must not serve a decision longer than
 * this agent would (an IdP's no-store or short max-age, a short cache-max-ttl, a stale copy). */
static void publish(struct agent *a, const struct decision_input *in, const struct decision *d,
                    const struct fp_origin *o)
{
    if (!a->fastpath || !o || !o->auth || d->status != 200)
        return;
    int64_t until_ms = cache_entry_until_ms(a->cache, o->key, in->ti);
    if (until_ms <= 0)
        return;
    struct fp_candidate c = {
        .status = d->status,
        .jwt = d->jwt,
        .jwt_len = d->jwt_len,
        .auth_count = in->auth_count,
        .auth = o->auth,
        .auth_len = o->auth_len,
        .scopes = in->required_scopes,
        .scopes_len = in->required_scopes_len,
        .audience = in->audience,
        .audience_len = in->audience_len,
        .token_exp = in->ti && in->ti->claims.has_exp ? in->ti->claims.exp : 0,
        .not_after = until_ms / 1000,
    };
    /* A CLI line must fit HAProxy's buffer (tune.bufsize, 16 KB by default, the line is the JWT
     * plus ~120 bytes): larger JWTs are not published and keep going through the agent. */
    struct fp_limits l = {.ttl = a->cfg->fastpath_ttl,
                          .skew = a->cfg->cache.exp_skew,
                          .max_jwt = 8192,
                          .max_auth = 8192};
    fpw_publish(a->fastpath, &c, &l, o->key->b, in->now);
}

static void answer(struct agent *a, struct conn *c, uint64_t sid, uint64_t fid,
                   const struct decision_input *in, const char *token_id, double idp_ms,
                   const struct fp_origin *o)
{
    struct decision d;
    decide(in, &d);
    send_ack(a, c, sid, fid, &d);
    publish(a, in, &d, o);
    a->metrics.ack_total++;
    if (in->ti && in->ti->stale)
        a->metrics.stale_served++;
    metrics_count_decision(&a->metrics, d.status);
    access_log(a, &d, token_id, idp_ms);
    decision_clear(&d);
}

/* ---- pending requests ---- */

/* No NOTIFY pending any more: a draining agent closes the connection now. */
static void session_idle(struct session *s)
{
    if (s->agent->draining && conn_is_open(s->conn))
        conn_disconnect(s->conn, SPOP_ST_NORMAL, "agent shutting down");
}

static void pending_unlink(struct pending *p)
{
    struct session *s = p->sess;
    if (!s)
        return;
    list_del(&p->link);
    p->sess = NULL;
    s->npending--;
    if (s->npending == 0)
        session_idle(s);
}

static void pending_link(struct pending *p, struct session *s)
{
    p->sess = s;
    list_insert(&s->pending, &p->link);
    s->npending++;
}

static void pending_free(struct pending *p)
{
    free(p->scopes);
    free(p->realm);
    free(p->auth);
    free(p->audience);
    free(p);
}

static void pending_done(struct cache_waiter *w, struct token_info *ti)
{
    struct pending *p = (struct pending *)w;
    struct agent *a = p->agent;
    struct session *s = p->sess;
    if (s && conn_is_open(s->conn)) {
        struct decision_input in = {
            .bearer = BEARER_OK,
            .auth_count = p->auth_count,
            .ti = ti,
            .required_scopes = p->scopes,
            .required_scopes_len = p->scopes_len,
            .scopes_invalid = p->scopes_invalid,
            .realm = p->realm,
            .realm_len = p->realm_len,
            .audience = p->audience,
            .audience_len = p->audience_len,
            .now = clock_seconds(),
            .cache = p->cache_tag,
        };
        struct fp_origin o = {.auth = p->auth, .auth_len = p->auth_len, .key = &p->key};
        answer(a, s->conn, p->stream_id, p->frame_id, &in, p->token_id,
               (ev_now(a->loop) - p->queued_at) * 1000.0, &o);
    }
    pending_unlink(p);
    pending_free(p);
}

static struct pending *pending_take(struct agent *a)
{
    struct pending *p = a->spare;
    a->spare = NULL;
    if (!p)
        p = pta_calloc(1, sizeof(*p));
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
    char *d = pta_malloc(s.len + 1);
    if (d) {
        memcpy(d, s.ptr, s.len);
        d[s.len] = '\0';
    }
    return d;
}

/* Copies what the pending request needs once the frame buffer is reused. */
static int pending_keep_args(struct pending *p, const struct notify_args *r)
{
    if (r->scopes.len && !(p->scopes = dup_str(r->scopes)))
        return -1;
    if (r->realm.len && !(p->realm = dup_str(r->realm)))
        return -1;
    if (r->audience.len && !(p->audience = dup_str(r->audience)))
        return -1;
    p->scopes_len = r->scopes.len;
    p->realm_len = r->realm.len;
    const struct spop_value *v = r->auth;
    if (p->agent->fastpath && v && (v->type == SPOP_DATA_STR || v->type == SPOP_DATA_BIN)) {
        if (!(p->auth = dup_str(v->u.s)))
            return -1;
        p->auth_len = v->u.s.len;
    }
    p->audience_len = r->audience.len;
    return 0;
}

/* ---- the pipeline ---- */

/* Sends the token's cache flight down the pipeline, which completes it (the l1 stage resolves the
 * cache flight on the way back). */
static void start_flight(struct agent *a, const struct cache_key *k, const char *tok, size_t len)
{
    if (pipeline_start(a->pipeline, k, tok, len) == 0)
        return;
    log_error("cannot start a token resolution: out of memory");
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

static void request_from_message(const struct spop_message *m, struct notify_args *r)
{
    r->auth = spop_message_arg(m, "authorization");
    r->auth_count = arg_uint(m, "auth_count");
    r->scopes = arg_str(m, "scopes");
    const struct spop_value *sv = spop_message_arg(m, "scopes");
    r->scopes_invalid = sv && sv->type != SPOP_DATA_NULL && sv->type != SPOP_DATA_STR &&
                        sv->type != SPOP_DATA_BIN; /* a requirement we cannot read is no pass */
    r->realm = arg_str(m, "realm");
    r->audience = arg_str(m, "audience"); /* optional: which minted JWT the route forwards */
}

static enum bearer_result parse_credentials(const struct notify_args *r, const char **tok,
                                            size_t *len)
{
    const struct spop_value *v = r->auth;
    if (!v || (v->type != SPOP_DATA_STR && v->type != SPOP_DATA_BIN))
        return bearer_parse(NULL, 0, tok, len);
    return bearer_parse((const char *)v->u.s.ptr, v->u.s.len, tok, len);
}

static void fill_input(struct decision_input *in, const struct notify_args *r, enum bearer_result b)
{
    memset(in, 0, sizeof(*in));
    in->bearer = b;
    in->auth_count = r->auth_count;
    in->required_scopes = (const char *)r->scopes.ptr;
    in->required_scopes_len = r->scopes.len;
    in->scopes_invalid = r->scopes_invalid;
    in->realm = (const char *)r->realm.ptr;
    in->realm_len = r->realm.len;
    in->audience = (const char *)r->audience.ptr;
    in->audience_len = r->audience.len;
    in->now = clock_seconds();
}

/* Answers 502 when memory runs out: the request fails closed and the agent carries on. */
static void answer_oom(struct agent *a, struct conn *c, const struct spop_frame *f,
                       struct decision_input *in, const char *token_id)
{
    struct token_info *err = token_info_new(TOKEN_IDP_ERROR, "out of memory");
    in->ti = err; /* NULL when even this fails: decide() answers 500 */
    answer(a, c, f->stream_id, f->frame_id, in, token_id, -1, NULL);
    token_unref(err);
}

static void handle_token(struct agent *a, struct session *s, const struct spop_frame *f,
                         const struct notify_args *r, struct decision_input *in, const char *tok,
                         size_t len)
{
    char token_id[13] = "-";
    if (a->cfg->access_log) /* a SHA-256 per request only when someone reads it */
        log_token_id(tok, len, token_id);
    struct conn *c = s->conn;
    struct pending *p = pending_take(a);
    if (!p) {
        answer_oom(a, c, f, in, token_id);
        return;
    }
    cache_key_of(a->cache, tok, len, &p->key);
    struct cache_key key = p->key; /* p may be gone once its flight resolves */
    struct token_info *ti = NULL;
    enum cache_lookup found = cache_lookup(a->cache, &key, &p->waiter, &ti);
    if (found == CACHE_HIT) {
        in->ti = ti;
        in->cache = ti->outcome == TOKEN_ACTIVE ? "hit" : "negative";
        struct fp_origin o = {.key = &key};
        if (r->auth && (r->auth->type == SPOP_DATA_STR || r->auth->type == SPOP_DATA_BIN)) {
            o.auth = (const char *)r->auth->u.s.ptr;
            o.auth_len = r->auth->u.s.len;
        }
        answer(a, c, f->stream_id, f->frame_id, in, token_id, -1, &o);
        token_unref(ti);
        a->spare = p; /* reused by the next request: a hit allocates nothing */
        return;
    }
    if (found == CACHE_NOMEM || pending_keep_args(p, r) < 0) {
        if (found != CACHE_NOMEM)
            cache_cancel(a->cache, &key, &p->waiter);
        answer_oom(a, c, f, in, token_id);
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
    pending_link(p, s);
    if (found == CACHE_LEAD)
        start_flight(a, &key, tok, len);
}

static void on_notify(struct conn *c, void *ud, const struct spop_frame *f)
{
    struct session *s = ud;
    struct agent *a = s->agent;
    struct spop_reader rd = {f->payload, f->payload + f->payload_len};
    struct spop_message m;
    a->metrics.notify_total++;
    int rc = spop_notify_next(&rd, &m);
    if (rc < 0) {
        conn_disconnect(c, -rc, "malformed NOTIFY");
        return;
    }
    if (rc == 0) {
        if (queue_ack(c, f->stream_id, f->frame_id, put_no_decision, NULL) < 0)
            conn_disconnect(c, SPOP_ST_RES, "cannot queue an ACK");
        else
            a->metrics.ack_total++;
        return;
    }

    struct notify_args r;
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
        answer(a, c, f->stream_id, f->frame_id, &in, NULL, -1, NULL);
        return;
    }
    handle_token(a, s, f, &r, &in, tok, len);
}

/* ---- connections and lifecycle ---- */

/* conn.c's on_close: the connection is going; its pending NOTIFYs can never be answered. */
static void on_close(struct conn *c, void *ud)
{
    struct session *s = ud;
    struct agent *a = s->agent;
    while (!list_empty(&s->pending)) {
        struct pending *p = list_entry(s->pending.next, struct pending, link);
        pending_unlink(p);
        /* Still queued on its flight: take it out. Otherwise the flight is resolving right now
         * and will call pending_done(), which finds no connection and frees it. */
        if (cache_cancel(a->cache, &p->key, &p->waiter))
            pending_free(p);
    }
    list_del(&s->link);
    a->nconns--;
    a->metrics.spop_connections_open--;
    free(s);
}

/* conn.c's idle timer: waiting on the IdP is not idleness. */
static bool session_busy(const struct conn *c, void *ud)
{
    const struct session *s = ud;
    return s->npending > 0;
}

static const struct conn_ops session_ops = {
    .on_notify = on_notify, .on_close = on_close, .busy = session_busy};

struct conn *agent_adopt(struct agent *a, int fd, const char *peer)
{
    struct session *s = pta_calloc(1, sizeof(*s));
    struct conn *c = NULL;
    if (s)
        c = conn_new(&a->conn_set, &session_ops, s, fd, peer);
    else
        close(fd);
    if (!c) {
        free(s);
        log_error("out of memory: connection from %s dropped", peer);
        return NULL;
    }
    s->agent = a;
    s->conn = c;
    list_init(&s->pending);
    list_insert(&a->sessions, &s->link);
    a->nconns++;
    a->metrics.spop_connections_total++;
    a->metrics.spop_connections_open++;
    log_debug("spop %s: connected", peer);
    return c;
}

static void on_accept(void *ud, int fd, const char *peer)
{
    agent_adopt(ud, fd, peer);
}

static void settings_from(struct agent *a, const struct config *cfg)
{
    a->cfg = cfg;
    a->conn_set.idle_timeout_ms = cfg->idle_timeout_ms;
}

/* The finishing stage reads the minting settings of the configuration in force. */
static const struct minting *agent_minting(void *ud)
{
    const struct agent *a = ud;
    return a->cfg ? &a->cfg->minting : NULL;
}

struct pipeline *agent_build_pipeline(struct agent *a)
{
    struct pipeline *p = pipeline_new();
    if (!p)
        return NULL;
    /* stale sits above l2, so that l2 sees an IdP failure (and stores nothing) before stale swaps
     * in the expired entry, and l1 never stores the stale copy either. */
    if (stage_l1_add(p, a->cache) < 0 || stage_stale_add(p, a->cache) < 0 ||
        (a->l2 && stage_l2_add(p, a->l2, a->l2_codec, a->cfg->cache_redis_prefix, a->cache,
                               &a->metrics) < 0) ||
        stage_finish_add(p, agent_minting, a) < 0 ||
        stage_admission_add(p, &a->admission, &a->metrics) < 0 ||
        (a->breaker && stage_breaker_add(p, a->breaker, &a->breaker_set) < 0) ||
        stage_introspect_add(p, a->idp, &a->metrics) < 0) {
        pipeline_free(p);
        return NULL;
    }
    return p;
}

/* What every worker has: its loop, connections and what new connections get. */
static void agent_setup(struct agent *a, struct ev_loop *loop, const struct config *cfg,
                        struct cache *cache)
{
    memset(a, 0, sizeof(*a));
    a->loop = loop;
    a->cache = cache;
    list_init(&a->sessions);
    conn_flusher_init(&a->flusher, loop);
    a->conn_set = (struct conn_settings){
        .loop = loop,
        .max_frame = cfg->max_frame_size, /* restart-only: agent_reconfigure() keeps it */
        .counters = &a->metrics.spop,
        .flusher = &a->flusher,
    };
    settings_from(a, cfg);
}

int agent_init_with(struct agent *a, struct ev_loop *loop, const struct config *cfg,
                    struct cache *cache, struct pipeline *p)
{
    agent_setup(a, loop, cfg, cache);
    a->pipeline = p;
    if (!p) {
        agent_fini(a);
        return -1;
    }
    return 0;
}

/* The breaker's transitions, logged once each. */
static void on_breaker_transition(void *ud, const char *name, enum breaker_state from,
                                  enum breaker_state to, const char *why)
{
    const struct agent *a = ud;
    if (to == BREAKER_OPEN)
        log_warn("circuit breaker for %s: %s -> open (%s); misses are answered %u without "
                 "calling the IdP for %u ms",
                 name, breaker_state_name(from), why, a->breaker_set.failure_status,
                 a->cfg->breaker.open_ms);
    else
        log_info("circuit breaker for %s: %s -> %s (%s)", name, breaker_state_name(from),
                 breaker_state_name(to), why);
}

/* The breaker's name in logs: the endpoint's host[:port] (never a path or query). */
static void endpoint_name(const char *url, char *out, size_t cap)
{
    const char *h = url ? strstr(url, "://") : NULL;
    h = h ? h + 3 : "-";
    size_t n = strcspn(h, "/?#");
    log_printable(h, n, out, cap);
}

static struct breaker *new_breaker(struct agent *a, const struct config *cfg)
{
    char name[128];
    endpoint_name(cfg->introspection_url, name, sizeof(name));
    struct breaker *b = breaker_new(&cfg->breaker, name, clock_ms, NULL);
    if (b)
        breaker_on_transition(b, on_breaker_transition, a);
    return b;
}

static void on_l2_state(void *ud, bool subscriber, bool up)
{
    struct agent *a = ud;
    if (!subscriber)
        a->metrics.l2_up = up;
    else if (a->l2_subscriber_state)
        a->l2_subscriber_state(a->l2_subscriber_ud, up);
}

/* The shared cache's codec and client (connecting from now on, in the background). */
static int l2_start(struct agent *a, const struct config *cfg)
{
    if (!cfg->cache_redis_url)
        return 0;
    a->l2_codec = l2_codec_new((const uint8_t *)cfg->fleet_key, cfg->fleet_key_len);
    if (!a->l2_codec) {
        log_error("shared cache: cannot derive keys from the fleet key");
        return -1;
    }
    struct redis_client_settings s;
    redis_client_settings_default(&s);
    s.url = cfg->redis;
    s.password = cfg->cache_redis_password;
    s.command_timeout_ms = cfg->cache_redis_timeout_ms;
    s.name = "shared cache (Redis)";
    static const struct redis_client_ops ops = {.state = on_l2_state};
    char err[256] = "";
    a->l2 = redis_client_new(a->loop, &s, &ops, a, err, sizeof(err));
    if (!a->l2) {
        log_error("shared cache: %s", err);
        return -1;
    }
    a->metrics.l2_enabled = true;
    return 0;
}

int agent_init(struct agent *a, struct ev_loop *loop, const struct config *cfg, struct cache *cache)
{
    struct introspect_config ic;
    config_introspect(cfg, &ic);
    agent_setup(a, loop, cfg, cache);
    a->idp = introspector_new(loop, &ic);
    a->breaker = new_breaker(a, cfg);
    a->breaker_set.failure_status = cfg->breaker_failure_answer;
    a->metrics.breaker = a->breaker;
    ratelimit_init(&a->admission, cfg->max_introspection_rate, 0, clock_ms(NULL));
    if (a->idp && a->breaker && l2_start(a, cfg) == 0)
        a->pipeline = agent_build_pipeline(a); /* its stages borrow a->idp, a->cache, a->metrics,
                                                * a->breaker */
    if (!a->pipeline) {
        agent_fini(a);
        return -1;
    }
    char err[256] = "";
    a->listener = listener_new(loop, cfg->listen, on_accept, a, err, sizeof(err));
    if (!a->listener) {
        log_error("cannot listen on %s: %s", cfg->listen, err);
        agent_fini(a);
        return -1;
    }
    if (cfg->fastpath_sockets) {
        struct fpw_settings fs = {.sockets = cfg->fastpath_sockets,
                                  .map = cfg->fastpath_map,
                                  .secret = cfg->fastpath_key,
                                  .max_entries = cfg->fastpath_max_entries};
        a->fastpath = fpw_new(loop, &fs, err, sizeof(err));
        if (!a->fastpath) {
            log_error("fast path: %s", err);
            agent_fini(a);
            return -1;
        }
        log_info("fast path: publishing decisions to %s (map %s, at most %u entries of %us)",
                 cfg->fastpath_sockets, cfg->fastpath_map, cfg->fastpath_max_entries,
                 (unsigned)cfg->fastpath_ttl);
    }
    return 0;
}

int agent_reconfigure(struct agent *a, const struct config *cfg)
{
    struct introspect_config ic;
    config_introspect(cfg, &ic);
    if (a->idp && introspector_reconfigure(a->idp, &ic) < 0)
        return -1;
    if (a->breaker)
        breaker_reconfigure(a->breaker, &cfg->breaker);
    a->breaker_set.failure_status = cfg->breaker_failure_answer;
    ratelimit_set(&a->admission, cfg->max_introspection_rate, 0, clock_ms(NULL));
    settings_from(a, cfg);
    return 0;
}

void agent_drain(struct agent *a)
{
    a->draining = true;
    listener_stop(a->listener);
    for (struct list *l = a->sessions.next, *next; l != &a->sessions; l = next) {
        struct session *s = list_entry(l, struct session, link);
        next = l->next;
        if (s->npending == 0)
            session_idle(s);
    }
}

bool agent_drained(const struct agent *a)
{
    return a->nconns == 0;
}

void agent_fini(struct agent *a)
{
    while (!list_empty(&a->sessions))
        conn_destroy(list_entry(a->sessions.next, struct session, link)->conn);
    conn_flusher_stop(&a->flusher);
    if (a->listener)
        listener_free(a->listener);
    /* Redis first: its pending GETs pass their flights on to the introspector, which resolves
     * every flight it holds when freed. */
    redis_client_free(a->l2);
    if (a->idp)
        introspector_free(a->idp); /* resolves the flights left; nobody waits on them now */
    pipeline_free(a->pipeline);
    fpw_free(a->fastpath);
    a->fastpath = NULL;
    breaker_free(a->breaker);
    a->breaker = NULL;
    l2_codec_free(a->l2_codec);
    a->l2 = NULL;
    a->l2_codec = NULL;
    free(a->spare);
    a->listener = NULL;
    a->idp = NULL;
    a->pipeline = NULL;
    a->spare = NULL;
}
