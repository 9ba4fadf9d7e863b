/* Classifies an RFC 7662 introspection answer (status, headers, body) into a token_info: the JWT
 * and its claims, "inactive", or the kind of IdP failure. Pure; used by introspect.c and the tests.
 */
#ifndef PTA_IDP_RESPONSE_H
#define PTA_IDP_RESPONSE_H

#include <stddef.h>

#include "token.h"

struct idp_answer {
    long http_status;          /* 0 when no HTTP answer arrived */
    const char *content_type;  /* may be NULL */
    const char *cache_control; /* may be NULL */
    const char *body;          /* may be NULL when body_len is 0 */
    size_t body_len;
};

/* Never returns NULL unless out of memory. Mapping:
 *   200 application/jwt (or any +jwt type) with a well-formed JWS  -> TOKEN_ACTIVE
 *   200 JSON active:true with "jwt" (Keycloak >= 25) or "phantom_token" (Curity) -> TOKEN_ACTIVE
 *   200 application/token-introspection+jwt (RFC 9701) whose token_introspection says active
 *       -> TOKEN_ACTIVE (that JWT is forwarded; claims from token_introspection), else INACTIVE
 *   200 JSON active:false, or 204                                  -> TOKEN_INACTIVE
 *   200 anything else (malformed JWT, active:true without a JWT)    -> TOKEN_IDP_ERROR
 *   401/403/404 and 5xx but 503                                     -> TOKEN_IDP_ERROR
 *   503                                                             -> TOKEN_IDP_UNAVAIL
 *   any other status                                                -> TOKEN_IDP_UNKNOWN
 * http_status 0 is TOKEN_IDP_ERROR. Content types are matched case-insensitively, parameters
 * ignored: application/jwt and application/<x>+jwt carry the JWT itself (surrounding whitespace
 * trimmed); application/json and application/<x>+json the RFC 7662 JSON, whose "active" must be a
 * boolean. A JWT from either form is checked with jwt_parse_claims() and its claims read from its
 * payload, never from the JSON members. ti->reason is a static text; ti->max_age and ti->no_store
 * come from a->cache_control whatever the outcome. */
struct token_info *idp_classify(const struct idp_answer *a);

/* Parses a Cache-Control value: *max_age (-1 when absent) and *no_store. Directive names are
 * case-insensitive; values may be quoted. An invalid max-age counts as 0 (RFC 9111 section 4.2.1),
 * several max-age keep the smallest, values beyond 2^31 are capped there. An unqualified no-cache
 * also sets *no_store: the agent cannot revalidate, so it cannot reuse such an answer either.
 * Unknown directives and garbage are ignored. v may be NULL. */
void idp_parse_cache_control(const char *v, long *max_age, int *no_store);

#endif
