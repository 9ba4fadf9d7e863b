/* curl multi-socket on libev: the glue every curl user shares, and a GET fetcher on top. */
#include "curl_ev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "list.h"
#include "log.h"
#include "version.h"

struct curl_ev {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer;    /* curl's single timeout */
    struct list socks; /* every watcher curl asked for, so free() can reclaim stragglers */
    struct list xfers; /* the running transfers */
    unsigned running;
    bool closing;
};

struct sockw {
    ev_io io; /* first: io_cb casts back */
    struct curl_ev *c;
    struct list node;
};

static bool mcheck(CURLMcode rc, const char *what)
{
    if (rc == CURLM_OK)
        return true;
    log_error("curl: %s failed: %s", what, curl_multi_strerror(rc));
    return false;
}

static struct curl_ev_transfer *detach(struct curl_ev *c, struct curl_ev_transfer *t)
{
    mcheck(curl_multi_remove_handle(c->multi, t->easy), "curl_multi_remove_handle");
    list_del(&t->node);
    c->running--;
    return t;
}

/* Hands every finished transfer to its callback. A callback may add transfers. */
static void check_done(struct curl_ev *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *easy = m->easy_handle;
        CURLcode rc = m->data.result; /* m is invalid once the handle is removed */
        struct curl_ev_transfer *t = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
        if (!t) /* not ours: cannot happen, but never leave it in the multi handle */
            mcheck(curl_multi_remove_handle(c->multi, easy), "curl_multi_remove_handle");
        else
            detach(c, t)->done(t->ud, easy, rc);
    }
}

static void socket_action(struct curl_ev *c, curl_socket_t fd, int flags)
{
    int running;
    mcheck(curl_multi_socket_action(c->multi, fd, flags, &running), "curl_multi_socket_action");
    check_done(c);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct curl_ev *c = ((struct sockw *)w)->c;
    int flags = (revents & EV_READ ? CURL_CSELECT_IN : 0) |
                (revents & EV_WRITE ? CURL_CSELECT_OUT : 0) |
                (revents & EV_ERROR ? CURL_CSELECT_ERR : 0);
    /* w may be freed inside (CURL_POLL_REMOVE): not touched after this call. */
    socket_action(c, w->fd, flags);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    socket_action(w->data, CURL_SOCKET_TIMEOUT, 0);
}

static void sockw_free(struct curl_ev *c, struct sockw *w)
{
    ev_io_stop(c->loop, &w->io);
    list_del(&w->node);
    free(w);
}

/* CURLMOPT_SOCKETFUNCTION: one ev_io per socket, its events following what curl waits for. */
static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct curl_ev *c = userp;
    struct sockw *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w)
            sockw_free(c, w);
        return 0;
    }
    if (!w) {
        if (!(w = calloc(1, sizeof(*w))))
            return -1; /* curl fails the transfer */
        w->c = c;
        ev_init(&w->io, io_cb);
        list_insert(&c->socks, &w->node);
        if (!mcheck(curl_multi_assign(c->multi, fd, w), "curl_multi_assign")) {
            sockw_free(c, w);
            return -1;
        }
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    ev_io_stop(c->loop, &w->io);
    ev_io_set(&w->io, fd, events);
    if (events)
        ev_io_start(c->loop, &w->io);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 removes the timer; 0 means "as soon as possible", which a 0 s
 * ev_timer gives on the next loop iteration (curl must not be called back from inside). */
static int curl_timer_set(CURLM *m, long timeout_ms, void *userp)
{
    struct curl_ev *c = userp;
    ev_timer_stop(c->loop, &c->timer);
    if (timeout_ms >= 0) {
        ev_timer_set(&c->timer, (double)timeout_ms / 1e3, 0.);
        ev_timer_start(c->loop, &c->timer);
    }
    return 0;
}

struct curl_ev *curl_ev_new(struct ev_loop *loop, long max_connects)
{
    /* Reference-counted by curl, and thread-safe in the libcurl we build against (>= 7.84). */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    struct curl_ev *c = calloc(1, sizeof(*c));
    if (!c || !(c->multi = curl_multi_init())) {
        free(c);
        curl_global_cleanup();
        return NULL;
    }
    c->loop = loop;
    list_init(&c->socks);
    list_init(&c->xfers);
    ev_timer_init(&c->timer, timer_cb, 0., 0.);
    c->timer.data = c;
    bool ok = mcheck(curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb),
                     "CURLMOPT_SOCKETFUNCTION") &&
              mcheck(curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c), "CURLMOPT_SOCKETDATA") &&
              mcheck(curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, curl_timer_set),
                     "CURLMOPT_TIMERFUNCTION") &&
              mcheck(curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c), "CURLMOPT_TIMERDATA") &&
              (max_connects <= 0 || curl_ev_set_max_connects(c, max_connects) == 0);
    if (!ok) {
        curl_ev_free(c);
        return NULL;
    }
    return c;
}

int curl_ev_set_max_connects(struct curl_ev *c, long max_connects)
{
    return mcheck(curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, max_connects),
                  "CURLMOPT_MAXCONNECTS")
               ? 0
               : -1;
}

int curl_ev_add(struct curl_ev *c, struct curl_ev_transfer *t)
{
    if (c->closing || curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t) != CURLE_OK)
        return -1;
    /* Adding the handle only arms curl's timer; the transfer runs from the loop. */
    if (!mcheck(curl_multi_add_handle(c->multi, t->easy), "curl_multi_add_handle"))
        return -1;
    list_insert(&c->xfers, &t->node);
    c->running++;
    return 0;
}

void curl_ev_remove(struct curl_ev *c, struct curl_ev_transfer *t)
{
    detach(c, t);
}

unsigned curl_ev_running(const struct curl_ev *c)
{
    return c->running;
}

