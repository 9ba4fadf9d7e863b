/* JWKS parsing and key selection: see jwks.h.
 *
 * Keys are built with OpenSSL 3's EVP_PKEY_fromdata() from the JWK's public parameters only, then
 * checked with EVP_PKEY_public_check() (for EC that proves the point is on the named curve, which
 * stops invalid-curve tricks). A set is immutable once parsed, so a verifier can keep a pointer to
 * it while a refetch builds the next one. */
#include "jwks.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>

#include "jwt.h"

#define RSA_MAX_N_BYTES (JWKS_RSA_MAX_BITS / 8)
#define RSA_MAX_E_BYTES 8
#define ED25519_LEN 32
#define MAX_B64_FIELD 4096 /* chars: above the largest modulus we accept */

static const struct {
    const char *name;
    enum jose_alg alg;
} ALGS[] = {
    {"RS256", JOSE_RS256}, {"RS384", JOSE_RS384}, {"RS512", JOSE_RS512}, {"PS256", JOSE_PS256},
    {"ES256", JOSE_ES256}, {"ES384", JOSE_ES384}, {"EdDSA", JOSE_EDDSA},
};

enum jose_alg jose_alg_from_name(const char *name)
{
    if (!name)
        return JOSE_ALG_UNSUPPORTED;
    for (size_t i = 0; i < sizeof(ALGS) / sizeof(ALGS[0]); i++)
        if (strcmp(name, ALGS[i].name) == 0)
            return ALGS[i].alg;
    return JOSE_ALG_UNSUPPORTED;
}

const char *jose_alg_name(enum jose_alg alg)
{
    for (size_t i = 0; i < sizeof(ALGS) / sizeof(ALGS[0]); i++)
        if (ALGS[i].alg == alg)
            return ALGS[i].name;
    return "unsupported";
}

bool jose_alg_fits(enum jose_alg alg, enum jwk_type t)
{
    switch (alg) {
    case JOSE_RS256:
    case JOSE_RS384:
    case JOSE_RS512:
    case JOSE_PS256:
        return t == JWK_RSA;
    case JOSE_ES256:
        return t == JWK_EC_P256;
    case JOSE_ES384:
        return t == JWK_EC_P384;
    case JOSE_EDDSA:
        return t == JWK_ED25519;
    case JOSE_ALG_UNSUPPORTED:
        break;
    }
    return false;
}

/* ---- JWK members ---- */

/* Decodes a base64url string member into out (cap bytes). Returns the length or -1 when the
 * member is absent, not a string, too long, or not base64url. */
static long b64_member(json_t *jwk, const char *name, uint8_t *out, size_t cap)
{
    json_t *v = json_object_get(jwk, name);
    if (!json_is_string(v))
        return -1;
    size_t len = json_string_length(v);
    if (len == 0 || len > MAX_B64_FIELD || len * 3 / 4 + 3 > cap)
        return -1;
    return b64url_decode(json_string_value(v), len, out);
}

