/* Unit tests for the IdP-failure stages and the cache's stale-if-error, through a real pipeline:
 * l1 -> stale -> breaker -> a fake IdP stage that holds each flight until the test answers it.
 * The breaker opens after consecutive failures and then answers 503 with a Retry-After without
 * calling the IdP, lets exactly one probe through after the cool-down, closes on its success;
 * the stale stage serves an expired-but-in-grace entry (marked stale, never stored again, never
 * past the token's exp or the grace, never a negative entry) and a fresh answer replaces it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "breaker.h"
#include "cache.h"
#include "clock.h"
#include "pipeline.h"
#include "stages.h"

#define T0 1700000000000LL

static int64_t fake_now;

static int64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

/* ---- a fake IdP stage: holds flights until the test answers them ---- */

#define MAX_HELD 16

struct fake_idp {
    struct flight *held[MAX_HELD];
    int nheld;
    int calls;
};

static void fake_lookup(void *self, struct flight *f)
{
    struct fake_idp *idp = self;
    idp->calls++;
    assert_true(idp->nheld < MAX_HELD);
    idp->held[idp->nheld++] = f;
}

static const struct stage_ops fake_ops = {.name = "fake-idp", .lookup = fake_lookup};

/* Answers the oldest held flight. */
static void idp_answer(struct fake_idp *idp, struct token_info *ti)
{
    assert_true(idp->nheld > 0);
    struct flight *f = idp->held[0];
    memmove(idp->held, idp->held + 1, (size_t)(idp->nheld - 1) * sizeof(idp->held[0]));
    idp->nheld--;
    flight_resolve(f, ti);
}

static struct token_info *active(const char *jwt, int64_t exp)
{
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "test");
    assert_non_null(ti);
    ti->jwt = strdup(jwt);
    ti->jwt_len = strlen(jwt);
    ti->claims.sub = strdup("alice");
    ti->claims.scope = strdup("read");
    ti->claims.exp = exp;
    ti->claims.has_exp = true;
    return ti;
}

/* ---- the chain under test ---- */

struct world {
    struct cache *cache;
    struct breaker *breaker;
    struct breaker_settings set;
    struct pipeline *p;
    struct fake_idp *idp;
};

struct waiter {
    struct cache_waiter w;
    int called;
    struct token_info *ti; /* a reference */
};

static void waiter_done(struct cache_waiter *cw, struct token_info *ti)
{
    struct waiter *w = (struct waiter *)cw;
    w->called++;
    w->ti = token_ref(ti);
}

static void world_init(struct world *wd, uint32_t stale_grace, unsigned failures)
{
    fake_now = T0;
    clock_inject(fake_clock, NULL);
    struct cache_config cc = {.max_entries = 100,
                              .max_bytes = 1 << 20,
                              .max_ttl = 60,
                              .negative_ttl = 5,
                              .exp_skew = 0,
                              .stale_grace = stale_grace};
    static const uint8_t key[] = "k";
    wd->cache = cache_new(&cc, fake_clock, NULL, key, 1);
    assert_non_null(wd->cache);
    struct breaker_config bc = breaker_config_default();
    bc.failures = failures;
    bc.open_ms = 2000;
    wd->breaker = breaker_new(&bc, "idp", fake_clock, NULL);
    assert_non_null(wd->breaker);
    wd->set.failure_status = 503;
    wd->p = pipeline_new();
    wd->idp = calloc(1, sizeof(*wd->idp));
    assert_non_null(wd->p);
    assert_int_equal(stage_l1_add(wd->p, wd->cache), 0);
    assert_int_equal(stage_stale_add(wd->p, wd->cache), 0);
    assert_int_equal(stage_breaker_add(wd->p, wd->breaker, &wd->set), 0);
    assert_int_equal(pipeline_add(wd->p, &fake_ops, wd->idp), 0);
}

static void world_free(struct world *wd)
{
    assert_int_equal(wd->idp->nheld, 0);
    pipeline_free(wd->p);
    free(wd->idp);
    breaker_free(wd->breaker);
    cache_free(wd->cache);
    clock_inject(NULL, NULL);
}

