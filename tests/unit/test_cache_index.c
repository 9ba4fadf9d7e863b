/* cache_index.c: SipHash test vectors, groups by value, purge loops, growth and teardown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache_index.h"

enum { K_SUB, K_CLIENT, K_ID, NKINDS };

struct entry {
    char sub[32];    /* "" = none */
    char client[32]; /* "" = none */
    uint8_t id[6];
    struct cidx_link links[NKINDS];
};

static struct entry *entry_of(struct cidx_link *links)
{
    return (struct entry *)((char *)links - offsetof(struct entry, links));
}

static const void *value_of(const struct cidx_link *links, unsigned kind, size_t *len, void *ud)
{
    const struct entry *e =
        (const struct entry *)((const char *)links - offsetof(struct entry, links));
    (void)ud;
    switch (kind) {
    case K_SUB:
        *len = strlen(e->sub);
        return *len ? e->sub : NULL;
    case K_CLIENT:
        *len = strlen(e->client);
        return *len ? e->client : NULL;
    default:
        *len = sizeof(e->id);
        return e->id;
    }
}

static struct entry *mk(const char *sub, const char *client, int id)
{
    struct entry *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    snprintf(e->sub, sizeof(e->sub), "%s", sub);
    snprintf(e->client, sizeof(e->client), "%s", client);
    memcpy(e->id, &id, sizeof(id));
    return e;
}

static size_t count(struct cidx *x, unsigned kind, const char *v)
{
    return cidx_count(x, kind, v, strlen(v));
}

/* Removes every entry with that value the way the cache's purge does; returns how many. */
static size_t purge(struct cidx *x, unsigned kind, const void *v, size_t len)
{
    size_t n = 0;
    struct cidx_link *l;
    while ((l = cidx_first(x, kind, v, len)) != NULL) {
        cidx_remove(x, l);
        free(entry_of(l));
        n++;
    }
    return n;
}

static void test_siphash_vectors(void **state)
{
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    /* The reference vectors of the SipHash paper / reference implementation. */
    assert_true(cidx_siphash(key, msg, 0) == UINT64_C(0x726fdb47dd0e0e31));
    assert_true(cidx_siphash(key, msg, 15) == UINT64_C(0xa129ca6149be45e5));
    /* Keyed: another key, another hash. */
    key[0] ^= 1;
    assert_true(cidx_siphash(key, msg, 15) != UINT64_C(0xa129ca6149be45e5));
}

static void test_groups(void **state)
{
    struct cidx *x = cidx_new(NKINDS, 100, value_of, NULL, NULL);
    assert_non_null(x);
    struct entry *a1 = mk("alice", "web", 1), *a2 = mk("alice", "cli", 2), *b = mk("bob", "web", 3);
    struct entry *anon = mk("", "", 4); /* a client-credentials token: no sub, no client */
    assert_int_equal(cidx_add(x, a1->links), 0);
    assert_int_equal(cidx_add(x, a2->links), 0);
    assert_int_equal(cidx_add(x, b->links), 0);
    assert_int_equal(cidx_add(x, anon->links), 0);
    assert_int_equal(count(x, K_SUB, "alice"), 2);
    assert_int_equal(count(x, K_SUB, "bob"), 1);
    assert_int_equal(count(x, K_SUB, "carol"), 0);
    assert_int_equal(count(x, K_CLIENT, "web"), 2);
    /* Values are per kind: "web" is no sub. */
    assert_int_equal(count(x, K_SUB, "web"), 0);
    assert_int_equal(count(x, K_SUB, ""), 0);
    /* alice, bob, web, cli, four ids. */
    assert_int_equal(cidx_groups(x), 8);
    uint8_t id[6];
    memcpy(id, anon->id, sizeof(id));
    assert_ptr_equal(cidx_first(x, K_ID, id, sizeof(id)), anon->links);
    assert_null(cidx_first(x, K_ID, id, 4)); /* a prefix is another value */
    /* Bounds on the kind. */
    assert_null(cidx_first(x, NKINDS, "alice", 5));

    /* Removing b leaves web with a1 only and frees bob's group. */
    cidx_remove(x, b->links);
    cidx_remove(x, b->links); /* twice is harmless */
    free(b);
    assert_int_equal(count(x, K_SUB, "bob"), 0);
    assert_int_equal(count(x, K_CLIENT, "web"), 1);
    assert_int_equal(cidx_groups(x), 6);

    /* Purge by sub drops both of alice's entries, and their client and id groups with them. */
    assert_int_equal(purge(x, K_SUB, "alice", 5), 2);
    assert_int_equal(count(x, K_CLIENT, "web"), 0);
    assert_int_equal(count(x, K_CLIENT, "cli"), 0);
    assert_int_equal(cidx_groups(x), 1);
    assert_int_equal(purge(x, K_ID, id, sizeof(id)), 1);
    assert_int_equal(cidx_groups(x), 0);
    cidx_free(x);
}

