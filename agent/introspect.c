/* RFC 7662 introspection over libcurl's multi-socket API, driven by the caller's libev loop.
 *
 * Shape: every introspector_start() becomes a struct request in a FIFO queue; pump() moves queued
 * requests onto reusable easy handles (struct xfer) while fewer than max_concurrent are in flight.
 * curl_ev.c drives the transfers on the loop and calls xfer_done() for each finished one. Results
 * that are known without a transfer (not configured, setup failure) are delivered by the "kick"
 * timer so that done() never runs inside start(). Client authentication is encoded by
 * client_auth.c. A failed attempt may be retried once (retry.c decides): the request then waits
 * on its own timer in the "waiting" list and goes back to the head of the queue, its time budget
 * still counted from introspector_start().
 *
 * The settings live in a reference-counted struct settings: a reload swaps in a new one while
 * transfers in flight keep the one their headers and body were built from. */
#include "introspect.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "client_auth.h"
#include "clock.h"
#include "curl_ev.h"
#include "idp_response.h"
#include "list.h"
#include "log.h"
#include "retry.h"
#include "version.h"

#define DEFAULT_ACCEPT "application/jwt"
#define DEFAULT_TIMEOUT_MS 2000
#define DEFAULT_CONNECT_TIMEOUT_MS 1000
#define DEFAULT_MAX_CONCURRENT 64
/* Requests waiting for a transfer slot, per slot. Beyond it, and for a request that waited longer
 * than the whole request timeout, the answer is 503 at once: by then HAProxy has given up on it
 * (its timeout processing exceeds ours), and sending it would only feed an IdP that is already
 * the bottleneck while newer requests wait behind it. */
#define QUEUE_PER_SLOT 16
#define DEFAULT_MAX_RESPONSE 65536
/* Longer Content-Type / Cache-Control values are not truncated (that could change their meaning,
 * e.g. max-age=3600 -> max-age=36) but replaced: see header_cb. */
#define HDR_VALUE_MAX 256

struct settings {
    int refs;     /* the introspector's reference plus one per transfer built from it */
    uint64_t gen; /* which snapshot of this introspector it is (1, 2, ...): never reused */
    char *url;
    char *ca_file, *client_cert, *client_key;
    bool insecure;
    bool token_type_hint;
    long timeout_ms, connect_timeout_ms;
    size_t max_response;
    unsigned max_concurrent;
    unsigned max_retries;
    char *form_auth;            /* "&client_id=..[&client_secret=..]" for CLIENT_AUTH_POST */
    struct curl_slist *headers; /* shared by every transfer; holds the Basic credentials */
    struct idp_status_set inactive;
    struct idp_settings classify; /* .inactive points at the member above */
};

struct request {
    struct list node; /* in->queue, in->deferred_list or in->waiting */
    introspect_done_fn done;
    void *ud;
    struct token_info *result; /* decided without a transfer, delivered by the kick timer */
    ev_tstamp enqueued;        /* loop time of introspector_start() */
    long budget_ms;            /* what is left of the timeout when the transfer starts */
    unsigned retries;          /* retries made so far */
    ev_timer retry;            /* the delay before a retry (data: the introspector) */
    size_t len;
    char token[]; /* NUL-terminated copy */
};

/* One easy handle and the buffers of the transfer it carries; recycled through the free list so
 * that a steady load allocates nothing per request but the request itself. */
struct xfer {
    struct introspector *in;
    struct list node;          /* in->active or in->idle */
    struct curl_ev_transfer t; /* t.easy: the handle, kept across transfers */
    struct settings *s;        /* the settings this transfer was built from (a reference) */
    /* The generation of the settings t.easy's fixed options were set from (0: none). A number,
     * not a pointer: a later snapshot may be allocated where a freed one was. */
    uint64_t configured;
    struct request *req;
    double started; /* ev_time() when handed to curl */
    char *body;
    size_t body_len, body_cap;
    char *post;
    size_t post_cap;
    char content_type[HDR_VALUE_MAX];
    char cache_control[HDR_VALUE_MAX];
    char retry_after[HDR_VALUE_MAX];
    bool too_large;
    bool answered; /* a response byte arrived (a retry would no longer be safe) */
    char errbuf[CURL_ERROR_SIZE];
};

