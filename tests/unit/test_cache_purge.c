/* cache_purge_*() and cache_list_by(): purge by token, token id, sub, client_id, sid and all, the
 * flights overtaken by a purge (answered, not stored), and the byte budget after purges. */
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

static int64_t now_ms = 1700000000000;

static int64_t fake_clock(void *ud)
{
    return *(int64_t *)ud;
}

static struct cache *new_cache(void)
{
    struct cache_config cfg = {.max_entries = 1000,
                               .max_bytes = 1 << 24,
                               .max_ttl = 300,
                               .negative_ttl = 5,
                               .exp_skew = 5};
    now_ms = 1700000000000;
    struct cache *c = cache_new(&cfg, fake_clock, &now_ms, (const uint8_t *)"k", 1);
    assert_non_null(c);
    return c;
}

static char *dup_or_null(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

static struct token_info *active(const char *sub, const char *client, const char *sid)
{
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "test");
    assert_non_null(ti);
    ti->jwt = strdup("h.p.s");
    ti->jwt_len = 5;
    ti->claims.sub = dup_or_null(sub);
    ti->claims.client_id = dup_or_null(client);
    ti->claims.sid = dup_or_null(sid);
    return ti;
}

static struct cache_key key(struct cache *c, const char *token)
{
    struct cache_key k;
    cache_key_of(c, token, strlen(token), &k);
    return k;
}

static void id_of(int i, uint8_t id[CACHE_TOKEN_ID_LEN])
{
    memset(id, 0, CACHE_TOKEN_ID_LEN);
    memcpy(id, &i, sizeof(i));
}

/* Stores a token's answer the way the l1 stage does (a resolve without a flight stores too). */
static void store(struct cache *c, const char *token, int i, struct token_info *ti)
{
    struct cache_key k = key(c, token);
    uint8_t id[CACHE_TOKEN_ID_LEN];
    id_of(i, id);
    cache_resolve_id(c, &k, ti, id);
}

struct waiter {
    struct cache_waiter w;
    int called;
    struct token_info *got;
};

static void done(struct cache_waiter *w, struct token_info *ti)
{
    struct waiter *x = (struct waiter *)w;
    x->called++;
    x->got = ti;
}

static bool cached(struct cache *c, const char *token)
{
    struct cache_key k = key(c, token);
    struct waiter x = {.w = {.done = done}};
    struct token_info *ti = NULL;
    enum cache_lookup r = cache_lookup(c, &k, &x.w, &ti);
    if (r == CACHE_HIT) {
        token_unref(ti);
        return true;
    }
    assert_int_equal(r, CACHE_LEAD);
    assert_true(cache_cancel(c, &k, &x.w));
    cache_resolve(c, &k, NULL); /* ends the flight we just led, storing nothing */
    return false;
}

static void fill(struct cache *c)
{
    store(c, "t-alice-1", 1, active("alice", "web", "s1"));
    store(c, "t-alice-2", 2, active("alice", "cli", "s2"));
    store(c, "t-bob-1", 3, active("bob", "web", "s3"));
    store(c, "t-svc", 4, active(NULL, "svc", NULL)); /* client credentials: no sub, no sid */
}

static size_t purge_str(struct cache *c, enum cache_by by, const char *v)
{
    return cache_purge_by(c, by, v, strlen(v));
}

static void test_purge_each_selector(void **state)
{
    struct cache *c = new_cache();
    fill(c);
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, 4);
    assert_int_equal(purge_str(c, CACHE_BY_SUB, "alice"), 2);
    assert_false(cached(c, "t-alice-1"));
    assert_false(cached(c, "t-alice-2"));
    assert_true(cached(c, "t-bob-1"));
    assert_int_equal(purge_str(c, CACHE_BY_SUB, "alice"), 0);

    fill(c);
    assert_int_equal(purge_str(c, CACHE_BY_CLIENT_ID, "web"), 2);
    assert_false(cached(c, "t-bob-1"));
    assert_true(cached(c, "t-alice-2"));

    fill(c);
    assert_int_equal(purge_str(c, CACHE_BY_SID, "s2"), 1);
    assert_false(cached(c, "t-alice-2"));
    assert_true(cached(c, "t-alice-1"));

    uint8_t id[CACHE_TOKEN_ID_LEN];
    id_of(4, id);
    assert_int_equal(cache_purge_by(c, CACHE_BY_TOKEN_ID, id, sizeof(id)), 1);
    assert_false(cached(c, "t-svc"));

    struct cache_key k = key(c, "t-alice-1");
    assert_int_equal(cache_purge_key(c, &k), 1);
    assert_false(cached(c, "t-alice-1"));
    assert_int_equal(cache_purge_key(c, &k), 0);

    fill(c);
    assert_int_equal(cache_purge_all(c), 4);
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0); /* every purged entry gave its bytes back */
    assert_int_equal(st.purged, 2 + 2 + 1 + 1 + 1 + 4);
    cache_free(c);
}