static size_t seen_n;
static void seen(struct cidx_link *links, void *ud)
{
    assert_string_equal(entry_of(links)->sub, (const char *)ud);
    seen_n++;
}

static void test_foreach(void **state)
{
    struct cidx *x = cidx_new(NKINDS, 0, value_of, NULL, NULL);
    struct entry *e[10];
    for (int i = 0; i < 10; i++) {
        e[i] = mk(i < 7 ? "carol" : "dave", "c", i);
        assert_int_equal(cidx_add(x, e[i]->links), 0);
    }
    seen_n = 0;
    assert_int_equal(cidx_foreach(x, K_SUB, "carol", 5, 0, seen, "carol"), 7);
    assert_int_equal(seen_n, 7);
    seen_n = 0;
    assert_int_equal(cidx_foreach(x, K_SUB, "carol", 5, 3, seen, "carol"), 3);
    assert_int_equal(seen_n, 3);
    assert_int_equal(cidx_foreach(x, K_SUB, "erin", 4, 0, seen, "erin"), 0);
    assert_int_equal(purge(x, K_CLIENT, "c", 1), 10);
    cidx_free(x);
}

/* A table sized for 1 entry gets 10 000 groups: it grows, and every lookup stays exact. */
static void test_growth_and_chains(void **state)
{
    enum { N = 10000 };
    const uint8_t key[16] = {0};
    struct cidx *x = cidx_new(NKINDS, 1, value_of, NULL, key);
    static struct entry *e[N];
    char sub[32];
    for (int i = 0; i < N; i++) {
        snprintf(sub, sizeof(sub), "user-%d", i % 2500); /* 4 entries per sub */
        e[i] = mk(sub, i % 2 ? "odd" : "even", i);
        assert_int_equal(cidx_add(x, e[i]->links), 0);
    }
    assert_int_equal(cidx_groups(x), 2500 + 2 + N);
    assert_true(cidx_bytes(x) > 0);
    for (int i = 0; i < 2500; i += 97) {
        snprintf(sub, sizeof(sub), "user-%d", i);
        assert_int_equal(count(x, K_SUB, sub), 4);
    }
    assert_int_equal(count(x, K_CLIENT, "odd"), N / 2);
    assert_true(cidx_resize(x, 4 * N));
    assert_int_equal(count(x, K_CLIENT, "even"), N / 2);
    assert_int_equal(purge(x, K_SUB, "user-42", 7), 4); /* entries 42, 2542, 5042, 7542 */
    assert_int_equal(count(x, K_CLIENT, "even"), N / 2 - 4);
    assert_int_equal(purge(x, K_CLIENT, "even", 4), N / 2 - 4);
    assert_int_equal(purge(x, K_CLIENT, "odd", 3), N / 2);
    assert_int_equal(cidx_groups(x), 0);
    cidx_free(x);
}

/* Freeing the index with entries still in it detaches them, so their later removal is safe. */
static void test_free_with_members(void **state)
{
    struct cidx *x = cidx_new(NKINDS, 4, value_of, NULL, NULL);
    struct entry *a = mk("alice", "web", 1);
    assert_int_equal(cidx_add(x, a->links), 0);
    cidx_free(x);
    for (int k = 0; k < NKINDS; k++)
        assert_null(a->links[k].g);
    free(a);
    assert_null(cidx_new(0, 1, value_of, NULL, NULL));
    assert_null(cidx_new(CIDX_MAX_KINDS + 1, 1, value_of, NULL, NULL));
    assert_null(cidx_new(1, 1, NULL, NULL, NULL));
    cidx_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vectors),   cmocka_unit_test(test_groups),
        cmocka_unit_test(test_foreach),           cmocka_unit_test(test_growth_and_chains),
        cmocka_unit_test(test_free_with_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
