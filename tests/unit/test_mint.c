/* mint.c: the RFC 9068 shape (verified with OpenSSL against the published JWK), claim filtering,
 * lifetime bounds, size bounds, the allow-list parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jose_fixture.h"
#include "jws.h"
#include "mint.h"

#define NOW INT64_C(1800000000)

static struct jws_key *es, *rs, *ed;

static int setup(void **state)
{
    (void)state;
    es = fx_key("EC", 256);
    rs = fx_key("RSA", 2048);
    ed = fx_key("ED25519", 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    jws_key_free(es);
    jws_key_free(rs);
    jws_key_free(ed);
    return 0;
}

static int fixed_random(uint8_t *buf, size_t len, void *arg)
{
    memset(buf, *(const int *)arg, len);
    return 0;
}

static struct mint_settings settings(void)
{
    struct mint_settings s = {
        .issuer = "https://gateway.example",
        .audience = "https://api.example",
        .max_lifetime = 300,
    };
    return s;
}

/* Mints, verifies with OpenSSL, returns the payload (and checks the header). */
static json_t *mint_ok(const struct mint_settings *s, const struct jws_key *k, const char *claims,
                       const char *aud, int64_t *exp)
{
    json_t *c = json_loads(claims, 0, NULL);
    assert_non_null(c);
    struct mint_out out;
    const char *why = NULL;
    enum mint_result r = mint_jwt(s, k, c, aud, NOW, &out, &why);
    json_decref(c);
    if (r != MINT_OK)
        fail_msg("mint failed: %s", why ? why : "?");
    assert_int_equal(strlen(out.jwt), out.jwt_len);
    json_t *h, *p;
    fx_verify_jws(out.jwt, k->jwk, &h, &p);
    assert_string_equal(json_string_value(json_object_get(h, "typ")), "at+jwt");
    assert_string_equal(json_string_value(json_object_get(h, "kid")), k->kid);
    assert_string_equal(json_string_value(json_object_get(h, "alg")), jws_alg_name(k->alg));
    assert_int_equal(json_object_size(h), 3);
    json_decref(h);
    assert_int_equal(json_integer_value(json_object_get(p, "exp")), out.exp);
    if (exp)
        *exp = out.exp;
    free(out.jwt);
    return p;
}

static enum mint_result mint_result(const struct mint_settings *s, const struct jws_key *k,
                                    const char *claims, const char **why)
{
    json_t *c = json_loads(claims, 0, NULL);
    assert_non_null(c);
    struct mint_out out;
    enum mint_result r = mint_jwt(s, k, c, NULL, NOW, &out, why);
    json_decref(c);
    assert_null(out.jwt);
    return r;
}

static const char *str(json_t *p, const char *name)
{
    return json_string_value(json_object_get(p, name));
}

static void test_rfc9068_shape(void **state)
{
    (void)state;
    struct mint_settings s = settings();
    const char *answer =
        "{\"active\":true,\"sub\":\"alice\",\"client_id\":\"c1\",\"scope\":\"read write\","
        "\"exp\":1800000100,\"iat\":1799999000,\"iss\":\"https://idp.example\",\"aud\":\"idp-aud\","
        "\"jti\":\"idp-jti\",\"token_type\":\"Bearer\",\"username\":\"al\",\"auth_time\":"
        "1799990000,"
        "\"acr\":\"urn:mace:incommon:iap:silver\",\"cnf\":{\"x5t#S256\":\"abc\"},\"custom\":\"x\","
        "\"sid\":\"s1\"}";
    const struct jws_key *keys[] = {es, rs, ed};
    for (size_t i = 0; i < 3; i++) {
        int64_t exp;
        json_t *p = mint_ok(&s, keys[i], answer, NULL, &exp);
        assert_string_equal(str(p, "iss"), "https://gateway.example");
        assert_string_equal(str(p, "aud"), "https://api.example");
        assert_string_equal(str(p, "sub"), "alice");
        assert_string_equal(str(p, "client_id"), "c1");
        assert_string_equal(str(p, "scope"), "read write");
        assert_int_equal(exp, 1800000100); /* the token's own exp: below now + 300 */
        assert_int_equal(json_integer_value(json_object_get(p, "iat")), NOW);
        assert_int_equal(strlen(str(p, "jti")), 22); /* 128 bits */
        assert_string_not_equal(str(p, "jti"), "idp-jti");
        assert_string_equal(str(p, "username"), "al");
        assert_int_equal(json_integer_value(json_object_get(p, "auth_time")), 1799990000);
        assert_string_equal(str(p, "acr"), "urn:mace:incommon:iap:silver");
        assert_string_equal(str(json_object_get(p, "cnf"), "x5t#S256"), "abc");
        /* Never copied: active, token_type, and what the default list does not name. */
        assert_null(json_object_get(p, "active"));
        assert_null(json_object_get(p, "token_type"));
        assert_null(json_object_get(p, "custom"));
        assert_null(json_object_get(p, "sid"));
        assert_int_equal(json_object_size(p), 12);
        json_decref(p);
    }
}

