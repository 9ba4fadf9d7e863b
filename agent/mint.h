/* Minting: an RFC 9068 access-token JWT signed by the gateway, from the claims an identity server
 * returned by introspection. Pure apart from the random jti (injectable); used by finish.c, the
 * tests and the signing benchmark. */
#ifndef PTA_MINT_H
#define PTA_MINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "jws.h"

#define MINT_DEFAULT_MAX_LIFETIME 300 /* seconds */
#define MINT_DEFAULT_MAX_JWT 8192     /* bytes: a JWT travels in one HTTP header */
#define MINT_MAX_CLAIM_NAMES 64
#define MINT_MAX_CLAIM_NAME 64
#define MINT_JTI_BYTES 16 /* 128 bits */

/* The extra claims copied by default (besides sub, client_id, scope, which always are): the
 * registered ones of RFC 7519, 7662 and 9068 that describe the token or its subject, and
 * username, cnf, act. NULL-terminated. */
extern const char *const mint_default_claims[];

struct mint_settings {
    const char *issuer;        /* iss of every minted JWT; required */
    const char *audience;      /* default aud; may be NULL when every request names one */
    int64_t max_lifetime;      /* seconds, > 0: exp <= iat + max_lifetime */
    const char *const *claims; /* extra claims to copy (NULL-terminated); NULL: the default */
    size_t max_jwt_len;        /* 0: MINT_DEFAULT_MAX_JWT */
    /* Fills buf with len random bytes, returns 0; NULL: OpenSSL's RAND_bytes. */
    int (*random)(uint8_t *buf, size_t len, void *arg);
    void *random_arg;
};

enum mint_result {
    MINT_OK = 0,
    MINT_EXPIRED = 1, /* the token's own exp is already past: it is not active any more */
    MINT_ERROR = -1,  /* *why says what */
};

struct mint_out {
    char *jwt; /* owned, NUL-terminated */
    size_t jwt_len;
    int64_t exp; /* of the minted JWT */
};

/* Claim names an allow-list may not name: the gateway's own (iss, aud, iat, jti, exp), those
 * always copied (sub, client_id, scope) and those never copied (active, token_type). */
bool mint_claim_reserved(const char *name);

/* Builds and signs the JWT for the introspected claims (a JSON object). audience overrides
 * s->audience when not NULL. Header {alg, typ: "at+jwt", kid}; payload iss, sub (the client_id
 * when the answer has no sub, RFC 9068 section 2.2), client_id, aud, exp = min(claims' exp,
 * now + max_lifetime) (now + max_lifetime without one), iat = now, jti (128 random bits), scope
 * when present (an array of strings is joined with spaces), then the allowed extra claims present
 * in the answer. Returns MINT_OK with *out filled, MINT_EXPIRED, or MINT_ERROR with *why (static
 * text, no claim value): no issuer/audience/key, malformed claims, or a JWT longer than
 * max_jwt_len. */
enum mint_result mint_jwt(const struct mint_settings *s, const struct jws_key *k,
                          const json_t *claims, const char *audience, int64_t now,
                          struct mint_out *out, const char **why);

/* Parses a comma- or space-separated claim allow-list ("username, groups") into a
 * NULL-terminated array (*out, freed with mint_claims_free). Refuses reserved names, names longer
 * than MINT_MAX_CLAIM_NAME or with bytes outside printable ASCII, and more than
 * MINT_MAX_CLAIM_NAMES names. Returns 0 or -1 with err set. */
int mint_parse_claims(const char *list, char ***out, char *err, size_t errlen);
void mint_claims_free(char **claims);

#endif
