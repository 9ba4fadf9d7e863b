/* jws_parse_header(), jws_verify(), jws_payload(): tokens signed here with OpenSSL for every
 * algorithm, then tampered with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jws_verify.h"
#include "jwt.h"
#include "jwt_fixture.h"
#include "jws_sign_fixture.h"

static EVP_PKEY *rsa, *rsa_other, *p256, *p384, *ed;

static int setup(void **state)
{
    rsa = fx_keygen(JWK_RSA);
    rsa_other = fx_keygen(JWK_RSA);
    p256 = fx_keygen(JWK_EC_P256);
    p384 = fx_keygen(JWK_EC_P384);
    ed = fx_keygen(JWK_ED25519);
    return 0;
}

static int teardown(void **state)
{
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(rsa_other);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(ed);
    return 0;
}

/* A one-key set for k (the JWK without alg unless given). */
static struct jwks *set_of(EVP_PKEY *k, const char *alg)
{
    char doc[4200];
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", fx_jwk(k, "kid-1", alg, ""));
    struct jwks *s = jwks_parse(doc, strlen(doc), NULL);
    assert_non_null(s);
    return s;
}

static char *sign(EVP_PKEY *k, const char *alg)
{
    char hdr[128];
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"kid\":\"kid-1\",\"typ\":\"logout+jwt\"}", alg);
    return fx_sign(k, alg, hdr, "{\"iss\":\"https://idp\",\"sub\":\"alice\"}");
}

static int verify(const char *jws, const struct jwks *s, const char **why)
{
    struct jws_header h;
    if (jws_parse_header(jws, strlen(jws), &h, why) != 0)
        return -1;
    return jws_verify(jws, strlen(jws), h.alg, &s->keys[0], why);
}

static void roundtrip(EVP_PKEY *k, const char *alg)
{
    struct jwks *s = set_of(k, NULL);
    char *jws = sign(k, alg);
    const char *why = NULL;
    struct jws_header h;
    assert_int_equal(jws_parse_header(jws, strlen(jws), &h, &why), 0);
    assert_int_equal(h.alg, jose_alg_from_name(alg));
    assert_true(h.has_kid);
    assert_string_equal(h.kid, "kid-1");
    assert_true(h.has_typ);
    assert_string_equal(h.typ, "logout+jwt");
    if (verify(jws, s, &why) != 0)
        fail_msg("%s: %s", alg, why);
    json_t *p = jws_payload(jws, strlen(jws), &why);
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "sub")), "alice");
    json_decref(p);

    /* One flipped bit of the payload, of the signature, or of the header: refused. */
    char *dot1 = strchr(jws, '.'), *dot2 = strrchr(jws, '.');
    char saved = dot1[2];
    dot1[2] = saved == 'A' ? 'B' : 'A';
    assert_int_equal(verify(jws, s, &why), -1);
    assert_string_equal(why, "JWS signature is invalid");
    dot1[2] = saved;
    saved = dot2[5];
    dot2[5] = saved == 'A' ? 'B' : 'A';
    assert_int_equal(verify(jws, s, &why), -1);
    dot2[5] = saved;
    assert_int_equal(verify(jws, s, &why), 0);
    /* A truncated signature has the wrong length for the key. */
    jws[strlen(jws) - 4] = '\0';
    assert_int_equal(verify(jws, s, &why), -1);
    free(jws);
    jwks_free(s);
}

static void test_rs256(void **state)
{
    roundtrip(rsa, "RS256");
}

static void test_rs384_rs512_ps256(void **state)
{
    roundtrip(rsa, "RS384");
    roundtrip(rsa, "RS512");
    roundtrip(rsa, "PS256");
}

static void test_es256_es384(void **state)
{
    roundtrip(p256, "ES256");
    roundtrip(p384, "ES384");
}

static void test_eddsa(void **state)
{
    roundtrip(ed, "EdDSA");
}

static void test_wrong_key(void **state)
{
    struct jwks *other = set_of(rsa_other, NULL);
    char *jws = sign(rsa, "RS256");
    const char *why = NULL;
    assert_int_equal(verify(jws, other, &why), -1);
    assert_string_equal(why, "JWS signature is invalid");
    free(jws);
    jwks_free(other);
}

/* An RS256 signature is not accepted as PS256 and the other way round, and a header alg that
 * does not fit the key type (or the JWK's own alg) is refused before any cryptography. */
static void test_alg_key_mismatch(void **state)
{
    struct jwks *rs = set_of(rsa, NULL), *ec = set_of(p256, NULL), *only_ps = set_of(rsa, "PS256");
    char *jws = sign(rsa, "RS256");
    const char *why = NULL;
    assert_int_equal(jws_verify(jws, strlen(jws), JOSE_PS256, &rs->keys[0], &why), -1);
    assert_string_equal(why, "JWS signature is invalid");
    assert_int_equal(jws_verify(jws, strlen(jws), JOSE_ES256, &ec->keys[0], &why), -1);
    assert_string_equal(why, "JWS signature is invalid"); /* fits the key, but r||s is wrong */
    assert_int_equal(jws_verify(jws, strlen(jws), JOSE_RS256, &ec->keys[0], &why), -1);
    assert_string_equal(why, "JWS alg does not fit the key");
    assert_int_equal(jws_verify(jws, strlen(jws), JOSE_RS256, &only_ps->keys[0], &why), -1);
    assert_string_equal(why, "JWS alg does not fit the key");
    assert_int_equal(jws_verify(jws, strlen(jws), JOSE_RS256, NULL, &why), -1);
    free(jws);
    /* ES256 signed, but the header claims ES384 while the key is P-256. */
    jws = fx_sign(p256, "ES256", "{\"alg\":\"ES384\"}", "{}");
    assert_int_equal(verify(jws, ec, &why), -1);
    assert_string_equal(why, "JWS alg does not fit the key");
    free(jws);
    jwks_free(rs);
    jwks_free(ec);
    jwks_free(only_ps);
}

