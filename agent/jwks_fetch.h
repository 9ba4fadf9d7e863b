/* Keeps the identity server's JWKS (for back-channel logout tokens) fresh: fetched over HTTPS at
 * start, refreshed when its Cache-Control max-age (bounded) runs out, and refetched on demand when
 * a token names an unknown kid (key rotation), at most once per min_interval so that forged tokens
 * cannot make us hammer the IdP. Runs on the event loop (curl_ev's GET fetcher, bounded by a
 * timeout and JWKS_MAX_DOC). Used by revoke.c. */
#ifndef PTA_JWKS_FETCH_H
#define PTA_JWKS_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "jwks.h"

struct jwks_fetch_config {
    const char *url;        /* https://...; http:// only to a loopback host (tests); copied */
    const char *ca_file;    /* NULL: the system store; copied */
    bool insecure;          /* skip TLS verification (tests only, like the introspection's) */
    uint32_t timeout_ms;    /* per fetch; default 5000 */
    uint32_t min_interval;  /* seconds between two fetches; default 10 */
    uint32_t refresh_min_s; /* bounds on the refresh period taken from max-age: default 60 */
    uint32_t refresh_max_s; /* default 300; also the period when the IdP sends no max-age */
};

/* Called from the loop with each newly fetched set; takes ownership of it. */
typedef void (*jwks_update_fn)(void *ud, struct jwks *fresh);

/* The refresh period for an answer's Cache-Control header value (NULL: none): its max-age bounded
 * to [lo, hi]; hi without max-age; lo with no-store or no-cache. Pure, for the tests. */
uint32_t jwks_refresh_period(const char *cache_control, uint32_t lo, uint32_t hi);

/* Starts fetching; the first fetch begins at once. NULL with err filled on failure. */
struct jwks_fetcher *jwks_fetcher_start(struct ev_loop *loop, const struct jwks_fetch_config *cfg,
                                        jwks_update_fn on_update, void *ud, char *err,
                                        size_t errlen);
/* Loop thread: asks for a fetch as soon as min_interval allows (unknown kid). Never blocks. */
void jwks_fetcher_refetch(struct jwks_fetcher *f);
/* Fetches completed (ok) and failed, for metrics. */
void jwks_fetcher_counts(struct jwks_fetcher *f, uint64_t *ok, uint64_t *failed);
/* Stops (a fetch in progress is aborted) and frees. NULL is a no-op. */
void jwks_fetcher_stop(struct jwks_fetcher *f);

#endif
