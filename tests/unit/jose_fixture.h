/* Keys and signature checks for the unit tests of jws.c, keyring.c, mint.c and finish.c. The
 * checks use OpenSSL directly and rebuild the public key from the exported JWK, so a test passes
 * only if what the agent publishes verifies what it signs. Include after <cmocka.h>. */
#ifndef PTA_TEST_JOSE_FIXTURE_H
#define PTA_TEST_JOSE_FIXTURE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "jws.h"
#include "jwt.h"
#include "memdup.h"

/* A fresh private key as PEM (PKCS#8); "EC" (P-256), "RSA" (bits), "ED25519". free() it. */
static inline char *fx_keygen_pem(const char *type, int bits)
{
    EVP_PKEY *k = NULL;
    if (strcmp(type, "RSA") == 0)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    else if (strcmp(type, "EC") == 0)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", bits == 384 ? "P-384" : "P-256");
    else
        k = EVP_PKEY_Q_keygen(NULL, NULL, type);
    assert_non_null(k);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *pem = mem_strdup(data, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(k);
    return pem;
}

static inline struct jws_key *fx_key(const char *type, int bits)
{
    char *pem = fx_keygen_pem(type, bits);
    char err[200];
    struct jws_key *k = jws_key_from_pem(pem, strlen(pem), false, err, sizeof(err));
    free(pem);
    assert_non_null(k);
    return k;
}

/* Decodes a base64url JWK member into a fresh buffer. */
static inline uint8_t *fx_b64(const json_t *jwk, const char *name, size_t *len)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    assert_non_null(s);
    uint8_t *out = malloc(strlen(s) * 3 / 4 + 3);
    long n = b64url_decode(s, strlen(s), out);
    assert_true(n > 0);
    *len = (size_t)n;
    return out;
}

static inline EVP_PKEY *fx_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pk = NULL;
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return pk;
}

/* The public key rebuilt from a JWK alone. */
static inline EVP_PKEY *fx_pkey_from_jwk(const json_t *jwk)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    assert_non_null(kty);
    size_t a, b;
    if (strcmp(kty, "OKP") == 0) {
        uint8_t *x = fx_b64(jwk, "x", &a);
        EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, a);
        free(x);
        return pk;
    }
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (strcmp(kty, "RSA") == 0) {
        uint8_t *n = fx_b64(jwk, "n", &a), *e = fx_b64(jwk, "e", &b);
        BIGNUM *bn = BN_bin2bn(n, (int)a, NULL), *be = BN_bin2bn(e, (int)b, NULL);
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn);
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be);
        EVP_PKEY *pk = fx_fromdata("RSA", bld);
        BN_free(bn);
        BN_free(be);
        free(n);
        free(e);
        return pk;
    }
    assert_string_equal(kty, "EC");
    uint8_t *x = fx_b64(jwk, "x", &a), *y = fx_b64(jwk, "y", &b);
    assert_int_equal(a, 32);
    assert_int_equal(b, 32);
    uint8_t pt[65] = {0x04};
    memcpy(pt + 1, x, 32);
    memcpy(pt + 33, y, 32);
    free(x);
    free(y);
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt));
    return fx_fromdata("EC", bld);
}

/* Verifies a raw JOSE signature (r||s for ES256) over msg with pk. Returns 1 when valid. */
static inline int fx_verify(EVP_PKEY *pk, const char *alg, const void *msg, size_t len,
                            const uint8_t *sig, size_t sig_len)
{
    uint8_t der[128];
    const uint8_t *s = sig;
    size_t sl = sig_len;
    if (strcmp(alg, "ES256") == 0) {
        if (sig_len != 64)
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
        uint8_t *p = der;
        sl = (size_t)i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        s = der;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const EVP_MD *md = strcmp(alg, "EdDSA") == 0 ? NULL : EVP_sha256();
    int ok = EVP_DigestVerifyInit(ctx, NULL, md, NULL, pk) == 1 &&
             EVP_DigestVerify(ctx, s, sl, msg, len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* Verifies a compact JWS against a JWK; returns the decoded header and payload (*header,
 * *payload, new references) when the signature is valid, else fails the test. */
static inline void fx_verify_jws(const char *jws, const json_t *jwk, json_t **header,
                                 json_t **payload)
{
    const char *d1 = strchr(jws, '.');
    assert_non_null(d1);
    const char *d2 = strchr(d1 + 1, '.');
    assert_non_null(d2);
    assert_null(strchr(d2 + 1, '.'));
    size_t hl = (size_t)(d1 - jws), pl = (size_t)(d2 - d1 - 1), sl = strlen(d2 + 1);
    uint8_t *h = malloc(hl), *p = malloc(pl), *s = malloc(sl + 3);
    long hn = b64url_decode(jws, hl, h), pn = b64url_decode(d1 + 1, pl, p);
    long sn = b64url_decode(d2 + 1, sl, s);
    assert_true(hn > 0 && pn > 0 && sn > 0);
    *header = json_loadb((const char *)h, (size_t)hn, 0, NULL);
    *payload = json_loadb((const char *)p, (size_t)pn, 0, NULL);
    assert_non_null(*header);
    assert_non_null(*payload);
    const char *alg = json_string_value(json_object_get(*header, "alg"));
    assert_non_null(alg);
    assert_string_equal(alg, json_string_value(json_object_get(jwk, "alg")));
    EVP_PKEY *pk = fx_pkey_from_jwk(jwk);
    assert_non_null(pk);
    assert_int_equal(fx_verify(pk, alg, jws, (size_t)(d2 - jws), s, (size_t)sn), 1);
    EVP_PKEY_free(pk);
    free(h);
    free(p);
    free(s);
}

#endif