struct introspector {
    struct ev_loop *loop;
    struct curl_ev *curl;
    struct settings *s;
    uint64_t settings_gen;     /* the last generation handed out */
    ev_timer kick;             /* delivers the deferred list from the loop */
    struct list queue;         /* requests waiting for a transfer slot, oldest first */
    struct list deferred_list; /* requests answered without a transfer, for the kick timer */
    struct list active, idle;  /* transfers in flight; easy handles kept for reuse */
    struct list waiting;       /* requests waiting for their retry timer */
    unsigned queued, deferred, n_active, n_free, nwaiting;
    uint64_t retries;
    uint32_t rng; /* xorshift state for the retry jitter (not a secret) */
    bool closing;
};

/* Returned when even an error answer cannot be allocated: done() must never get NULL. The huge
 * refcount means token_unref() never frees it; no_store keeps it out of the cache. */
static struct token_info oom_answer = {
    .refcnt = 1 << 30,
    .outcome = TOKEN_IDP_ERROR,
    .max_age = -1,
    .no_store = true,
    .reason = "out of memory",
};

static struct token_info *answer(enum token_outcome o, const char *reason)
{
    struct token_info *ti = token_info_new(o, reason);
    return ti ? ti : token_ref(&oom_answer);
}

/* ---- settings ---------------------------------------------------------------------------- */

static void settings_unref(struct settings *s)
{
    if (!s || --s->refs > 0)
        return;
    free(s->url);
    free(s->ca_file);
    free(s->client_cert);
    free(s->client_key);
    client_auth_free(s->form_auth);
    for (struct curl_slist *h = s->headers; h; h = h->next)
        OPENSSL_cleanse(h->data, strlen(h->data)); /* one of them carries the client secret */
    curl_slist_free_all(s->headers);
    free(s);
}

static int dup_opt(char **dst, const char *src)
{
    *dst = src ? strdup(src) : NULL;
    return src && !*dst ? -1 : 0;
}

static int settings_headers(struct settings *s, const struct introspect_config *cfg)
{
    const char *accept = cfg->accept && *cfg->accept ? cfg->accept : DEFAULT_ACCEPT;
    size_t alen = strlen("Accept: ") + strlen(accept) + 1;
    char *accept_hdr = malloc(alen);
    if (!accept_hdr)
        return -1;
    snprintf(accept_hdr, alen, "Accept: %s", accept);
    char *auth_hdr = NULL;
    if (cfg->auth == CLIENT_AUTH_BASIC &&
        !(auth_hdr = client_auth_basic_header(cfg->client_id, cfg->client_secret))) {
        free(accept_hdr);
        return -1;
    }
    /* "Expect:" with no value stops curl from sending Expect: 100-continue (a round trip). */
    const char *lines[] = {"Content-Type: application/x-www-form-urlencoded", accept_hdr,
                           "Expect:", "User-Agent: phantom-token-agent/" PTA_VERSION, auth_hdr};
    int rc = 0;
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]) && rc == 0; i++) {
        struct curl_slist *n = lines[i] ? curl_slist_append(s->headers, lines[i]) : s->headers;
        if (!n)
            rc = -1;
        else
            s->headers = n;
    }
    free(accept_hdr);
    client_auth_free(auth_hdr);
    return rc;
}

