/* jwks_parse() and jwks_select(): JWKS documents built from real OpenSSL keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jwks.h"
#include "jwt_fixture.h"
#include "jws_sign_fixture.h"

static EVP_PKEY *rsa, *p256, *p384, *ed;

static int setup(void **state)
{
    rsa = fx_keygen(JWK_RSA);
    p256 = fx_keygen(JWK_EC_P256);
    p384 = fx_keygen(JWK_EC_P384);
    ed = fx_keygen(JWK_ED25519);
    return 0;
}

static int teardown(void **state)
{
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(ed);
    return 0;
}

/* {"keys":[k1,k2,...]} from JWK texts (each copied, since fx_jwk reuses its buffer). */
static char *doc_of(int n, const char **jwks)
{
    size_t cap = 32;
    for (int i = 0; i < n; i++)
        cap += strlen(jwks[i]) + 1;
    char *d = malloc(cap);
    assert_non_null(d);
    strcpy(d, "{\"keys\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(d, ",");
        strcat(d, jwks[i]);
    }
    strcat(d, "]}");
    return d;
}

static struct jwks *parse1(const char *jwk, const char **why)
{
    char *d = doc_of(1, &jwk);
    struct jwks *s = jwks_parse(d, strlen(d), why);
    free(d);
    return s;
}

static void test_each_key_type(void **state)
{
    struct {
        EVP_PKEY *k;
        enum jwk_type t;
    } cases[] = {{rsa, JWK_RSA}, {p256, JWK_EC_P256}, {p384, JWK_EC_P384}, {ed, JWK_ED25519}};
    for (size_t i = 0; i < 4; i++) {
        const char *why = NULL;
        struct jwks *s = parse1(fx_jwk(cases[i].k, "k1", NULL, "\"use\":\"sig\","), &why);
        if (!s)
            fail_msg("key %zu: %s", i, why);
        assert_int_equal(s->n, 1);
        assert_int_equal(s->keys[0].type, cases[i].t);
        assert_string_equal(s->keys[0].kid, "k1");
        assert_true(s->keys[0].has_kid);
        assert_int_equal(s->keys[0].alg, JOSE_ALG_UNSUPPORTED);
        /* The key built from the JWK is the same public key. */
        assert_int_equal(EVP_PKEY_eq(s->keys[0].pkey, cases[i].k), 1);
        jwks_free(s);
    }
}

static void test_alg_names(void **state)
{
    assert_int_equal(jose_alg_from_name("RS256"), JOSE_RS256);
    assert_int_equal(jose_alg_from_name("EdDSA"), JOSE_EDDSA);
    assert_int_equal(jose_alg_from_name("none"), JOSE_ALG_UNSUPPORTED);
    assert_int_equal(jose_alg_from_name("HS256"), JOSE_ALG_UNSUPPORTED);
    assert_int_equal(jose_alg_from_name("rs256"), JOSE_ALG_UNSUPPORTED);
    assert_int_equal(jose_alg_from_name(NULL), JOSE_ALG_UNSUPPORTED);
    assert_string_equal(jose_alg_name(JOSE_ES384), "ES384");
    assert_true(jose_alg_fits(JOSE_PS256, JWK_RSA));
    assert_false(jose_alg_fits(JOSE_ES256, JWK_EC_P384));
    assert_false(jose_alg_fits(JOSE_RS256, JWK_EC_P256));
    assert_false(jose_alg_fits(JOSE_ALG_UNSUPPORTED, JWK_RSA));
}

