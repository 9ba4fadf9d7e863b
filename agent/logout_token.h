/* OpenID Connect Back-Channel Logout 1.0 (section 2.6): validates a Logout Token against the
 * identity server's JWKS and yields the sub and/or sid whose cached tokens must be purged. Pure
 * (injected clock, no I/O); the replay cache of jti values lives in the validator, so tests and
 * reloads can reset it. Used by the agent's POST /backchannel-logout handler. */
#ifndef PTA_LOGOUT_TOKEN_H
#define PTA_LOGOUT_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jwks.h"

#define LOGOUT_EVENT "http://schemas.openid.net/event/backchannel-logout"
#define LOGOUT_CLAIM_MAX 1024      /* sub, sid, jti, iss: longer values are refused */
#define LOGOUT_REPLAY_DEFAULT 4096 /* jti values remembered */

/* Returns the current time in seconds since the epoch (tests inject a fake one). */
typedef int64_t (*logout_clock_fn)(void *ud);

struct logout_config {
    const char *issuer;    /* the IdP's issuer: iss must equal it exactly; copied */
    const char *client_id; /* our client id: aud must contain it; copied */
    uint32_t skew;         /* seconds of clock difference tolerated; default 60 */
    uint32_t max_age;      /* seconds an iat may lie in the past; default 300 */
    size_t replay_cap;     /* jti values remembered; default LOGOUT_REPLAY_DEFAULT */
};

enum logout_result {
    LOGOUT_OK,
    LOGOUT_INVALID,     /* 400 invalid_request; *why says why */
    LOGOUT_UNKNOWN_KEY, /* no key for the JWS: refetch the JWKS (rate-limited), then try again */
};

/* What a valid Logout Token asks for. At least one of sub and sid is set (heap copies). */
struct logout_request {
    char *sub;
    char *sid;
};

/* NULL on ENOMEM or when issuer or client_id is missing or empty. clock may be NULL (real time). */
struct logout_validator *logout_validator_new(const struct logout_config *cfg,
                                              logout_clock_fn clock, void *clock_ud);
void logout_validator_free(struct logout_validator *v);
/* Forgets every jti seen (tests; a reload that changes the issuer). */
void logout_validator_reset(struct logout_validator *v);
size_t logout_replay_count(const struct logout_validator *v);

/* Validates token (the logout_token form field) with keys. On LOGOUT_OK *out holds the request
 * (logout_request_clear) and the jti is remembered, so the same token is refused next time;
 * otherwise *out is empty, nothing is remembered and *why (static text, safe to return to the
 * caller: it never contains token data) says what failed. */
enum logout_result logout_token_validate(struct logout_validator *v, const struct jwks *keys,
                                         const char *token, size_t len, struct logout_request *out,
                                         const char **why);
void logout_request_clear(struct logout_request *r);

/* The logout_token field of an application/x-www-form-urlencoded body (section 2.5), decoded
 * (percent-escapes, '+' as space) into a malloc'd NUL-terminated string. Returns its length, or -1
 * with *why set when the body has no such field, has it twice, or has a bad escape. */
long logout_form_token(const char *body, size_t len, char **out, const char **why);

#endif