static struct settings *settings_new(const struct introspect_config *cfg)
{
    if ((cfg->auth == CLIENT_AUTH_BASIC || cfg->auth == CLIENT_AUTH_POST) && !cfg->client_id &&
        cfg->url) {
        log_error("introspection: client authentication needs a client id");
        return NULL;
    }
    struct settings *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->refs = 1;
    s->insecure = cfg->insecure_skip_verify;
    s->token_type_hint = cfg->token_type_hint;
    s->timeout_ms = cfg->timeout_ms ? (long)cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
    s->connect_timeout_ms =
        cfg->connect_timeout_ms ? (long)cfg->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
    s->max_concurrent = cfg->max_concurrent ? cfg->max_concurrent : DEFAULT_MAX_CONCURRENT;
    s->max_response = cfg->max_response ? cfg->max_response : DEFAULT_MAX_RESPONSE;
    s->max_retries = cfg->max_retries;
    if (cfg->classify) {
        s->classify.keep_claims = cfg->classify->keep_claims;
        if (cfg->classify->inactive)
            s->inactive = *cfg->classify->inactive;
    }
    s->classify.inactive = &s->inactive;
    int rc = dup_opt(&s->url, cfg->url) | dup_opt(&s->ca_file, cfg->ca_file) |
             dup_opt(&s->client_cert, cfg->client_cert) | dup_opt(&s->client_key, cfg->client_key);
    if (rc == 0 && cfg->url && cfg->auth == CLIENT_AUTH_POST &&
        !(s->form_auth = client_auth_post_fields(cfg->client_id, cfg->client_secret)))
        rc = -1;
    if (rc == 0 && cfg->url)
        rc = settings_headers(s, cfg);
    if (rc != 0) {
        settings_unref(s);
        return NULL;
    }
    if (s->url && s->insecure)
        log_warn("introspection: TLS certificate verification is OFF (insecure-skip-verify); "
                 "do not run like this in production");
    return s;
}

/* ---- queues ------------------------------------------------------------------------------ */

/* FIFO on a list: append at the tail (after head->prev), take from the head. */
static void fifo_push(struct list *head, struct request *r)
{
    list_insert(head->prev, &r->node);
}

static struct request *fifo_pop(struct list *head)
{
    if (list_empty(head))
        return NULL;
    struct request *r = list_entry(head->next, struct request, node);
    list_del(&r->node);
    return r;
}

static void request_free(struct request *r)
{
    OPENSSL_cleanse(r->token, r->len);
    free(r);
}

/* Calls done() and frees the request; ti's reference passes to the callee. */
static void complete(struct request *r, struct token_info *ti, double latency_ms)
{
    introspect_done_fn done = r->done;
    void *ud = r->ud;
    request_free(r);
    done(ud, ti, latency_ms);
}

/* Queues r for delivery from the loop with an answer already decided. */
static void defer(struct introspector *in, struct request *r, struct token_info *ti)
{
    r->result = ti;
    fifo_push(&in->deferred_list, r);
    in->deferred++;
    if (!ev_is_active(&in->kick)) {
        ev_timer_set(&in->kick, 0., 0.);
        ev_timer_start(in->loop, &in->kick);
    }
}

/* Takes the whole list first, so that answers deferred by the callbacks wait for the next loop
 * iteration instead of growing this one. */
static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct introspector *in = w->data;
    struct list batch;
    list_init(&batch);
    if (!list_empty(&in->deferred_list)) { /* move the whole list onto batch */
        batch.next = in->deferred_list.next;
        batch.prev = in->deferred_list.prev;
        batch.next->prev = batch.prev->next = &batch;
        list_init(&in->deferred_list);
    }
    in->deferred = 0;
    struct request *r;
    while ((r = fifo_pop(&batch)))
        complete(r, r->result, 0.);
}

/* ---- transfers --------------------------------------------------------------------------- */

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * nmemb;
    x->answered = true;
    /* Abort rather than truncate: a cut JWT must not look like an answer. */
    if (len > x->s->max_response - x->body_len) {
        x->too_large = true;
        return 0;
    }
    if (x->body_len + len + 1 > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap * 2 : 2048;
        while (cap < x->body_len + len + 1)
            cap *= 2;
        if (cap > x->s->max_response + 1)
            cap = x->s->max_response + 1;
        char *b = realloc(x->body, cap);
        if (!b)
            return 0;
        x->body = b;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, data, len);
    x->body_len += len;
    x->body[x->body_len] = '\0';
    return len;
}

static size_t header_cb(char *line, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * nmemb, at;
    x->answered = true;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* A new status line (after a 1xx): only the final answer's headers count. */
        x->content_type[0] = x->cache_control[0] = x->retry_after[0] = '\0';
    } else if ((at = curl_ev_header_is(line, len, "content-type"))) {
        /* Unreadable type: the classifier will reject the answer as not a JWT. */
        curl_ev_header_value(x->content_type, HDR_VALUE_MAX, line + at, len - at, "invalid");
    } else if ((at = curl_ev_header_is(line, len, "cache-control"))) {
        /* Unreadable caching instructions: the safe reading is "do not cache". */
        curl_ev_header_value(x->cache_control, HDR_VALUE_MAX, line + at, len - at, "no-store");
    } else if ((at = curl_ev_header_is(line, len, "retry-after"))) {
        /* Unreadable: the parser refuses "" and the 503 is not retried. */
        curl_ev_header_value(x->retry_after, HDR_VALUE_MAX, line + at, len - at, "");
    }
    return len;
}

