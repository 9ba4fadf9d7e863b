/* Unit tests for the worker (agent.c) with real connections over socketpairs and a fake
 * introspection stage at the bottom of the daemon's chain (l1 -> finish -> fake): hit, lead, join,
 * cancel on close, drain, the reload rule for the frame size, the injected clock, and each
 * out-of-memory path of agent.c (allocation hook). The loop runs without waiting (EVRUN_NOWAIT). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <ev.h>

#include "agent.h"
#include "alloc.h"
#include "clock.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "spop_peer.h"
#include "stages.h"

#define MAX_SPINS 10000
#define JWT "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.sig"

struct fake_idp {
    struct flight *held[32];
    int n, lookups;
    char last_token[64];
};

static void fake_lookup(void *self, struct flight *f)
{
    struct fake_idp *s = self;
    size_t len;
    const char *t = flight_token(f, &len);
    snprintf(s->last_token, sizeof(s->last_token), "%.*s", (int)len, t);
    s->lookups++;
    assert_true(s->n < 32);
    s->held[s->n++] = f;
}

static const struct stage_ops fake_ops = {.name = "fake-idp", .lookup = fake_lookup};

struct peer {
    int fd;
    uint8_t rx[1 << 16];
    size_t rx_len;
    uint8_t frame[1 << 16];
};

struct fixture {
    struct ev_loop *loop;
    struct config cfg;
    struct cache *cache;
    struct fake_idp idp;
    struct agent a;
    struct peer p[3];
};

static struct token_info *active(int64_t exp)
{
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "test");
    assert_non_null(ti);
    ti->jwt = strdup(JWT);
    ti->jwt_len = strlen(JWT);
    ti->claims.sub = strdup("alice");
    ti->claims.scope = strdup("read");
    ti->claims.exp = exp;
    ti->claims.has_exp = true;
    return ti;
}

static struct pipeline *daemon_chain_with_fake(struct fixture *fx)
{
    struct pipeline *p = pipeline_new();
    assert_non_null(p);
    assert_int_equal(stage_l1_add(p, fx->cache), 0);
    assert_int_equal(stage_finish_add(p, NULL, NULL), 0);
    assert_int_equal(pipeline_add(p, &fake_ops, &fx->idp), 0);
    return p;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->loop = ev_loop_new(EVFLAG_AUTO);
    config_defaults(&fx->cfg);
    fx->cache = cache_new(&fx->cfg.cache, clock_ms, NULL, NULL, 0);
    assert_non_null(fx->cache);
    assert_int_equal(
        agent_init_with(&fx->a, fx->loop, &fx->cfg, fx->cache, daemon_chain_with_fake(fx)), 0);
    for (int i = 0; i < 3; i++)
        fx->p[i].fd = -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    pta_alloc_fail_at(0, 0);
    clock_inject(NULL, NULL);
    /* Flights the fake still holds (a failed test): answered before the chain goes, as the
     * daemon's introspector does in agent_fini(). */
    for (int i = 0; i < fx->idp.n; i++)
        if (fx->idp.held[i])
            flight_resolve(fx->idp.held[i], token_info_new(TOKEN_IDP_ERROR, "teardown"));
    agent_fini(&fx->a);
    cache_free(fx->cache);
    ev_loop_destroy(fx->loop);
    for (int i = 0; i < 3; i++)
        if (fx->p[i].fd >= 0)
            close(fx->p[i].fd);
    config_free(&fx->cfg);
    free(fx);
    return 0;
}

static void spin(struct fixture *fx, int n)
{
    for (int i = 0; i < n; i++)
        ev_run(fx->loop, EVRUN_NOWAIT);
}

