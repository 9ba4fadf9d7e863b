/* cache.c with its indexes when memory runs out: whatever allocation fails while an answer is
 * stored (the node, an index group), the cache either holds the entry fully indexed or not at
 * all, so a purge by sub can never miss a cached token. Built with the allocation hook. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "cache.h"
#include "token.h"

static int64_t now_ms = 1700000000000;

static int64_t fake_clock(void *ud)
{
    return *(int64_t *)ud;
}

static struct token_info *active(const char *sub, const char *client, const char *sid)
{
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "test");
    assert_non_null(ti);
    ti->claims.sub = strdup(sub);
    ti->claims.client_id = strdup(client);
    ti->claims.sid = strdup(sid);
    return ti;
}

static void test_store_all_or_nothing(void **state)
{
    struct cache_config cfg = {.max_entries = 100, .max_bytes = 1 << 20, .max_ttl = 300};
    const uint8_t id[CACHE_TOKEN_ID_LEN] = {1, 2, 3, 4, 5, 6};
    for (unsigned long nth = 1; nth <= 6; nth++) {
        struct cache *c = cache_new(&cfg, fake_clock, &now_ms, (const uint8_t *)"k", 1);
        assert_non_null(c);
        struct cache_key k;
        cache_key_of(c, "tok", 3, &k);
        pta_alloc_fail_at(nth, 0);
        cache_resolve_id(c, &k, active("alice", "web", "s1"), id);
        pta_alloc_fail_at(0, 0);
        struct cache_stats st;
        cache_get_stats(c, &st);
        size_t purged = cache_purge_by(c, CACHE_BY_SUB, "alice", 5);
        /* Stored means findable by every index; not stored means nothing left behind. */
        assert_int_equal(purged, st.entries);
        if (st.entries) {
            cache_resolve_id(c, &k, active("alice", "web", "s1"), id);
            assert_int_equal(cache_purge_by(c, CACHE_BY_SID, "s1", 2), 1);
            cache_resolve_id(c, &k, active("alice", "web", "s1"), id);
            assert_int_equal(cache_purge_by(c, CACHE_BY_TOKEN_ID, id, sizeof(id)), 1);
        }
        cache_get_stats(c, &st);
        assert_int_equal(st.bytes, 0);
        cache_free(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_all_or_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
