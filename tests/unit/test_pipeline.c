/* Unit tests for the resolver pipeline with fake stages (no I/O): the walk down and back up, a
 * stage answering later, replacing the answer on the way up, falling off the end, the l1 stage
 * filling the cache, and the out-of-memory paths of pipeline.c and cache.c (allocation hook). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "cache.h"
#include "pipeline.h"
#include "stages.h"
#include "token.h"

/* A stage that records what it saw; answers at once, later, or passes. */
struct fake {
    const char *name;
    enum { PASS, ANSWER_NOW, HOLD } mode;
    enum token_outcome outcome;
    int lookups, results, frees;
    struct flight *held;
    char trace[64];  /* shared by all fakes of a test: "name+" on lookup, "name-" on result */
    char *shared;    /* points at the first fake's trace */
    const char *jwt; /* replaces the answer on the way up when set */
};

static void fake_lookup(void *self, struct flight *f)
{
    struct fake *s = self;
    s->lookups++;
    strcat(s->shared, s->name);
    strcat(s->shared, "+");
    if (s->mode == PASS)
        flight_next(f);
    else if (s->mode == ANSWER_NOW)
        flight_resolve(f, token_info_new(s->outcome, "fake"));
    else
        s->held = f;
}

static struct token_info *fake_result(void *self, struct flight *f, struct token_info *ti)
{
    struct fake *s = self;
    s->results++;
    strcat(s->shared, s->name);
    strcat(s->shared, "-");
    if (!s->jwt)
        return ti;
    struct token_info *r = token_info_new(TOKEN_ACTIVE, "replaced");
    assert_non_null(r);
    r->jwt = strdup(s->jwt);
    r->jwt_len = strlen(s->jwt);
    token_unref(ti);
    return r;
}

static void fake_free(void *self)
{
    ((struct fake *)self)->frees++;
}

static const struct stage_ops fake_ops = {
    .name = "fake", .lookup = fake_lookup, .result = fake_result, .free = fake_free};

static struct pipeline *chain_of(struct fake *fakes, size_t n)
{
    struct pipeline *p = pipeline_new();
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        fakes[i].shared = fakes[0].trace;
        assert_int_equal(pipeline_add(p, &fake_ops, &fakes[i]), 0);
    }
    return p;
}

static const struct cache_key key1 = {{1, 2, 3}};

static void test_down_and_up(void **state)
{
    struct fake f[3] = {{.name = "a", .mode = PASS},
                        {.name = "b", .mode = PASS},
                        {.name = "c", .mode = ANSWER_NOW, .outcome = TOKEN_ACTIVE}};
    struct pipeline *p = chain_of(f, 3);
    assert_int_equal(pipeline_length(p), 3);
    assert_int_equal(pipeline_start(p, &key1, "tok", 3), 0);
    assert_string_equal(f[0].trace, "a+b+c+b-a-"); /* c answered: only a and b see result() */
    assert_int_equal(f[2].results, 0);
    pipeline_free(p);
    assert_int_equal(f[0].frees + f[1].frees + f[2].frees, 3);
}

static void test_answer_later_and_replace(void **state)
{
    struct fake f[2] = {{.name = "up", .mode = PASS, .jwt = "minted"},
                        {.name = "idp", .mode = HOLD}};
    struct pipeline *p = chain_of(f, 2);
    assert_int_equal(pipeline_start(p, &key1, "secret-token", 12), 0);
    assert_non_null(f[1].held);
    size_t len;
    assert_memory_equal(flight_token(f[1].held, &len), "secret-token", 12);
    assert_int_equal(len, 12);
    assert_memory_equal(flight_key(f[1].held)->b, key1.b, CACHE_KEY_LEN);
    assert_ptr_equal(flight_stage_self(f[1].held), &f[1]);
    assert_null(flight_source(f[1].held));
    assert_int_equal(f[0].results, 0);
    flight_resolve(f[1].held, token_info_new(TOKEN_INACTIVE, "later"));
    assert_int_equal(f[0].results, 1);
    pipeline_free(p);
}

static void test_end_of_chain_fails_closed(void **state)
{
    struct fake f[1] = {{.name = "only", .mode = PASS}};
    struct pipeline *p = chain_of(f, 1);
    assert_int_equal(pipeline_start(p, &key1, "t", 1), 0);
    assert_string_equal(f[0].trace, "only+only-");
    pipeline_free(p);
}

static int64_t now_ms = 1700000000000LL;
static int64_t fake_clock(void *ud)
{
    return now_ms;
}

static struct cache *new_cache(void)
{
    struct cache_config cc = {.max_entries = 100, .max_bytes = 1 << 20, .max_ttl = 300};
    struct cache *c = cache_new(&cc, fake_clock, NULL, (const uint8_t *)"k", 1);
    assert_non_null(c);
    return c;
}

struct waiter {
    struct cache_waiter w;
    int calls;
    enum token_outcome got;
};

static void waiter_done(struct cache_waiter *w, struct token_info *ti)
{
    struct waiter *x = (struct waiter *)w;
    x->calls++;
    x->got = ti ? ti->outcome : TOKEN_IDP_UNKNOWN;
}

