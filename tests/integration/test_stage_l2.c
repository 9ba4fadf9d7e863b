/* The "l2" pipeline stage between l1 and a fake identity-server stage, against a real
 * redis-server started on a free loopback port: a miss goes down and the answer is written with
 * the L1 lifetime; the next flight for the token (a cold L1, as on another agent) is answered by
 * L2 without reaching the stage below; inactive answers are shared, IdP errors never; a tampered
 * value is a miss; with Redis gone, flights pass on at once. Exits 77 without redis-server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cache.h"
#include "l2_codec.h"
#include "log.h"
#include "metrics.h"
#include "pipeline.h"
#include "redis_client.h"
#include "redis_server.h"
#include "stages.h"
#include "token.h"

static struct server srv;
static const uint8_t fleet[] = "stage-l2-test-fleet-key-0123456789abcdef";

/* The stage below l2: answers every flight at once with a preset outcome, counting lookups. */
struct idp {
    enum token_outcome outcome;
    int lookups;
};

static void idp_lookup(void *self, struct flight *f)
{
    struct idp *s = self;
    s->lookups++;
    struct token_info *ti = token_info_new(s->outcome, "fake idp");
    if (s->outcome == TOKEN_ACTIVE) {
        ti->jwt = strdup("h.p.s");
        ti->jwt_len = 5;
        ti->claims.sub = strdup("alice");
    }
    flight_resolve(f, ti);
}

static const struct stage_ops idp_ops = {.name = "idp", .lookup = idp_lookup};

struct fixture {
    struct cache *cache;
    struct l2_codec *codec;
    struct redis_client *rc;
    struct pipeline *p;
    struct idp idp;
    struct metrics m;
};

struct waiter {
    struct cache_waiter w;
    bool done;
    enum token_outcome outcome;
    char jwt[32];
};

static void on_done(struct cache_waiter *cw, struct token_info *ti)
{
    struct waiter *w = (struct waiter *)cw;
    w->done = true;
    w->outcome = ti ? ti->outcome : TOKEN_IDP_ERROR;
    snprintf(w->jwt, sizeof(w->jwt), "%s", ti && ti->jwt ? ti->jwt : "");
}

static bool waiter_done(void *arg)
{
    return ((struct waiter *)arg)->done;
}

static bool up(void *arg)
{
    return redis_client_up(arg);
}

static struct cache *new_l1(void)
{
    uint8_t hk[L2_KEY_LEN];
    assert_int_equal(l2_entry_hmac_key_of(fleet, sizeof(fleet) - 1, hk), 0);
    struct cache_config cfg = {
        .max_entries = 100, .max_bytes = 1 << 20, .max_ttl = 300, .negative_ttl = 5};
    struct cache *c = cache_new(&cfg, NULL, NULL, hk, sizeof(hk));
    assert_non_null(c);
    return c;
}

/* A fresh agent-side stack (cold L1) on the shared Redis. */
static void fixture_up(struct fixture *fx)
{
    memset(fx, 0, sizeof(*fx));
    fx->cache = new_l1();
    fx->codec = l2_codec_new(fleet, sizeof(fleet) - 1);
    struct redis_client_settings s;
    redis_client_settings_default(&s);
    s.url.port = srv.port;
    s.backoff_min_ms = 20;
    s.backoff_max_ms = 100;
    char err[256];
    fx->rc = redis_client_new(loop, &s, NULL, NULL, err, sizeof(err));
    assert_non_null(fx->rc);
    run_until(up, fx->rc, 20);
    fx->p = pipeline_new();
    assert_int_equal(stage_l1_add(fx->p, fx->cache), 0);
    assert_int_equal(stage_l2_add(fx->p, fx->rc, fx->codec, "t:", fx->cache, &fx->m), 0);
    assert_int_equal(pipeline_add(fx->p, &idp_ops, &fx->idp), 0);
}

static void fixture_down(struct fixture *fx)
{
    redis_client_free(fx->rc); /* before the stages below (SEAMS.md) */
    pipeline_free(fx->p);
    l2_codec_free(fx->codec);
    cache_free(fx->cache);
}

/* One request for tok through the cache gate and the chain, until it is answered. */
static void resolve(struct fixture *fx, const char *tok, struct waiter *w)
{
    memset(w, 0, sizeof(*w));
    w->w.done = on_done;
    struct cache_key k;
    struct token_info *ti;
    cache_key_of(fx->cache, tok, strlen(tok), &k);
    enum cache_lookup r = cache_lookup(fx->cache, &k, &w->w, &ti);
    if (r == CACHE_HIT) {
        on_done(&w->w, ti);
        token_unref(ti);
        return;
    }
    assert_int_equal(r, CACHE_LEAD);
    assert_int_equal(pipeline_start(fx->p, &k, tok, strlen(tok)), 0);
    run_until(waiter_done, w, 20);
}

static bool writes_at_least(void *arg)
{
    struct fixture *fx = arg;
    return fx->m.l2_writes + fx->m.l2_write_errors >= 1;
}