/* The POST body, in the transfer's own buffer (CURLOPT_POSTFIELDS does not copy). */
static int build_post(struct xfer *x, const struct settings *s, const struct request *r)
{
    static const char hint[] = "&token_type_hint=access_token";
    size_t need = strlen("token=") + 3 * r->len + sizeof(hint) +
                  (s->form_auth ? strlen(s->form_auth) : 0) + 1;
    if (need > x->post_cap) {
        char *p = realloc(x->post, need);
        if (!p)
            return -1;
        x->post = p;
        x->post_cap = need;
    }
    size_t n = strlen("token=");
    memcpy(x->post, "token=", n);
    n += client_auth_form_encode(r->token, r->len, x->post + n);
    if (s->token_type_hint) {
        memcpy(x->post + n, hint, sizeof(hint) - 1);
        n += sizeof(hint) - 1;
    }
    if (s->form_auth) {
        memcpy(x->post + n, s->form_auth, strlen(s->form_auth));
        n += strlen(s->form_auth);
    }
    x->post[n] = '\0';
    return 0;
}

/* The options that depend only on the settings, set once per handle and snapshot: a reset and
 * twenty options per request were 3 % of the agent's instructions on a miss. A handle that
 * served other settings (a reload) is reset first. curl_easy_reset() keeps the multi handle's
 * connection cache, so keep-alive survives. */
static int xfer_configure(struct xfer *x, const struct settings *s)
{
    CURL *e = x->t.easy;
    curl_easy_reset(e);
    x->configured = 0;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, s->url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK; /* no SIGALRM in a daemon */
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms) != CURLE_OK;
    /* Refuses a declared Content-Length above the bound before reading any of it. */
    bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)s->max_response) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, x) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, s->insecure ? 0L : 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, s->insecure ? 0L : 2L) != CURLE_OK;
    if (s->ca_file)
        bad |= curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file) != CURLE_OK;
    if (s->client_cert)
        bad |= curl_easy_setopt(e, CURLOPT_SSLCERT, s->client_cert) != CURLE_OK;
    if (s->client_key)
        bad |= curl_easy_setopt(e, CURLOPT_SSLKEY, s->client_key) != CURLE_OK;
    if (bad)
        return -1;
    x->configured = s->gen;
    return 0;
}

/* Prepares x for r: the fixed options when the handle does not have them yet, then what changes
 * with every request (the body and the time left). */
static int xfer_setup(struct xfer *x, const struct settings *s, const struct request *r)
{
    if (build_post(x, s, r) != 0)
        return -1;
    if (x->configured != s->gen && xfer_configure(x, s) != 0)
        return -1;
    x->body_len = 0;
    x->content_type[0] = x->cache_control[0] = x->retry_after[0] = x->errbuf[0] = '\0';
    x->too_large = false;
    x->answered = false;
    CURL *e = x->t.easy;
    int bad = 0;
    bad |=
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(x->post)) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->post) != CURLE_OK;
    /* The timeout counts from introspector_start(): time spent queued is part of it, so that a
     * request never outlives the budget HAProxy's "timeout processing" was sized for. */
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->budget_ms) != CURLE_OK;
    if (bad)
        x->configured = 0; /* set everything again next time */
    return bad ? -1 : 0;
}

static void xfer_done(void *ud, CURL *easy, CURLcode rc);

static struct xfer *xfer_get(struct introspector *in)
{
    if (!list_empty(&in->idle)) {
        struct xfer *x = list_entry(in->idle.next, struct xfer, node);
        list_del(&x->node);
        in->n_free--;
        return x;
    }
    struct xfer *x = calloc(1, sizeof(*x));
    if (x && !(x->t.easy = curl_easy_init())) {
        free(x);
        return NULL;
    }
    if (x) {
        x->in = in;
        x->t.done = xfer_done;
        x->t.ud = x;
        list_init(&x->node);
    }
    return x;
}