/* Reads what the agent sent; true at EOF. */
static bool peer_read(struct peer *p)
{
    for (;;) {
        ssize_t n = recv(p->fd, p->rx + p->rx_len, sizeof(p->rx) - p->rx_len, 0);
        if (n > 0) {
            p->rx_len += (size_t)n;
            continue;
        }
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
}

/* True with *f filled when the agent sent a complete frame (running the loop meanwhile). */
static bool try_frame(struct fixture *fx, struct peer *p, struct spop_frame *f, int spins)
{
    uint32_t flen = 0;
    for (int i = 0; i <= spins; i++) {
        peer_read(p);
        if (spop_frame_complete(p->rx, p->rx_len, 65535, &flen) == 1) {
            memcpy(p->frame, p->rx + SPOP_LEN_PREFIX, flen);
            memmove(p->rx, p->rx + SPOP_LEN_PREFIX + flen, p->rx_len - SPOP_LEN_PREFIX - flen);
            p->rx_len -= SPOP_LEN_PREFIX + flen;
            assert_int_equal(spop_frame_decode(p->frame, flen, f), 0);
            return true;
        }
        if (i < spins)
            ev_run(fx->loop, EVRUN_NOWAIT);
    }
    return false;
}

static void next_frame(struct fixture *fx, struct peer *p, struct spop_frame *f)
{
    assert_true(try_frame(fx, p, f, MAX_SPINS));
}

static void send_all(struct peer *p, const uint8_t *b, size_t n)
{
    assert_int_equal(send(p->fd, b, n, 0), (ssize_t)n);
}

/* A new connection of the worker, past the handshake; returns the frame size it announced. */
static long long connect_peer(struct fixture *fx, int i, uint32_t theirs)
{
    int sv[2];
    uint8_t b[256];
    struct spop_frame f;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_non_null(agent_adopt(&fx->a, sv[0], "peer"));
    fx->p[i].fd = sv[1];
    fx->p[i].rx_len = 0;
    send_all(&fx->p[i], b, peer_hello(b, sizeof(b), theirs, 0));
    next_frame(fx, &fx->p[i], &f);
    assert_int_equal(f.type, SPOP_FRM_AGENT_HELLO);
    return peer_kv_int(f.payload, f.payload_len, "max-frame-size");
}

static void notify(struct fixture *fx, int i, uint64_t sid, const char *auth, const char *scopes)
{
    uint8_t b[1024];
    send_all(&fx->p[i], b, peer_notify(b, sizeof(b), sid, 1, auth, scopes));
}

/* The ACK for sid on peer i, with its status. */
static int ack_status(struct fixture *fx, int i, uint64_t sid, struct spop_frame *f)
{
    next_frame(fx, &fx->p[i], f);
    assert_int_equal(f->type, SPOP_FRM_ACK);
    assert_int_equal(f->stream_id, sid);
    return peer_ack_status(f);
}

static void cache_put(struct fixture *fx, const char *tok, struct token_info *ti)
{
    struct cache_key k;
    cache_key_of(fx->cache, tok, strlen(tok), &k);
    cache_resolve(fx->cache, &k, ti);
}

static void resolve_held(struct fixture *fx, int i, struct token_info *ti)
{
    struct flight *f = fx->idp.held[i];
    assert_non_null(f);
    fx->idp.held[i] = NULL;
    flight_resolve(f, ti);
}

static void test_hit(void **state)
{
    struct fixture *fx = *state;
    struct spop_frame f;
    cache_put(fx, "tok-hit", active(clock_seconds() + 3600));
    connect_peer(fx, 0, 16380);
    notify(fx, 0, 1, "Bearer tok-hit", NULL);
    assert_int_equal(ack_status(fx, 0, 1, &f), 200);
    assert_true(peer_ack_is(&f, "jwt", JWT));
    assert_true(peer_ack_is(&f, "cache", "hit"));
    assert_true(peer_ack_is(&f, "sub", "alice"));
    assert_int_equal(fx->idp.lookups, 0);
    assert_int_equal(fx->a.metrics.decisions[MST_200], 1);
    assert_int_equal(fx->a.metrics.ack_total, 1);
}

static void test_lead_then_hit(void **state)
{
    struct fixture *fx = *state;
    struct spop_frame f;
    connect_peer(fx, 0, 16380);
    notify(fx, 0, 1, "Bearer tok-lead", "read");
    assert_false(try_frame(fx, &fx->p[0], &f, 5)); /* waits for its flight */
    assert_int_equal(fx->idp.lookups, 1);
    assert_string_equal(fx->idp.last_token, "tok-lead");
    resolve_held(fx, 0, active(clock_seconds() + 3600));
    assert_int_equal(ack_status(fx, 0, 1, &f), 200);
    assert_true(peer_ack_is(&f, "cache", "miss"));
    notify(fx, 0, 2, "Bearer tok-lead", "write"); /* cached now; the route wants another scope */
    assert_int_equal(ack_status(fx, 0, 2, &f), 403);
    assert_int_equal(fx->idp.lookups, 1);
}

/* Three requests for one token on two connections: one flight, three answers. */
static void test_join(void **state)
{
    struct fixture *fx = *state;
    struct spop_frame f;
    connect_peer(fx, 0, 16380);
    connect_peer(fx, 1, 16380);
    notify(fx, 0, 1, "Bearer tok-join", NULL);
    notify(fx, 0, 2, "Bearer tok-join", NULL);
    spin(fx, 5); /* connection 0 leads */
    notify(fx, 1, 3, "Bearer tok-join", NULL);
    spin(fx, 5);
    assert_int_equal(fx->idp.lookups, 1);
    resolve_held(fx, 0, token_info_new(TOKEN_INACTIVE, "revoked"));
    assert_int_equal(ack_status(fx, 0, 1, &f), 401);
    assert_true(peer_ack_is(&f, "cache", "miss"));
    assert_int_equal(ack_status(fx, 0, 2, &f), 401);
    assert_true(peer_ack_is(&f, "cache", "coalesced"));
    assert_int_equal(ack_status(fx, 1, 3, &f), 401);
    assert_true(peer_ack_is(&f, "cache", "coalesced"));
    struct cache_stats st;
    cache_get_stats(fx->cache, &st);
    assert_int_equal(st.coalesced, 2);
}

/* The leader's connection goes away: its requests are cancelled, the flight still completes and
 * answers the request of the other connection. */
static void test_cancel_on_close(void **state)
{
    struct fixture *fx = *state;
    struct spop_frame f;
    connect_peer(fx, 0, 16380);
    connect_peer(fx, 1, 16380);
    notify(fx, 0, 1, "Bearer tok-cancel", NULL);
    notify(fx, 0, 2, "Bearer tok-cancel", NULL);
    spin(fx, 3);
    notify(fx, 1, 3, "Bearer tok-cancel", NULL);
    spin(fx, 3);
    close(fx->p[0].fd);
    fx->p[0].fd = -1;
    for (int i = 0; i < MAX_SPINS && fx->a.nconns > 1; i++)
        ev_run(fx->loop, EVRUN_NOWAIT);
    assert_int_equal(fx->a.nconns, 1);
    assert_int_equal(fx->a.metrics.spop_connections_open, 1);
    resolve_held(fx, 0, active(clock_seconds() + 3600));
    assert_int_equal(ack_status(fx, 1, 3, &f), 200);
    assert_true(peer_ack_is(&f, "cache", "coalesced"));
    assert_int_equal(fx->idp.lookups, 1);
}

/* Draining: an idle connection closes at once, a busy one once its answer is out. */
static void test_drain(void **state)
{
    struct fixture *fx = *state;
    struct spop_frame f;
    struct spop_disconnect d;
    connect_peer(fx, 0, 16380);
    connect_peer(fx, 1, 16380);
    notify(fx, 0, 1, "Bearer tok-drain", NULL);
    spin(fx, 3);
    agent_drain(&fx->a);
    next_frame(fx, &fx->p[1], &f);
    assert_int_equal(f.type, SPOP_FRM_AGENT_DISCON);
    assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), 0);
    assert_int_equal(d.status, SPOP_ST_NORMAL);
    for (int i = 0; i < MAX_SPINS && fx->a.nconns > 1; i++)
        ev_run(fx->loop, EVRUN_NOWAIT);
    assert_int_equal(fx->a.nconns, 1);
    assert_false(agent_drained(&fx->a));
    resolve_held(fx, 0, active(clock_seconds() + 3600));
    assert_int_equal(ack_status(fx, 0, 1, &f), 200);
    next_frame(fx, &fx->p[0], &f);
    assert_int_equal(f.type, SPOP_FRM_AGENT_DISCON);
    for (int i = 0; i < MAX_SPINS && !agent_drained(&fx->a); i++)
        ev_run(fx->loop, EVRUN_NOWAIT);
    assert_true(agent_drained(&fx->a));
}

