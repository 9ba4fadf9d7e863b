/* The RFC 7662 introspection client: POSTs tokens to the identity server with libcurl's
 * multi-socket API driven by the agent's libev loop (never a blocking call), keeps connections
 * alive, bounds the number of concurrent requests and each answer's size and time, and hands the
 * classified answer back through a callback. One per event loop. Used by agent.c. */
#ifndef PTA_INTROSPECT_H
#define PTA_INTROSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "client_auth.h"
#include "idp_response.h"
#include "token.h"

struct introspect_config {
    const char *url;           /* NULL: introspection not configured (every token answers 503) */
    const char *accept;        /* default "application/jwt" */
    const char *client_id;     /* may be NULL with CLIENT_AUTH_NONE */
    const char *client_secret; /* the secret itself, read from a file or the environment */
    enum client_auth auth;
    bool token_type_hint;                 /* adds token_type_hint=access_token */
    const char *ca_file;                  /* extra CA bundle, may be NULL */
    const char *client_cert, *client_key; /* mTLS, may be NULL */
    bool insecure_skip_verify;            /* off by default; logged loudly when on */
    unsigned timeout_ms;                  /* whole request, default 2000 */
    unsigned connect_timeout_ms;          /* default 1000 */
    unsigned max_concurrent;              /* default 64; more wait in a FIFO queue */
    size_t max_response;                  /* default 65536 bytes; larger is an IdP error */
    unsigned max_retries; /* 0 or 1: retry.c decides which failures, within timeout_ms */
    /* Classification beyond the old mapping (kept claims, inactive statuses); copied. NULL: the
     * old mapping. */
    const struct idp_settings *classify;
};

/* Called once per introspector_start(), from the event loop (never from inside start()). ti is a
 * reference the callee owns; never NULL. latency_ms is the time the IdP took (0 when queued only).
 * done() may call introspector_start() or introspector_reconfigure(), but not introspector_free();
 * during introspector_free(), introspector_start() returns -1. */
typedef void (*introspect_done_fn)(void *ud, struct token_info *ti, double latency_ms);

/* Copies cfg's strings. NULL when out of memory or when client authentication is asked for without
 * a client_id. */
struct introspector *introspector_new(struct ev_loop *loop, const struct introspect_config *cfg);
/* Replaces the settings for requests started from now on (reload); transfers in flight finish
 * with the settings they started with. The strings are copied. Returns 0, or -1 (old settings
 * kept) when out of memory or when client authentication is asked for without a client_id. */
int introspector_reconfigure(struct introspector *in, const struct introspect_config *cfg);
/* Copies the token. Returns 0, or -1 when out of memory or during introspector_free() (done is
 * then not called). */
int introspector_start(struct introspector *in, const char *token, size_t len,
                       introspect_done_fn done, void *ud);
/* Requests in flight, queued or waiting to be retried. */
unsigned introspector_pending(const struct introspector *in);
/* Retries made since the introspector was created. */
uint64_t introspector_retries(const struct introspector *in);
/* Aborts everything in flight, queued or not yet delivered; each done() is called once with a
 * TOKEN_IDP_ERROR (reason "introspection aborted") before this returns. */
void introspector_free(struct introspector *in);

#endif
