/* logout_token_validate(): Back-Channel Logout 1.0 section 2.6, with Logout Tokens signed here by
 * OpenSSL (RS256, ES256, EdDSA) the way the identity server signs them, and a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "logout_token.h"
#include "jwt_fixture.h"
#include "jws_sign_fixture.h"

#define ISS "https://idp.example"
#define CLIENT "gateway"
#define NOW INT64_C(1800000000)

static EVP_PKEY *rsa, *p256, *ed, *intruder;
static struct jwks *keys;
static int64_t now_s = NOW;

static int64_t fake_clock(void *ud)
{
    return *(int64_t *)ud;
}

static int setup(void **state)
{
    rsa = fx_keygen(JWK_RSA);
    p256 = fx_keygen(JWK_EC_P256);
    ed = fx_keygen(JWK_ED25519);
    intruder = fx_keygen(JWK_EC_P256);
    char a[4096], b[4096], c[4096], doc[12400];
    strcpy(a, fx_jwk(rsa, "rsa", NULL, "\"use\":\"sig\","));
    strcpy(b, fx_jwk(p256, "ec", "ES256", ""));
    strcpy(c, fx_jwk(ed, "ed", NULL, ""));
    snprintf(doc, sizeof(doc), "{\"keys\":[%s,%s,%s]}", a, b, c);
    keys = jwks_parse(doc, strlen(doc), NULL);
    assert_non_null(keys);
    return 0;
}

static int teardown(void **state)
{
    jwks_free(keys);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(intruder);
    return 0;
}

static struct logout_validator *validator(size_t cap)
{
    struct logout_config cfg = {
        .issuer = ISS, .client_id = CLIENT, .skew = 30, .max_age = 120, .replay_cap = cap};
    now_s = NOW;
    struct logout_validator *v = logout_validator_new(&cfg, fake_clock, &now_s);
    assert_non_null(v);
    return v;
}

/* The claims of a valid logout token; tests change or delete members. */
static json_t *claims(const char *jti)
{
    json_t *p = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:{s:{}}}", "iss", ISS, "aud", CLIENT,
                          "iat", (json_int_t)NOW, "jti", jti, "sub", "alice", "sid", "sess-1",
                          "events", LOGOUT_EVENT);
    assert_non_null(p);
    return p;
}

/* Signs the claims (consumed) with k under alg and kid. */
static char *token_with(EVP_PKEY *k, const char *alg, const char *kid, const char *typ, json_t *p)
{
    char hdr[256];
    int n = snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\"", alg);
    if (kid)
        n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, ",\"kid\":\"%s\"", kid);
    if (typ)
        n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, ",\"typ\":\"%s\"", typ);
    snprintf(hdr + n, sizeof(hdr) - (size_t)n, "}");
    char *payload = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    char *t = fx_sign(k, alg, hdr, payload);
    free(payload);
    return t;
}

static char *token(json_t *p)
{
    return token_with(p256, "ES256", "ec", "logout+jwt", p);
}

static enum logout_result check(struct logout_validator *v, char *tok, struct logout_request *r,
                                const char **why)
{
    enum logout_result res = logout_token_validate(v, keys, tok, strlen(tok), r, why);
    free(tok);
    return res;
}

/* Expects a 400 with the given reason, and nothing remembered or returned. */
static void refused(struct logout_validator *v, char *tok, const char *expect)
{
    struct logout_request r = {(char *)1, (char *)1};
    const char *why = NULL;
    size_t before = logout_replay_count(v);
    assert_int_equal(check(v, tok, &r, &why), LOGOUT_INVALID);
    assert_null(r.sub);
    assert_null(r.sid);
    assert_non_null(why);
    if (expect)
        assert_string_equal(why, expect);
    assert_int_equal(logout_replay_count(v), before);
}

