/* JOSE keys and compact JWS signing (RFC 7515, 7517, 7518, 7638, 8037) with OpenSSL 3: one key
 * (ES256 on P-256, RS256 >= 2048 bits, EdDSA on Ed25519), its public JWK and RFC 7638 kid, and
 * the signature over "header.payload". Pure (no files); used by keyring.c and mint.c. */
#ifndef PTA_JWS_H
#define PTA_JWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

enum jws_alg { JWS_ES256, JWS_RS256, JWS_EDDSA };

#define JWS_RSA_MIN_BITS 2048
#define JWS_RSA_MAX_BITS 8192
/* Largest signature of any supported key (RSA 8192 bits), raw bytes. */
#define JWS_MAX_SIG (JWS_RSA_MAX_BITS / 8)
/* base64url SHA-256: 43 characters and the NUL. */
#define JWS_KID_LEN 44

struct jws_key {
    EVP_PKEY *pkey;
    enum jws_alg alg;
    bool has_private; /* can sign; public-only keys are only published */
    char kid[JWS_KID_LEN];
    json_t *jwk; /* public JWK: kty, crv/x/y or n/e, use, alg, kid */
};

/* "ES256", "RS256", "EdDSA". */
const char *jws_alg_name(enum jws_alg alg);

/* Builds a key from pkey (taken over, freed on failure too). The type fixes the algorithm; an EC
 * key on another curve than P-256, an RSA key outside [JWS_RSA_MIN_BITS, JWS_RSA_MAX_BITS] or any
 * other type is refused. has_private says whether pkey holds the private part. Returns NULL with a
 * message in err (never key material). */
struct jws_key *jws_key_from_pkey(EVP_PKEY *pkey, bool has_private, char *err, size_t errlen);

/* Reads a PEM private key (PKCS#8 or the traditional forms), or with allow_public a PEM public
 * key (SubjectPublicKeyInfo) for a key that is only published. */
struct jws_key *jws_key_from_pem(const char *pem, size_t len, bool allow_public, char *err,
                                 size_t errlen);
void jws_key_free(struct jws_key *k);

/* RFC 7638 thumbprint of a public JWK (RSA, EC or OKP members; others ignored): base64url of the
 * SHA-256 of the required members in lexicographic order, without whitespace. Returns 0, or -1
 * when a required member is missing or not a string. */
int jwk_thumbprint(const json_t *jwk, char out[JWS_KID_LEN]);

/* Signs in[0..len) with k (which must have its private part). ES256 gives the 64-byte JOSE form
 * r||s (RFC 7518 section 3.4), not DER. sig must hold JWS_MAX_SIG bytes. Returns the signature
 * length, or -1. */
long jws_sign(const struct jws_key *k, const uint8_t *in, size_t len, uint8_t *sig);

/* The compact JWS "b64(header).b64(payload).b64(sig)" for the serialized header and payload.
 * Returns a fresh string (length in *out_len) or NULL on failure / ENOMEM. */
char *jws_compact(const struct jws_key *k, const char *header, size_t header_len,
                  const char *payload, size_t payload_len, size_t *out_len);

#endif
