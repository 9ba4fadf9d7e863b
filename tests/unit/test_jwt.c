/* b64url_decode() and jwt_parse_claims(): JWTs are built here from JSON, the way an IdP would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jwt.h"
#include "jwt_fixture.h"

/* ---- helpers ---- */

static const char *HDR = "{\"kid\":\"-1325479574\",\"x5t\":\"UVbYDeq1Y9nKqQ\",\"alg\":\"RS256\"}";
static const char *SIG = "a fake RS256 signature, 256 bytes in real life";

static char *jwt_with_payload(const char *payload)
{
    return make_jwt(HDR, payload, SIG);
}

/* Parses and expects success; the caller clears *c. */
static void parse_ok(const char *jwt, struct token_claims *c)
{
    const char *why = NULL;
    int r = jwt_parse_claims(jwt, strlen(jwt), c, &why);
    if (r != 0)
        fail_msg("parse failed: %s", why);
}

static void parse_fails(const char *jwt)
{
    struct token_claims c;
    const char *why = NULL;
    assert_int_equal(jwt_parse_claims(jwt, strlen(jwt), &c, &why), -1);
    assert_non_null(why);
    /* Nothing is left allocated on failure. */
    assert_null(c.sub);
    assert_null(c.client_id);
    assert_null(c.scope);
    assert_false(c.has_exp);
}

static void payload_fails(const char *payload)
{
    char *j = jwt_with_payload(payload);
    parse_fails(j);
    free(j);
}

static long decode(const char *in, uint8_t *out)
{
    return b64url_decode(in, strlen(in), out);
}

/* ---- base64url ---- */

static void test_b64_roundtrip(void **state)
{
    uint8_t raw[256], out[256 + 3];
    char enc[400];
    for (int i = 0; i < 256; i++)
        raw[i] = (uint8_t)(255 - i);
    for (size_t len = 0; len <= 256; len++) {
        size_t n = b64url_encode(raw, len, enc);
        assert_int_equal(b64url_decode(enc, n, out), (long)len);
        assert_memory_equal(out, raw, len);
    }
}

static void test_b64_known_values(void **state)
{
    uint8_t out[32];
    assert_int_equal(decode("", out), 0);
    assert_int_equal(decode("Zg", out), 1);
    assert_memory_equal(out, "f", 1);
    assert_int_equal(decode("Zm8", out), 2);
    assert_memory_equal(out, "fo", 2);
    assert_int_equal(decode("Zm9v", out), 3);
    assert_memory_equal(out, "foo", 3);
    assert_int_equal(decode("Zm9vYg", out), 4);
    assert_memory_equal(out, "foob", 4);
    /* The two url-safe characters: 0xfb 0xff 0xbf encodes as "-_-_". */
    assert_int_equal(decode("-_-_", out), 3);
    assert_memory_equal(out, "\xfb\xff\xbf", 3);
}

static void test_b64_padding_tolerated(void **state)
{
    uint8_t out[32];
    assert_int_equal(decode("Zg==", out), 1);
    assert_int_equal(decode("Zm8=", out), 2);
    assert_memory_equal(out, "fo", 2);
    assert_int_equal(decode("Zg=", out), -1);   /* padding that does not complete the group */
    assert_int_equal(decode("Zg===", out), -1); /* too much padding */
    assert_int_equal(decode("Zm9v=", out), -1);
    assert_int_equal(decode("=", out), -1);
    assert_int_equal(decode("Z=g=", out), -1); /* padding only at the end */
}

static void test_b64_bad_chars(void **state)
{
    uint8_t out[32];
    assert_int_equal(decode("Zm9+", out), -1); /* '+' and '/' are standard base64, not url */
    assert_int_equal(decode("Zm9/", out), -1);
    assert_int_equal(decode("Zm 9", out), -1);
    assert_int_equal(decode("Zm9.", out), -1);
    assert_int_equal(decode("Zm\xc3\xa9", out), -1);
    assert_int_equal(b64url_decode("Zm\0v", 4, out), -1);
    /* after a whole group: in the next group, and in the 2- or 3-character tail */
    assert_int_equal(decode("Zm9vYm+y", out), -1);
    assert_int_equal(decode("Zm9vY+", out), -1);
    assert_int_equal(decode("Zm9vYm/", out), -1);
    assert_int_equal(decode("Zm9vYmFy", out), 6);
    assert_memory_equal(out, "foobar", 6);
}

