/* Unit tests for the token cache: keying, TTL math, negative caching, LRU under both budgets,
 * reconfiguration and single flight (including re-entrant callbacks). The clock is a fake one the
 * tests move by hand. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache.h"
#include "token.h"

#define T0 1700000000000LL /* ms; a realistic epoch so that exp arithmetic is exercised */
#define T0_S (T0 / 1000)

static int64_t fake_now;

static int64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

static struct cache_config cfg_default(void)
{
    struct cache_config cfg = {.max_entries = 1000,
                               .max_bytes = 256u << 20,
                               .max_ttl = 300,
                               .negative_ttl = 5,
                               .exp_skew = 5,
                               .honour_no_store = false};
    return cfg;
}

static struct cache *new_cache(const struct cache_config *cfg)
{
    static const uint8_t key[] = "unit-test-hmac-key";
    struct cache *c;
    fake_now = T0;
    c = cache_new(cfg, fake_clock, NULL, key, sizeof(key) - 1);
    assert_non_null(c);
    return c;
}

static struct token_info *active(const char *jwt)
{
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "test");
    assert_non_null(ti);
    ti->jwt = strdup(jwt);
    assert_non_null(ti->jwt);
    ti->jwt_len = strlen(jwt);
    return ti;
}

static struct token_info *active_exp(int64_t exp)
{
    struct token_info *ti = active("h.p.s");
    ti->claims.has_exp = true;
    ti->claims.exp = exp;
    return ti;
}

static struct cache_key key_of(struct cache *c, const char *token)
{
    struct cache_key k;
    cache_key_of(c, token, strlen(token), &k);
    return k;
}

/* ---- waiters ---- */

struct tw {
    struct cache_waiter w;
    int calls;
    struct token_info *got;
};

static void tw_done(struct cache_waiter *w, struct token_info *ti)
{
    struct tw *t = (struct tw *)w;
    t->calls++;
    t->got = ti;
}

static struct tw tw_make(void)
{
    struct tw t = {.w = {.next = NULL, .done = tw_done}, .calls = 0, .got = NULL};
    return t;
}

static struct cache_stats stats(const struct cache *c)
{
    struct cache_stats st;
    cache_get_stats(c, &st);
    return st;
}

/* Looks k up; on a miss resolves it with ti (which is consumed either way). */
static enum cache_lookup fill(struct cache *c, const struct cache_key *k, struct token_info *ti)
{
    struct tw t = tw_make();
    struct token_info *got = NULL;
    enum cache_lookup r = cache_lookup(c, k, &t.w, &got);
    if (r == CACHE_HIT) {
        token_unref(got);
        token_unref(ti);
        return r;
    }
    cache_resolve(c, k, ti);
    assert_int_equal(t.calls, 1);
    return r;
}

/* True when k is served from the cache right now (without starting a flight on a miss). */
static bool cached(struct cache *c, const struct cache_key *k)
{
    struct tw t = tw_make();
    struct token_info *got = NULL;
    enum cache_lookup r = cache_lookup(c, k, &t.w, &got);
    if (r == CACHE_HIT) {
        token_unref(got);
        return true;
    }
    assert_true(cache_cancel(c, k, &t.w));
    cache_resolve(c, k, NULL); /* ends the flight without storing */
    return false;
}

static void put(struct cache *c, const char *token, struct token_info *ti)
{
    struct cache_key k = key_of(c, token);
    cache_resolve(c, &k, ti);
}