/* Keys that must not be used are skipped, the usable one stays. */
static void test_skipped_keys(void **state)
{
    char good[4096], enc[4096], priv[4096], badalg[4096], misfit[4096], noverify[4096];
    strcpy(good, fx_jwk(p256, "good", "ES256", ""));
    strcpy(enc, fx_jwk(rsa, "enc", NULL, "\"use\":\"enc\","));
    strcpy(priv, fx_jwk(p256, "priv", NULL, "\"d\":\"AAAA\","));
    strcpy(badalg, fx_jwk(rsa, "hs", "HS256", ""));
    strcpy(misfit, fx_jwk(rsa, "misfit", "ES256", ""));
    strcpy(noverify, fx_jwk(ed, "nov", NULL, "\"key_ops\":[\"sign\"],"));
    const char *keys[] = {enc,
                          priv,
                          badalg,
                          misfit,
                          noverify,
                          "{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}",
                          "{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AA\",\"y\":\"AA\"}",
                          "{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"AA\"}",
                          "\"not an object\"",
                          good};
    char *d = doc_of(10, keys);
    const char *why = NULL;
    struct jwks *s = jwks_parse(d, strlen(d), &why);
    free(d);
    assert_non_null(s);
    assert_int_equal(s->n, 1);
    assert_int_equal(s->skipped, 9);
    assert_string_equal(s->keys[0].kid, "good");
    assert_int_equal(s->keys[0].alg, JOSE_ES256);
    jwks_free(s);
}

static void test_weak_or_broken_keys(void **state)
{
    const char *why = NULL;
    EVP_PKEY *small = EVP_RSA_gen(1024);
    assert_non_null(small);
    assert_null(parse1(fx_jwk(small, "small", NULL, ""), &why));
    assert_string_equal(why, "JWKS has no usable signature key");
    EVP_PKEY_free(small);

    /* A P-256 point with y changed is not on the curve. */
    char jwk[4096];
    strcpy(jwk, fx_jwk(p256, "k", NULL, ""));
    char *y = strstr(jwk, "\"y\":\"") + 5;
    y[3] = y[3] == 'A' ? 'B' : 'A';
    assert_null(parse1(jwk, &why));

    /* A coordinate of the wrong size (RFC 7518 requires the full size). */
    assert_null(parse1("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}", &why));
    /* Ed25519 key of 31 bytes, RSA with even exponent, bad base64url. */
    assert_null(parse1("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":"
                       "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
                       &why));
    strcpy(jwk, fx_jwk(rsa, "k", NULL, ""));
    char *e = strstr(jwk, "\"e\":\"") + 5;
    memcpy(e, "AQAC", 4); /* 65538 */
    assert_null(parse1(jwk, &why));
    assert_null(parse1("{\"kty\":\"RSA\",\"n\":\"!!!!\",\"e\":\"AQAB\"}", &why));
    /* kid not a string / with NUL. */
    strcpy(jwk, fx_jwk(ed, NULL, NULL, "\"kid\":7,"));
    assert_null(parse1(jwk, &why));
    strcpy(jwk, fx_jwk(ed, NULL, NULL, "\"kid\":\"a\\u0000b\","));
    assert_null(parse1(jwk, &why));
}

static void test_bad_documents(void **state)
{
    const char *why = NULL;
    assert_null(jwks_parse("", 0, &why));
    assert_null(jwks_parse("{", 1, &why));
    assert_string_equal(why, "JWKS is not a JSON object with a keys array");
    assert_null(jwks_parse("[]", 2, &why));
    assert_null(jwks_parse("{\"keys\":{}}", 11, &why));
    assert_null(jwks_parse("{\"keys\":[]}", 11, &why));
    assert_string_equal(why, "JWKS has no usable signature key");
    /* Duplicate members are refused (two "keys" would be read differently by others). */
    assert_null(jwks_parse("{\"keys\":[],\"keys\":[]}", 21, &why));

    char jwk[4096];
    strcpy(jwk, fx_jwk(ed, "k", NULL, ""));
    const char *many[JWKS_MAX_KEYS + 1];
    for (int i = 0; i <= JWKS_MAX_KEYS; i++)
        many[i] = jwk;
    char *d = doc_of(JWKS_MAX_KEYS + 1, many);
    assert_null(jwks_parse(d, strlen(d), &why));
    assert_string_equal(why, "JWKS has too many keys");
    struct jwks *s = jwks_parse(d, strlen(d) - strlen(jwk) - 3, &why); /* not JSON any more */
    assert_null(s);
    free(d);
    d = doc_of(JWKS_MAX_KEYS, many);
    s = jwks_parse(d, strlen(d), &why);
    assert_non_null(s);
    assert_int_equal(s->n, JWKS_MAX_KEYS);
    jwks_free(s);
    free(d);

    static char huge[JWKS_MAX_DOC + 2];
    memset(huge, ' ', sizeof(huge));
    assert_null(jwks_parse(huge, sizeof(huge), &why));
    assert_string_equal(why, "JWKS document empty or too large");
}

