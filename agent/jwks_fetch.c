/* JWKS fetcher: see jwks_fetch.h.
 *
 * Why a thread and not the loop's curl multi: a fetch happens every few minutes at most, and a
 * blocking easy handle on a thread of its own keeps the fetcher independent of the introspection
 * client (its budgets, its connection pool, its metrics). The only shared state is the mutex-
 * guarded request flag and the pending set; sets are immutable, so the loop swaps pointers. */
#include "jwks_fetch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "log.h"

#define CC_MAX 256 /* bytes of Cache-Control kept */

struct fetch_buf {
    char *data;
    size_t len;
    bool too_large;
    char cache_control[CC_MAX];
};

struct jwks_fetcher {
    char *url, *ca_file;
    bool insecure, plain_http;
    uint32_t timeout_ms, min_interval, refresh_min, refresh_max;
    struct ev_loop *loop;
    ev_async wake;
    jwks_update_fn on_update;
    void *ud;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* Under lock: */
    bool stopping, wanted, last_failed;
    struct jwks *pending;
    uint64_t ok, failed;
};

/* ---- pure helpers ---- */

static bool loopback_host(const char *h, size_t len)
{
    char buf[64];
    struct in_addr a4;
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, h, len);
    buf[len] = '\0';
    if (strcasecmp(buf, "localhost") == 0 || strcmp(buf, "[::1]") == 0)
        return true;
    return inet_pton(AF_INET, buf, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

bool jwks_url_allowed(const char *url)
{
    if (!url)
        return false;
    if (strncasecmp(url, "https://", 8) == 0)
        return url[8] != '\0' && !strchr(url, '@');
    if (strncasecmp(url, "http://", 7) != 0 || strchr(url, '@'))
        return false;
    const char *h = url + 7;
    size_t len = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/?#");
    return loopback_host(h, len);
}

uint32_t jwks_refresh_period(const char *cc, uint32_t lo, uint32_t hi)
{
    if (!cc)
        return hi;
    if (strcasestr(cc, "no-store") || strcasestr(cc, "no-cache"))
        return lo;
    const char *m = strcasestr(cc, "max-age=");
    if (!m)
        return hi;
    char *end;
    errno = 0;
    unsigned long v = strtoul(m + 8, &end, 10);
    if (end == m + 8 || errno)
        return hi;
    if (v < lo)
        return lo;
    return v > hi ? hi : (uint32_t)v;
}

/* ---- the fetch ---- */

static size_t write_cb(char *p, size_t size, size_t n, void *ud)
{
    struct fetch_buf *b = ud;
    size_t add = size * n;
    if (b->len + add > JWKS_MAX_DOC) {
        b->too_large = true;
        return 0; /* aborts the transfer */
    }
    char *d = realloc(b->data, b->len + add + 1);
    if (!d)
        return 0;
    memcpy(d + b->len, p, add);
    b->data = d;
    b->len += add;
    d[b->len] = '\0';
    return add;
}

static size_t header_cb(char *p, size_t size, size_t n, void *ud)
{
    struct fetch_buf *b = ud;
    size_t len = size * n;
    static const char name[] = "cache-control:";
    if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
        size_t v = len - (sizeof(name) - 1);
        if (v >= CC_MAX)
            v = CC_MAX - 1;
        memcpy(b->cache_control, p + sizeof(name) - 1, v);
        b->cache_control[v] = '\0';
    }
    return len;
}

static bool setup_easy(const struct jwks_fetcher *f, CURL *e, struct fetch_buf *b)
{
    bool bad = false;
    bad |= curl_easy_setopt(e, CURLOPT_URL, f->url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, f->plain_http ? "http" : "https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)f->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)JWKS_MAX_DOC) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, b) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, b) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, f->insecure ? 0L : 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, f->insecure ? 0L : 2L) != CURLE_OK;
    if (f->ca_file)
        bad |= curl_easy_setopt(e, CURLOPT_CAINFO, f->ca_file) != CURLE_OK;
    return !bad;
}

/* One GET of the JWKS. Returns the parsed set (and *period) or NULL with why. */
static struct jwks *fetch_once(const struct jwks_fetcher *f, uint32_t *period, const char **why)
{
    struct fetch_buf b = {0};
    struct jwks *s = NULL;
    long status = 0;
    CURL *e = curl_easy_init();
    CURLcode rc = CURLE_FAILED_INIT;
    if (e && setup_easy(f, e, &b))
        rc = curl_easy_perform(e);
    if (e)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK)
        *why = b.too_large ? "JWKS document too large" : curl_easy_strerror(rc);
    else if (status != 200)
        *why = "JWKS endpoint did not answer 200";
    else
        s = jwks_parse(b.data ? b.data : "", b.len, why);
    if (s)
        *period = jwks_refresh_period(b.cache_control[0] ? b.cache_control : NULL, f->refresh_min,
                                      f->refresh_max);
    curl_easy_cleanup(e);
    free(b.data);
    return s;
}