/* Regression (issue 9): a reload changing max-frame-size must not change what new connections
 * announce (the option only applies on restart); a reloaded idle timeout does apply. */
static void test_reload_keeps_frame_size(void **state)
{
    struct fixture *fx = *state;
    static struct config next;
    config_defaults(&next);
    next.max_frame_size = 1024;
    next.idle_timeout_ms = 1234;
    assert_int_equal(connect_peer(fx, 0, 65535), fx->cfg.max_frame_size);
    assert_int_equal(agent_reconfigure(&fx->a, &next), 0);
    assert_int_equal(connect_peer(fx, 1, 65535), fx->cfg.max_frame_size);
    assert_int_equal(fx->a.conn_set.idle_timeout_ms, 1234);
    assert_ptr_equal(fx->a.cfg, &next);
    assert_int_equal(agent_reconfigure(&fx->a, &fx->cfg), 0);
    config_free(&next);
}

/* IdP trouble maps through token_outcome_status(): 502, 503, 500, no challenge. */
static void test_idp_outcomes(void **state)
{
    struct fixture *fx = *state;
    struct spop_frame f;
    const enum token_outcome o[] = {TOKEN_IDP_ERROR, TOKEN_IDP_UNAVAIL, TOKEN_IDP_UNKNOWN};
    const int want[] = {502, 503, 500};
    connect_peer(fx, 0, 16380);
    for (int i = 0; i < 3; i++) {
        char auth[32];
        snprintf(auth, sizeof(auth), "Bearer tok-err-%d", i);
        notify(fx, 0, (uint64_t)i + 1, auth, NULL);
        spin(fx, 3);
        resolve_held(fx, i, token_info_new(o[i], "idp"));
        assert_int_equal(ack_status(fx, 0, (uint64_t)i + 1, &f), want[i]);
        assert_int_equal(peer_ack_var(&f, "www_authenticate", &(struct spop_value){0}), -1);
    }
    notify(fx, 0, 9, "Bearer tok-err-0", NULL); /* errors are never cached */
    spin(fx, 3);
    assert_int_equal(fx->idp.lookups, 4);
}