static const char *str_member(json_t *jwk, const char *name)
{
    json_t *v = json_object_get(jwk, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A JWK with private parameters means the IdP leaked its key, or the document is not a public
 * JWKS at all: such a key is never used. */
static bool has_private_parts(json_t *jwk)
{
    static const char *const priv[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};
    for (size_t i = 0; i < sizeof(priv) / sizeof(priv[0]); i++)
        if (json_object_get(jwk, priv[i]))
            return true;
    return false;
}

/* "use" (if present) must be "sig"; "key_ops" (if present) must include "verify". */
static bool usable_for_signatures(json_t *jwk)
{
    json_t *use = json_object_get(jwk, "use");
    json_t *ops = json_object_get(jwk, "key_ops");
    if (use && !(json_is_string(use) && strcmp(json_string_value(use), "sig") == 0))
        return false;
    if (!ops)
        return true;
    if (!json_is_array(ops))
        return false;
    size_t i;
    json_t *op;
    json_array_foreach(ops, i, op)
    {
        if (json_is_string(op) && strcmp(json_string_value(op), "verify") == 0)
            return true;
    }
    return false;
}

/* ---- building keys ---- */

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

/* Drops the key unless OpenSSL accepts it as a valid public key (EC: the point is on the curve). */
static EVP_PKEY *checked(EVP_PKEY *pkey)
{
    EVP_PKEY_CTX *ctx = pkey ? EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL) : NULL;
    bool ok = ctx && EVP_PKEY_public_check(ctx) == 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    return pkey;
}

static EVP_PKEY *rsa_key(json_t *jwk)
{
    uint8_t nb[RSA_MAX_N_BYTES + 8], eb[RSA_MAX_E_BYTES + 8];
    long nl = b64_member(jwk, "n", nb, sizeof(nb));
    long el = b64_member(jwk, "e", eb, sizeof(eb));
    if (nl <= 0 || el <= 0 || el > RSA_MAX_E_BYTES)
        return NULL;
    BIGNUM *n = BN_bin2bn(nb, (int)nl, NULL), *e = BN_bin2bn(eb, (int)el, NULL);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    /* e must be odd and > 1; the modulus size is the security level. */
    if (n && e && BN_num_bits(n) >= JWKS_RSA_MIN_BITS && BN_num_bits(n) <= JWKS_RSA_MAX_BITS &&
        BN_is_odd(e) && !BN_is_one(e) && (bld = OSSL_PARAM_BLD_new()) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) == 1)
        pkey = pkey_fromdata("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return checked(pkey);
}

/* x and y must each be exactly the coordinate size (RFC 7518 section 6.2.1.2). */
static EVP_PKEY *ec_key(json_t *jwk, const char *group, size_t clen)
{
    uint8_t x[64], y[64], pt[1 + 2 * 48];
    long xl = b64_member(jwk, "x", x, sizeof(x));
    long yl = b64_member(jwk, "y", y, sizeof(y));
    if (xl != (long)clen || yl != (long)clen)
        return NULL;
    pt[0] = 0x04; /* uncompressed point */
    memcpy(pt + 1, x, clen);
    memcpy(pt + 1 + clen, y, clen);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) == 1 &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * clen) == 1)
        pkey = pkey_fromdata("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    return checked(pkey);
}

static EVP_PKEY *ed25519_key(json_t *jwk)
{
    uint8_t x[ED25519_LEN + 8];
    if (b64_member(jwk, "x", x, sizeof(x)) != ED25519_LEN)
        return NULL;
    return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, ED25519_LEN);
}

/* Builds the key for one JWK into *k. Returns false when the JWK is to be skipped. */
static bool build_key(json_t *jwk, struct jwk *k)
{
    const char *kty = str_member(jwk, "kty"), *crv = str_member(jwk, "crv");
    if (!kty)
        return false;
    if (strcmp(kty, "RSA") == 0) {
        k->type = JWK_RSA;
        k->pkey = rsa_key(jwk);
    } else if (strcmp(kty, "EC") == 0 && crv && strcmp(crv, "P-256") == 0) {
        k->type = JWK_EC_P256;
        k->pkey = ec_key(jwk, "prime256v1", 32);
    } else if (strcmp(kty, "EC") == 0 && crv && strcmp(crv, "P-384") == 0) {
        k->type = JWK_EC_P384;
        k->pkey = ec_key(jwk, "secp384r1", 48);
    } else if (strcmp(kty, "OKP") == 0 && crv && strcmp(crv, "Ed25519") == 0) {
        k->type = JWK_ED25519;
        k->pkey = ed25519_key(jwk);
    }
    return k->pkey != NULL;
}

/* kid: a string without NUL (we compare it with strcmp) and at most JWKS_KID_MAX bytes; alg: absent
 * or a supported one that fits the key. */
static bool read_kid_alg(json_t *jwk, struct jwk *k)
{
    json_t *kid = json_object_get(jwk, "kid");
    json_t *alg = json_object_get(jwk, "alg");
    if (kid) {
        size_t len = json_is_string(kid) ? json_string_length(kid) : 0;
        if (!json_is_string(kid) || len > JWKS_KID_MAX || strlen(json_string_value(kid)) != len)
            return false;
        memcpy(k->kid, json_string_value(kid), len + 1);
        k->has_kid = true;
    }
    if (!alg)
        return true;
    k->alg =
        json_is_string(alg) ? jose_alg_from_name(json_string_value(alg)) : JOSE_ALG_UNSUPPORTED;
    return k->alg != JOSE_ALG_UNSUPPORTED && jose_alg_fits(k->alg, k->type);
}

