/* libcurl's multi-socket API on a libev loop (the shape of curl's evhiperfifo.c example): curl says
 * which sockets to watch (one ev_io each) and when to call back (one ev_timer); finished transfers
 * are handed to their own completion callback. Every CURLMcode is checked and logged. On top, a
 * small GET fetcher (bounded body, TLS settings, timeout). Used by introspect.c, and by anything
 * else that fetches over HTTP (an IdP's JWKS). One per event loop and user. */
#ifndef PTA_CURL_EV_H
#define PTA_CURL_EV_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>
#include <ev.h>

#include "list.h"

struct curl_ev;

/* Called from the loop once the transfer is finished and already removed from the multi handle;
 * the callee owns the easy handle again (it may add it anew or clean it up). */
typedef void (*curl_ev_done_fn)(void *ud, CURL *easy, CURLcode rc);

/* Embedded by the caller in its per-transfer state, so that adding a transfer allocates nothing.
 * curl_ev uses the easy handle's CURLOPT_PRIVATE: callers must not set it. */
struct curl_ev_transfer {
    CURL *easy;
    curl_ev_done_fn done;
    void *ud;
    struct list node; /* private: the running transfers */
};

/* NULL when curl cannot be initialised or memory is short. max_connects: idle connections kept for
 * keep-alive (0: curl's default). */
struct curl_ev *curl_ev_new(struct ev_loop *loop, long max_connects);
int curl_ev_set_max_connects(struct curl_ev *c, long max_connects);
/* Starts t (it runs from the loop: done() is never called from inside). 0, or -1 (logged). */
int curl_ev_add(struct curl_ev *c, struct curl_ev_transfer *t);
/* Aborts t; its done() is not called. */
void curl_ev_remove(struct curl_ev *c, struct curl_ev_transfer *t);
/* Transfers added and not finished or removed. */
unsigned curl_ev_running(const struct curl_ev *c);
/* Removes the transfers still running, calling each done() with CURLE_ABORTED_BY_CALLBACK (a
 * done() must not add transfers then), and closes the cached connections. */
void curl_ev_free(struct curl_ev *c);

/* ---- response headers (pure helpers, shared by every curl user) ------------------------------ */

/* If line (a raw header line from CURLOPT_HEADERFUNCTION) is "<name>: value", the offset of the
 * value; else 0. name is matched case-insensitively. */
size_t curl_ev_header_is(const char *line, size_t len, const char *name);
/* Copies the value v (len bytes, untrimmed) into dst (cap bytes), trimmed; a value that does not
 * fit becomes fallback instead of a truncation (which could change its meaning). */
void curl_ev_header_value(char *dst, size_t cap, const char *v, size_t len, const char *fallback);

/* ---- GET fetcher ------------------------------------------------------------------------------
 */

struct curl_fetch_tls {
    const char *ca_file;                  /* extra CA bundle, may be NULL */
    const char *client_cert, *client_key; /* mTLS, may be NULL */
    bool insecure_skip_verify;            /* off by default */
};

struct curl_fetch_result {
    CURLcode rc;    /* CURLE_OK when an HTTP answer arrived */
    bool too_large; /* the body went past max_body (rc is then an error) */
    long status;    /* HTTP status, 0 without an answer */
    const char *content_type, *cache_control, *etag; /* NULL when absent */
    const char *body;                                /* NUL-terminated, NULL when empty */
    size_t body_len;
    const char *error; /* curl's message when rc != CURLE_OK */
};

/* Called once from the loop; result and its strings are valid during the call only. */
typedef void (*curl_fetch_fn)(void *ud, const struct curl_fetch_result *result);

/* GETs url (http or https, no redirects) within timeout_ms, accepting at most max_body bytes.
 * 0, or -1 when it could not start (done is then not called). */
int curl_fetch_get(struct curl_ev *c, const char *url, const struct curl_fetch_tls *tls,
                   long timeout_ms, size_t max_body, curl_fetch_fn done, void *ud);

#endif