static void test_no_credentials_and_empty_notify(void **state)
{
    struct fixture *fx = *state;
    struct spop_frame f;
    uint8_t b[64];
    connect_peer(fx, 0, 16380);
    notify(fx, 0, 1, "Basic dXNlcg==", NULL);
    assert_int_equal(ack_status(fx, 0, 1, &f), 401);
    notify(fx, 0, 2, NULL, NULL); /* a message without the authorization argument */
    assert_int_equal(ack_status(fx, 0, 2, &f), 401);
    struct spop_writer w; /* HAProxy 3.1+: a NOTIFY without messages */
    spop_writer_init(&w, b, sizeof(b));
    spop_frame_begin(&w, SPOP_FRM_NOTIFY, SPOP_FLAG_FIN, 3, 1);
    assert_int_equal(spop_frame_end(&w, 65535), 0);
    send_all(&fx->p[0], b, w.len);
    next_frame(fx, &fx->p[0], &f);
    assert_int_equal(f.type, SPOP_FRM_ACK);
    struct spop_value v;
    assert_int_equal(peer_ack_var(&f, "status", &v), 0); /* unset: decides nothing */
    assert_int_equal(fx->idp.lookups, 0);
}

static int64_t fake_ms;
static int64_t fake_clock(void *ud)
{
    return fake_ms;
}