static void xfer_destroy(struct xfer *x)
{
    curl_easy_cleanup(x->t.easy);
    free(x->body);
    if (x->post)
        OPENSSL_cleanse(x->post, x->post_cap); /* held the token and maybe the secret */
    free(x->post);
    free(x);
}

/* Back to the idle list, keeping no more idle handles than transfers may run at once. */
static void xfer_put(struct introspector *in, struct xfer *x)
{
    settings_unref(x->s);
    x->s = NULL;
    x->req = NULL;
    if (in->n_free >= in->s->max_concurrent || in->closing) {
        xfer_destroy(x);
        return;
    }
    list_insert(&in->idle, &x->node);
    in->n_free++;
}

static void active_unlink(struct introspector *in, struct xfer *x)
{
    list_del(&x->node);
    in->n_active--;
}

/* Hands r to curl. Returns -1 (r untouched) when it could not. */
static int launch(struct introspector *in, struct request *r)
{
    struct xfer *x = xfer_get(in);
    if (!x)
        return -1;
    x->s = in->s;
    in->s->refs++;
    if (xfer_setup(x, x->s, r) != 0) {
        xfer_put(in, x);
        return -1;
    }
    x->req = r;
    x->started = ev_time();
    if (curl_ev_add(in->curl, &x->t) != 0) {
        xfer_put(in, x);
        return -1;
    }
    list_insert(&in->active, &x->node);
    in->n_active++;
    return 0;
}

/* Sets what is left of the request's time budget; false when nothing is. */
static bool time_left(const struct introspector *in, struct request *r)
{
    double waited_ms = (ev_now(in->loop) - r->enqueued) * 1000.0;
    r->budget_ms = (long)((double)in->s->timeout_ms - waited_ms);
    return r->budget_ms > 0;
}

/* Starts queued requests while there is room. Never calls done() itself. */
static void pump(struct introspector *in)
{
    while (!in->closing && !list_empty(&in->queue) && in->n_active < in->s->max_concurrent) {
        struct request *r = fifo_pop(&in->queue);
        in->queued--;
        if (!time_left(in, r))
            defer(in, r, answer(TOKEN_IDP_UNAVAIL, "waited too long for an introspection slot"));
        else if (!in->s->url)
            defer(in, r, answer(TOKEN_IDP_UNAVAIL, "introspection not configured"));
        else if (launch(in, r) != 0)
            defer(in, r, answer(TOKEN_IDP_ERROR, "introspection request setup failed"));
    }
}

static const char *curl_reason(const struct xfer *x, CURLcode rc)
{
    if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED)
        return "IdP answer too large";
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return "IdP timeout";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return "IdP host not resolved";
    case CURLE_COULDNT_CONNECT:
        return "IdP connection failed";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
        return "IdP TLS error";
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
        return "IdP connection error";
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return "bad introspection URL";
    default:
        return "IdP request failed";
    }
}

static struct token_info *xfer_result(struct xfer *x, CURLcode rc, double ms, const char *tid)
{
    if (rc != CURLE_OK) {
        const char *reason = curl_reason(x, rc);
        log_warn("introspection of token %s failed after %.1f ms: %s (%s%s%s)", tid, ms, reason,
                 curl_easy_strerror(rc), x->errbuf[0] ? ": " : "", x->errbuf);
        return answer(TOKEN_IDP_ERROR, reason);
    }
    long status = 0;
    curl_easy_getinfo(x->t.easy, CURLINFO_RESPONSE_CODE, &status);
    struct idp_answer a = {
        .http_status = status,
        .content_type = x->content_type[0] ? x->content_type : NULL,
        .cache_control = x->cache_control[0] ? x->cache_control : NULL,
        .body = x->body_len ? x->body : NULL,
        .body_len = x->body_len,
    };
    struct token_info *ti = idp_classify_with(&a, &x->s->classify);
    if (!ti)
        return token_ref(&oom_answer);
    if (ti->outcome != TOKEN_ACTIVE && ti->outcome != TOKEN_INACTIVE) {
        char ct[HDR_VALUE_MAX] = "no content type";
        if (a.content_type) /* the IdP's bytes: never raw into a log line */
            log_printable(a.content_type, strlen(a.content_type), ct, sizeof(ct));
        log_warn("introspection of token %s: IdP answered HTTP %ld (%s) after %.1f ms: %s", tid,
                 status, ct, ms, ti->reason ? ti->reason : "unusable answer");
    } else
        log_debug("introspection of token %s: HTTP %ld, %s, %.1f ms", tid, status,
                  ti->outcome == TOKEN_ACTIVE ? "active" : "inactive", ms);
    return ti;
}

