/* Classifies an RFC 7662 introspection answer (status, headers, body) into a token_info: the JWT
 * and its claims, "inactive", or the kind of IdP failure. Pure; used by introspect.c and the tests.
 */
#ifndef PTA_IDP_RESPONSE_H
#define PTA_IDP_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "token.h"

struct idp_answer {
    long http_status;          /* 0 when no HTTP answer arrived */
    const char *content_type;  /* may be NULL */
    const char *cache_control; /* may be NULL */
    const char *body;          /* may be NULL when body_len is 0 */
    size_t body_len;
};

/* HTTP statuses that mean "inactive" for a quirky IdP (e.g. 400 with an empty body for an unknown
 * token). Only 4xx can be listed: a 5xx is an outage, and calling it "inactive" would make clients
 * throw away good tokens. */
struct idp_status_set {
    uint64_t bits[2]; /* status 400 + i is bit i */
};

/* Parses "400, 404" (commas and/or spaces) into *out; "" or "none" is the empty set. Returns 0, or
 * -1 with err set for a non-number or a status outside 400..499. */
int idp_parse_statuses(const char *list, struct idp_status_set *out, char *err, size_t errlen);
bool idp_status_in(const struct idp_status_set *set, long status);

/* What classification keeps beyond the old mapping. A zeroed struct (or NULL) is the old mapping.
 */
struct idp_settings {
    /* Keep the introspected claims (ti->introspection) of every active answer, and classify an
     * active JSON answer without a JWT as TOKEN_ACTIVE / IDP_KIND_CLAIMS with no JWT: the
     * finishing stage (finish.h) must then mint or refuse it. Without it, such an answer is
     * TOKEN_IDP_ERROR, as before minting existed. */
    bool keep_claims;
    const struct idp_status_set *inactive; /* may be NULL */
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

/* idp_classify() with settings (NULL: the same as idp_classify). Also sets ti->kind for active
 * tokens; a status in s->inactive is TOKEN_INACTIVE. */
struct token_info *idp_classify_with(const struct idp_answer *a, const struct idp_settings *s);

/* Parses a Cache-Control value: *max_age (-1 when absent) and *no_store. Directive names are
 * case-insensitive; values may be quoted. An invalid max-age counts as 0 (RFC 9111 section 4.2.1),
 * several max-age keep the smallest, values beyond 2^31 are capped there. An unqualified no-cache
 * also sets *no_store: the agent cannot revalidate, so it cannot reuse such an answer either.
 * Unknown directives and garbage are ignored. v may be NULL. */
void idp_parse_cache_control(const char *v, long *max_age, int *no_store);

#endif
