/* Compact JWS checks and claim extraction, for the JWTs the identity server returns. Pure; no
 * signature verification (the JWT came from the IdP over TLS). Used by idp_response.c. */
#ifndef PTA_JWT_H
#define PTA_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "token.h"

/* Decodes base64url without padding (padding also tolerated). Returns the decoded length, or -1
 * on a bad character or impossible length. out must hold at least (len * 3) / 4 + 3 bytes. */
long b64url_decode(const char *in, size_t len, uint8_t *out);

/* Checks that jwt is a compact JWS (three non-empty base64url parts for header and payload, a
 * base64url signature, header and payload decode to JSON objects) and reads exp, scope (string or
 * array of strings), sub and client_id into *c. Returns 0, or -1 with *why set (static text). */
int jwt_parse_claims(const char *jwt, size_t len, struct token_claims *c, const char **why);

#endif