/* ---- retries ------------------------------------------------------------------------------ */

/* How the attempt ended, in retry.c's terms. */
static enum retry_failure failure_of(const struct xfer *x, CURLcode rc, const struct token_info *ti)
{
    if (rc == CURLE_OK)
        return ti->outcome == TOKEN_ACTIVE || ti->outcome == TOKEN_INACTIVE ? RETRY_F_NONE
                                                                            : RETRY_F_HTTP;
    if (x->too_large)
        return RETRY_F_OTHER;
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        return RETRY_F_REFUSED;
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
        return RETRY_F_RESET; /* retry.c refuses it once a response byte had arrived */
    case CURLE_OPERATION_TIMEDOUT:
        return RETRY_F_TIMEOUT;
    default:
        return RETRY_F_OTHER;
    }
}

static uint32_t next_random(struct introspector *in)
{
    uint32_t v = in->rng;
    v ^= v << 13;
    v ^= v >> 17;
    v ^= v << 5;
    return in->rng = v ? v : 0x9e3779b9u;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct introspector *in = w->data;
    struct request *r = (struct request *)((char *)w - offsetof(struct request, retry));
    list_del(&r->node);
    in->nwaiting--;
    /* It has waited already: first in line. Its time budget still counts from the start. */
    list_insert(&in->queue, &r->node);
    in->queued++;
    pump(in);
}

/* After a failed attempt: schedules a retry when retry.c allows one (true; r is then kept). */
static bool maybe_retry(struct introspector *in, struct xfer *x, CURLcode rc,
                        const struct token_info *ti, struct request *r, const char *tid)
{
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(x->t.easy, CURLINFO_RESPONSE_CODE, &status);
    struct retry_attempt at = {
        .failure = failure_of(x, rc, ti),
        .response_started = x->answered && rc != CURLE_OK,
        .http_status = (int)status,
        .retry_after_ms = -1,
        .retries_done = r->retries,
        .now_ms = (int64_t)(ev_now(in->loop) * 1000.0),
        .deadline_ms = (int64_t)(r->enqueued * 1000.0) + x->s->timeout_ms,
    };
    if (at.failure == RETRY_F_NONE || in->closing)
        return false;
    if (x->retry_after[0])
        retry_after_parse(x->retry_after, strlen(x->retry_after), clock_ms(NULL),
                          &at.retry_after_ms);
    struct retry_policy p = retry_policy_default();
    p.max_retries = x->s->max_retries;
    struct retry_decision d = retry_decide(&p, &at, next_random(in));
    if (!d.retry) {
        log_debug("introspection of token %s not retried: %s", tid, d.why);
        return false;
    }
    log_info("introspection of token %s: retrying in %u ms (%s)", tid, d.delay_ms, d.why);
    r->retries++;
    in->retries++;
    ev_timer_init(&r->retry, retry_cb, d.delay_ms / 1000.0, 0.);
    r->retry.data = in;
    list_insert(&in->waiting, &r->node);
    in->nwaiting++;
    ev_timer_start(in->loop, &r->retry);
    return true;
}

/* curl_ev: a transfer finished (and is out of the multi handle). Completes it (or schedules its
 * retry), then refills from the queue. */
static void xfer_done(void *ud, CURL *easy, CURLcode rc)
{
    struct xfer *x = ud;
    struct introspector *in = x->in;
    active_unlink(in, x);
    struct request *r = x->req;
    double ms = (ev_time() - x->started) * 1e3;
    char tid[13]; /* identifies the token in the log lines without revealing it */
    log_token_id(r->token, r->len, tid);
    struct token_info *ti = xfer_result(x, rc, ms, tid);
    bool retried = maybe_retry(in, x, rc, ti, r, tid);
    xfer_put(in, x); /* before done(): a new start() from the callback can reuse it */
    if (retried)
        token_unref(ti);
    else
        complete(r, ti, ms);
    pump(in);
}