/* A replaced entry (same token resolved again) leaves the index of the old one. */
static void test_replace_reindexes(void **state)
{
    struct cache *c = new_cache();
    store(c, "t-x", 1, active("old-sub", "web", NULL));
    store(c, "t-x", 1, active("new-sub", "web", NULL));
    assert_int_equal(purge_str(c, CACHE_BY_SUB, "old-sub"), 0);
    assert_int_equal(purge_str(c, CACHE_BY_SUB, "new-sub"), 1);
    cache_free(c);
}

/* An introspection in flight when a purge happens: its waiters get the answer, the cache does not
 * store it, and the next request leads a new flight. */
static void test_purge_during_flight(void **state)
{
    struct cache *c = new_cache();
    struct cache_key k = key(c, "t-flying");
    struct waiter a = {.w = {.done = done}}, b = {.w = {.done = done}};
    struct token_info *ti = NULL;
    assert_int_equal(cache_lookup(c, &k, &a.w, &ti), CACHE_LEAD);
    assert_int_equal(cache_lookup(c, &k, &b.w, &ti), CACHE_JOINED);
    assert_int_equal(cache_purge_key(c, &k), 0); /* nothing stored yet */
    struct token_info *answer = active("carol", "web", "s9");
    cache_resolve_id(c, &k, answer, NULL);
    assert_int_equal(a.called, 1);
    assert_int_equal(b.called, 1);
    assert_ptr_equal(a.got, answer);
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.purge_skipped, 1);
    assert_false(cached(c, "t-flying"));

    /* Any purge counts (the flight's sub is unknown until it answers), even an unrelated one. */
    struct waiter d = {.w = {.done = done}};
    assert_int_equal(cache_lookup(c, &k, &d.w, &ti), CACHE_LEAD);
    assert_int_equal(purge_str(c, CACHE_BY_SUB, "somebody-else"), 0);
    cache_resolve_id(c, &k, active("carol", "web", NULL), NULL);
    assert_false(cached(c, "t-flying"));

    /* A flight that starts after the purge stores as usual. */
    struct waiter e = {.w = {.done = done}};
    assert_int_equal(cache_lookup(c, &k, &e.w, &ti), CACHE_LEAD);
    cache_resolve_id(c, &k, active("carol", "web", NULL), NULL);
    assert_true(cached(c, "t-flying"));
    assert_true(cache_purge_generation(c) >= 2);
    cache_free(c);
}

struct seen {
    int n;
    char ids[8][CACHE_TOKEN_ID_LEN];
};

static void on_entry(void *ud, const struct cache_entry_view *e)
{
    struct seen *s = ud;
    assert_non_null(e->token_id);
    assert_non_null(e->ti);
    assert_true(e->expires_ms > now_ms);
    memcpy(s->ids[s->n++], e->token_id, CACHE_TOKEN_ID_LEN);
}

static void test_list_by(void **state)
{
    struct cache *c = new_cache();
    fill(c);
    struct seen s = {0};
    assert_int_equal(cache_list_by(c, CACHE_BY_SUB, "alice", 5, 0, on_entry, &s), 2);
    assert_int_equal(s.n, 2);
    memset(&s, 0, sizeof(s));
    assert_int_equal(cache_list_by(c, CACHE_BY_CLIENT_ID, "web", 3, 1, on_entry, &s), 2);
    assert_int_equal(s.n, 1); /* bounded, but the count is the real one */
    memset(&s, 0, sizeof(s));
    assert_int_equal(cache_list_by(c, CACHE_BY_SUB, "nobody", 6, 0, on_entry, &s), 0);
    /* Expired entries are not listed. */
    now_ms += 301 * 1000;
    assert_int_equal(cache_list_by(c, CACHE_BY_SUB, "alice", 5, 0, on_entry, &s), 0);
    cache_free(c);
}

/* Negative entries carry no claims: they are indexed by token id only, and purge by it. */
static void test_negative_entries(void **state)
{
    struct cache *c = new_cache();
    store(c, "t-neg", 7, token_info_new(TOKEN_INACTIVE, "inactive"));
    assert_true(cached(c, "t-neg"));
    uint8_t id[CACHE_TOKEN_ID_LEN];
    id_of(7, id);
    assert_int_equal(cache_purge_by(c, CACHE_BY_TOKEN_ID, id, sizeof(id)), 1);
    assert_false(cached(c, "t-neg"));
    /* Without an id (cache_resolve), a purge by token still finds it. */
    struct cache_key k = key(c, "t-neg");
    cache_resolve(c, &k, token_info_new(TOKEN_INACTIVE, "inactive"));
    assert_int_equal(cache_purge_key(c, &k), 1);
    cache_free(c);
}