static void test_b64_impossible_length(void **state)
{
    uint8_t out[32];
    assert_int_equal(decode("Z", out), -1);
    assert_int_equal(decode("Zm9vY", out), -1);
    assert_int_equal(decode("Zm9vYmFyZ", out), -1);
}

/* ---- JWS shape ---- */

static void test_curity_like_jwt(void **state)
{
    char *j = jwt_with_payload(
        "{\"jti\":\"a4c7e9d2-5d77-4a8e-a3a4-5e6bbd5f6bd1\",\"delegationId\":\"8c12b3b4\","
        "\"exp\":1767225600,\"nbf\":1767222000,\"scope\":\"openid read write\","
        "\"iss\":\"https://idsvr.example.com/oauth/v2/oauth-anonymous\",\"sub\":\"alice\","
        "\"aud\":\"api.example.com\",\"iat\":1767222000,\"purpose\":\"access_token\","
        "\"client_id\":\"web-client\"}");
    struct token_claims c;
    parse_ok(j, &c);
    assert_true(c.has_exp);
    assert_int_equal(c.exp, 1767225600);
    assert_string_equal(c.sub, "alice");
    assert_string_equal(c.client_id, "web-client");
    assert_string_equal(c.scope, "openid read write");
    token_claims_clear(&c);
    free(j);
}

static void test_keycloak_like_jwt(void **state)
{
    char *j = make_jwt("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"Xk3b9\"}",
                       "{\"exp\":1767225600,\"iat\":1767225300,\"jti\":\"onrtac:1\","
                       "\"iss\":\"http://kc:8080/realms/demo\",\"aud\":\"account\","
                       "\"sub\":\"f3a1c1d2-0000-4000-8000-000000000001\",\"typ\":\"Bearer\","
                       "\"azp\":\"api-gw\",\"realm_access\":{\"roles\":[\"user\"]},"
                       "\"scope\":\"email profile\",\"client_id\":\"api-gw\","
                       "\"email_verified\":false,\"preferred_username\":\"bob\"}",
                       SIG);
    struct token_claims c;
    parse_ok(j, &c);
    assert_int_equal(c.exp, 1767225600);
    assert_string_equal(c.sub, "f3a1c1d2-0000-4000-8000-000000000001");
    assert_string_equal(c.scope, "email profile");
    assert_string_equal(c.client_id, "api-gw");
    token_claims_clear(&c);
    free(j);
}

static void test_large_jwt(void **state)
{
    /* A 6 KB JWT: IdPs that embed roles or entitlements produce these. */
    char payload[8000];
    int o = snprintf(payload, sizeof(payload), "{\"sub\":\"big\",\"exp\":2000000000,\"roles\":[");
    for (int i = 0; i < 400; i++)
        o += snprintf(payload + o, sizeof(payload) - (size_t)o, "%s\"role-%04d\"", i ? "," : "", i);
    snprintf(payload + o, sizeof(payload) - (size_t)o, "]}");
    char *j = jwt_with_payload(payload);
    assert_true(strlen(j) > 6000);
    struct token_claims c;
    parse_ok(j, &c);
    assert_string_equal(c.sub, "big");
    assert_int_equal(c.exp, 2000000000);
    assert_null(c.scope);
    token_claims_clear(&c);
    free(j);
}

static void test_too_long(void **state)
{
    char *big = malloc(JWT_MAX_LEN + 2);
    assert_non_null(big);
    memset(big, 'A', JWT_MAX_LEN + 1);
    big[10] = '.';
    big[20] = '.';
    big[JWT_MAX_LEN + 1] = '\0';
    parse_fails(big);
    free(big);
}

static void test_part_count(void **state)
{
    char *j = jwt_with_payload("{\"sub\":\"a\"}");
    char *dot2 = strrchr(j, '.');

    char *four = malloc(strlen(j) + 8);
    assert_non_null(four);
    sprintf(four, "%s.c2ln", j);
    parse_fails(four); /* four parts */
    free(four);

    *dot2 = '\0';
    parse_fails(j); /* two parts */
    *strchr(j, '.') = '\0';
    parse_fails(j); /* one part */
    free(j);

    parse_fails("");
    parse_fails("..");
    parse_fails("...");
}

