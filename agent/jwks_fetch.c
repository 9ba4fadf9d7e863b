/* JWKS fetcher: see jwks_fetch.h.
 *
 * Everything runs on the loop: one ev_timer says when the next fetch is due (the refresh period,
 * or the end of min_interval when a refetch was asked for earlier), and the GET itself is the
 * tree's curl_ev fetcher on its own curl_ev (its own connection, apart from the introspection
 * pool and budgets). At most one fetch runs at a time. */
#include "jwks_fetch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "curl_ev.h"
#include "log.h"

struct jwks_fetcher {
    char *url, *ca_file;
    bool insecure;
    uint32_t timeout_ms, min_interval, refresh_min, refresh_max;
    struct ev_loop *loop;
    struct curl_ev *curl;
    ev_timer timer;
    jwks_update_fn on_update;
    void *ud;
    bool running, wanted, last_failed, stopping;
    ev_tstamp last;     /* when the last fetch started; -inf before the first */
    ev_tstamp next_due; /* when the refresh is due */
    uint64_t ok, failed;
};

/* ---- pure helpers ---- */

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

/* ---- scheduling ---- */

static void arm(struct jwks_fetcher *f);

static void fetched(void *ud, const struct curl_fetch_result *r)
{
    struct jwks_fetcher *f = ud;
    const char *why = NULL;
    struct jwks *s = NULL;
    f->running = false;
    if (f->stopping)
        return;
    if (r->rc != CURLE_OK)
        why = r->too_large ? "JWKS document too large" : (r->error ? r->error : "fetch failed");
    else if (r->status != 200)
        why = "JWKS endpoint did not answer 200";
    else
        s = jwks_parse(r->body ? r->body : "", r->body_len, &why);
    ev_tstamp now = ev_now(f->loop);
    if (s) {
        f->ok++;
        if (f->last_failed)
            log_info("jwks: fetched again (%zu keys)", s->n);
        f->next_due = now + jwks_refresh_period(r->cache_control, f->refresh_min, f->refresh_max);
        f->on_update(f->ud, s);
    } else {
        f->failed++;
        if (!f->last_failed)
            log_warn("jwks: fetch failed: %s (keeping the keys we have)", why);
        f->next_due = now + f->min_interval; /* retry soon, but no faster than refetches */
    }
    f->last_failed = s == NULL;
    arm(f);
}

static void start_fetch(struct jwks_fetcher *f)
{
    struct curl_fetch_tls tls = {.ca_file = f->ca_file, .insecure_skip_verify = f->insecure};
    f->wanted = false;
    f->last = ev_now(f->loop);
    if (curl_fetch_get(f->curl, f->url, &tls, (long)f->timeout_ms, JWKS_MAX_DOC, fetched, f) != 0) {
        f->failed++;
        f->next_due = f->last + f->min_interval;
        arm(f);
        return;
    }
    f->running = true;
}

/* The earliest time a fetch may start: the refresh, or a wanted refetch once min_interval has
 * passed since the last one. */
static ev_tstamp due(const struct jwks_fetcher *f)
{
    ev_tstamp soonest = f->last + f->min_interval;
    if (f->wanted && soonest < f->next_due)
        return soonest;
    return f->next_due;
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct jwks_fetcher *f = w->data;
    if (f->running)
        return; /* fetched() re-arms */
    if (ev_now(loop) + 0.001 >= due(f))
        start_fetch(f);
    else
        arm(f);
}

static void arm(struct jwks_fetcher *f)
{
    ev_tstamp after = due(f) - ev_now(f->loop);
    ev_timer_stop(f->loop, &f->timer);
    ev_timer_set(&f->timer, after > 0 ? after : 0, 0);
    ev_timer_start(f->loop, &f->timer);
}

/* ---- life cycle ---- */

static void fetcher_free(struct jwks_fetcher *f)
{
    free(f->url);
    free(f->ca_file);
    free(f);
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
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->url = strdup(cfg->url);
    f->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
    f->insecure = cfg->insecure;
    f->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 5000;
    f->min_interval = cfg->min_interval ? cfg->min_interval : 10;
    f->refresh_min = cfg->refresh_min_s ? cfg->refresh_min_s : 60;
    f->refresh_max = cfg->refresh_max_s ? cfg->refresh_max_s : 300;
    f->loop = loop;
    f->on_update = on_update;
    f->ud = ud;
    f->last = -1e9;
    f->next_due = ev_now(loop); /* the first fetch at once */
    f->curl = curl_ev_new(loop, 1);
    if (!f->url || (cfg->ca_file && !f->ca_file) || !f->curl) {
        curl_ev_free(f->curl);
        fetcher_free(f);
        snprintf(err, errlen, "out of memory (or curl unusable)");
        return NULL;
    }
    ev_init(&f->timer, on_timer);
    f->timer.data = f;
    arm(f);
    return f;
}

void jwks_fetcher_refetch(struct jwks_fetcher *f)
{
    f->wanted = true;
    if (!f->running)
        arm(f);
}

void jwks_fetcher_counts(struct jwks_fetcher *f, uint64_t *ok, uint64_t *failed)
{
    *ok = f->ok;
    *failed = f->failed;
}

void jwks_fetcher_stop(struct jwks_fetcher *f)
{
    if (!f)
        return;
    f->stopping = true;
    ev_timer_stop(f->loop, &f->timer);
    curl_ev_free(f->curl); /* a running fetch ends in fetched(), which sees stopping */
    fetcher_free(f);
}