static struct jwks *rotation_set(void)
{
    char a[4096], b[4096], c[4096], d[4096];
    strcpy(a, fx_jwk(rsa, "rsa-1", NULL, ""));
    strcpy(b, fx_jwk(p256, "ec-1", NULL, ""));
    strcpy(c, fx_jwk(p384, "ec-2", "ES384", ""));
    strcpy(d, fx_jwk(ed, "ed-1", NULL, ""));
    const char *keys[] = {a, b, c, d};
    char *doc = doc_of(4, keys);
    struct jwks *s = jwks_parse(doc, strlen(doc), NULL);
    free(doc);
    assert_non_null(s);
    assert_int_equal(s->n, 4);
    return s;
}

static void test_select(void **state)
{
    struct jwks *s = rotation_set();
    bool unknown = true;
    const char *why = NULL;
    const struct jwk *k = jwks_select(s, "ec-1", JOSE_ES256, &unknown, &why);
    assert_non_null(k);
    assert_string_equal(k->kid, "ec-1");
    assert_false(unknown);
    /* The kid exists but the alg does not fit it: no refetch, no other key tried. */
    assert_null(jwks_select(s, "ec-1", JOSE_RS256, &unknown, &why));
    assert_false(unknown);
    assert_string_equal(why, "the key with the JWS kid does not fit its alg");
    /* Unknown kid: the refetch signal. */
    assert_null(jwks_select(s, "rsa-2", JOSE_RS256, &unknown, &why));
    assert_true(unknown);
    /* No kid: the only fitting key. */
    k = jwks_select(s, NULL, JOSE_PS256, &unknown, &why);
    assert_non_null(k);
    assert_string_equal(k->kid, "rsa-1");
    k = jwks_select(s, NULL, JOSE_EDDSA, NULL, NULL);
    assert_non_null(k);
    assert_string_equal(k->kid, "ed-1");
    jwks_free(s);

    /* No kid and two keys of the type: refuse rather than guess. */
    char a[4096], b[4096];
    strcpy(a, fx_jwk(p256, "one", NULL, ""));
    strcpy(b, fx_jwk(p256, "two", NULL, ""));
    const char *keys[] = {a, b};
    char *doc = doc_of(2, keys);
    s = jwks_parse(doc, strlen(doc), NULL);
    free(doc);
    assert_null(jwks_select(s, NULL, JOSE_ES256, &unknown, &why));
    assert_string_equal(why, "JWS has no kid and several keys fit its alg");
    assert_false(unknown);
    /* No kid and no key of the type: a refetch may bring one. */
    assert_null(jwks_select(s, NULL, JOSE_EDDSA, &unknown, &why));
    assert_true(unknown);
    jwks_free(s);
}

/* A JWK's own alg restricts it: an ES384-only key is not used for another alg. */
static void test_select_jwk_alg(void **state)
{
    char a[4096];
    strcpy(a, fx_jwk(rsa, "r", "PS256", ""));
    const char *keys[] = {a};
    char *doc = doc_of(1, keys);
    struct jwks *s = jwks_parse(doc, strlen(doc), NULL);
    free(doc);
    assert_non_null(jwks_select(s, "r", JOSE_PS256, NULL, NULL));
    assert_null(jwks_select(s, "r", JOSE_RS256, NULL, NULL));
    assert_null(jwks_select(s, NULL, JOSE_RS256, NULL, NULL));
    jwks_free(s);
    jwks_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_key_type),  cmocka_unit_test(test_alg_names),
        cmocka_unit_test(test_skipped_keys),   cmocka_unit_test(test_weak_or_broken_keys),
        cmocka_unit_test(test_bad_documents),  cmocka_unit_test(test_select),
        cmocka_unit_test(test_select_jwk_alg),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
