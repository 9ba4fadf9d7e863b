/* JWK Sets (RFC 7517/7518/8037): parses an identity server's published JWKS into OpenSSL public
 * keys and picks the key that a JWS header names. Pure (no I/O). Used by jws_verify.c and
 * logout_token.c (back-channel logout), whose JWKS the agent fetches over HTTPS. */
#ifndef PTA_JWKS_H
#define PTA_JWKS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#define JWKS_MAX_DOC (256 * 1024) /* a JWKS document larger than this is refused */
#define JWKS_MAX_KEYS 32          /* keys beyond this many are refused, not silently dropped */
#define JWKS_KID_MAX 256          /* longer kids are refused */
#define JWKS_RSA_MIN_BITS 2048
#define JWKS_RSA_MAX_BITS 16384

/* The signature algorithms the agent verifies. HS*, none and anything else are
 * JOSE_ALG_UNSUPPORTED: a shared-secret MAC cannot be a public IdP key, and "none" is no signature
 * at all. */
enum jose_alg {
    JOSE_ALG_UNSUPPORTED = 0,
    JOSE_RS256,
    JOSE_RS384,
    JOSE_RS512,
    JOSE_PS256,
    JOSE_ES256,
    JOSE_ES384,
    JOSE_EDDSA,
};

enum jwk_type { JWK_RSA, JWK_EC_P256, JWK_EC_P384, JWK_ED25519 };

struct jwk {
    char kid[JWKS_KID_MAX + 1];
    bool has_kid;
    enum jose_alg alg; /* JOSE_ALG_UNSUPPORTED when the JWK has no "alg" (any fitting alg goes) */
    enum jwk_type type;
    EVP_PKEY *pkey; /* public key, owned by the set */
};

struct jwks {
    size_t n;
    size_t skipped; /* keys ignored: other use, unknown kty/crv/alg, private parts, ... */
    struct jwk keys[JWKS_MAX_KEYS];
};

/* "RS256" -> JOSE_RS256 ...; anything else (none, HS256, NULL) -> JOSE_ALG_UNSUPPORTED. */
enum jose_alg jose_alg_from_name(const char *name);
const char *jose_alg_name(enum jose_alg alg); /* "RS256" ...; "unsupported" */
/* Whether alg can be verified with a key of type t (RS/PS: RSA; ES256: P-256; ES384: P-384;
 * EdDSA: Ed25519). */
bool jose_alg_fits(enum jose_alg alg, enum jwk_type t);

/* Parses a JWKS document ({"keys":[...]}). Keys that the agent cannot or must not use are skipped
 * and counted (use other than "sig", unsupported kty/crv/alg, RSA below 2048 bits, an EC point not
 * on its curve, a JWK carrying private parameters). A malformed document, more than JWKS_MAX_KEYS
 * keys or no usable key at all fail the whole set. Returns a new set, or NULL with *why (static
 * text) set. */
struct jwks *jwks_parse(const char *doc, size_t len, const char **why);
void jwks_free(struct jwks *s); /* NULL is a no-op */

/* The key for a JWS header: with a kid, the key with that kid whose type fits alg (and whose own
 * alg, if any, equals alg); without a kid, the only key that fits alg (several -> none, so that a
 * rotation never makes us guess). NULL with *why set when no key qualifies; *unknown_kid is set
 * when a refetch of the JWKS may help (key rotation): the header named a kid that the set does not
 * hold at all, or had no kid and no key fits its alg. unknown_kid may be NULL. */
const struct jwk *jwks_select(const struct jwks *s, const char *kid, enum jose_alg alg,
                              bool *unknown_kid, const char **why);

/* Whether url may serve keys: https, or http to 127.0.0.0/8, [::1] or localhost (tests); never
 * with credentials in it. */
bool jwks_url_allowed(const char *url);

#endif