/* ---- keying ---- */

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void test_key_is_hmac_sha256(void **state)
{
    /* RFC 4231 test cases 2 and 6 (the second with a key longer than the block). */
    struct cache_config cfg = cfg_default();
    struct cache *c = cache_new(&cfg, fake_clock, NULL, (const uint8_t *)"Jefe", 4);
    uint8_t longkey[131];
    struct cache_key k;
    char h[65];
    (void)state;
    k = key_of(c, "what do ya want for nothing?");
    hex(k.b, sizeof(k.b), h);
    assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    cache_free(c);

    memset(longkey, 0xaa, sizeof(longkey));
    c = cache_new(&cfg, fake_clock, NULL, longkey, sizeof(longkey));
    k = key_of(c, "Test Using Larger Than Block-Size Key - Hash Key First");
    hex(k.b, sizeof(k.b), h);
    assert_string_equal(h, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    cache_free(c);

    assert_null(cache_new(&cfg, fake_clock, NULL, (const uint8_t *)"", 0));
}

static void test_key_same_token_same_key_random_per_cache(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *a = cache_new(&cfg, fake_clock, NULL, NULL, 0);
    struct cache *b = cache_new(&cfg, fake_clock, NULL, NULL, 0);
    struct cache_key a1 = key_of(a, "tok-1"), a1b = key_of(a, "tok-1"), a2 = key_of(a, "tok-2");
    struct cache_key b1 = key_of(b, "tok-1");
    (void)state;
    assert_memory_equal(a1.b, a1b.b, CACHE_KEY_LEN);
    assert_memory_not_equal(a1.b, a2.b, CACHE_KEY_LEN);
    assert_memory_not_equal(a1.b, b1.b, CACHE_KEY_LEN); /* the per-process key is random */
    cache_free(a);
    cache_free(b);
}

struct scan {
    const char *needle;
    size_t len;
    int found, blocks;
};

static void scan_block(const void *p, size_t len, void *ud)
{
    struct scan *s = ud;
    s->blocks++;
    if (memmem(p, len, s->needle, s->len))
        s->found++;
}

static void test_raw_token_never_stored(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    const char *tok1 = "opaque-token-AAAAAAAAAAAAAAAAAAAAAAAA";
    const char *tok2 = "opaque-token-BBBBBBBBBBBBBBBBBBBBBBBB";
    struct cache_key k2 = key_of(c, tok2);
    struct tw t = tw_make();
    struct token_info *got;
    struct scan s = {.needle = "opaque-token-", .len = strlen("opaque-token-")};
    (void)state;
    put(c, tok1, active("jwt-1"));                                  /* an entry */
    assert_int_equal(cache_lookup(c, &k2, &t.w, &got), CACHE_LEAD); /* and a flight */
    cache_visit_memory(c, scan_block, &s);
    assert_int_equal(s.blocks, 4); /* cache, table, entry, flight */
    assert_int_equal(s.found, 0);
    cache_free(c);
}

/* ---- hits, misses, TTLs ---- */

static void test_hit_and_miss(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    struct cache_key k = key_of(c, "t");
    struct token_info *ti = active("jwt"), *got = NULL;
    struct tw t = tw_make();
    struct cache_stats st;
    (void)state;
    assert_int_equal(cache_lookup(c, &k, &t.w, &got), CACHE_LEAD);
    assert_null(got);
    cache_resolve(c, &k, ti);
    assert_int_equal(t.calls, 1);
    assert_ptr_equal(t.got, ti);
    assert_int_equal(cache_lookup(c, &k, &t.w, &got), CACHE_HIT);
    assert_ptr_equal(got, ti);
    assert_int_equal(got->refcnt, 2); /* the cache's and ours */
    token_unref(got);
    st = stats(c);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.inserts, 1);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.bytes, token_info_size(ti) + cache_entry_overhead());
    assert_int_equal(st.flights, 0);
    cache_free(c);
}

/* Stores ti at T0 in a fresh cache. Returns 0 when it was not stored; otherwise checks that it is
 * still served at T0 + expect_ms - 1 and expired (counted) at T0 + expect_ms, and returns
 * expect_ms. */
static int64_t cached_for(struct cache_config cfg, struct token_info *ti, int64_t expect_ms)
{
    struct cache *c = new_cache(&cfg);
    struct cache_key k = key_of(c, "t");
    int64_t result;
    cache_resolve(c, &k, ti);
    if (stats(c).entries == 0) {
        result = 0;
    } else {
        fake_now = T0 + expect_ms - 1;
        assert_true(cached(c, &k));
        fake_now = T0 + expect_ms;
        assert_false(cached(c, &k));
        assert_int_equal(stats(c).expirations, 1);
        result = expect_ms;
    }
    cache_free(c);
    return result;
}