/* The worker's and the cache's clock is clock.h's: a cached token past its exp is refused. */
static void test_injected_clock(void **state)
{
    struct fixture *fx = *state;
    struct spop_frame f;
    int64_t exp = clock_seconds() + 100;
    cache_put(fx, "tok-clock", active(exp));
    connect_peer(fx, 0, 16380);
    fake_ms = (exp - 10) * 1000;
    clock_inject(fake_clock, NULL);
    notify(fx, 0, 1, "Bearer tok-clock", NULL);
    assert_int_equal(ack_status(fx, 0, 1, &f), 200);
    fake_ms = (exp + 1) * 1000; /* the cache entry outlived it: refused, not forwarded */
    notify(fx, 0, 2, "Bearer tok-clock", NULL);
    spin(fx, 3);
    if (fx->idp.n) /* the cache's own TTL saw it expired: a new flight */
        resolve_held(fx, 0, active(exp));
    assert_int_equal(ack_status(fx, 0, 2, &f), 401);
    clock_inject(NULL, NULL);
}

/* ---- out of memory ---- */

static void test_oom_adopt(void **state)
{
    struct fixture *fx = *state;
    for (unsigned long nth = 1; nth <= 3; nth++) { /* session, connection, its input buffer */
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        pta_alloc_fail_at(nth, 0);
        assert_null(agent_adopt(&fx->a, sv[0], "oom"));
        pta_alloc_fail_at(0, 0);
        assert_int_equal(fcntl(sv[0], F_GETFD), -1);
        close(sv[1]);
    }
    assert_int_equal(fx->a.nconns, 0);
}

/* No waiter (the first request allocates one): 502, fail closed, no flight. */
static void test_oom_pending(void **state)
{
    struct fixture *fx = *state;
    struct spop_frame f;
    connect_peer(fx, 0, 16380);
    pta_alloc_fail_at(1, 0);
    notify(fx, 0, 1, "Bearer tok-oom", NULL);
    assert_int_equal(ack_status(fx, 0, 1, &f), 502);
    pta_alloc_fail_at(0, 0);
    assert_int_equal(fx->idp.lookups, 0);
}

/* No memory for the cache's flight record (and no entry to recycle): 502, no flight. */
static void test_oom_cache_flight(void **state)
{
    struct fixture *fx = *state;
    struct spop_frame f;
    connect_peer(fx, 0, 16380);
    pta_alloc_fail_at(2, 0); /* the waiter, then the flight record */
    notify(fx, 0, 1, "Bearer tok-oom", NULL);
    assert_int_equal(ack_status(fx, 0, 1, &f), 502);
    pta_alloc_fail_at(0, 0);
    assert_int_equal(fx->idp.lookups, 0);
    struct cache_stats st;
    cache_get_stats(fx->cache, &st);
    assert_int_equal(st.flights, 0);
}

/* No memory to keep the route's arguments: that request gets 502, but the flight it leads still
 * happens, for the others that join it. */
static void test_oom_keep_args(void **state)
{
    struct fixture *fx = *state;
    struct spop_frame f;
    connect_peer(fx, 0, 16380);
    pta_alloc_fail_at(3, 0); /* the waiter, the flight record, the copy of the scopes */
    notify(fx, 0, 1, "Bearer tok-oom", "read");
    assert_int_equal(ack_status(fx, 0, 1, &f), 502);
    pta_alloc_fail_at(0, 0);
    assert_int_equal(fx->idp.lookups, 1);
    notify(fx, 0, 2, "Bearer tok-oom", "read");
    spin(fx, 3);
    resolve_held(fx, 0, active(clock_seconds() + 3600));
    assert_int_equal(ack_status(fx, 0, 2, &f), 200);
    assert_true(peer_ack_is(&f, "cache", "coalesced"));
}