void curl_ev_free(struct curl_ev *c)
{
    if (!c)
        return;
    c->closing = true;
    while (!list_empty(&c->xfers)) {
        struct curl_ev_transfer *t = list_entry(c->xfers.next, struct curl_ev_transfer, node);
        detach(c, t)->done(t->ud, t->easy, CURLE_ABORTED_BY_CALLBACK);
    }
    mcheck(curl_multi_cleanup(c->multi), "curl_multi_cleanup"); /* closes cached connections */
    while (!list_empty(&c->socks))
        sockw_free(c, list_entry(c->socks.next, struct sockw, node));
    ev_timer_stop(c->loop, &c->timer);
    free(c);
    curl_global_cleanup();
}

/* ---- headers -------------------------------------------------------------------------------- */

size_t curl_ev_header_is(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0 ? n + 1 : 0;
}

void curl_ev_header_value(char *dst, size_t cap, const char *v, size_t len, const char *fallback)
{
    while (len && (*v == ' ' || *v == '\t'))
        v++, len--;
    while (len &&
           (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len >= cap) {
        snprintf(dst, cap, "%s", fallback);
        return;
    }
    memcpy(dst, v, len);
    dst[len] = '\0';
}

/* ---- GET fetcher ---------------------------------------------------------------------------- */

#define FETCH_HDR_MAX 256

struct fetch {
    struct curl_ev_transfer t;
    curl_fetch_fn done;
    void *ud;
    size_t max_body;
    char *body;
    size_t body_len, body_cap;
    bool too_large;
    char content_type[FETCH_HDR_MAX], cache_control[FETCH_HDR_MAX], etag[FETCH_HDR_MAX];
    char errbuf[CURL_ERROR_SIZE];
};

static size_t fetch_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct fetch *f = ud;
    size_t len = size * nmemb;
    if (len > f->max_body - f->body_len) { /* abort rather than truncate */
        f->too_large = true;
        return 0;
    }
    if (f->body_len + len + 1 > f->body_cap) {
        size_t cap = f->body_cap ? f->body_cap : 1024;
        while (cap < f->body_len + len + 1)
            cap *= 2;
        char *b = realloc(f->body, cap);
        if (!b)
            return 0;
        f->body = b;
        f->body_cap = cap;
    }
    memcpy(f->body + f->body_len, data, len);
    f->body_len += len;
    f->body[f->body_len] = '\0';
    return len;
}

static size_t fetch_header(char *line, size_t size, size_t nmemb, void *ud)
{
    struct fetch *f = ud;
    size_t len = size * nmemb, at;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) /* only the final answer's headers count */
        f->content_type[0] = f->cache_control[0] = f->etag[0] = '\0';
    else if ((at = curl_ev_header_is(line, len, "content-type")))
        curl_ev_header_value(f->content_type, FETCH_HDR_MAX, line + at, len - at, "invalid");
    else if ((at = curl_ev_header_is(line, len, "cache-control")))
        curl_ev_header_value(f->cache_control, FETCH_HDR_MAX, line + at, len - at, "no-store");
    else if ((at = curl_ev_header_is(line, len, "etag")))
        curl_ev_header_value(f->etag, FETCH_HDR_MAX, line + at, len - at, "");
    return len;
}

static void fetch_free(struct fetch *f)
{
    curl_easy_cleanup(f->t.easy);
    free(f->body);
    free(f);
}

static void fetch_done(void *ud, CURL *easy, CURLcode rc)
{
    struct fetch *f = ud;
    struct curl_fetch_result r = {
        .rc = f->too_large ? CURLE_WRITE_ERROR : rc,
        .too_large = f->too_large,
        .content_type = f->content_type[0] ? f->content_type : NULL,
        .cache_control = f->cache_control[0] ? f->cache_control : NULL,
        .etag = f->etag[0] ? f->etag : NULL,
        .body = f->body_len ? f->body : NULL,
        .body_len = f->body_len,
    };
    if (r.rc == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
    else
        r.error = f->too_large   ? "answer too large"
                  : f->errbuf[0] ? f->errbuf
                                 : curl_easy_strerror(rc);
    f->done(f->ud, &r);
    fetch_free(f);
}

static int fetch_setup(struct fetch *f, const char *url, const struct curl_fetch_tls *tls,
                       long timeout_ms)
{
    CURL *e = f->t.easy;
    bool insecure = tls && tls->insecure_skip_verify;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)f->max_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "phantom-token-agent/" PTA_VERSION) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fetch_write) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, f) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, fetch_header) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, f) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, insecure ? 0L : 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, insecure ? 0L : 2L) != CURLE_OK;
    if (tls && tls->ca_file)
        bad |= curl_easy_setopt(e, CURLOPT_CAINFO, tls->ca_file) != CURLE_OK;
    if (tls && tls->client_cert)
        bad |= curl_easy_setopt(e, CURLOPT_SSLCERT, tls->client_cert) != CURLE_OK;
    if (tls && tls->client_key)
        bad |= curl_easy_setopt(e, CURLOPT_SSLKEY, tls->client_key) != CURLE_OK;
    return bad ? -1 : 0;
}

int curl_fetch_get(struct curl_ev *c, const char *url, const struct curl_fetch_tls *tls,
                   long timeout_ms, size_t max_body, curl_fetch_fn done, void *ud)
{
    struct fetch *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->done = done;
    f->ud = ud;
    f->max_body = max_body;
    f->t = (struct curl_ev_transfer){.easy = curl_easy_init(), .done = fetch_done, .ud = f};
    if (!f->t.easy || fetch_setup(f, url, tls, timeout_ms) < 0 || curl_ev_add(c, &f->t) < 0) {
        fetch_free(f);
        return -1;
    }
    return 0;
}