static void test_ttl_math(void **state)
{
    struct cache_config cfg = cfg_default();
    struct token_info *ti;
    (void)state;
    /* exp far away: max_ttl */
    assert_int_equal(cached_for(cfg, active_exp(T0_S + 3600), 300000), 300000);
    /* exp close: exp - skew - now */
    assert_int_equal(cached_for(cfg, active_exp(T0_S + 65), 60000), 60000);
    /* max-age smallest */
    ti = active_exp(T0_S + 3600);
    ti->max_age = 30;
    assert_int_equal(cached_for(cfg, ti, 30000), 30000);
    /* max-age larger than the others does not extend */
    ti = active_exp(T0_S + 65);
    ti->max_age = 1000;
    assert_int_equal(cached_for(cfg, ti, 60000), 60000);
    /* no exp: max_ttl, bounded by max-age */
    assert_int_equal(cached_for(cfg, active("jwt"), 300000), 300000);
    ti = active("jwt");
    ti->max_age = 10;
    assert_int_equal(cached_for(cfg, ti, 10000), 10000);
    /* exp passed, exp within the skew, max-age 0, max_ttl 0: not stored */
    assert_int_equal(cached_for(cfg, active_exp(T0_S - 10), 1), 0);
    assert_int_equal(cached_for(cfg, active_exp(T0_S + 5), 1), 0);
    ti = active("jwt");
    ti->max_age = 0;
    assert_int_equal(cached_for(cfg, ti, 1), 0);
    cfg.max_ttl = 0;
    assert_int_equal(cached_for(cfg, active("jwt"), 1), 0);
}

static void test_ttl_absurd_exp(void **state)
{
    struct cache_config cfg = cfg_default();
    (void)state;
    assert_int_equal(cached_for(cfg, active_exp(INT64_MAX), 300000), 300000);
    assert_int_equal(cached_for(cfg, active_exp(INT64_MIN), 1), 0);
    struct token_info *ti = active("jwt");
    ti->max_age = INT64_MAX;
    assert_int_equal(cached_for(cfg, ti, 300000), 300000);
}

static void test_no_store(void **state)
{
    struct cache_config cfg = cfg_default();
    struct token_info *ti = active_exp(T0_S + 3600);
    (void)state;
    ti->no_store = true;
    assert_int_equal(cached_for(cfg, ti, 300000), 300000); /* ignored by default */
    cfg.honour_no_store = true;
    ti = active_exp(T0_S + 3600);
    ti->no_store = true;
    assert_int_equal(cached_for(cfg, ti, 1), 0);
    ti = token_info_new(TOKEN_INACTIVE, "test");
    ti->no_store = true;
    assert_int_equal(cached_for(cfg, ti, 1), 0);
}

/* The fast path's bound: when the live entry ends, and only for the answer that entry holds. */
static void test_entry_until(void **state)
{
    struct cache_config cfg = cfg_default();
    cfg.honour_no_store = true;
    struct cache *c = new_cache(&cfg);
    (void)state;
    struct cache_key k = key_of(c, "until-token");
    struct token_info *ti = active_exp(T0_S + 3600), *other = active("o.t.h");
    ti->max_age = 7;
    struct tw t = tw_make();
    struct token_info *got = NULL;
    assert_int_equal(cache_lookup(c, &k, &t.w, &got), CACHE_LEAD);
    assert_int_equal(cache_entry_until_ms(c, &k, ti), 0); /* a flight, no entry yet */
    cache_resolve(c, &k, token_ref(ti));
    assert_int_equal(t.calls, 1);
    assert_int_equal(cache_entry_until_ms(c, &k, ti), T0 + 7000); /* max-age, not max_ttl */
    assert_int_equal(cache_entry_until_ms(c, &k, other), 0);
    assert_int_equal(cache_entry_until_ms(c, &k, NULL), 0);
    fake_now = T0 + 7000;
    assert_int_equal(cache_entry_until_ms(c, &k, ti), 0); /* ended */

    struct cache_key k2 = key_of(c, "until-no-store");
    struct token_info *ns = active_exp(T0_S + 3600);
    ns->no_store = true;
    cache_resolve(c, &k2, token_ref(ns));
    assert_int_equal(cache_entry_until_ms(c, &k2, ns), 0); /* never stored */
    token_unref(ns);
    token_unref(ti);
    token_unref(other);
    cache_free(c);
}