static void test_miss_write_then_hit_elsewhere(void **state)
{
    (void)state;
    struct fixture a, b;
    fixture_up(&a);
    a.idp.outcome = TOKEN_ACTIVE;
    struct waiter w;
    resolve(&a, "tok-shared", &w);
    assert_int_equal(w.outcome, TOKEN_ACTIVE);
    assert_int_equal(a.idp.lookups, 1);
    assert_int_equal(a.m.l2_lookups[ML2_MISS], 1);
    run_until(writes_at_least, &a, 20);
    assert_int_equal(a.m.l2_writes, 1);

    /* The key is prefix + hex(entry key) and lives no longer than L1 would keep the entry. */
    uint8_t ek[L2_KEY_LEN];
    char key[128];
    assert_int_equal(l2_entry_key(a.codec, "tok-shared", 10, ek), 0);
    assert_true(l2_redis_key("t:", ek, key, sizeof(key)) > 0);
    redisReply *r = side(&srv, "PTTL %s", key);
    assert_true(r->integer > 0 && r->integer <= 300000);
    freeReplyObject(r);

    fixture_up(&b);                  /* another agent: cold L1 */
    b.idp.outcome = TOKEN_IDP_ERROR; /* would show if it were asked */
    resolve(&b, "tok-shared", &w);
    assert_int_equal(w.outcome, TOKEN_ACTIVE);
    assert_string_equal(w.jwt, "h.p.s");
    assert_int_equal(b.idp.lookups, 0);
    assert_int_equal(b.m.l2_lookups[ML2_HIT], 1);
    assert_int_equal(b.m.l2_latency_count, 1);
    /* The hit filled b's L1: the next request does not reach Redis. */
    resolve(&b, "tok-shared", &w);
    assert_int_equal(b.m.l2_lookups[ML2_HIT], 1);
    fixture_down(&b);

    /* A tampered value is a miss for a cold agent, counted by reason. */
    r = side(&srv, "SETRANGE %s 20 XXXX", key);
    freeReplyObject(r);
    fixture_up(&b);
    b.idp.outcome = TOKEN_ACTIVE;
    resolve(&b, "tok-shared", &w);
    assert_int_equal(b.idp.lookups, 1);
    assert_int_equal(b.m.l2_lookups[ML2_INVALID], 1);
    assert_int_equal(b.m.l2_invalid[L2_E_AUTH], 1);
    fixture_down(&b);
    fixture_down(&a);
}

static void test_shared_outcomes(void **state)
{
    (void)state;
    struct fixture a;
    fixture_up(&a);
    struct waiter w;
    a.idp.outcome = TOKEN_INACTIVE;
    resolve(&a, "tok-inactive", &w);
    run_until(writes_at_least, &a, 20);
    assert_int_equal(a.m.l2_writes, 1); /* negative answers are shared */
    a.idp.outcome = TOKEN_IDP_ERROR;
    resolve(&a, "tok-idp-error", &w);
    assert_int_equal(w.outcome, TOKEN_IDP_ERROR);
    a.idp.outcome = TOKEN_IDP_UNAVAIL;
    resolve(&a, "tok-idp-503", &w);
    fixture_down(&a);                   /* drains any write in flight */
    assert_int_equal(a.m.l2_writes, 1); /* IdP errors never */
    assert_int_equal(a.m.l2_write_errors, 0);

    struct fixture b;
    fixture_up(&b);
    b.idp.outcome = TOKEN_ACTIVE;
    resolve(&b, "tok-inactive", &w);
    assert_int_equal(w.outcome, TOKEN_INACTIVE); /* from L2 */
    assert_int_equal(b.idp.lookups, 0);
    resolve(&b, "tok-idp-error", &w);
    assert_int_equal(w.outcome, TOKEN_ACTIVE); /* asked again */
    assert_int_equal(b.idp.lookups, 1);
    fixture_down(&b);
}

static bool down(void *arg)
{
    return !redis_client_up(arg);
}

static void test_redis_gone_passes_on(void **state)
{
    (void)state;
    struct fixture a;
    fixture_up(&a);
    server_kill(&srv);
    run_until(down, a.rc, 20);
    a.idp.outcome = TOKEN_ACTIVE;
    struct waiter w;
    resolve(&a, "tok-no-redis", &w);
    assert_int_equal(w.outcome, TOKEN_ACTIVE);
    assert_int_equal(a.idp.lookups, 1);
    assert_int_equal(a.m.l2_lookups[ML2_HIT], 0);
    assert_int_equal(a.m.l2_lookups[ML2_SKIPPED] + a.m.l2_lookups[ML2_ERROR], 1);
    fixture_down(&a);
    server_start(&srv);
}

static void test_refuses_foreign_l1_keying(void **state)
{
    (void)state;
    struct cache_config cfg = {.max_entries = 10, .max_bytes = 1 << 20, .max_ttl = 60};
    struct cache *random_key = cache_new(&cfg, NULL, NULL, NULL, 0);
    struct l2_codec *codec = l2_codec_new(fleet, sizeof(fleet) - 1);
    struct pipeline *p = pipeline_new();
    struct metrics m = {0};
    assert_int_equal(stage_l2_add(p, NULL, codec, "t:", random_key, &m), -1);
    pipeline_free(p);
    l2_codec_free(codec);
    cache_free(random_key);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(workdir))
        return -1;
    loop = ev_default_loop(0);
    srv.port = free_port();
    server_start(&srv);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    server_kill(&srv);
    rmdir(workdir);
    return 0;
}

int main(void)
{
    if (!redis_server_found())
        return SKIP;
    signal(SIGPIPE, SIG_IGN);
    log_init(LOG_LVL_ERROR, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_write_then_hit_elsewhere),
        cmocka_unit_test(test_shared_outcomes),
        cmocka_unit_test(test_redis_gone_passes_on),
        cmocka_unit_test(test_refuses_foreign_l1_keying),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