static void header_fails(const char *header, const char *expect)
{
    char *jws = make_jwt(header, "{}", "signature");
    struct jws_header h;
    const char *why = NULL;
    assert_int_equal(jws_parse_header(jws, strlen(jws), &h, &why), -1);
    if (expect)
        assert_string_equal(why, expect);
    free(jws);
}

static void test_refused_headers(void **state)
{
    const char *alg = "JWS alg is missing or not accepted (none and HS* never are)";
    header_fails("{\"alg\":\"none\"}", alg);
    header_fails("{\"alg\":\"HS256\"}", alg);
    header_fails("{\"alg\":\"HS512\",\"kid\":\"k\"}", alg);
    header_fails("{\"alg\":\"ES512\"}", alg);
    header_fails("{\"alg\":\"RSA-OAEP\",\"enc\":\"A256GCM\"}", alg);
    header_fails("{\"typ\":\"JWT\"}", alg);
    header_fails("{\"alg\":256}", alg);
    header_fails("{\"alg\":\"RS256\",\"crit\":[\"exp\"],\"exp\":1}",
                 "JWS has critical header parameters");
    header_fails("{\"alg\":\"RS256\",\"kid\":1}", "JWS kid or typ is not a usable string");
    header_fails("{\"alg\":\"RS256\",\"typ\":\"a\\u0000\"}", NULL); /* jansson refuses NUL */
    header_fails("{\"alg\":\"RS256\",\"alg\":\"none\"}",
                 "JWS header is not a base64url JSON object");
    header_fails("[\"RS256\"]", "JWS header is not a base64url JSON object");
    header_fails("not json", "JWS header is not a base64url JSON object");
}

static void test_alg_none_token_refused(void **state)
{
    /* The unsecured JWS of RFC 7515 appendix A.5 (empty signature) never gets through. */
    struct jwks *s = set_of(rsa, NULL);
    char *j = make_jwt("{\"alg\":\"none\"}", "{\"sub\":\"alice\"}", "");
    const char *why = NULL;
    assert_int_equal(verify(j, s, &why), -1);
    /* Even if a caller passed an alg itself, the empty signature is refused. */
    assert_int_equal(jws_verify(j, strlen(j), JOSE_RS256, &s->keys[0], &why), -1);
    free(j);
    jwks_free(s);
}

static void test_shapes(void **state)
{
    struct jws_header h;
    const char *why = NULL;
    const char *bad[] = {"", "a.b", "a.b.c.d", ".b.c", "a..c", "a.b.", "..", "a.b.c.", ".."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(jws_parse_header(bad[i], strlen(bad[i]), &h, &why), -1);
    assert_null(jws_payload("a.b", 3, &why));
    char *j = make_jwt("{\"alg\":\"RS256\"}", "[1]", "s");
    assert_null(jws_payload(j, strlen(j), &why));
    assert_string_equal(why, "JWS payload is not a base64url JSON object");
    free(j);
    /* Longer than JWS_MAX_LEN: refused before decoding. */
    size_t big = JWS_MAX_LEN + 1;
    char *huge = malloc(big + 1);
    memset(huge, 'A', big);
    huge[10] = '.';
    huge[20] = '.';
    huge[big] = '\0';
    assert_int_equal(jws_parse_header(huge, big, &h, &why), -1);
    assert_string_equal(why, "JWS too long");
    free(huge);
}

/* An ECDSA signature in DER (what OpenSSL emits) instead of JOSE r||s is refused. */
static void test_ecdsa_der_refused(void **state)
{
    struct jwks *s = set_of(p256, NULL);
    const char *hdr = "{\"alg\":\"ES256\"}";
    char *ok = fx_sign(p256, "ES256", hdr, "{}");
    char *dot = strrchr(ok, '.');
    unsigned char sig[200], der[200];
    long n = b64url_decode(dot + 1, strlen(dot + 1), sig);
    assert_int_equal(n, 64);
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
    unsigned char *p = der;
    int dl = i2d_ECDSA_SIG(es, &p);
    ECDSA_SIG_free(es);
    char *bad = malloc(strlen(ok) + 200);
    size_t prefix = (size_t)(dot - ok) + 1;
    memcpy(bad, ok, prefix);
    b64url_encode(der, (size_t)dl, bad + prefix);
    const char *why = NULL;
    assert_int_equal(verify(ok, s, &why), 0);
    assert_int_equal(verify(bad, s, &why), -1);
    free(ok);
    free(bad);
    jwks_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rs256),           cmocka_unit_test(test_rs384_rs512_ps256),
        cmocka_unit_test(test_es256_es384),     cmocka_unit_test(test_eddsa),
        cmocka_unit_test(test_wrong_key),       cmocka_unit_test(test_alg_key_mismatch),
        cmocka_unit_test(test_refused_headers), cmocka_unit_test(test_alg_none_token_refused),
        cmocka_unit_test(test_shapes),          cmocka_unit_test(test_ecdsa_der_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