static void test_negative_cache(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c;
    struct cache_key k;
    struct token_info *got = NULL;
    struct tw t = tw_make();
    (void)state;
    assert_int_equal(cached_for(cfg, token_info_new(TOKEN_INACTIVE, "x"), 5000), 5000);

    c = new_cache(&cfg);
    k = key_of(c, "revoked");
    cache_resolve(c, &k, token_info_new(TOKEN_INACTIVE, "x"));
    assert_int_equal(cache_lookup(c, &k, &t.w, &got), CACHE_HIT);
    assert_int_equal(got->outcome, TOKEN_INACTIVE);
    token_unref(got);
    assert_int_equal(stats(c).negative_hits, 1);
    assert_int_equal(stats(c).hits, 0);
    cache_free(c);

    cfg.negative_ttl = 0;
    assert_int_equal(cached_for(cfg, token_info_new(TOKEN_INACTIVE, "x"), 1), 0);
}

static void test_idp_errors_not_cached(void **state)
{
    static const enum token_outcome bad[] = {TOKEN_IDP_ERROR, TOKEN_IDP_UNAVAIL, TOKEN_IDP_UNKNOWN};
    struct cache_config cfg = cfg_default();
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct token_info *ti = token_info_new(bad[i], "x");
        ti->max_age = 3600;
        assert_int_equal(cached_for(cfg, ti, 1), 0);
    }
}

static void test_expired_entry_removed_on_lookup(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    struct cache_key k = key_of(c, "t");
    struct tw t = tw_make();
    struct token_info *got;
    (void)state;
    cache_resolve(c, &k, active("jwt"));
    fake_now += 300000;
    assert_int_equal(cache_lookup(c, &k, &t.w, &got), CACHE_LEAD);
    assert_int_equal(stats(c).expirations, 1);
    assert_int_equal(stats(c).entries, 0);
    assert_int_equal(stats(c).bytes, 0);
    assert_int_equal(stats(c).flights, 1);
    cache_resolve(c, &k, active("jwt2"));
    assert_int_equal(t.calls, 1);
    assert_string_equal(t.got->jwt, "jwt2");
    cache_free(c);
}

/* ---- LRU and budgets ---- */

static void test_lru_eviction_by_entries(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c;
    struct cache_key a, b, cc, d;
    (void)state;
    cfg.max_entries = 3;
    c = new_cache(&cfg);
    a = key_of(c, "a"), b = key_of(c, "b"), cc = key_of(c, "c"), d = key_of(c, "d");
    fill(c, &a, active("A"));
    fill(c, &b, active("B"));
    fill(c, &cc, active("C"));
    assert_true(cached(c, &a)); /* a is now the most recent: b is the LRU */
    fill(c, &d, active("D"));
    assert_int_equal(stats(c).evictions, 1);
    assert_int_equal(stats(c).entries, 3);
    assert_false(cached(c, &b));
    assert_true(cached(c, &a));
    assert_true(cached(c, &cc));
    assert_true(cached(c, &d));
    cache_free(c);
}

static void test_lru_eviction_by_bytes(void **state)
{
    struct cache_config cfg = cfg_default();
    struct token_info *probe = active("0123456789");
    size_t cost = token_info_size(probe) + cache_entry_overhead();
    struct cache *c;
    char name[8];
    (void)state;
    token_unref(probe);
    cfg.max_bytes = 3 * cost + cost / 2;
    c = new_cache(&cfg);
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        put(c, name, active("0123456789"));
    }
    assert_int_equal(stats(c).entries, 3);
    assert_int_equal(stats(c).bytes, 3 * cost);
    assert_int_equal(stats(c).evictions, 2);
    for (int i = 0; i < 5; i++) {
        struct cache_key k;
        snprintf(name, sizeof(name), "t%d", i);
        k = key_of(c, name);
        assert_int_equal(cached(c, &k), i >= 2);
    }
    /* An entry bigger than the whole budget is not stored and evicts nothing. */
    char big[4096];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    put(c, "big", active(big));
    assert_int_equal(stats(c).entries, 3);
    assert_int_equal(stats(c).evictions, 2);
    cache_free(c);
}

static void test_expired_victim_counts_as_expiration(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c;
    (void)state;
    cfg.max_entries = 1;
    c = new_cache(&cfg);
    put(c, "neg", token_info_new(TOKEN_INACTIVE, "x")); /* 5 s */
    fake_now += 6000;
    put(c, "pos", active("jwt"));
    assert_int_equal(stats(c).evictions, 0);
    assert_int_equal(stats(c).expirations, 1);
    assert_int_equal(stats(c).entries, 1);
    cache_free(c);
}