static void test_jti_random_and_injectable(void **state)
{
    (void)state;
    struct mint_settings s = settings();
    const char *answer = "{\"active\":true,\"client_id\":\"c1\"}";
    json_t *a = mint_ok(&s, es, answer, NULL, NULL), *b = mint_ok(&s, es, answer, NULL, NULL);
    assert_string_not_equal(str(a, "jti"), str(b, "jti"));
    json_decref(a);
    json_decref(b);
    int byte = 0xff;
    s.random = fixed_random;
    s.random_arg = &byte;
    a = mint_ok(&s, es, answer, NULL, NULL);
    assert_string_equal(str(a, "jti"), "_____________________w");
    json_decref(a);
}

static void test_lifetime_bounds(void **state)
{
    (void)state;
    struct mint_settings s = settings();
    int64_t exp;
    /* exp beyond the maximum lifetime: bounded. */
    json_decref(mint_ok(&s, es, "{\"client_id\":\"c\",\"exp\":1900000000}", NULL, &exp));
    assert_int_equal(exp, NOW + 300);
    /* No exp: the maximum lifetime. */
    json_decref(mint_ok(&s, es, "{\"client_id\":\"c\"}", NULL, &exp));
    assert_int_equal(exp, NOW + 300);
    /* A fractional NumericDate is truncated. */
    json_decref(mint_ok(&s, es, "{\"client_id\":\"c\",\"exp\":1800000010.9}", NULL, &exp));
    assert_int_equal(exp, NOW + 10);
    /* Already expired (or expiring now): not active. */
    const char *why;
    assert_int_equal(mint_result(&s, es, "{\"client_id\":\"c\",\"exp\":1799999999}", &why),
                     MINT_EXPIRED);
    assert_int_equal(mint_result(&s, es, "{\"client_id\":\"c\",\"exp\":1800000000}", &why),
                     MINT_EXPIRED);
    /* A broken exp is an error, not "no exp". */
    assert_int_equal(mint_result(&s, es, "{\"client_id\":\"c\",\"exp\":\"soon\"}", &why),
                     MINT_ERROR);
    assert_int_equal(mint_result(&s, es, "{\"client_id\":\"c\",\"exp\":-5}", &why), MINT_ERROR);
    s.max_lifetime = 0;
    assert_int_equal(mint_result(&s, es, "{\"client_id\":\"c\"}", &why), MINT_ERROR);
}

static void test_audience_override(void **state)
{
    (void)state;
    struct mint_settings s = settings();
    json_t *p = mint_ok(&s, es, "{\"client_id\":\"c\"}", "https://orders.example", NULL);
    assert_string_equal(str(p, "aud"), "https://orders.example");
    json_decref(p);
    p = mint_ok(&s, es, "{\"client_id\":\"c\"}", "", NULL); /* empty: the default */
    assert_string_equal(str(p, "aud"), "https://api.example");
    json_decref(p);
    s.audience = NULL;
    p = mint_ok(&s, es, "{\"client_id\":\"c\"}", "per-route", NULL);
    assert_string_equal(str(p, "aud"), "per-route");
    json_decref(p);
    const char *why = NULL;
    assert_int_equal(mint_result(&s, es, "{\"client_id\":\"c\"}", &why), MINT_ERROR);
    assert_non_null(strstr(why, "audience"));
}

static void test_identity_claims(void **state)
{
    (void)state;
    struct mint_settings s = settings();
    /* Client credentials: no sub, so sub is the client (RFC 9068 section 2.2). */
    json_t *p = mint_ok(&s, es, "{\"client_id\":\"svc\",\"scope\":[\"a\",\"b\"]}", NULL, NULL);
    assert_string_equal(str(p, "sub"), "svc");
    assert_string_equal(str(p, "scope"), "a b");
    json_decref(p);
    p = mint_ok(&s, es, "{\"client_id\":\"svc\",\"scope\":\"\"}", NULL, NULL);
    assert_null(json_object_get(p, "scope"));
    json_decref(p);
    const char *why;
    assert_int_equal(mint_result(&s, es, "{\"sub\":\"x\"}", &why), MINT_ERROR);
    assert_int_equal(mint_result(&s, es, "{}", &why), MINT_ERROR);
    assert_int_equal(mint_result(&s, es, "{\"client_id\":7}", &why), MINT_ERROR);
    assert_int_equal(mint_result(&s, es, "{\"client_id\":\"c\",\"scope\":[1]}", &why), MINT_ERROR);
    assert_int_equal(mint_result(&s, es, "{\"client_id\":\"c\",\"sub\":{}}", &why), MINT_ERROR);
}

