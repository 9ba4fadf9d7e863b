/* JOSE keys with OpenSSL 3's EVP interfaces only (no deprecated RSA_/EC_KEY calls). The JWK is
 * built once per key: the JWKS document and the kid are read from it, never from the private
 * key again. */
#include "jws.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "jwt.h"

#define ES256_COORD 32 /* P-256 coordinates and r, s */
#define ED25519_PUB 32
/* A P-256 DER ECDSA signature is at most 72 bytes; room to spare. */
#define ECDSA_DER_MAX 80

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *jws_alg_name(enum jws_alg alg)
{
    switch (alg) {
    case JWS_ES256:
        return "ES256";
    case JWS_RS256:
        return "RS256";
    case JWS_EDDSA:
        return "EdDSA";
    }
    return "none";
}

/* ---- public JWK ---- */

/* Adds name: base64url(bytes). Returns 0 or -1 (ENOMEM). */
static int put_b64(json_t *jwk, const char *name, const uint8_t *bytes, size_t len)
{
    char *s = malloc(B64URL_ENC_LEN(len) + 1);
    if (!s)
        return -1;
    b64url_encode(bytes, len, s);
    int r = json_object_set_new(jwk, name, json_string(s));
    free(s);
    return r;
}

/* A BIGNUM parameter as unsigned big-endian bytes, left-padded to pad (0: minimal length). */
static int put_bn_param(json_t *jwk, const char *name, EVP_PKEY *pkey, const char *param,
                        size_t pad)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pkey, param, &bn))
        return -1;
    size_t len = pad ? pad : (size_t)BN_num_bytes(bn);
    uint8_t *buf = len ? malloc(len) : NULL;
    int r = -1;
    if (buf && BN_bn2binpad(bn, buf, (int)len) == (int)len)
        r = put_b64(jwk, name, buf, len);
    free(buf);
    BN_free(bn);
    return r;
}

static int jwk_members_ec(json_t *jwk, EVP_PKEY *pkey)
{
    if (json_object_set_new(jwk, "kty", json_string("EC")) < 0 ||
        json_object_set_new(jwk, "crv", json_string("P-256")) < 0)
        return -1;
    if (put_bn_param(jwk, "x", pkey, OSSL_PKEY_PARAM_EC_PUB_X, ES256_COORD) < 0 ||
        put_bn_param(jwk, "y", pkey, OSSL_PKEY_PARAM_EC_PUB_Y, ES256_COORD) < 0)
        return -1;
    return 0;
}

static int jwk_members_rsa(json_t *jwk, EVP_PKEY *pkey)
{
    if (json_object_set_new(jwk, "kty", json_string("RSA")) < 0)
        return -1;
    if (put_bn_param(jwk, "n", pkey, OSSL_PKEY_PARAM_RSA_N, 0) < 0 ||
        put_bn_param(jwk, "e", pkey, OSSL_PKEY_PARAM_RSA_E, 0) < 0)
        return -1;
    return 0;
}

static int jwk_members_okp(json_t *jwk, EVP_PKEY *pkey)
{
    uint8_t pub[ED25519_PUB];
    size_t len = sizeof(pub);
    if (!EVP_PKEY_get_raw_public_key(pkey, pub, &len) || len != sizeof(pub))
        return -1;
    if (json_object_set_new(jwk, "kty", json_string("OKP")) < 0 ||
        json_object_set_new(jwk, "crv", json_string("Ed25519")) < 0)
        return -1;
    return put_b64(jwk, "x", pub, len);
}

/* ---- thumbprint ---- */

static const char *member(const json_t *jwk, const char *name)
{
    return json_string_value(json_object_get(jwk, name));
}

int jwk_thumbprint(const json_t *jwk, char out[JWS_KID_LEN])
{
    /* RFC 7638 section 3.2: only the required members, names sorted, no whitespace. Member values
     * are base64url or fixed names, so none needs JSON escaping, which json_dumps would add
     * anyway; building the text by hand keeps the order explicit. */
    const char *kty = member(jwk, "kty");
    const char *names[3];
    size_t n = 0;
    if (!kty)
        return -1;
    if (strcmp(kty, "RSA") == 0) {
        names[0] = "e", names[1] = "kty", names[2] = "n", n = 3;
    } else if (strcmp(kty, "EC") == 0) {
        names[0] = "crv", names[1] = "kty", names[2] = "x", n = 3; /* y added below */
    } else if (strcmp(kty, "OKP") == 0) {
        names[0] = "crv", names[1] = "kty", names[2] = "x", n = 3;
    } else {
        return -1;
    }
    json_t *canon = json_object();
    if (!canon)
        return -1;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = member(jwk, names[i]);
        bad |= !v || json_object_set_new(canon, names[i], json_string(v)) < 0;
    }
    if (strcmp(kty, "EC") == 0) {
        const char *y = member(jwk, "y");
        bad |= !y || json_object_set_new(canon, "y", json_string(y)) < 0;
    }
    /* JSON_SORT_KEYS gives the lexicographic order; JSON_COMPACT drops the whitespace. */
    char *text = bad ? NULL : json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(canon);
    if (!text)
        return -1;
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)text, strlen(text), md);
    free(text);
    b64url_encode(md, sizeof(md), out);
    return 0;
}

/* ---- keys ---- */