static void test_empty_parts(void **state)
{
    char *j = jwt_with_payload("{\"sub\":\"a\"}");
    char buf[512];
    char *d1 = strchr(j, '.'), *d2 = strrchr(j, '.');

    snprintf(buf, sizeof(buf), "%.*s.", (int)(d2 - j), j);
    parse_fails(buf);                     /* empty signature: an unsecured JWS */
    snprintf(buf, sizeof(buf), "%s", d1); /* ".payload.sig" */
    parse_fails(buf);
    snprintf(buf, sizeof(buf), "%.*s.%s", (int)(d1 - j), j, d2); /* "header..sig" */
    parse_fails(buf);
    free(j);
}

static void test_bad_base64(void **state)
{
    char *j = jwt_with_payload("{\"sub\":\"a\"}");
    char *d2 = strrchr(j, '.');
    char buf[512];

    snprintf(buf, sizeof(buf), "%.*s.sig+nature", (int)(d2 - j), j);
    parse_fails(buf); /* bad char in the signature */
    snprintf(buf, sizeof(buf), "%.*s.abcde", (int)(d2 - j), j);
    parse_fails(buf); /* signature of impossible length */
    snprintf(buf, sizeof(buf), "eyJ!bGci.%s", strchr(j, '.') + 1);
    parse_fails(buf); /* bad char in the header */

    /* Bad char in the payload. */
    snprintf(buf, sizeof(buf), "%s", j);
    *(strchr(buf, '.') + 3) = '*';
    parse_fails(buf);
    free(j);
}

static void test_not_json_objects(void **state)
{
    payload_fails("[\"sub\",\"a\"]");
    payload_fails("\"alice\"");
    payload_fails("42");
    payload_fails("null");
    payload_fails("true");
    payload_fails("{\"sub\":\"a\""); /* truncated */
    payload_fails("{\"sub\":\"a\"} trailing");
    payload_fails("not json at all");
    payload_fails("");

    char *j = make_jwt("[\"RS256\"]", "{\"sub\":\"a\"}", SIG);
    parse_fails(j); /* header not an object */
    free(j);
    j = make_jwt("RS256", "{\"sub\":\"a\"}", SIG);
    parse_fails(j);
    free(j);
}

static void test_duplicate_claims_refused(void **state)
{
    payload_fails("{\"exp\":1,\"exp\":2000000000}");
    payload_fails("{\"scope\":\"read\",\"scope\":\"admin\"}");
}

/* ---- claims ---- */

static void test_missing_claims(void **state)
{
    char *j = jwt_with_payload("{\"iss\":\"https://idp\"}");
    struct token_claims c;
    parse_ok(j, &c);
    assert_false(c.has_exp);
    assert_null(c.sub);
    assert_null(c.client_id);
    assert_null(c.scope);
    token_claims_clear(&c);
    free(j);

    j = jwt_with_payload("{}");
    parse_ok(j, &c);
    assert_false(c.has_exp);
    token_claims_clear(&c);
    free(j);

    /* null reads as absent. */
    j = jwt_with_payload("{\"exp\":null,\"sub\":null,\"scope\":null,\"client_id\":null}");
    parse_ok(j, &c);
    assert_false(c.has_exp);
    assert_null(c.sub);
    assert_null(c.scope);
    token_claims_clear(&c);
    free(j);
}

static int64_t exp_of(const char *payload)
{
    char *j = jwt_with_payload(payload);
    struct token_claims c;
    parse_ok(j, &c);
    assert_true(c.has_exp);
    int64_t e = c.exp;
    token_claims_clear(&c);
    free(j);
    return e;
}

static void test_exp(void **state)
{
    assert_int_equal(exp_of("{\"exp\":0}"), 0);
    assert_int_equal(exp_of("{\"exp\":1767225600}"), 1767225600);
    assert_int_equal(exp_of("{\"exp\":1767225600.9}"), 1767225600); /* truncated */
    assert_int_equal(exp_of("{\"exp\":1.7672256e9}"), 1767225600);
    assert_int_equal(exp_of("{\"exp\":253402300799}"), 253402300799);

    payload_fails("{\"exp\":-1}");
    payload_fails("{\"exp\":-0.5}");
    payload_fails("{\"exp\":253402300800}");
    payload_fails("{\"exp\":1e300}");
    payload_fails("{\"exp\":99999999999999999999}"); /* beyond 64 bits: jansson refuses */
    payload_fails("{\"exp\":\"1767225600\"}");
    payload_fails("{\"exp\":true}");
    payload_fails("{\"exp\":[1767225600]}");
}