static void accepted(struct logout_validator *v, char *tok, const char *sub, const char *sid)
{
    struct logout_request r;
    const char *why = NULL;
    if (check(v, tok, &r, &why) != LOGOUT_OK)
        fail_msg("refused: %s", why);
    if (sub)
        assert_string_equal(r.sub, sub);
    else
        assert_null(r.sub);
    if (sid)
        assert_string_equal(r.sid, sid);
    else
        assert_null(r.sid);
    logout_request_clear(&r);
}

static void test_valid_each_alg(void **state)
{
    struct logout_validator *v = validator(0);
    accepted(v, token_with(rsa, "RS256", "rsa", "logout+jwt", claims("j1")), "alice", "sess-1");
    accepted(v, token_with(p256, "ES256", "ec", "logout+jwt", claims("j2")), "alice", "sess-1");
    accepted(v, token_with(ed, "EdDSA", "ed", "logout+jwt", claims("j3")), "alice", "sess-1");
    /* The spec also allows a plain JWT (typ JWT or none) and the application/ prefix. */
    accepted(v, token_with(rsa, "PS256", "rsa", "JWT", claims("j4")), "alice", "sess-1");
    accepted(v, token_with(ed, "EdDSA", "ed", NULL, claims("j5")), "alice", "sess-1");
    accepted(v, token_with(p256, "ES256", "ec", "application/logout+JWT", claims("j6")), "alice",
             "sess-1");
    assert_int_equal(logout_replay_count(v), 6);
    logout_validator_free(v);
}

static void test_sub_or_sid(void **state)
{
    struct logout_validator *v = validator(0);
    json_t *p = claims("a");
    json_object_del(p, "sid");
    accepted(v, token(p), "alice", NULL);
    p = claims("b");
    json_object_del(p, "sub");
    accepted(v, token(p), NULL, "sess-1");
    p = claims("c");
    json_object_del(p, "sub");
    json_object_del(p, "sid");
    refused(v, token(p), "logout token has neither sub nor sid");
    p = claims("d");
    json_object_set_new(p, "sub", json_integer(7));
    refused(v, token(p), "logout token sub or sid is not a usable string");
    p = claims("e");
    json_object_set_new(p, "sid", json_string(""));
    refused(v, token(p), "logout token sub or sid is not a usable string");
    logout_validator_free(v);
}