static int alg_of(EVP_PKEY *pkey, enum jws_alg *alg, char *err, size_t errlen)
{
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64] = "";
        size_t glen = 0;
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            &glen) ||
            (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
            set_err(err, errlen, "EC key is not on P-256 (curve %s); ES256 needs P-256",
                    group[0] ? group : "unknown");
            return -1;
        }
        *alg = JWS_ES256;
        return 0;
    }
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < JWS_RSA_MIN_BITS || bits > JWS_RSA_MAX_BITS) {
            set_err(err, errlen, "RSA key has %d bits; RS256 needs %d to %d", bits,
                    JWS_RSA_MIN_BITS, JWS_RSA_MAX_BITS);
            return -1;
        }
        *alg = JWS_RS256;
        return 0;
    }
    if (EVP_PKEY_is_a(pkey, "ED25519")) {
        *alg = JWS_EDDSA;
        return 0;
    }
    set_err(err, errlen, "unsupported key type %s (use EC P-256, RSA or Ed25519)",
            EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "?");
    return -1;
}

static json_t *public_jwk(EVP_PKEY *pkey, enum jws_alg alg)
{
    json_t *jwk = json_object();
    if (!jwk)
        return NULL;
    int r = -1;
    switch (alg) {
    case JWS_ES256:
        r = jwk_members_ec(jwk, pkey);
        break;
    case JWS_RS256:
        r = jwk_members_rsa(jwk, pkey);
        break;
    case JWS_EDDSA:
        r = jwk_members_okp(jwk, pkey);
        break;
    }
    if (r < 0) {
        json_decref(jwk);
        return NULL;
    }
    return jwk;
}

void jws_key_free(struct jws_key *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    json_decref(k->jwk);
    free(k);
}

struct jws_key *jws_key_from_pkey(EVP_PKEY *pkey, bool has_private, char *err, size_t errlen)
{
    enum jws_alg alg;
    if (!pkey || alg_of(pkey, &alg, err, errlen) < 0) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    struct jws_key *k = calloc(1, sizeof(*k));
    if (!k) {
        EVP_PKEY_free(pkey);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    k->pkey = pkey;
    k->alg = alg;
    k->has_private = has_private;
    k->jwk = public_jwk(pkey, alg);
    if (!k->jwk || jwk_thumbprint(k->jwk, k->kid) < 0 ||
        json_object_set_new(k->jwk, "use", json_string("sig")) < 0 ||
        json_object_set_new(k->jwk, "alg", json_string(jws_alg_name(alg))) < 0 ||
        json_object_set_new(k->jwk, "kid", json_string(k->kid)) < 0) {
        set_err(err, errlen, "cannot export the public key");
        jws_key_free(k);
        return NULL;
    }
    return k;
}

struct jws_key *jws_key_from_pem(const char *pem, size_t len, bool allow_public, char *err,
                                 size_t errlen)
{
    if (len > INT32_MAX) {
        set_err(err, errlen, "key file too large");
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    /* An empty passphrase callback: an encrypted key fails instead of prompting on a tty. */
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
    bool priv = pkey != NULL;
    if (!pkey && allow_public) {
        (void)BIO_reset(bio);
        pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    }
    BIO_free(bio);
    if (!pkey) {
        set_err(err, errlen,
                allow_public ? "not a PEM private or public key (or an encrypted one)"
                             : "not a PEM private key (or an encrypted one)");
        return NULL;
    }
    return jws_key_from_pkey(pkey, priv, err, errlen);
}

/* ---- signing ---- */

/* DER ECDSA-Sig-Value -> fixed-size r||s (RFC 7518 section 3.4). */
static long ecdsa_der_to_jose(const uint8_t *der, size_t der_len, uint8_t *sig)
{
    const uint8_t *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!es)
        return -1;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    long n = -1;
    if (BN_bn2binpad(r, sig, ES256_COORD) == ES256_COORD &&
        BN_bn2binpad(s, sig + ES256_COORD, ES256_COORD) == ES256_COORD)
        n = 2 * ES256_COORD;
    ECDSA_SIG_free(es);
    return n;
}

long jws_sign(const struct jws_key *k, const uint8_t *in, size_t len, uint8_t *sig)
{
    if (!k || !k->has_private)
        return -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -1;
    /* Ed25519 is a one-shot signature without a separate digest (RFC 8032): md NULL. */
    const EVP_MD *md = k->alg == JWS_EDDSA ? NULL : EVP_sha256();
    uint8_t der[ECDSA_DER_MAX];
    uint8_t *out = k->alg == JWS_ES256 ? der : sig;
    size_t out_len = k->alg == JWS_ES256 ? sizeof(der) : JWS_MAX_SIG;
    long n = -1;
    if (EVP_DigestSignInit(ctx, NULL, md, NULL, k->pkey) == 1 &&
        EVP_DigestSign(ctx, out, &out_len, in, len) == 1)
        n = k->alg == JWS_ES256 ? ecdsa_der_to_jose(der, out_len, sig) : (long)out_len;
    EVP_MD_CTX_free(ctx);
    return n;
}

char *jws_compact(const struct jws_key *k, const char *header, size_t header_len,
                  const char *payload, size_t payload_len, size_t *out_len)
{
    size_t hl = B64URL_ENC_LEN(header_len), pl = B64URL_ENC_LEN(payload_len);
    size_t cap = hl + 1 + pl + 1 + B64URL_ENC_LEN(JWS_MAX_SIG) + 1;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t o = b64url_encode((const uint8_t *)header, header_len, out);
    out[o++] = '.';
    o += b64url_encode((const uint8_t *)payload, payload_len, out + o);
    uint8_t sig[JWS_MAX_SIG];
    long sl = jws_sign(k, (const uint8_t *)out, o, sig); /* the signing input is "h.p" */
    if (sl < 0) {
        free(out);
        return NULL;
    }
    out[o++] = '.';
    o += b64url_encode(sig, (size_t)sl, out + o);
    *out_len = o;
    return out;
}
