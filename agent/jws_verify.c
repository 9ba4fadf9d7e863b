/* JWS verification: see jws_verify.h.
 *
 * The signing input is the ASCII of "header.payload" exactly as received (RFC 7515 section 5.2),
 * so nothing is re-encoded. The algorithm is fixed by the header but must fit the key that the
 * JWKS holds for it: that check is what stops the classic confusions (an RSA public key used as an
 * HMAC secret, an ES256 token checked with an RSA key). */
#include "jws_verify.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>

#include "jwt.h"

#define MAX_SIG_BYTES (JWKS_RSA_MAX_BITS / 8)

/* Positions of the two dots; false unless there are exactly three non-empty parts. */
static bool split(const char *jws, size_t len, size_t d[2])
{
    int found = 0;
    for (size_t i = 0; i < len; i++) {
        if (jws[i] != '.')
            continue;
        if (found == 2)
            return false;
        d[found++] = i;
    }
    return found == 2 && d[0] > 0 && d[1] > d[0] + 1 && d[1] + 1 < len;
}

static bool shape_ok(const char *jws, size_t len, size_t d[2], const char **why)
{
    if (len == 0 || len > JWS_MAX_LEN) {
        *why = len ? "JWS too long" : "JWS empty";
        return false;
    }
    if (!split(jws, len, d)) {
        *why = "JWS is not three non-empty dot-separated parts";
        return false;
    }
    return true;
}

static json_t *decode_object(const char *p, size_t len)
{
    uint8_t *raw = malloc(len * 3 / 4 + 3);
    long n = raw ? b64url_decode(p, len, raw) : -1;
    json_t *j =
        n >= 0 ? json_loadb((const char *)raw, (size_t)n, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(raw);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Copies an optional string member (no NUL inside, at most cap bytes) into out. Returns 1 when
 * copied, 0 when absent, -1 when unusable. */
static int copy_member(json_t *obj, const char *name, char *out, size_t cap)
{
    json_t *v = json_object_get(obj, name);
    if (!v)
        return 0;
    if (!json_is_string(v))
        return -1;
    size_t len = json_string_length(v);
    if (len > cap || strlen(json_string_value(v)) != len)
        return -1;
    memcpy(out, json_string_value(v), len + 1);
    return 1;
}

static int read_header(json_t *hdr, struct jws_header *h, const char **why)
{
    json_t *alg = json_object_get(hdr, "alg");
    h->alg =
        json_is_string(alg) ? jose_alg_from_name(json_string_value(alg)) : JOSE_ALG_UNSUPPORTED;
    if (h->alg == JOSE_ALG_UNSUPPORTED) {
        *why = "JWS alg is missing or not accepted (none and HS* never are)";
        return -1;
    }
    if (json_object_get(hdr, "crit")) {
        *why = "JWS has critical header parameters";
        return -1;
    }
    int kid = copy_member(hdr, "kid", h->kid, JWKS_KID_MAX);
    int typ = copy_member(hdr, "typ", h->typ, JWS_TYP_MAX);
    if (kid < 0 || typ < 0) {
        *why = "JWS kid or typ is not a usable string";
        return -1;
    }
    h->has_kid = kid == 1;
    h->has_typ = typ == 1;
    return 0;
}

int jws_parse_header(const char *jws, size_t len, struct jws_header *h, const char **why)
{
    size_t d[2];
    const char *dummy;
    if (!why)
        why = &dummy;
    memset(h, 0, sizeof(*h));
    if (!shape_ok(jws, len, d, why))
        return -1;
    json_t *hdr = decode_object(jws, d[0]);
    if (!hdr) {
        *why = "JWS header is not a base64url JSON object";
        return -1;
    }
    int r = read_header(hdr, h, why);
    json_decref(hdr);
    return r;
}

json_t *jws_payload(const char *jws, size_t len, const char **why)
{
    size_t d[2];
    const char *dummy;
    if (!why)
        why = &dummy;
    if (!shape_ok(jws, len, d, why))
        return NULL;
    json_t *p = decode_object(jws + d[0] + 1, d[1] - d[0] - 1);
    if (!p)
        *why = "JWS payload is not a base64url JSON object";
    return p;
}

/* ---- signatures ---- */

static const EVP_MD *digest_of(enum jose_alg alg)
{
    switch (alg) {
    case JOSE_RS256:
    case JOSE_PS256:
    case JOSE_ES256:
        return EVP_sha256();
    case JOSE_RS384:
    case JOSE_ES384:
        return EVP_sha384();
    case JOSE_RS512:
        return EVP_sha512();
    default:
        return NULL; /* EdDSA hashes internally; unsupported never gets here */
    }
}

/* JOSE's ECDSA signature is r || s, each exactly the coordinate size (RFC 7518 section 3.4);
 * OpenSSL verifies DER. Returns a malloc'ed DER signature or NULL. */
static uint8_t *ecdsa_to_der(const uint8_t *sig, size_t siglen, size_t clen, size_t *derlen)
{
    if (siglen != 2 * clen)
        return NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)clen, NULL), *s = BN_bin2bn(sig + clen, (int)clen, NULL);
    uint8_t *der = NULL;
    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return NULL;
    }
    int n = i2d_ECDSA_SIG(es, &der); /* es owns r and s now */
    ECDSA_SIG_free(es);
    if (n <= 0)
        return NULL;
    *derlen = (size_t)n;
    return der;
}