/* No memory for the pipeline's flight: the cache's flight is resolved with an error at once. */
static void test_oom_pipeline_start(void **state)
{
    struct fixture *fx = *state;
    struct spop_frame f;
    connect_peer(fx, 0, 16380);
    /* the waiter, the flight record, the copy of the realm, then the pipeline's flight */
    pta_alloc_fail_at(4, 0);
    notify(fx, 0, 1, "Bearer tok-oom", NULL);
    assert_int_equal(ack_status(fx, 0, 1, &f), 502);
    pta_alloc_fail_at(0, 0);
    assert_int_equal(fx->idp.lookups, 0);
    struct cache_stats st;
    cache_get_stats(fx->cache, &st);
    assert_int_equal(st.flights, 0);
    assert_int_equal(st.entries, 0);
}

/* agent_init(): the daemon's construction, with the introspector, the default chain and the
 * listener; introspection not configured answers 503 through the real introspect stage. */
static void test_daemon_init(void **state)
{
    struct fixture *fx = *state;
    struct agent b;
    struct config cfg;
    struct spop_frame f;
    struct peer *p = &fx->p[2];
    uint8_t buf[256];
    config_defaults(&cfg);
    free(cfg.listen);
    cfg.listen = strdup("127.0.0.1:0");
    assert_int_equal(agent_init(&b, fx->loop, &cfg, fx->cache), 0);
    static const char *const chain[] = {"l1",        "stale",   "finish",
                                        "admission", "breaker", "introspect"};
    assert_int_equal(pipeline_length(b.pipeline), sizeof(chain) / sizeof(chain[0]));
    for (size_t i = 0; i < sizeof(chain) / sizeof(chain[0]); i++)
        assert_string_equal(pipeline_stage_name(b.pipeline, i), chain[i]);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    sa.sin_port = htons((uint16_t)listener_port(b.listener));
    p->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(p->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    fcntl(p->fd, F_SETFL, O_NONBLOCK);
    send_all(p, buf, peer_hello(buf, sizeof(buf), 16380, 0));
    next_frame(fx, p, &f);
    assert_int_equal(f.type, SPOP_FRM_AGENT_HELLO);
    assert_int_equal(b.nconns, 1);
    send_all(p, buf, peer_notify(buf, sizeof(buf), 5, 1, "Bearer tok-daemon", NULL));
    next_frame(fx, p, &f);
    assert_int_equal(f.type, SPOP_FRM_ACK);
    assert_int_equal(peer_ack_status(&f), 503);
    assert_int_equal(b.metrics.idp_requests[MIDP_UNAVAIL], 1);
    agent_fini(&b);
    config_free(&cfg);
}

/* agent_init() cannot build its chain (the chain, its stage array, the introspect stage): it
 * fails cleanly, and nothing leaks (ASan). */
static void test_oom_daemon_init(void **state)
{
    struct fixture *fx = *state;
    struct config cfg;
    config_defaults(&cfg);
    free(cfg.listen);
    cfg.listen = strdup("127.0.0.1:0");
    for (unsigned long nth = 1; nth <= 3; nth++) {
        struct agent b;
        pta_alloc_fail_at(nth, 0);
        assert_int_equal(agent_init(&b, fx->loop, &cfg, fx->cache), -1);
        pta_alloc_fail_at(0, 0);
    }
    config_free(&cfg);
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_hit),
        T(test_lead_then_hit),
        T(test_join),
        T(test_cancel_on_close),
        T(test_drain),
        T(test_reload_keeps_frame_size),
        T(test_idp_outcomes),
        T(test_no_credentials_and_empty_notify),
        T(test_injected_clock),
        T(test_oom_adopt),
        T(test_oom_pending),
        T(test_oom_cache_flight),
        T(test_oom_keep_args),
        T(test_oom_pipeline_start),
        T(test_daemon_init),
        T(test_oom_daemon_init),
    };
    log_init(LOG_LVL_ERROR, false);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