static void test_bad_signature(void **state)
{
    struct logout_validator *v = validator(0);
    /* Signed by another key that claims the IdP's kid. */
    refused(v, token_with(intruder, "ES256", "ec", "logout+jwt", claims("x")),
            "JWS signature is invalid");
    /* A valid token with one payload character changed. */
    char *t = token(claims("y"));
    char *dot = strchr(t, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    refused(v, t, NULL);
    logout_validator_free(v);
}

static void test_alg_none_and_hs256(void **state)
{
    struct logout_validator *v = validator(0);
    json_t *c = claims("n");
    char *payload = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    refused(v, make_jwt("{\"alg\":\"none\"}", payload, ""), NULL);
    refused(v, make_jwt("{\"alg\":\"none\",\"kid\":\"ec\"}", payload, "x"),
            "JWS alg is missing or not accepted (none and HS* never are)");
    refused(v, make_jwt("{\"alg\":\"HS256\",\"kid\":\"rsa\"}", payload, "an HMAC"),
            "JWS alg is missing or not accepted (none and HS* never are)");
    free(payload);
    logout_validator_free(v);
}

static void test_iss_aud(void **state)
{
    struct logout_validator *v = validator(0);
    json_t *p = claims("i1");
    json_object_set_new(p, "iss", json_string("https://evil.example"));
    refused(v, token(p), "logout token iss is not the configured issuer");
    p = claims("i2");
    json_object_del(p, "iss");
    refused(v, token(p), "logout token iss is not the configured issuer");
    p = claims("a1");
    json_object_set_new(p, "aud", json_string("another-client"));
    refused(v, token(p), "logout token aud does not contain our client id");
    p = claims("a2");
    json_object_set_new(p, "aud", json_pack("[s,i]", "other", 1));
    refused(v, token(p), "logout token aud does not contain our client id");
    p = claims("a3");
    json_object_del(p, "aud");
    refused(v, token(p), "logout token aud does not contain our client id");
    p = claims("a4");
    json_object_set_new(p, "aud", json_pack("[s,s]", "other", CLIENT));
    accepted(v, token(p), "alice", "sess-1");
    logout_validator_free(v);
}

static void test_times(void **state)
{
    struct logout_validator *v = validator(0);
    json_t *p = claims("t1");
    json_object_del(p, "iat");
    refused(v, token(p), "logout token iat is missing or not a NumericDate");
    p = claims("t2");
    json_object_set_new(p, "iat", json_string("now"));
    refused(v, token(p), "logout token iat is missing or not a NumericDate");
    p = claims("t3");
    json_object_set_new(p, "iat", json_integer(NOW + 31));
    refused(v, token(p), "logout token iat is in the future");
    p = claims("t4");
    json_object_set_new(p, "iat", json_integer(NOW - 151)); /* max_age 120 + skew 30 */
    refused(v, token(p), "logout token is too old");
    p = claims("t5");
    json_object_set_new(p, "exp", json_integer(NOW - 30));
    refused(v, token(p), "logout token has expired");
    p = claims("t6");
    json_object_set_new(p, "exp", json_string("later"));
    refused(v, token(p), "logout token exp is not a NumericDate");
    /* Within the skew on both sides, and a fractional iat. */
    p = claims("t7");
    json_object_set_new(p, "iat", json_integer(NOW + 30));
    accepted(v, token(p), "alice", "sess-1");
    p = claims("t8");
    json_object_set_new(p, "iat", json_real((double)NOW - 150 + 0.5));
    json_object_set_new(p, "exp", json_integer(NOW - 29));
    accepted(v, token(p), "alice", "sess-1");
    logout_validator_free(v);
}

static void test_events_and_nonce(void **state)
{
    struct logout_validator *v = validator(0);
    json_t *p = claims("e1");
    json_object_del(p, "events");
    refused(v, token(p), "logout token has no events object");
    p = claims("e2");
    json_object_set_new(p, "events", json_pack("{s:{}}", "http://example/other-event"));
    refused(v, token(p), "logout token events lacks the back-channel logout event");
    p = claims("e3");
    json_object_set_new(p, "events", json_pack("{s:b}", LOGOUT_EVENT, 1));
    refused(v, token(p), "logout token events lacks the back-channel logout event");
    p = claims("e4");
    json_object_set_new(p, "events", json_pack("[s]", LOGOUT_EVENT));
    refused(v, token(p), "logout token has no events object");
    p = claims("n1");
    json_object_set_new(p, "nonce", json_string("abc"));
    refused(v, token(p), "logout token must not contain a nonce");
    /* An ID token or access token typ is not a logout token. */
    refused(v, token_with(p256, "ES256", "ec", "at+jwt", claims("ty")),
            "logout token typ is neither logout+jwt nor JWT");
    logout_validator_free(v);
}

static void test_jti_replay(void **state)
{
    struct logout_validator *v = validator(0);
    json_t *p = claims("j");
    json_object_del(p, "jti");
    refused(v, token(p), "logout token jti is missing or not a usable string");
    char *t = token(claims("once"));
    char *copy = strdup(t);
    char *copy2 = strdup(t);
    accepted(v, t, "alice", "sess-1");
    refused(v, copy, "logout token jti was already used");
    /* The same jti in a token signed by another algorithm is still a replay. */
    refused(v, token_with(ed, "EdDSA", "ed", NULL, claims("once")),
            "logout token jti was already used");
    logout_validator_reset(v);
    assert_int_equal(logout_replay_count(v), 0);
    accepted(v, copy2, "alice", "sess-1");
    logout_validator_free(v);
}

/* A full replay cache drops the entry whose window closes first, and keeps working. */
static void test_replay_cache_bounded(void **state)
{
    struct logout_validator *v = validator(2);
    json_t *p = claims("old");
    json_object_set_new(p, "iat", json_integer(NOW - 100));
    accepted(v, token(p), "alice", "sess-1");
    accepted(v, token(claims("new1")), "alice", "sess-1");
    accepted(v, token(claims("new2")), "alice", "sess-1");
    assert_int_equal(logout_replay_count(v), 2);
    refused(v, token(claims("new1")), "logout token jti was already used");
    refused(v, token(claims("new2")), "logout token jti was already used");
    /* Once a token's window has closed its slot is reused (and the token is too old anyway). */
    now_s = NOW + 151;
    assert_int_equal(logout_replay_count(v), 0);
    refused(v, token(claims("new1")), "logout token is too old");
    logout_validator_free(v);
}

static void test_unknown_kid(void **state)
{
    struct logout_validator *v = validator(0);
    struct logout_request r;
    const char *why = NULL;
    char *t = token_with(p256, "ES256", "rotated-key", "logout+jwt", claims("k"));
    assert_int_equal(check(v, t, &r, &why), LOGOUT_UNKNOWN_KEY);
    assert_null(r.sub);
    /* A kid of a known key that does not fit the alg is a plain 400. */
    t = token_with(p256, "ES256", "rsa", "logout+jwt", claims("k2"));
    assert_int_equal(check(v, t, &r, &why), LOGOUT_INVALID);
    logout_validator_free(v);
}

static void test_garbage(void **state)
{
    struct logout_validator *v = validator(0);
    const char *bad[] = {"", "x", "a.b.c", "....", "eyJhbGciOiJFUzI1NiJ9.e30."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct logout_request r;
        const char *why = NULL;
        assert_int_equal(logout_token_validate(v, keys, bad[i], strlen(bad[i]), &r, &why),
                         LOGOUT_INVALID);
        assert_non_null(why);
    }
    struct logout_config none = {.issuer = "", .client_id = CLIENT};
    assert_null(logout_validator_new(&none, NULL, NULL));
    logout_validator_free(v);
    logout_validator_free(NULL);
}

static void form_ok(const char *body, const char *expect)
{
    char *tok = NULL;
    const char *why = NULL;
    long n = logout_form_token(body, strlen(body), &tok, &why);
    if (n < 0)
        fail_msg("%s: %s", body, why);
    assert_int_equal(n, strlen(expect));
    assert_string_equal(tok, expect);
    free(tok);
}

static void form_bad(const char *body, const char *expect)
{
    char *tok = (char *)1;
    const char *why = NULL;
    assert_int_equal(logout_form_token(body, strlen(body), &tok, &why), -1);
    assert_null(tok);
    assert_string_equal(why, expect);
}

static void test_form_body(void **state)
{
    form_ok("logout_token=eyJ.eyJ.sig", "eyJ.eyJ.sig");
    form_ok("a=1&logout_token=x.y.z&b=2", "x.y.z");
    form_ok("logout_token=a%2Eb%2ec+d", "a.b.c d");
    form_ok("xlogout_token=1&logout_token=t", "t");
    form_bad("", "the body has no logout_token field");
    form_bad("token=x.y.z", "the body has no logout_token field");
    form_bad("logout_token=", "the body has no logout_token field");
    form_bad("logout_token", "the body has no logout_token field");
    form_bad("logout_token=a&logout_token=b", "logout_token is given twice");
    form_bad("logout_token=a%2", "logout_token is not form-urlencoded");
    form_bad("logout_token=a%zz", "logout_token is not form-urlencoded");
    form_bad("logout_token=a%00b", "logout_token is not form-urlencoded");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_each_alg),
        cmocka_unit_test(test_sub_or_sid),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_alg_none_and_hs256),
        cmocka_unit_test(test_iss_aud),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_events_and_nonce),
        cmocka_unit_test(test_jti_replay),
        cmocka_unit_test(test_replay_cache_bounded),
        cmocka_unit_test(test_unknown_kid),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_form_body),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