/* Evictions and expiry leave the indexes too: a purge never finds a freed entry. */
static void test_evicted_entries_leave_index(void **state)
{
    struct cache_config cfg = {.max_entries = 2, .max_bytes = 1 << 24, .max_ttl = 300};
    struct cache *c = cache_new(&cfg, fake_clock, &now_ms, (const uint8_t *)"k", 1);
    store(c, "t-1", 1, active("dave", "web", NULL));
    store(c, "t-2", 2, active("dave", "web", NULL));
    store(c, "t-3", 3, active("dave", "web", NULL)); /* evicts t-1 */
    assert_int_equal(purge_str(c, CACHE_BY_SUB, "dave"), 2);
    cache_free(c);
}

/* What another tier (L2) answers after a purge: refused while it may predate the purge. */
static void test_tombstones(void **state)
{
    struct cache *c = new_cache(); /* max_ttl 300 s */
    struct cache_key ka = key(c, "t-a"), kb = key(c, "t-b");
    struct token_info *alice = active("alice", "web", "s1"), *bob = active("bob", "cli", "s2");
    uint8_t id[CACHE_TOKEN_ID_LEN];
    id_of(9, id);
    assert_false(cache_purged_since_write(c, &ka, NULL, alice));
    assert_int_equal(purge_str(c, CACHE_BY_SUB, "alice"), 0);
    assert_true(cache_purged_since_write(c, &ka, NULL, alice));
    assert_false(cache_purged_since_write(c, &ka, NULL, bob));
    assert_int_equal(purge_str(c, CACHE_BY_SID, "s2"), 0);
    assert_true(cache_purged_since_write(c, &kb, NULL, bob));
    assert_int_equal(cache_purge_key(c, &kb), 0);
    struct token_info *carol = active("carol", "svc", "s3");
    assert_true(cache_purged_since_write(c, &kb, NULL, carol)); /* by key */
    assert_false(cache_purged_since_write(c, &ka, NULL, carol));
    assert_int_equal(cache_purge_by(c, CACHE_BY_TOKEN_ID, id, sizeof(id)), 0);
    assert_true(cache_purged_since_write(c, &ka, id, carol));
    assert_false(cache_purged_since_write(c, &ka, NULL, carol));
    /* Past max_ttl nothing written before the purge can be alive: the tombstones are gone. */
    now_ms += 302 * 1000;
    assert_false(cache_purged_since_write(c, &ka, NULL, alice));
    assert_false(cache_purged_since_write(c, &kb, NULL, carol));
    /* A purge of all refuses everything for the window. */
    cache_purge_all(c);
    assert_true(cache_purged_since_write(c, &ka, NULL, carol));
    now_ms += 302 * 1000;
    assert_false(cache_purged_since_write(c, &ka, NULL, carol));
    /* More live purges than tombstones: refuse everything rather than forget one. */
    char v[32];
    for (int i = 0; i <= CACHE_TOMBSTONES; i++) {
        int n = snprintf(v, sizeof(v), "user-%d", i);
        cache_purge_by(c, CACHE_BY_SUB, v, (size_t)n);
    }
    assert_true(cache_purged_since_write(c, &ka, NULL, carol));
    token_unref(alice);
    token_unref(bob);
    token_unref(carol);
    cache_free(c);
}

/* Stale-if-error keeps an expired entry with its flight: a purge meanwhile must not let it be
 * served (cache_stale) nor put back when the IdP fails. */
static void test_purge_during_stale_flight(void **state)
{
    struct cache_config cfg = {
        .max_entries = 10, .max_bytes = 1 << 20, .max_ttl = 10, .stale_grace = 60};
    now_ms = 1700000000000;
    struct cache *c = cache_new(&cfg, fake_clock, &now_ms, (const uint8_t *)"k", 1);
    struct cache_key k = key(c, "t-stale");
    cache_resolve(c, &k, active("erin", "web", "s7"));
    now_ms += 11 * 1000; /* expired, within the grace */
    struct waiter a = {.w = {.done = done}};
    struct token_info *ti = NULL;
    assert_int_equal(cache_lookup(c, &k, &a.w, &ti), CACHE_LEAD);
    struct token_info *st = cache_stale(c, &k);
    assert_non_null(st); /* before the purge it would be served on an IdP failure */
    token_unref(st);
    assert_int_equal(purge_str(c, CACHE_BY_SUB, "erin"), 0); /* it is a flight, not an entry */
    assert_null(cache_stale(c, &k));
    cache_resolve(c, &k, token_info_new(TOKEN_IDP_ERROR, "IdP down"));
    assert_int_equal(a.called, 1);
    struct cache_stats sts;
    cache_get_stats(c, &sts);
    assert_int_equal(sts.entries, 0); /* not put back */
    cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_purge_each_selector),
        cmocka_unit_test(test_replace_reindexes),
        cmocka_unit_test(test_purge_during_flight),
        cmocka_unit_test(test_list_by),
        cmocka_unit_test(test_negative_entries),
        cmocka_unit_test(test_evicted_entries_leave_index),
        cmocka_unit_test(test_tombstones),
        cmocka_unit_test(test_purge_during_stale_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
