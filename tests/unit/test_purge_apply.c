/* purge_apply() and purge_list(): JSON selectors, as POST /admin/purge parses them, applied to a
 * real cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "purge_apply.h"

static int64_t now_ms = 1700000000000;

static int64_t fake_clock(void *ud)
{
    return *(int64_t *)ud;
}

static void key_of(void *ud, const char *token, size_t len, uint8_t out[PURGE_KEY_LEN])
{
    struct cache_key k;
    cache_key_of(ud, token, len, &k);
    memcpy(out, k.b, PURGE_KEY_LEN);
}

static void store(struct cache *c, const char *token, const char *sub, const char *client,
                  const char *sid)
{
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "test");
    ti->claims.sub = sub ? strdup(sub) : NULL;
    ti->claims.client_id = client ? strdup(client) : NULL;
    ti->claims.sid = sid ? strdup(sid) : NULL;
    struct cache_key k;
    uint8_t digest[SHA256_DIGEST_LENGTH];
    cache_key_of(c, token, strlen(token), &k);
    SHA256((const unsigned char *)token, strlen(token), digest); /* as log_token_id() does */
    cache_resolve_id(c, &k, ti, digest);
}

static size_t apply(struct cache *c, const char *body)
{
    struct purge_selector sel;
    const char *why = NULL;
    if (purge_parse(body, strlen(body), key_of, c, &sel, &why) != 0)
        fail_msg("%s: %s", body, why);
    size_t n = purge_apply(c, &sel);
    purge_selector_clear(&sel);
    return n;
}

static struct cache *filled(void)
{
    struct cache_config cfg = {.max_entries = 100, .max_bytes = 1 << 20, .max_ttl = 300};
    struct cache *c = cache_new(&cfg, fake_clock, &now_ms, (const uint8_t *)"k", 1);
    assert_non_null(c);
    store(c, "tok-a1", "alice", "web", "s1");
    store(c, "tok-a2", "alice", "cli", "s2");
    store(c, "tok-b", "bob", "web", "s3");
    return c;
}

static void test_each_kind(void **state)
{
    struct cache *c = filled();
    assert_int_equal(apply(c, "{\"sub\":\"alice\"}"), 2);
    assert_int_equal(apply(c, "{\"sub\":\"alice\"}"), 0);
    cache_free(c);

    c = filled();
    assert_int_equal(apply(c, "{\"client_id\":\"web\"}"), 2);
    assert_int_equal(apply(c, "{\"sid\":\"s2\"}"), 1);
    cache_free(c);

    c = filled();
    assert_int_equal(apply(c, "{\"token\":\"tok-b\"}"), 1);
    assert_int_equal(apply(c, "{\"token\":\"tok-b\"}"), 0);
    /* sha256("tok-a1") starts with the 12 hex digits the access log prints for it. */
    uint8_t d[SHA256_DIGEST_LENGTH];
    char body[64];
    SHA256((const unsigned char *)"tok-a1", 6, d);
    snprintf(body, sizeof(body), "{\"token_hash\":\"%02x%02x%02x%02x%02x%02x\"}", d[0], d[1], d[2],
             d[3], d[4], d[5]);
    assert_int_equal(apply(c, body), 1);
    assert_int_equal(apply(c, "{\"all\":true}"), 1);
    cache_free(c);
}

static int listed;
static void on_entry(void *ctx, const struct purge_entry *e)
{
    assert_string_equal(e->sub, "alice");
    assert_string_equal(e->outcome, "active");
    assert_int_equal(strlen(e->token_hash), 12);
    assert_true(e->expires_at > now_ms / 1000);
    listed++;
}

static void test_list(void **state)
{
    struct cache *c = filled();
    struct purge_selector sel = {.kind = PURGE_SUB, .value = "alice"};
    listed = 0;
    assert_int_equal(purge_list(c, &sel, 10, on_entry, NULL), 2);
    assert_int_equal(listed, 2);
    sel.kind = PURGE_ALL;
    assert_int_equal(purge_list(c, &sel, 10, on_entry, NULL), 0);
    cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_kind),
        cmocka_unit_test(test_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