static void test_reconfigure_shrinks(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    char name[16];
    size_t cost;
    (void)state;
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        put(c, name, active("jwt"));
    }
    cost = stats(c).bytes / 10;
    cfg.max_entries = 4;
    cache_reconfigure(c, &cfg);
    assert_int_equal(stats(c).entries, 4);
    assert_int_equal(stats(c).evictions, 6);
    for (int i = 0; i < 10; i++) {
        struct cache_key k;
        snprintf(name, sizeof(name), "t%d", i);
        k = key_of(c, name);
        assert_int_equal(cached(c, &k), i >= 6);
    }
    cfg.max_bytes = 2 * cost;
    cache_reconfigure(c, &cfg);
    assert_int_equal(stats(c).entries, 2);
    assert_int_equal(stats(c).bytes, 2 * cost);
    /* A shorter max_ttl applies to what is already cached. */
    cfg.max_ttl = 10;
    cache_reconfigure(c, &cfg);
    fake_now += 10000;
    {
        struct cache_key k = key_of(c, "t9");
        assert_false(cached(c, &k));
    }
    cache_free(c);
}

static void test_many_entries_and_growing_reconfigure(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c;
    char name[16];
    (void)state;
    cfg.max_entries = 100; /* small table first, then grown by reconfigure */
    c = new_cache(&cfg);
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        put(c, name, active("jwt"));
    }
    assert_int_equal(stats(c).entries, 100);
    assert_int_equal(stats(c).evictions, 900);
    cfg.max_entries = 20000;
    cache_reconfigure(c, &cfg);
    assert_int_equal(stats(c).entries, 100);
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        put(c, name, active("jwt"));
    }
    assert_int_equal(stats(c).entries, 20000);
    for (int i = 0; i < 20000; i += 7) {
        struct cache_key k;
        snprintf(name, sizeof(name), "u%d", i);
        k = key_of(c, name);
        assert_true(cached(c, &k));
    }
    cache_free(c);
}

/* ---- single flight ---- */

#define NWAIT 1000

static void test_single_flight(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    struct cache_key k = key_of(c, "hot");
    struct tw *w = calloc(NWAIT, sizeof(*w));
    struct token_info *ti = active("jwt"), *got;
    int lead = 0, joined = 0;
    (void)state;
    for (int i = 0; i < NWAIT; i++) {
        w[i] = tw_make();
        switch (cache_lookup(c, &k, &w[i].w, &got)) {
        case CACHE_LEAD:
            lead++;
            break;
        case CACHE_JOINED:
            joined++;
            break;
        case CACHE_HIT:
        case CACHE_NOMEM:
            fail();
        }
    }
    assert_int_equal(lead, 1);
    assert_int_equal(joined, NWAIT - 1);
    assert_int_equal(stats(c).flights, 1);
    assert_int_equal(stats(c).misses, 1);
    assert_int_equal(stats(c).coalesced, NWAIT - 1);
    cache_resolve(c, &k, ti);
    for (int i = 0; i < NWAIT; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_ptr_equal(w[i].got, ti);
    }
    assert_int_equal(stats(c).flights, 0);
    assert_int_equal(stats(c).entries, 1);
    free(w);
    cache_free(c);
}

static void test_cancel(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    struct cache_key k = key_of(c, "hot"), other = key_of(c, "other");
    struct tw w[10], stranger = tw_make();
    struct token_info *got;
    (void)state;
    for (int i = 0; i < 10; i++) {
        w[i] = tw_make();
        cache_lookup(c, &k, &w[i].w, &got);
    }
    for (int i = 0; i < 10; i += 3) /* first, middle and last (9) */
        assert_true(cache_cancel(c, &k, &w[i].w));
    assert_false(cache_cancel(c, &k, &w[0].w));
    assert_false(cache_cancel(c, &k, &stranger.w));
    assert_false(cache_cancel(c, &other, &w[1].w));
    /* The tail was cancelled: a late joiner must still be queued correctly. */
    struct tw late = tw_make();
    assert_int_equal(cache_lookup(c, &k, &late.w, &got), CACHE_JOINED);
    cache_resolve(c, &k, active("jwt"));
    for (int i = 0; i < 10; i++)
        assert_int_equal(w[i].calls, i % 3 == 0 ? 0 : 1);
    assert_int_equal(late.calls, 1);
    assert_false(cache_cancel(c, &k, &w[1].w));
    cache_free(c);
}