/* ---- the thread ---- */

static int64_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static void wait_until(struct jwks_fetcher *f, int64_t when)
{
    struct timespec ts = {.tv_sec = (time_t)when};
    pthread_cond_timedwait(&f->cond, &f->lock, &ts);
}

/* Under lock: publishes a fetch's outcome; logs once per change between working and failing. */
static void publish(struct jwks_fetcher *f, struct jwks *s, const char *why)
{
    if (s) {
        jwks_free(f->pending);
        f->pending = s;
        f->ok++;
        if (f->last_failed)
            log_info("jwks: fetched again (%zu keys)", s->n);
        ev_async_send(f->loop, &f->wake);
    } else {
        f->failed++;
        if (!f->last_failed)
            log_warn("jwks: fetch failed: %s (keeping the keys we have)", why);
    }
    f->last_failed = s == NULL;
}

static void *run(void *arg)
{
    struct jwks_fetcher *f = arg;
    int64_t next_due = 0, last = -(int64_t)f->min_interval;
    pthread_mutex_lock(&f->lock);
    while (!f->stopping) {
        int64_t now = mono_s(), soonest = last + f->min_interval;
        bool due = now >= next_due || (f->wanted && now >= soonest);
        if (!due) {
            wait_until(f, f->wanted && soonest < next_due ? soonest : next_due);
            continue;
        }
        f->wanted = false;
        pthread_mutex_unlock(&f->lock);
        const char *why = NULL;
        uint32_t period = f->refresh_max;
        struct jwks *s = fetch_once(f, &period, &why);
        pthread_mutex_lock(&f->lock);
        last = now;
        next_due = now + (s ? period : f->min_interval);
        publish(f, s, why);
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    struct jwks_fetcher *f = w->data;
    pthread_mutex_lock(&f->lock);
    struct jwks *s = f->pending;
    f->pending = NULL;
    pthread_mutex_unlock(&f->lock);
    if (s)
        f->on_update(f->ud, s);
}

static void fetcher_free(struct jwks_fetcher *f)
{
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
    jwks_free(f->pending);
    free(f->url);
    free(f->ca_file);
    free(f);
}

static bool init_sync(struct jwks_fetcher *f)
{
    pthread_condattr_t ca;
    bool ok = pthread_condattr_init(&ca) == 0;
    ok = ok && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
         pthread_cond_init(&f->cond, &ca) == 0;
    pthread_condattr_destroy(&ca);
    return ok && pthread_mutex_init(&f->lock, NULL) == 0;
}

struct jwks_fetcher *jwks_fetcher_start(struct ev_loop *loop, const struct jwks_fetch_config *cfg,
                                        jwks_update_fn on_update, void *ud, char *err,
                                        size_t errlen)
{
    if (!jwks_url_allowed(cfg->url)) {
        snprintf(err, errlen, "the JWKS URL must be https:// (http:// only to a loopback host)");
        return NULL;
    }
    struct jwks_fetcher *f = calloc(1, sizeof(*f));
    if (!f || !init_sync(f)) {
        free(f);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->url = strdup(cfg->url);
    f->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
    f->plain_http = strncasecmp(cfg->url, "http://", 7) == 0;
    f->insecure = cfg->insecure;
    f->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 5000;
    f->min_interval = cfg->min_interval ? cfg->min_interval : 10;
    f->refresh_min = cfg->refresh_min_s ? cfg->refresh_min_s : 60;
    f->refresh_max = cfg->refresh_max_s ? cfg->refresh_max_s : 300;
    f->loop = loop;
    f->on_update = on_update;
    f->ud = ud;
    ev_async_init(&f->wake, on_wake);
    f->wake.data = f;
    if (!f->url || (cfg->ca_file && !f->ca_file)) {
        fetcher_free(f);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ev_async_start(loop, &f->wake);
    if (pthread_create(&f->thread, NULL, run, f) != 0) {
        ev_async_stop(loop, &f->wake);
        fetcher_free(f);
        snprintf(err, errlen, "cannot start the JWKS thread");
        return NULL;
    }
    f->started = true;
    return f;
}

void jwks_fetcher_refetch(struct jwks_fetcher *f)
{
    pthread_mutex_lock(&f->lock);
    f->wanted = true;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

void jwks_fetcher_counts(struct jwks_fetcher *f, uint64_t *ok, uint64_t *failed)
{
    pthread_mutex_lock(&f->lock);
    *ok = f->ok;
    *failed = f->failed;
    pthread_mutex_unlock(&f->lock);
}

void jwks_fetcher_stop(struct jwks_fetcher *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
    if (f->started)
        pthread_join(f->thread, NULL);
    ev_async_stop(f->loop, &f->wake);
    fetcher_free(f);
}
