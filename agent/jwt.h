/* Compact JWS checks and claim extraction, for the JWTs the identity server returns. Pure; no
 * signature verification (the JWT came from the IdP over TLS). Used by idp_response.c. */
#ifndef PTA_JWT_H
#define PTA_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "token.h"

/* Longer JWTs are refused: one must fit an SPOE ACK frame and an HTTP header anyway. */
#define JWT_MAX_LEN (64 * 1024)
/* The largest exp accepted: 9999-12-31T23:59:59Z. Larger values are refused as absurd. */
#define JWT_MAX_EXP INT64_C(253402300799)

/* Decodes base64url without padding (padding also tolerated). Returns the decoded length, or -1
 * on a bad character or impossible length. out must hold at least (len * 3) / 4 + 3 bytes. */
long b64url_decode(const char *in, size_t len, uint8_t *out);

/* Base64url length of n bytes, without padding (not counting a NUL). */
#define B64URL_ENC_LEN(n) (((n) / 3) * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))

/* Encodes base64url without padding. out must hold B64URL_ENC_LEN(len) + 1 bytes; it is
 * NUL-terminated. Returns the encoded length. */
size_t b64url_encode(const void *data, size_t len, char *out);

/* Checks that jwt is a compact JWS (exactly three dot-separated base64url parts, none empty, the
 * signature too; header and payload decode to JSON objects) and reads exp, scope (string or
 * array of strings), sub, client_id and sid into *c. Returns 0, or -1 with *why set (static text).
 * *c is overwritten on entry (not freed) and left empty on failure; on success the caller owns its
 * strings (token_claims_clear). Absent or null claims stay NULL / has_exp false. A claim with the
 * wrong type (exp not a number, negative or above JWT_MAX_EXP; sub, client_id, sid not strings;
 * scope neither a string nor an array of strings) or with a control character fails the whole JWT.
 * scope is normalised: single spaces, no leading/trailing space, NULL when empty. why may be NULL.
 */
int jwt_parse_claims(const char *jwt, size_t len, struct token_claims *c, const char **why);

/* RFC 9701 (application/token-introspection+jwt): the JWT is the IdP's signed introspection
 * answer, whose claims sit in its "token_introspection" object. Checks the JWS like
 * jwt_parse_claims(), sets *active from that object and, when active, reads the claims from it.
 * Returns 0, or -1 with *why set. */
int jwt_parse_introspection(const char *jwt, size_t len, bool *active, struct token_claims *c,
                            const char **why);

/* The same, also returning in *obj (a new reference, may be NULL when not wanted) the JSON object
 * the claims were read from: the payload, or token_introspection when active (NULL when
 * inactive). *obj is NULL on failure. */
int jwt_parse_claims_obj(const char *jwt, size_t len, struct token_claims *c, json_t **obj,
                         const char **why);
int jwt_parse_introspection_obj(const char *jwt, size_t len, bool *active, struct token_claims *c,
                                json_t **obj, const char **why);

/* Reads the claims of a plain RFC 7662 JSON answer (or any claims object) with the rules of
 * jwt_parse_claims(). Returns 0, or -1 with *why set and *c empty. */
int jwt_claims_from_json(json_t *obj, struct token_claims *c, const char **why);

#endif
