/* The per-request decision: from the parsed credentials, the resolved token and the route's
 * requirements to the HTTP status and the SPOE variables HAProxy acts on. Pure; runs on every
 * request, cached or not, so a route's scope requirement can never be skipped. Used by agent.c. */
#ifndef PTA_DECISION_H
#define PTA_DECISION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bearer.h"
#include "spop.h"
#include "token.h"

#define DECISION_DEFAULT_REALM "api"
#define DECISION_MAX_REALM 128   /* longer realms fall back to the default */
#define DECISION_MAX_SCOPES 1024 /* longer required-scope arguments are refused (500) */

/* Variable names the agent sets (HAProxy prefixes them: txn.<var-prefix>.<name>). None of them can
 * be the set-on-error name the shipped SPOE config uses ("spoe_error"). */
#define VAR_STATUS "status"
#define VAR_JWT "jwt"
#define VAR_ERROR "auth_error"
#define VAR_WWW_AUTH "www_authenticate"
#define VAR_SUB "sub"
#define VAR_CLIENT_ID "client_id"
#define VAR_SCOPE "scope"
#define VAR_CACHE "cache"
#define VAR_RETRY_AFTER "retry_after"

struct decision_input {
    enum bearer_result bearer;
    unsigned auth_count;         /* Authorization headers seen; more than one is a 400 */
    const struct token_info *ti; /* the resolved token when bearer == BEARER_OK, else NULL */
    const char *required_scopes; /* space-separated, may be NULL */
    size_t required_scopes_len;
    bool scopes_invalid; /* the route sent its scopes as something else than a string: 500 */
    const char *realm;   /* may be NULL: DECISION_DEFAULT_REALM */
    size_t realm_len;
    const char *audience; /* the route's audience for a minted JWT (byte range), may be NULL */
    size_t audience_len;
    int64_t now;       /* seconds since the epoch, to refuse an expired cached token */
    const char *cache; /* "hit", "miss", "coalesced", "negative", or NULL ("stale" comes from ti) */
};

struct decision {
    int status;             /* 200, 400, 401, 403, 500, 502, 503 */
    const char *error;      /* RFC 6750 code or "server_error"; NULL when none */
    char *www_authenticate; /* owned; set for 400/401/403 */
    const char *jwt;        /* borrowed from the token_info; only on 200 */
    size_t jwt_len;
    const char *sub, *client_id, *scope; /* borrowed; may be NULL */
    const char *cache;                   /* borrowed; may be NULL; "stale" for a stale ti */
    uint32_t retry_after_s;              /* a 503 the client may retry after that long; 0 none */
};

/* Fills *out. Returns 0, or -1 when out of memory (then *out is a bare 500). Rules, in order:
 *   auth_count > 1                        -> 400 invalid_request
 *   BEARER_MISSING / BEARER_NOT_BEARER    -> 401, challenge without an error attribute
 *   BEARER_MALFORMED                      -> 400 invalid_request
 *   TOKEN_ACTIVE with exp <= now          -> 401 invalid_token (a cached entry outliving its token)
 *   TOKEN_ACTIVE, a required scope absent -> 403 insufficient_scope, scope="<required, normalised>"
 *   TOKEN_ACTIVE                          -> 200 with the JWT (a minted entry: the one for the
 *                                            route's audience; none configured for it -> 500)
 *   TOKEN_INACTIVE                        -> 401 invalid_token
 *   TOKEN_IDP_ERROR / _UNAVAIL / _UNKNOWN -> 502 / 503 / 500 server_error, no challenge
 * Required scopes are separated by spaces or tabs, matched exactly (case-sensitive) against the
 * token's scope; absent or blank requires nothing. Longer than DECISION_MAX_SCOPES, or holding a
 * character outside RFC 6749's NQCHAR, is a configuration error: 500 (checked only once the token
 * is known active and unexpired). The realm, and the required scopes, are byte ranges (not
 * NUL-terminated); a realm that is empty, longer than DECISION_MAX_REALM or has a control or
 * non-ASCII byte is replaced by the default, '"' and '\' are escaped. sub, client_id and scope are
 * set whenever the token resolved active (200, 403, expired 401), the JWT only on 200. A token_info
 * marked stale (stale-if-error) sets cache to "stale"; a 503 carries the token_info's
 * retry_after_s (the retry_after variable). */
int decide(const struct decision_input *in, struct decision *out);
void decision_clear(struct decision *d);

/* Appends the decision's set-var actions (txn scope) to an ACK being written. Always at least one
 * action (status). The caller checks w->overflow. */
void decision_put_actions(struct spop_writer *w, const struct decision *d);

#endif