static char *scope_of(const char *payload)
{
    char *j = jwt_with_payload(payload);
    struct token_claims c;
    parse_ok(j, &c);
    char *s = c.scope;
    c.scope = NULL;
    token_claims_clear(&c);
    free(j);
    return s;
}

static void expect_scope(const char *payload, const char *want)
{
    char *s = scope_of(payload);
    if (want)
        assert_string_equal(s, want);
    else
        assert_null(s);
    free(s);
}

static void test_scope_string(void **state)
{
    expect_scope("{\"scope\":\"read\"}", "read");
    expect_scope("{\"scope\":\"read write\"}", "read write");
    expect_scope("{\"scope\":\"  read   write  admin \"}", "read write admin");
    expect_scope("{\"scope\":\"\"}", NULL);
    expect_scope("{\"scope\":\"    \"}", NULL);
    expect_scope("{\"scope\":\"urn:example:read https://api/x\"}",
                 "urn:example:read https://api/x");
}

static void test_scope_array(void **state)
{
    expect_scope("{\"scope\":[\"read\",\"write\"]}", "read write");
    expect_scope("{\"scope\":[\"read\"]}", "read");
    expect_scope("{\"scope\":[]}", NULL);
    expect_scope("{\"scope\":[\"\",\"read\",\"\"]}", "read");
    expect_scope("{\"scope\":[\" read \",\"write  admin\"]}", "read write admin");
    payload_fails("{\"scope\":[\"read\",42]}");
    payload_fails("{\"scope\":[\"read\",[\"write\"]]}");
    payload_fails("{\"scope\":[\"read\",null]}");
}

static void test_bad_claim_types(void **state)
{
    payload_fails("{\"scope\":42}");
    payload_fails("{\"scope\":{\"read\":true}}");
    payload_fails("{\"sub\":42}");
    payload_fails("{\"sub\":[\"alice\"]}");
    payload_fails("{\"client_id\":true}");
}

static void test_control_chars_refused(void **state)
{
    payload_fails("{\"sub\":\"alice\\r\\nX-Admin: 1\"}");
    payload_fails("{\"client_id\":\"a\\tb\"}");
    payload_fails("{\"scope\":\"read\\nwrite\"}");
    payload_fails("{\"scope\":[\"read\",\"wr\\u0001ite\"]}");
    payload_fails("{\"sub\":\"a\\u0000b\"}"); /* jansson refuses NUL in strings */
}

static void test_unicode_claims_kept(void **state)
{
    char *j = jwt_with_payload("{\"sub\":\"Jos\\u00e9\",\"client_id\":\"caf\xc3\xa9\"}");
    struct token_claims c;
    parse_ok(j, &c);
    assert_string_equal(c.sub, "Jos\xc3\xa9");
    assert_string_equal(c.client_id, "caf\xc3\xa9");
    token_claims_clear(&c);
    free(j);
}

static void test_why_may_be_null(void **state)
{
    struct token_claims c;
    assert_int_equal(jwt_parse_claims("a.b", 3, &c, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_roundtrip),
        cmocka_unit_test(test_b64_known_values),
        cmocka_unit_test(test_b64_padding_tolerated),
        cmocka_unit_test(test_b64_bad_chars),
        cmocka_unit_test(test_b64_impossible_length),
        cmocka_unit_test(test_curity_like_jwt),
        cmocka_unit_test(test_keycloak_like_jwt),
        cmocka_unit_test(test_large_jwt),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_part_count),
        cmocka_unit_test(test_empty_parts),
        cmocka_unit_test(test_bad_base64),
        cmocka_unit_test(test_not_json_objects),
        cmocka_unit_test(test_duplicate_claims_refused),
        cmocka_unit_test(test_missing_claims),
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_scope_string),
        cmocka_unit_test(test_scope_array),
        cmocka_unit_test(test_bad_claim_types),
        cmocka_unit_test(test_control_chars_refused),
        cmocka_unit_test(test_unicode_claims_kept),
        cmocka_unit_test(test_why_may_be_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