static void test_all_waiters_cancelled_still_fills(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    struct cache_key k = key_of(c, "t");
    struct tw t = tw_make();
    struct token_info *got;
    (void)state;
    assert_int_equal(cache_lookup(c, &k, &t.w, &got), CACHE_LEAD);
    assert_true(cache_cancel(c, &k, &t.w));
    assert_int_equal(stats(c).flights, 1);
    cache_resolve(c, &k, active("jwt"));
    assert_int_equal(t.calls, 0);
    assert_true(cached(c, &k));
    cache_free(c);
}

/* Heap waiters whose done() frees them and then acts on the cache, as a connection would. */
struct rw {
    struct cache_waiter w;
    struct cache *c;
    struct cache_key k;
    int *calls;
    enum { ACT_NONE, ACT_LOOKUP, ACT_CANCEL_NEXT } act;
    struct rw *victim; /* for ACT_CANCEL_NEXT */
    enum cache_lookup *result;
    struct tw *relookup; /* the waiter ACT_LOOKUP queues when it misses */
};

static void rw_done(struct cache_waiter *w, struct token_info *ti)
{
    struct rw *r = (struct rw *)w;
    struct rw copy = *r;
    struct token_info *got = NULL;
    (*r->calls)++;
    free(r); /* as a request would; the cache must not touch w any more */
    if (copy.act == ACT_LOOKUP) {
        *copy.result = cache_lookup(copy.c, &copy.k, &copy.relookup->w, &got);
        token_unref(got);
    } else if (copy.act == ACT_CANCEL_NEXT) {
        *copy.result = cache_cancel(copy.c, &copy.k, &copy.victim->w) ? CACHE_HIT : CACHE_LEAD;
        if (*copy.result == CACHE_HIT)
            free(copy.victim); /* cancelled: its done() will never run */
    }
    (void)ti;
}

static struct rw *rw_new(struct cache *c, const struct cache_key *k, int *calls)
{
    struct rw *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->w.done = rw_done;
    r->c = c;
    r->k = *k;
    r->calls = calls;
    return r;
}

static void test_reentrant_lookup_sees_entry(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    struct cache_key k = key_of(c, "t");
    int calls = 0;
    enum cache_lookup res = CACHE_JOINED;
    struct tw relookup = tw_make();
    struct token_info *got;
    struct rw *a = rw_new(c, &k, &calls), *b = rw_new(c, &k, &calls);
    (void)state;
    a->act = ACT_LOOKUP;
    a->result = &res;
    a->relookup = &relookup;
    assert_int_equal(cache_lookup(c, &k, &a->w, &got), CACHE_LEAD);
    assert_int_equal(cache_lookup(c, &k, &b->w, &got), CACHE_JOINED);
    cache_resolve(c, &k, active("jwt"));
    assert_int_equal(calls, 2);
    assert_int_equal(res, CACHE_HIT);
    assert_int_equal(stats(c).flights, 0);
    cache_free(c);
}

static void test_reentrant_lookup_starts_new_flight(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    struct cache_key k = key_of(c, "t");
    int calls = 0;
    enum cache_lookup res1 = CACHE_HIT, res2 = CACHE_HIT;
    struct tw re1 = tw_make(), re2 = tw_make();
    struct token_info *got;
    struct rw *a = rw_new(c, &k, &calls), *b = rw_new(c, &k, &calls);
    (void)state;
    a->act = b->act = ACT_LOOKUP;
    a->result = &res1;
    a->relookup = &re1;
    b->result = &res2;
    b->relookup = &re2;
    cache_lookup(c, &k, &a->w, &got);
    cache_lookup(c, &k, &b->w, &got);
    /* An IdP error is not stored: the retry inside done() leads a fresh flight, the next joins
     * it, and neither is answered by the dying flight. */
    cache_resolve(c, &k, token_info_new(TOKEN_IDP_ERROR, "x"));
    assert_int_equal(calls, 2);
    assert_int_equal(res1, CACHE_LEAD);
    assert_int_equal(res2, CACHE_JOINED);
    assert_int_equal(re1.calls + re2.calls, 0);
    assert_int_equal(stats(c).flights, 1);
    cache_resolve(c, &k, active("jwt"));
    assert_int_equal(re1.calls, 1);
    assert_int_equal(re2.calls, 1);
    assert_string_equal(re2.got->jwt, "jwt");
    cache_free(c);
}

