/* Revocation on the agent's HTTP server: POST /admin/purge and GET /admin/cache (admin token), and
 * the OpenID Connect Back-Channel Logout receiver POST /backchannel-logout (the logout token is
 * the credential). The handlers parse, validate, count and log; applying a purge to the cache
 * tiers is the daemon's job, through revoke_ops. Used by main.c. */
#ifndef PTA_REVOKE_H
#define PTA_REVOKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "http_router.h"
#include "jwks.h"
#include "logout_token.h"
#include "purge.h"

#define REVOKE_LIST_MAX 1000     /* entries GET /admin/cache returns at most */
#define REVOKE_LOGOUT_BODY 32768 /* bytes of a back-channel logout POST */

struct revoke_ops {
    /* The cache key of a raw token (the L1 HMAC). */
    void (*token_key)(void *ud, const char *token, size_t len, uint8_t out[PURGE_KEY_LEN]);
    /* Drops what sel selects from every tier (L1, its in-flight introspections, and L2, the fast
     * path and the fleet when they exist). Returns the L1 entries dropped. */
    size_t (*purge)(void *ud, const struct purge_selector *sel);
    /* Calls fn for at most max entries that sel (SUB, CLIENT_ID, SID or TOKEN_HASH) selects;
     * returns how many match in all. */
    size_t (*list)(void *ud, const struct purge_selector *sel, size_t max, purge_entry_fn fn,
                   void *ctx);
};

struct revoke_config {
    /* Back-channel logout; off unless issuer and jwks_url are both set. Strings are copied. */
    const char *issuer;
    const char *client_id; /* aud of the logout tokens: our client id at the IdP */
    const char *jwks_url;
    const char *ca_file;
    bool insecure;
    uint32_t skew, max_age; /* seconds; 0: the defaults of logout_token.h */
    logout_clock_fn clock;  /* NULL: real time (tests inject one) */
    void *clock_ud;
};

/* The counters /metrics shows. */
struct revoke_stats {
    uint64_t purges[PURGE_ALL + 1]; /* requests, by selector kind (admin API and logouts) */
    uint64_t purged_entries;
    uint64_t purge_refused; /* 400 answers of /admin/purge */
    uint64_t logouts, logout_refused, logout_unknown_key;
    uint64_t jwks_fetches, jwks_fetch_errors;
};

/* loop may be NULL when back-channel logout is off (or in tests that set keys themselves: then
 * no fetcher runs). NULL with err filled on failure. */
struct revoke *revoke_new(struct ev_loop *loop, const struct revoke_config *cfg,
                          const struct revoke_ops *ops, void *ud, char *err, size_t errlen);
void revoke_free(struct revoke *rv);
bool revoke_logout_enabled(const struct revoke *rv);

/* Adds POST /admin/purge, GET /admin/cache and, when enabled, POST /backchannel-logout. */
int revoke_add_routes(struct revoke *rv, struct http_router *r);

/* The handlers (exposed for the unit tests). */
void revoke_serve_purge(void *ud, const struct http_request *req, struct http_response *resp);
void revoke_serve_cache(void *ud, const struct http_request *req, struct http_response *resp);
void revoke_serve_logout(void *ud, const struct http_request *req, struct http_response *resp);

/* Replaces the logout keys (takes s; the fetcher calls it on the loop; tests directly). */
void revoke_set_keys(struct revoke *rv, struct jwks *s);
/* The logout token validator (tests reset its replay cache). NULL when logout is off. */
struct logout_validator *revoke_validator(struct revoke *rv);

void revoke_get_stats(struct revoke *rv, struct revoke_stats *st);
/* Prometheus text for /metrics (malloc'd; NULL on ENOMEM). */
char *revoke_metrics_text(struct revoke *rv);

#endif