static int set_pss(EVP_PKEY_CTX *pctx)
{
    return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                   EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
                   EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1
               ? 0
               : -1;
}

/* One-shot verification of sig over tbs. Returns true only for a valid signature. */
static bool evp_verify(EVP_PKEY *pkey, enum jose_alg alg, const uint8_t *sig, size_t siglen,
                       const char *tbs, size_t tbslen)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    bool ok = m && EVP_DigestVerifyInit(m, &pctx, digest_of(alg), NULL, pkey) == 1 &&
              (alg != JOSE_PS256 || set_pss(pctx) == 0) &&
              EVP_DigestVerify(m, sig, siglen, (const unsigned char *)tbs, tbslen) == 1;
    EVP_MD_CTX_free(m); /* frees pctx too */
    return ok;
}

/* Checks the signature's length against the key and converts it to what OpenSSL verifies. Returns
 * the bytes to verify (sig itself, or a DER buffer stored in *owned) or NULL. */
static const uint8_t *sig_for_key(const struct jwk *key, const uint8_t *sig, size_t siglen,
                                  uint8_t **owned, size_t *outlen)
{
    *owned = NULL;
    switch (key->type) {
    case JWK_EC_P256:
    case JWK_EC_P384:
        *owned = ecdsa_to_der(sig, siglen, key->type == JWK_EC_P256 ? 32 : 48, outlen);
        return *owned;
    case JWK_RSA:
        if (siglen != (size_t)EVP_PKEY_get_size(key->pkey))
            return NULL;
        break;
    case JWK_ED25519:
        if (siglen != 64)
            return NULL;
        break;
    }
    *outlen = siglen;
    return sig;
}

int jws_verify(const char *jws, size_t len, enum jose_alg alg, const struct jwk *key,
               const char **why)
{
    size_t d[2];
    const char *dummy;
    if (!why)
        why = &dummy;
    if (!shape_ok(jws, len, d, why))
        return -1;
    if (!key || !key->pkey || !jose_alg_fits(alg, key->type) ||
        (key->alg != JOSE_ALG_UNSUPPORTED && key->alg != alg)) {
        *why = "JWS alg does not fit the key";
        return -1;
    }
    size_t slen = len - d[1] - 1;
    if (slen > MAX_SIG_BYTES * 4 / 3 + 4) {
        *why = "JWS signature too long";
        return -1;
    }
    uint8_t *raw = malloc(slen * 3 / 4 + 3), *der = NULL;
    long n = raw ? b64url_decode(jws + d[1] + 1, slen, raw) : -1;
    size_t vlen = 0;
    const uint8_t *v = n > 0 ? sig_for_key(key, raw, (size_t)n, &der, &vlen) : NULL;
    bool ok = v && evp_verify(key->pkey, alg, v, vlen, jws, d[1]);
    OPENSSL_free(der);
    free(raw);
    if (!ok) {
        *why = "JWS signature is invalid";
        return -1;
    }
    return 0;
}