/* One request for tok: a hit, or a flight down the chain. Returns the waiter (answered or not). */
static struct waiter *request(struct world *wd, const char *tok, struct waiter *w)
{
    memset(w, 0, sizeof(*w));
    w->w.done = waiter_done;
    struct cache_key k;
    struct token_info *ti = NULL;
    cache_key_of(wd->cache, tok, strlen(tok), &k);
    enum cache_lookup r = cache_lookup(wd->cache, &k, &w->w, &ti);
    if (r == CACHE_HIT) {
        w->called = 1;
        w->ti = ti;
    } else if (r == CACHE_LEAD) {
        assert_int_equal(pipeline_start(wd->p, &k, tok, strlen(tok)), 0);
    }
    return w;
}

static void waiter_clear(struct waiter *w)
{
    token_unref(w->ti);
    w->ti = NULL;
}

/* ---- breaker ---- */

static void test_breaker_opens_and_fails_fast_with_retry_after(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, 0, 3);
    struct waiter w;
    for (int i = 0; i < 3; i++) {
        char tok[16];
        snprintf(tok, sizeof(tok), "tok-%d", i);
        request(&wd, tok, &w);
        idp_answer(wd.idp, token_info_new(TOKEN_IDP_ERROR, "IdP timeout"));
        assert_int_equal(w.called, 1);
        assert_int_equal(w.ti->outcome, TOKEN_IDP_ERROR);
        waiter_clear(&w);
    }
    assert_int_equal(breaker_state(wd.breaker), BREAKER_OPEN);
    assert_int_equal(wd.idp->calls, 3);
    /* open: answered at once, 503, Retry-After = the cool-down left, the IdP not called */
    fake_now += 500;
    request(&wd, "tok-new", &w);
    assert_int_equal(w.called, 1);
    assert_int_equal(w.ti->outcome, TOKEN_IDP_UNAVAIL);
    assert_string_equal(w.ti->reason, "circuit open");
    assert_int_equal(w.ti->retry_after_s, 2); /* 1500 ms, rounded up */
    assert_int_equal(wd.idp->calls, 3);
    waiter_clear(&w);
    /* 502 when configured so, without Retry-After */
    wd.set.failure_status = 502;
    request(&wd, "tok-new", &w);
    assert_int_equal(w.ti->outcome, TOKEN_IDP_ERROR);
    assert_int_equal(w.ti->retry_after_s, 0);
    waiter_clear(&w);
    world_free(&wd);
}

static void test_breaker_one_probe_then_closes(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, 0, 1);
    struct waiter w, probe, other;
    request(&wd, "a", &w);
    idp_answer(wd.idp, token_info_new(TOKEN_IDP_ERROR, "IdP connection failed"));
    waiter_clear(&w);
    assert_int_equal(breaker_state(wd.breaker), BREAKER_OPEN);
    fake_now += 2000;
    request(&wd, "probe", &probe); /* the probe goes to the IdP */
    assert_int_equal(probe.called, 0);
    assert_int_equal(wd.idp->calls, 2);
    request(&wd, "other", &other); /* a second miss meanwhile: not a second probe */
    assert_int_equal(other.called, 1);
    assert_int_equal(other.ti->outcome, TOKEN_IDP_UNAVAIL);
    assert_int_equal(other.ti->retry_after_s, 1);
    assert_int_equal(wd.idp->calls, 2);
    waiter_clear(&other);
    idp_answer(wd.idp, active("jwt-probe", T0 / 1000 + 600));
    assert_int_equal(probe.called, 1);
    assert_int_equal(probe.ti->outcome, TOKEN_ACTIVE);
    waiter_clear(&probe);
    assert_int_equal(breaker_state(wd.breaker), BREAKER_CLOSED);
    request(&wd, "other", &other);
    assert_int_equal(wd.idp->calls, 3);
    idp_answer(wd.idp, token_info_new(TOKEN_INACTIVE, "inactive"));
    assert_int_equal(other.ti->outcome, TOKEN_INACTIVE);
    waiter_clear(&other);
    world_free(&wd);
}

