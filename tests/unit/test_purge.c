/* purge_parse(): the JSON bodies of POST /admin/purge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "purge.h"

/* A stand-in for the cache's HMAC: records what it was given, derives a recognisable key. */
struct keyer {
    int calls;
    char seen[64];
};

static void fake_key(void *ud, const char *token, size_t len, uint8_t out[PURGE_KEY_LEN])
{
    struct keyer *k = ud;
    k->calls++;
    snprintf(k->seen, sizeof(k->seen), "%.*s", (int)len, token);
    memset(out, 0, PURGE_KEY_LEN);
    for (size_t i = 0; i < len; i++)
        out[i % PURGE_KEY_LEN] ^= (uint8_t)token[i];
}

static int parse(const char *body, struct purge_selector *sel, const char **why, struct keyer *k)
{
    return purge_parse(body, strlen(body), fake_key, k, sel, why);
}

static void ok(const char *body, enum purge_kind kind, const char *value)
{
    struct purge_selector sel;
    struct keyer k = {0};
    const char *why = NULL;
    if (parse(body, &sel, &why, &k) != 0)
        fail_msg("%s: %s", body, why);
    assert_int_equal(sel.kind, kind);
    if (value)
        assert_string_equal(sel.value, value);
    else
        assert_null(sel.value);
    purge_selector_clear(&sel);
    assert_null(sel.value);
}

static void bad(const char *body, const char *expect)
{
    struct purge_selector sel;
    struct keyer k = {0};
    const char *why = NULL;
    assert_int_equal(parse(body, &sel, &why, &k), -1);
    assert_non_null(why);
    if (expect)
        assert_string_equal(why, expect);
    assert_null(sel.value);
    assert_int_equal(k.calls, 0);
}

static void test_value_selectors(void **state)
{
    ok("{\"sub\":\"alice\"}", PURGE_SUB, "alice");
    ok("{\"client_id\":\"www\"}", PURGE_CLIENT_ID, "www");
    ok("{\"sid\":\"08a5019c-17e1-4977-8f42-65a12843ea02\"}", PURGE_SID,
       "08a5019c-17e1-4977-8f42-65a12843ea02");
    ok(" { \"sub\" : \"\\u00e9l\\u00e8ve\" } ", PURGE_SUB, "\xc3\xa9l\xc3\xa8ve");
    ok("{\"all\":true}", PURGE_ALL, NULL);
    assert_string_equal(purge_kind_name(PURGE_TOKEN_HASH), "token_hash");
    assert_string_equal(purge_kind_name(PURGE_ALL), "all");
    assert_string_equal(purge_kind_name((enum purge_kind)99), "unknown");
}

static void test_token_is_hashed(void **state)
{
    struct purge_selector sel;
    struct keyer k = {0};
    const char *why = NULL;
    assert_int_equal(parse("{\"token\":\"opaque-abc\"}", &sel, &why, &k), 0);
    assert_int_equal(sel.kind, PURGE_TOKEN);
    assert_int_equal(k.calls, 1);
    assert_string_equal(k.seen, "opaque-abc");
    uint8_t expect[PURGE_KEY_LEN];
    fake_key(&k, "opaque-abc", 10, expect);
    assert_memory_equal(sel.key, expect, PURGE_KEY_LEN);
    assert_null(sel.value); /* the raw token is not kept */
    purge_selector_clear(&sel);
}

static void test_token_without_key_function(void **state)
{
    struct purge_selector sel;
    const char *why = NULL;
    const char *tok = "{\"token\":\"t\"}", *sub = "{\"sub\":\"a\"}";
    assert_int_equal(purge_parse(tok, strlen(tok), NULL, NULL, &sel, &why), -1);
    assert_string_equal(why, "token is not accepted here");
    assert_int_equal(purge_parse(sub, strlen(sub), NULL, NULL, &sel, &why), 0);
    purge_selector_clear(&sel);
}