/* Whatever the IdP says about iss/aud/iat/jti is ignored, even with an allow-list naming them. */
static void test_gateway_claims_win(void **state)
{
    (void)state;
    struct mint_settings s = settings();
    static const char *const allow[] = {"iss", "aud", "jti", "iat", "active", "custom", NULL};
    s.claims = allow;
    json_t *p = mint_ok(&s, es,
                        "{\"client_id\":\"c\",\"iss\":\"evil\",\"aud\":\"evil\",\"jti\":\"evil\","
                        "\"iat\":1,\"active\":true,\"custom\":[1,2]}",
                        NULL, NULL);
    assert_string_equal(str(p, "iss"), "https://gateway.example");
    assert_string_equal(str(p, "aud"), "https://api.example");
    assert_string_not_equal(str(p, "jti"), "evil");
    assert_int_equal(json_integer_value(json_object_get(p, "iat")), NOW);
    assert_null(json_object_get(p, "active"));
    assert_int_equal(json_array_size(json_object_get(p, "custom")), 2);
    assert_null(json_object_get(p, "username"));
    json_decref(p);
}

static void test_size_bound(void **state)
{
    (void)state;
    struct mint_settings s = settings();
    json_t *c = json_pack("{s:s}", "client_id", "c");
    json_t *groups = json_array();
    for (int i = 0; i < 5000; i++) {
        char g[32];
        snprintf(g, sizeof(g), "group-%d", i);
        json_array_append_new(groups, json_string(g));
    }
    json_object_set_new(c, "groups", groups);
    struct mint_out out;
    const char *why = NULL;
    assert_int_equal(mint_jwt(&s, rs, c, NULL, NOW, &out, &why), MINT_ERROR);
    assert_null(out.jwt);
    assert_non_null(strstr(why, "size limit"));
    /* A larger bound lets the same claims through. */
    s.max_jwt_len = 200000;
    assert_int_equal(mint_jwt(&s, rs, c, NULL, NOW, &out, &why), MINT_OK);
    assert_true(out.jwt_len > MINT_DEFAULT_MAX_JWT);
    free(out.jwt);
    json_decref(c);
}

static void test_missing_settings(void **state)
{
    (void)state;
    struct mint_settings s = settings();
    const char *why;
    s.issuer = NULL;
    assert_int_equal(mint_result(&s, es, "{\"client_id\":\"c\"}", &why), MINT_ERROR);
    s = settings();
    assert_int_equal(mint_result(&s, NULL, "{\"client_id\":\"c\"}", &why), MINT_ERROR);
    struct mint_out out;
    assert_int_equal(mint_jwt(&s, es, NULL, NULL, NOW, &out, &why), MINT_ERROR);
    json_t *arr = json_array();
    assert_int_equal(mint_jwt(&s, es, arr, NULL, NOW, &out, &why), MINT_ERROR);
    json_decref(arr);
}

static void test_parse_claims(void **state)
{
    (void)state;
    char **names;
    char err[128];
    assert_int_equal(mint_parse_claims("username, groups\tcustom,,", &names, err, sizeof(err)), 0);
    assert_string_equal(names[0], "username");
    assert_string_equal(names[1], "groups");
    assert_string_equal(names[2], "custom");
    assert_null(names[3]);
    mint_claims_free(names);
    assert_int_equal(mint_parse_claims("", &names, err, sizeof(err)), 0);
    assert_null(names[0]);
    mint_claims_free(names);
    static const char *const bad[] = {"iss", "username, aud", "active",      "token_type",
                                      "sub", "a\"b",          "caf\xc3\xa9", NULL};
    for (size_t i = 0; bad[i]; i++) {
        names = (char **)1;
        assert_int_equal(mint_parse_claims(bad[i], &names, err, sizeof(err)), -1);
        assert_null(names);
    }
    char many[2048] = "";
    for (int i = 0; i <= MINT_MAX_CLAIM_NAMES; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "c%d ", i);
    assert_int_equal(mint_parse_claims(many, &names, err, sizeof(err)), -1);
    char longname[MINT_MAX_CLAIM_NAME + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(mint_parse_claims(longname, &names, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc9068_shape),   cmocka_unit_test(test_jti_random_and_injectable),
        cmocka_unit_test(test_lifetime_bounds), cmocka_unit_test(test_audience_override),
        cmocka_unit_test(test_identity_claims), cmocka_unit_test(test_gateway_claims_win),
        cmocka_unit_test(test_size_bound),      cmocka_unit_test(test_missing_settings),
        cmocka_unit_test(test_parse_claims),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