static void test_breaker_classification(void **state)
{
    (void)state;
    assert_int_equal(stage_breaker_classify(NULL), BREAKER_NEUTRAL);
    static const struct {
        enum token_outcome o;
        const char *reason;
        enum breaker_outcome want;
    } cases[] = {
        {TOKEN_ACTIVE, "x", BREAKER_SUCCESS},
        {TOKEN_INACTIVE, "x", BREAKER_SUCCESS},
        {TOKEN_IDP_ERROR, "IdP timeout", BREAKER_FAILURE},
        {TOKEN_IDP_UNAVAIL, "IdP answered 503", BREAKER_FAILURE},
        {TOKEN_IDP_UNKNOWN, "IdP answered 418", BREAKER_FAILURE},
        {TOKEN_IDP_ERROR, NULL, BREAKER_FAILURE},
        {TOKEN_IDP_UNAVAIL, "introspection queue full", BREAKER_NEUTRAL},
        {TOKEN_IDP_ERROR, "introspection aborted", BREAKER_NEUTRAL},
        {TOKEN_IDP_ERROR, "out of memory", BREAKER_NEUTRAL},
        {TOKEN_IDP_UNAVAIL, "circuit open", BREAKER_NEUTRAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct token_info *ti = token_info_new(cases[i].o, cases[i].reason);
        assert_int_equal(stage_breaker_classify(ti), cases[i].want);
        token_unref(ti);
    }
}

/* ---- stale-if-error ---- */

/* Caches tok as active until `ttl_s` from now (max_ttl 60 s, exp far ahead unless given). */
static void cache_active(struct world *wd, const char *tok, int64_t exp)
{
    struct waiter w;
    request(wd, tok, &w);
    idp_answer(wd->idp, active("jwt-of-tok", exp));
    assert_int_equal(w.ti->outcome, TOKEN_ACTIVE);
    assert_false(w.ti->stale);
    waiter_clear(&w);
}

static void test_stale_served_while_idp_fails(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, 30, 0);
    cache_active(&wd, "tok", T0 / 1000 + 3600);
    struct waiter w;
    fake_now += 60 * 1000 + 10 * 1000; /* expired 10 s ago; grace 30 s */
    request(&wd, "tok", &w);
    assert_int_equal(w.called, 0); /* a miss: the IdP is asked first */
    idp_answer(wd.idp, token_info_new(TOKEN_IDP_ERROR, "IdP timeout"));
    assert_int_equal(w.called, 1);
    assert_int_equal(w.ti->outcome, TOKEN_ACTIVE);
    assert_true(w.ti->stale);
    assert_string_equal(w.ti->jwt, "jwt-of-tok");
    assert_string_equal(w.ti->claims.sub, "alice");
    waiter_clear(&w);
    /* not stored as fresh: the next request asks the IdP again, and is stale again */
    request(&wd, "tok", &w);
    assert_int_equal(w.called, 0);
    assert_int_equal(wd.idp->calls, 3);
    idp_answer(wd.idp, token_info_new(TOKEN_IDP_UNAVAIL, "IdP answered 503"));
    assert_true(w.ti->stale);
    waiter_clear(&w);
    struct cache_stats st;
    cache_get_stats(wd.cache, &st);
    assert_int_equal(st.stale, 2);
    assert_int_equal(st.entries, 1); /* the stale entry is back, unextended */
    /* past the grace: the failure stands and the entry is gone */
    fake_now += 20 * 1000;
    request(&wd, "tok", &w);
    idp_answer(wd.idp, token_info_new(TOKEN_IDP_ERROR, "IdP timeout"));
    assert_int_equal(w.ti->outcome, TOKEN_IDP_ERROR);
    waiter_clear(&w);
    cache_get_stats(wd.cache, &st);
    assert_int_equal(st.entries, 0);
    world_free(&wd);
}

static void test_fresh_answer_replaces_stale(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, 30, 0);
    cache_active(&wd, "tok", T0 / 1000 + 3600);
    struct waiter w;
    fake_now += 61 * 1000;
    /* revoked meanwhile: the IdP's inactive answer wins over the stale entry */
    request(&wd, "tok", &w);
    idp_answer(wd.idp, token_info_new(TOKEN_INACTIVE, "inactive"));
    assert_int_equal(w.ti->outcome, TOKEN_INACTIVE);
    waiter_clear(&w);
    request(&wd, "tok", &w); /* the negative entry, not the stale one */
    assert_int_equal(w.called, 1);
    assert_int_equal(w.ti->outcome, TOKEN_INACTIVE);
    waiter_clear(&w);
    /* and a negative entry is never kept stale */
    fake_now += 6 * 1000;
    request(&wd, "tok", &w);
    idp_answer(wd.idp, token_info_new(TOKEN_IDP_ERROR, "IdP timeout"));
    assert_int_equal(w.ti->outcome, TOKEN_IDP_ERROR);
    waiter_clear(&w);
    world_free(&wd);
}

