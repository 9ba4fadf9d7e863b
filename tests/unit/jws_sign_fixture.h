/* Keys, JWKs and signed compact JWS for the unit tests of jwks.c, jws_verify.c and logout_token.c,
 * made with OpenSSL the way an identity server would. Include after <cmocka.h> and jwt_fixture.h.
 */
#ifndef PTA_TEST_JWS_SIGN_FIXTURE_H
#define PTA_TEST_JWS_SIGN_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "jwks.h"

static inline EVP_PKEY *fx_keygen(enum jwk_type t)
{
    EVP_PKEY *k = NULL;
    switch (t) {
    case JWK_RSA:
        k = EVP_RSA_gen(2048);
        break;
    case JWK_EC_P256:
        k = EVP_EC_gen("P-256");
        break;
    case JWK_EC_P384:
        k = EVP_EC_gen("P-384");
        break;
    case JWK_ED25519:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        break;
    }
    assert_non_null(k);
    return k;
}

/* base64url of a big number, left-padded with zeros to pad bytes (0: minimal). */
static inline void fx_bn_b64(EVP_PKEY *k, const char *param, int pad, char *out)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    assert_true(n > 0);
    b64url_encode(buf, (size_t)n, out);
    BN_free(bn);
}

/* The public JWK of k as JSON text (static buffer: use it before the next call). extra is
 * inserted verbatim (e.g. "\"use\":\"sig\","), or "". kid and alg may be NULL. */
static inline const char *fx_jwk(EVP_PKEY *k, const char *kid, const char *alg, const char *extra)
{
    static char out[4096];
    char a[1400], b[200], kidm[300] = "", algm[64] = "";
    if (kid)
        snprintf(kidm, sizeof(kidm), "\"kid\":\"%s\",", kid);
    if (alg)
        snprintf(algm, sizeof(algm), "\"alg\":\"%s\",", alg);
    if (EVP_PKEY_is_a(k, "RSA")) {
        fx_bn_b64(k, OSSL_PKEY_PARAM_RSA_N, 0, a);
        fx_bn_b64(k, OSSL_PKEY_PARAM_RSA_E, 0, b);
        snprintf(out, sizeof(out), "{%s%s%s\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", extra, kidm,
                 algm, a, b);
    } else if (EVP_PKEY_is_a(k, "EC")) {
        int bits = EVP_PKEY_get_bits(k);
        fx_bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, bits / 8, a);
        fx_bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, bits / 8, b);
        snprintf(out, sizeof(out),
                 "{%s%s%s\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}", extra, kidm,
                 algm, bits == 256 ? "P-256" : "P-384", a, b);
    } else {
        unsigned char raw[32];
        size_t len = sizeof(raw);
        assert_int_equal(EVP_PKEY_get_raw_public_key(k, raw, &len), 1);
        b64url_encode(raw, len, a);
        snprintf(out, sizeof(out), "{%s%s%s\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}",
                 extra, kidm, algm, a);
    }
    return out;
}

/* Converts a DER ECDSA signature to JOSE's r || s of clen bytes each. */
static inline size_t fx_der_to_jose(const unsigned char *der, size_t len, size_t clen,
                                    unsigned char *out)
{
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &der, (long)len);
    assert_non_null(s);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(s), out, (int)clen), (int)clen);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(s), out + clen, (int)clen), (int)clen);
    ECDSA_SIG_free(s);
    return 2 * clen;
}

static inline const EVP_MD *fx_md(const char *alg)
{
    if (strcmp(alg, "EdDSA") == 0)
        return NULL;
    if (strstr(alg, "384"))
        return EVP_sha384();
    if (strstr(alg, "512"))
        return EVP_sha512();
    return EVP_sha256();
}

/* header.payload.signature, signed with k under alg; free() the result. */
static inline char *fx_sign(EVP_PKEY *k, const char *alg, const char *header, const char *payload)
{
    size_t cap = (strlen(header) + strlen(payload)) * 2 + 2048;
    char *j = malloc(cap);
    assert_non_null(j);
    size_t o = b64url_encode(header, strlen(header), j);
    j[o++] = '.';
    o += b64url_encode(payload, strlen(payload), j + o);
    unsigned char sig[1024], jose[200];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *p = NULL;
    assert_int_equal(EVP_DigestSignInit(m, &p, fx_md(alg), NULL, k), 1);
    if (strncmp(alg, "PS", 2) == 0) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(p, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(p, RSA_PSS_SALTLEN_DIGEST), 1);
    }
    assert_int_equal(EVP_DigestSign(m, sig, &siglen, (unsigned char *)j, o), 1);
    EVP_MD_CTX_free(m);
    const unsigned char *s = sig;
    if (strncmp(alg, "ES", 2) == 0) {
        siglen = fx_der_to_jose(sig, siglen, EVP_PKEY_get_bits(k) == 256 ? 32 : 48, jose);
        s = jose;
    }
    j[o++] = '.';
    b64url_encode(s, siglen, j + o);
    return j;
}

#endif