static void test_token_hash(void **state)
{
    struct purge_selector sel;
    const char *why = NULL;
    struct keyer k = {0};
    assert_int_equal(parse("{\"token_hash\":\"0123456789aB\"}", &sel, &why, &k), 0);
    assert_int_equal(sel.kind, PURGE_TOKEN_HASH);
    const uint8_t id[6] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab};
    assert_memory_equal(sel.id, id, 6);
    purge_selector_clear(&sel);
    const char *msg = "token_hash must be the 12 hex digits the access log prints";
    bad("{\"token_hash\":\"0123456789a\"}", msg);
    bad("{\"token_hash\":\"0123456789abc\"}", msg);
    bad("{\"token_hash\":\"0123456789ag\"}", msg);
    bad("{\"token_hash\":123456789012}", msg);
    /* A full SHA-256 is not what the log prints: refuse rather than guess. */
    bad("{\"token_hash\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}",
        msg);
}

static void test_malformed(void **state)
{
    bad("", "body is empty: send a JSON object");
    bad("sub=alice", "body is not a JSON object");
    bad("[\"sub\",\"alice\"]", "body is not a JSON object");
    bad("\"alice\"", "body is not a JSON object");
    bad("{\"sub\":\"alice\"", "body is not a JSON object");
    bad("{}", "body must hold exactly one selector");
    bad("{\"sub\":\"alice\",\"sid\":\"s\"}", "body must hold exactly one selector");
    bad("{\"sub\":\"alice\",\"sub\":\"bob\"}", "body is not a JSON object"); /* duplicate */
    bad("{\"user\":\"alice\"}",
        "unknown selector: use token, token_hash, sub, client_id, sid or all");
    bad("{\"SUB\":\"alice\"}", NULL);
    bad("{\"all\":false}", "all must be true");
    bad("{\"all\":1}", "all must be true");
    bad("{\"all\":\"true\"}", "all must be true");
    bad("{\"sub\":\"\"}", "sub, client_id and sid must be 1 to 1024 bytes without NUL");
    bad("{\"sub\":42}", "sub, client_id and sid must be strings");
    bad("{\"sid\":null}", "sub, client_id and sid must be strings");
    bad("{\"client_id\":[\"a\"]}", "sub, client_id and sid must be strings");
    bad("{\"token\":\"\"}", "token must be 1 to 4096 bytes");
    bad("{\"token\":7}", "token must be a string");
    /* A selector that does not name a purge at all must never mean "everything". */
    bad("null", "body is not a JSON object");
}

static void test_bounds(void **state)
{
    static char body[PURGE_MAX_BODY + 64];
    struct purge_selector sel;
    struct keyer k = {0};
    const char *why = NULL;
    /* A value of exactly PURGE_MAX_VALUE bytes passes, one more does not. */
    memcpy(body, "{\"sub\":\"", 8);
    memset(body + 8, 'a', PURGE_MAX_VALUE);
    strcpy(body + 8 + PURGE_MAX_VALUE, "\"}");
    assert_int_equal(parse(body, &sel, &why, &k), 0);
    assert_int_equal(strlen(sel.value), PURGE_MAX_VALUE);
    purge_selector_clear(&sel);
    memset(body + 8, 'a', PURGE_MAX_VALUE + 1);
    strcpy(body + 8 + PURGE_MAX_VALUE + 1, "\"}");
    bad(body, "sub, client_id and sid must be 1 to 1024 bytes without NUL");
    /* Tokens: up to PURGE_MAX_TOKEN bytes. */
    memcpy(body, "{\"token\":\"", 10);
    memset(body + 10, 't', PURGE_MAX_TOKEN);
    strcpy(body + 10 + PURGE_MAX_TOKEN, "\"}");
    assert_int_equal(parse(body, &sel, &why, &k), 0);
    assert_int_equal(k.calls, 1);
    purge_selector_clear(&sel);
    memset(body + 10, 't', PURGE_MAX_TOKEN + 1);
    strcpy(body + 10 + PURGE_MAX_TOKEN + 1, "\"}");
    bad(body, "token must be 1 to 4096 bytes");
    /* The body itself: PURGE_MAX_BODY bytes at most, whatever it holds. */
    memset(body, ' ', PURGE_MAX_BODY + 1);
    memcpy(body, "{\"all\":true}", 12);
    assert_int_equal(purge_parse(body, PURGE_MAX_BODY, fake_key, &k, &sel, &why), 0);
    assert_int_equal(purge_parse(body, PURGE_MAX_BODY + 1, fake_key, &k, &sel, &why), -1);
    assert_string_equal(why, "body too large");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_selectors), cmocka_unit_test(test_token_is_hashed),
        cmocka_unit_test(test_token_hash),      cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_bounds),          cmocka_unit_test(test_token_without_key_function),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