/* ---- API --------------------------------------------------------------------------------- */

struct introspector *introspector_new(struct ev_loop *loop, const struct introspect_config *cfg)
{
    struct introspector *in = calloc(1, sizeof(*in));
    if (!in || !(in->s = settings_new(cfg)) ||
        /* one idle connection per possible concurrent transfer stays open for keep-alive */
        !(in->curl = curl_ev_new(loop, (long)in->s->max_concurrent))) {
        if (in)
            settings_unref(in->s);
        free(in);
        return NULL;
    }
    in->s->gen = ++in->settings_gen;
    in->loop = loop;
    list_init(&in->queue);
    list_init(&in->deferred_list);
    list_init(&in->active);
    list_init(&in->idle);
    list_init(&in->waiting);
    in->rng = (uint32_t)(ev_time() * 1e6) | 1u;
    ev_timer_init(&in->kick, kick_cb, 0., 0.);
    in->kick.data = in;
    return in;
}

int introspector_reconfigure(struct introspector *in, const struct introspect_config *cfg)
{
    struct settings *s = settings_new(cfg);
    if (!s)
        return -1;
    s->gen = ++in->settings_gen;
    settings_unref(in->s);
    in->s = s;
    curl_ev_set_max_connects(in->curl, (long)s->max_concurrent); /* logged if it fails */
    pump(in); /* a larger max_concurrent may start queued requests */
    return 0;
}

int introspector_start(struct introspector *in, const char *token, size_t len,
                       introspect_done_fn done, void *ud)
{
    if (in->closing)
        return -1;
    struct request *r = malloc(sizeof(*r) + len + 1);
    if (!r)
        return -1;
    r->done = done;
    r->ud = ud;
    r->result = NULL;
    r->retries = 0;
    r->enqueued = ev_now(in->loop);
    r->len = len;
    memcpy(r->token, token, len);
    r->token[len] = '\0';
    if (!in->s->url) {
        defer(in, r, answer(TOKEN_IDP_UNAVAIL, "introspection not configured"));
        return 0;
    }
    if (in->queued >= QUEUE_PER_SLOT * in->s->max_concurrent) {
        defer(in, r, answer(TOKEN_IDP_UNAVAIL, "introspection queue full"));
        return 0;
    }
    fifo_push(&in->queue, r);
    in->queued++;
    /* Adding the handle only arms curl's timer; the transfer runs from the loop. */
    pump(in);
    return 0;
}

unsigned introspector_pending(const struct introspector *in)
{
    return in->queued + in->n_active + in->deferred + in->nwaiting;
}

uint64_t introspector_retries(const struct introspector *in)
{
    return in ? in->retries : 0;
}

static void abort_list(struct list *head, double latency_ms)
{
    struct request *r;
    while ((r = fifo_pop(head))) {
        token_unref(r->result);
        complete(r, answer(TOKEN_IDP_ERROR, "introspection aborted"), latency_ms);
    }
}

void introspector_free(struct introspector *in)
{
    if (!in)
        return;
    in->closing = true; /* start() from the done() callbacks below is refused */
    while (!list_empty(&in->active)) {
        struct xfer *x = list_entry(in->active.next, struct xfer, node);
        struct request *r = x->req;
        active_unlink(in, x);
        curl_ev_remove(in->curl, &x->t);
        double ms = (ev_time() - x->started) * 1e3;
        xfer_put(in, x);
        complete(r, answer(TOKEN_IDP_ERROR, "introspection aborted"), ms);
    }
    for (struct list *l = in->waiting.next; l != &in->waiting; l = l->next)
        ev_timer_stop(in->loop, &list_entry(l, struct request, node)->retry);
    in->queued = in->deferred = in->nwaiting = 0;
    abort_list(&in->queue, 0.);
    abort_list(&in->deferred_list, 0.);
    abort_list(&in->waiting, 0.);
    while (!list_empty(&in->idle)) {
        struct xfer *x = list_entry(in->idle.next, struct xfer, node);
        list_del(&x->node);
        xfer_destroy(x);
    }
    curl_ev_free(in->curl); /* closes the cached connections */
    ev_timer_stop(in->loop, &in->kick);
    settings_unref(in->s);
    free(in);
}
