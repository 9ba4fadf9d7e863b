/* Compact JWS signature verification (RFC 7515, algorithms of RFC 7518/8037) with public keys from
 * jwks.c: RS256/384/512, PS256, ES256/384 and EdDSA; never "none" or HS*. Pure (no I/O). Used by
 * logout_token.c for the identity server's back-channel logout tokens. */
#ifndef PTA_JWS_VERIFY_H
#define PTA_JWS_VERIFY_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "jwks.h"

#define JWS_MAX_LEN                                                                                \
    (16 * 1024) /* a logout token is a few hundred bytes; a longer JWS is refused                  \
                 */
#define JWS_TYP_MAX 64

struct jws_header {
    enum jose_alg alg;
    char kid[JWKS_KID_MAX + 1];
    bool has_kid;
    char typ[JWS_TYP_MAX + 1];
    bool has_typ;
};

/* Checks the compact form (three non-empty base64url parts, at most JWS_MAX_LEN bytes) and reads
 * the protected header: alg must be one we verify (none, HS* and unknown ones are refused here),
 * kid and typ, when present, strings without NUL within their bounds, and no "crit" (we implement
 * no extension, so RFC 7515 section 4.1.11 makes any critical one fatal). Returns 0, or -1 with
 * *why (static text) set. */
int jws_parse_header(const char *jws, size_t len, struct jws_header *h, const char **why);

/* Verifies the signature of jws (checked by jws_parse_header) under key for alg. alg must fit the
 * key's type and, when the JWK names one, equal its alg. Returns 0 when the signature is valid,
 * -1 with *why set otherwise. */
int jws_verify(const char *jws, size_t len, enum jose_alg alg, const struct jwk *key,
               const char **why);

/* Decodes the payload of a verified jws into a JSON object (duplicate members refused). Returns a
 * new reference, or NULL with *why set. */
json_t *jws_payload(const char *jws, size_t len, const char **why);

#endif