static bool parse_key(json_t *jwk, struct jwk *k)
{
    memset(k, 0, sizeof(*k));
    if (!json_is_object(jwk) || has_private_parts(jwk) || !usable_for_signatures(jwk))
        return false;
    if (!build_key(jwk, k))
        return false;
    if (!read_kid_alg(jwk, k)) {
        EVP_PKEY_free(k->pkey);
        k->pkey = NULL;
        return false;
    }
    return true;
}

struct jwks *jwks_parse(const char *doc, size_t len, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (len == 0 || len > JWKS_MAX_DOC) {
        *why = "JWKS document empty or too large";
        return NULL;
    }
    json_t *root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *keys = json_object_get(root, "keys");
    struct jwks *s = NULL;
    if (!json_is_array(keys)) {
        *why = "JWKS is not a JSON object with a keys array";
    } else if (json_array_size(keys) > JWKS_MAX_KEYS) {
        *why = "JWKS has too many keys";
    } else if (!(s = calloc(1, sizeof(*s)))) {
        *why = "out of memory";
    } else {
        size_t i;
        json_t *jwk;
        json_array_foreach(keys, i, jwk)
        {
            if (parse_key(jwk, &s->keys[s->n]))
                s->n++;
            else
                s->skipped++;
        }
        if (s->n == 0) {
            *why = "JWKS has no usable signature key";
            jwks_free(s);
            s = NULL;
        }
    }
    json_decref(root);
    return s;
}

void jwks_free(struct jwks *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        EVP_PKEY_free(s->keys[i].pkey);
    free(s);
}

static bool key_fits(const struct jwk *k, enum jose_alg alg)
{
    return jose_alg_fits(alg, k->type) && (k->alg == JOSE_ALG_UNSUPPORTED || k->alg == alg);
}

const struct jwk *jwks_select(const struct jwks *s, const char *kid, enum jose_alg alg,
                              bool *unknown_kid, const char **why)
{
    const struct jwk *found = NULL;
    size_t fitting = 0;
    bool kid_seen = false;
    const char *dummy;
    if (!why)
        why = &dummy;
    if (unknown_kid)
        *unknown_kid = false;
    for (size_t i = 0; s && i < s->n; i++) {
        const struct jwk *k = &s->keys[i];
        if (kid && !(k->has_kid && strcmp(k->kid, kid) == 0))
            continue;
        kid_seen = true;
        if (!key_fits(k, alg))
            continue;
        if (kid)
            return k; /* kids are unique in practice; the first fitting one is the key */
        found = k;
        fitting++;
    }
    if (kid && !kid_seen) {
        if (unknown_kid)
            *unknown_kid = true;
        *why = "no key with the JWS kid";
        return NULL;
    }
    if (fitting == 1)
        return found;
    if (!kid && fitting == 0 && unknown_kid)
        *unknown_kid = true; /* a key of a new type may have been published since */
    *why =
        kid ? "the key with the JWS kid does not fit its alg"
            : (fitting ? "JWS has no kid and several keys fit its alg" : "no key fits the JWS alg");
    return NULL;
}

/* ---- where keys may come from ---- */

static bool loopback_host(const char *h, size_t len)
{
    char buf[64];
    struct in_addr a4;
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, h, len);
    buf[len] = '\0';
    if (strcasecmp(buf, "localhost") == 0 || strcmp(buf, "[::1]") == 0)
        return true;
    return inet_pton(AF_INET, buf, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

bool jwks_url_allowed(const char *url)
{
    if (!url)
        return false;
    if (strncasecmp(url, "https://", 8) == 0)
        return url[8] != '\0' && !strchr(url, '@');
    if (strncasecmp(url, "http://", 7) != 0 || strchr(url, '@'))
        return false;
    const char *h = url + 7;
    size_t len = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/?#");
    return loopback_host(h, len);
}