static void test_stale_never_past_token_exp(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, 300, 0);
    /* exp 70 s ahead: the entry lives 60 s (max_ttl), the token 10 s more */
    cache_active(&wd, "tok", T0 / 1000 + 70);
    struct waiter w;
    fake_now += 65 * 1000;
    request(&wd, "tok", &w);
    idp_answer(wd.idp, token_info_new(TOKEN_IDP_ERROR, "IdP timeout"));
    assert_true(w.ti->stale);
    waiter_clear(&w);
    fake_now += 5 * 1000; /* exp reached: grace left, but the token is dead */
    request(&wd, "tok", &w);
    idp_answer(wd.idp, token_info_new(TOKEN_IDP_ERROR, "IdP timeout"));
    assert_int_equal(w.ti->outcome, TOKEN_IDP_ERROR);
    waiter_clear(&w);
    world_free(&wd);
}

static void test_stale_with_open_breaker(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, 30, 1);
    cache_active(&wd, "tok", T0 / 1000 + 3600);
    struct waiter w;
    request(&wd, "other", &w); /* one failure opens the breaker */
    idp_answer(wd.idp, token_info_new(TOKEN_IDP_ERROR, "IdP connection failed"));
    waiter_clear(&w);
    fake_now += 61 * 1000; /* the breaker has turned half-open: use a second failure */
    request(&wd, "other2", &w);
    idp_answer(wd.idp, token_info_new(TOKEN_IDP_ERROR, "IdP connection failed"));
    waiter_clear(&w);
    assert_int_equal(breaker_state(wd.breaker), BREAKER_OPEN);
    int calls = wd.idp->calls;
    request(&wd, "tok", &w); /* breaker open, entry expired: served stale at once */
    assert_int_equal(w.called, 1);
    assert_true(w.ti->stale);
    assert_int_equal(wd.idp->calls, calls);
    waiter_clear(&w);
    request(&wd, "never-seen", &w); /* nothing stale to serve: the breaker's 503 */
    assert_int_equal(w.ti->outcome, TOKEN_IDP_UNAVAIL);
    assert_true(w.ti->retry_after_s > 0);
    waiter_clear(&w);
    world_free(&wd);
}

static void test_stale_off_by_default(void **state)
{
    (void)state;
    struct world wd;
    world_init(&wd, 0, 0);
    cache_active(&wd, "tok", T0 / 1000 + 3600);
    struct waiter w;
    fake_now += 61 * 1000;
    request(&wd, "tok", &w);
    idp_answer(wd.idp, token_info_new(TOKEN_IDP_ERROR, "IdP timeout"));
    assert_int_equal(w.ti->outcome, TOKEN_IDP_ERROR);
    waiter_clear(&w);
    world_free(&wd);
}

static void test_stale_copy(void **state)
{
    (void)state;
    struct token_info *ti = active("j.w.t", 123);
    struct token_info *c = token_info_stale_copy(ti);
    assert_non_null(c);
    assert_true(c->stale);
    assert_int_equal(c->refcnt, 1);
    assert_string_equal(c->jwt, "j.w.t");
    assert_int_equal(c->jwt_len, 5);
    assert_true(c->jwt != ti->jwt);
    assert_string_equal(c->claims.scope, "read");
    assert_null(c->claims.client_id);
    assert_int_equal(c->claims.exp, 123);
    token_unref(c);
    token_unref(ti);
    struct token_info *neg = token_info_new(TOKEN_INACTIVE, "x");
    assert_null(token_info_stale_copy(neg));
    assert_null(token_info_stale_copy(NULL));
    token_unref(neg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_breaker_opens_and_fails_fast_with_retry_after),
        cmocka_unit_test(test_breaker_one_probe_then_closes),
        cmocka_unit_test(test_breaker_classification),
        cmocka_unit_test(test_stale_served_while_idp_fails),
        cmocka_unit_test(test_fresh_answer_replaces_stale),
        cmocka_unit_test(test_stale_never_past_token_exp),
        cmocka_unit_test(test_stale_with_open_breaker),
        cmocka_unit_test(test_stale_off_by_default),
        cmocka_unit_test(test_stale_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