static void test_reentrant_cancel_of_later_waiter(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    struct cache_key k = key_of(c, "t");
    int calls = 0;
    enum cache_lookup res = CACHE_JOINED;
    struct token_info *got;
    struct rw *a = rw_new(c, &k, &calls), *b = rw_new(c, &k, &calls), *d = rw_new(c, &k, &calls);
    (void)state;
    a->act = ACT_CANCEL_NEXT;
    a->victim = b;
    a->result = &res;
    cache_lookup(c, &k, &a->w, &got);
    cache_lookup(c, &k, &b->w, &got);
    cache_lookup(c, &k, &d->w, &got);
    cache_resolve(c, &k, active("jwt"));
    assert_int_equal(res, CACHE_HIT); /* the cancel succeeded */
    assert_int_equal(calls, 2);       /* a and d; b (freed by a) never */
    cache_free(c);
}

static void test_resolve_without_flight(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    struct cache_key k = key_of(c, "t");
    struct tw t = tw_make();
    struct token_info *got;
    (void)state;
    cache_resolve(c, &k, active("one"));
    assert_int_equal(stats(c).entries, 1);
    cache_resolve(c, &k, active("two")); /* replaces */
    assert_int_equal(stats(c).entries, 1);
    assert_int_equal(cache_lookup(c, &k, &t.w, &got), CACHE_HIT);
    assert_string_equal(got->jwt, "two");
    token_unref(got);
    cache_resolve(c, &k, NULL); /* nothing in flight, nothing to store */
    assert_int_equal(stats(c).entries, 1);
    cache_free(c);
}

static void test_resolve_null_reaches_waiters(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    struct cache_key k = key_of(c, "t");
    struct tw t = tw_make();
    struct token_info *got;
    (void)state;
    cache_lookup(c, &k, &t.w, &got);
    t.got = (struct token_info *)&t; /* anything but NULL */
    cache_resolve(c, &k, NULL);
    assert_int_equal(t.calls, 1);
    assert_null(t.got);
    assert_int_equal(stats(c).entries, 0);
    cache_free(c);
}

static void test_free_with_flights_pending(void **state)
{
    struct cache_config cfg = cfg_default();
    struct cache *c = new_cache(&cfg);
    struct cache_key k = key_of(c, "t");
    struct tw a = tw_make(), b = tw_make();
    struct token_info *got;
    (void)state;
    put(c, "cached", active("jwt"));
    cache_lookup(c, &k, &a.w, &got);
    cache_lookup(c, &k, &b.w, &got);
    cache_free(c); /* ASan checks nothing leaks; waiters are not called */
    assert_int_equal(a.calls + b.calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_is_hmac_sha256),
        cmocka_unit_test(test_key_same_token_same_key_random_per_cache),
        cmocka_unit_test(test_raw_token_never_stored),
        cmocka_unit_test(test_hit_and_miss),
        cmocka_unit_test(test_ttl_math),
        cmocka_unit_test(test_ttl_absurd_exp),
        cmocka_unit_test(test_no_store),
        cmocka_unit_test(test_entry_until),
        cmocka_unit_test(test_negative_cache),
        cmocka_unit_test(test_idp_errors_not_cached),
        cmocka_unit_test(test_expired_entry_removed_on_lookup),
        cmocka_unit_test(test_lru_eviction_by_entries),
        cmocka_unit_test(test_lru_eviction_by_bytes),
        cmocka_unit_test(test_expired_victim_counts_as_expiration),
        cmocka_unit_test(test_reconfigure_shrinks),
        cmocka_unit_test(test_many_entries_and_growing_reconfigure),
        cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_all_waiters_cancelled_still_fills),
        cmocka_unit_test(test_reentrant_lookup_sees_entry),
        cmocka_unit_test(test_reentrant_lookup_starts_new_flight),
        cmocka_unit_test(test_reentrant_cancel_of_later_waiter),
        cmocka_unit_test(test_resolve_without_flight),
        cmocka_unit_test(test_resolve_null_reaches_waiters),
        cmocka_unit_test(test_free_with_flights_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