/* The daemon's shape: the cache's flight in front, l1 -> finish -> an answering stage. */
static void test_l1_fills_the_cache(void **state)
{
    struct cache *c = new_cache();
    struct fake idp = {.name = "idp", .mode = ANSWER_NOW, .outcome = TOKEN_ACTIVE};
    idp.shared = idp.trace;
    struct pipeline *p = pipeline_new();
    assert_int_equal(stage_l1_add(p, c), 0);
    assert_int_equal(stage_finish_add(p, NULL, NULL), 0);
    assert_int_equal(pipeline_add(p, &fake_ops, &idp), 0);
    assert_string_equal(pipeline_stage_name(p, 0), "l1");
    assert_string_equal(pipeline_stage_name(p, 1), "finish");
    struct cache_key k;
    struct token_info *ti;
    struct waiter w = {.w = {.done = waiter_done}};
    cache_key_of(c, "tok", 3, &k);
    assert_int_equal(cache_lookup(c, &k, &w.w, &ti), CACHE_LEAD);
    assert_int_equal(pipeline_start(p, &k, "tok", 3), 0);
    assert_int_equal(w.calls, 1);
    assert_int_equal(w.got, TOKEN_ACTIVE);
    assert_int_equal(cache_lookup(c, &k, &w.w, &ti), CACHE_HIT);
    token_unref(ti);
    pipeline_free(p);
    cache_free(c);
}

static void test_oom_pipeline(void **state)
{
    struct fake f = {.name = "x"};
    pta_alloc_fail_at(1, 0);
    assert_null(pipeline_new());
    struct pipeline *p = pipeline_new();
    assert_non_null(p);
    pta_alloc_fail_at(1, 0); /* the stage array */
    assert_int_equal(pipeline_add(p, &fake_ops, &f), -1);
    assert_int_equal(f.frees, 1); /* owned even on failure */
    assert_int_equal(pipeline_length(p), 0);
    f.shared = f.trace;
    f.mode = ANSWER_NOW;
    assert_int_equal(pipeline_add(p, &fake_ops, &f), 0);
    pta_alloc_fail_at(1, 0); /* the flight */
    assert_int_equal(pipeline_start(p, &key1, "t", 1), -1);
    assert_int_equal(f.lookups, 0);
    pta_alloc_fail_at(0, 0);
    pipeline_free(p);
    pta_alloc_fail_at(1, 0);
    p = pipeline_new();
    assert_null(p);
    pta_alloc_fail_at(0, 0);
}

static void test_oom_stages(void **state)
{
    struct pipeline *p = pipeline_new();
    assert_non_null(p);
    pta_alloc_fail_at(1, 0); /* the stage's own state */
    assert_int_equal(stage_introspect_add(p, NULL, NULL), -1);
    pta_alloc_fail_at(0, 0);
    assert_int_equal(pipeline_length(p), 0);
    pipeline_free(p);
}

static void test_oom_cache(void **state)
{
    struct cache_config cc = {.max_entries = 100, .max_bytes = 1 << 20, .max_ttl = 300};
    for (unsigned long nth = 1; nth <= 2; nth++) { /* the cache, its table */
        pta_alloc_fail_at(nth, 0);
        assert_null(cache_new(&cc, fake_clock, NULL, (const uint8_t *)"k", 1));
    }
    pta_alloc_fail_at(0, 0);
    struct cache *c = new_cache();
    struct cache_key k1, k2;
    struct token_info *ti;
    struct waiter w = {.w = {.done = waiter_done}};
    cache_key_of(c, "one", 3, &k1);
    cache_key_of(c, "two", 3, &k2);

    pta_alloc_fail_at(1, 0); /* entry_store(): a cache may forget */
    cache_resolve(c, &k1, token_info_new(TOKEN_ACTIVE, "t"));
    pta_alloc_fail_at(0, 0);
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, 0);

    cache_resolve(c, &k1, token_info_new(TOKEN_ACTIVE, "t"));
    pta_alloc_fail_at(1, 0); /* flight_alloc(): recycles the LRU entry and retries */
    assert_int_equal(cache_lookup(c, &k2, &w.w, &ti), CACHE_LEAD);
    pta_alloc_fail_at(0, 0);
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.evictions, 1);
    cache_resolve(c, &k2, NULL); /* out of memory upstream: nothing stored, done(NULL) */
    assert_int_equal(w.calls, 1);

    pta_alloc_fail_at(1, 1); /* nothing to recycle: not queued */
    assert_int_equal(cache_lookup(c, &k2, &w.w, &ti), CACHE_NOMEM);
    pta_alloc_fail_at(0, 0);

    struct cache_config big = cc;
    big.max_entries = 100000;
    pta_alloc_fail_at(1, 0); /* table_resize(): keeps the old table */
    cache_reconfigure(c, &big);
    pta_alloc_fail_at(0, 0);
    cache_resolve(c, &k1, token_info_new(TOKEN_ACTIVE, "t"));
    assert_int_equal(cache_lookup(c, &k1, &w.w, &ti), CACHE_HIT);
    token_unref(ti);
    cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_down_and_up),
        cmocka_unit_test(test_answer_later_and_replace),
        cmocka_unit_test(test_end_of_chain_fails_closed),
        cmocka_unit_test(test_l1_fills_the_cache),
        cmocka_unit_test(test_oom_pipeline),
        cmocka_unit_test(test_oom_stages),
        cmocka_unit_test(test_oom_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
