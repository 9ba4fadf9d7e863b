/* Counters and their Prometheus text rendering. The hot path only increments plain fields of its
 * own worker's struct; rendering happens on the loop thread that owns them. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "l2_codec.h"
#include "token.h"

const double metrics_latency_bounds[METRICS_LATENCY_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

const double metrics_l2_latency_bounds[METRICS_L2_LATENCY_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1};
static const char *const l2_names[ML2__COUNT] = {"hit",     "miss",  "invalid",
                                                 "timeout", "error", "skipped"};

static const int status_codes[MST__COUNT] = {200, 400, 401, 403, 500, 502, 503};
static const char *const idp_names[MIDP__COUNT] = {"active", "inactive", "error", "unavailable",
                                                   "unexpected_status"};

void metrics_count_decision(struct metrics *m, int http_status)
{
    for (int i = 0; i < MST__COUNT; i++) {
        if (status_codes[i] == http_status) {
            m->decisions[i]++;
            return;
        }
    }
    m->decisions[MST_500]++;
}

void metrics_observe_idp(struct metrics *m, int outcome, double latency_ms)
{
    if (outcome >= 0 && outcome < MIDP__COUNT)
        m->idp_requests[outcome]++;
    double s = latency_ms / 1000.0;
    for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        if (s <= metrics_latency_bounds[i]) {
            m->idp_latency_buckets[i]++;
            break;
        }
    }
    m->idp_latency_sum_s += s;
    m->idp_latency_count++;
}

void metrics_observe_l2(struct metrics *m, enum metrics_l2 result, double latency_ms)
{
    if ((unsigned)result < ML2__COUNT)
        m->l2_lookups[result]++;
    if (latency_ms < 0)
        return;
    double s = latency_ms / 1000.0;
    for (int i = 0; i < METRICS_L2_LATENCY_BUCKETS; i++) {
        if (s <= metrics_l2_latency_bounds[i]) {
            m->l2_latency_buckets[i]++;
            break;
        }
    }
    m->l2_latency_sum_s += s;
    m->l2_latency_count++;
}

void metrics_count_l2_invalid(struct metrics *m, int reason)
{
    if (reason >= 0 && reason < METRICS_L2_REASONS)
        m->l2_invalid[reason]++;
}

void metrics_count_l2_write(struct metrics *m, bool ok)
{
    if (ok)
        m->l2_writes++;
    else
        m->l2_write_errors++;
}

/* A growing output buffer; on ENOMEM it stops growing and render returns NULL. */
struct sbuf {
    char *p;
    size_t len, cap;
    int failed;
};

__attribute__((format(printf, 2, 3))) static void out(struct sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void header(struct sbuf *b, const char *name, const char *type, const char *help)
{
    out(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define SUM(field)                                                                                 \
    ({                                                                                             \
        uint64_t s_ = 0;                                                                           \
        for (size_t i_ = 0; i_ < n; i_++)                                                          \
            s_ += w[i_]->field;                                                                    \
        s_;                                                                                        \
    })

static void render_decisions(struct sbuf *b, const struct metrics *const *w, size_t n)
{
    header(b, "phantom_decisions_total", "counter", "Decisions by HTTP status.");
    for (int s = 0; s < MST__COUNT; s++)
        out(b, "phantom_decisions_total{status=\"%d\"} %lu\n", status_codes[s],
            (unsigned long)SUM(decisions[s]));
}

static void render_idp(struct sbuf *b, const struct metrics *const *w, size_t n, unsigned inflight)
{
    header(b, "phantom_idp_requests_total", "counter", "Introspection requests by outcome.");
    for (int o = 0; o < MIDP__COUNT; o++)
        out(b, "phantom_idp_requests_total{outcome=\"%s\"} %lu\n", idp_names[o],
            (unsigned long)SUM(idp_requests[o]));
    header(b, "phantom_idp_latency_seconds", "histogram", "Introspection latency.");
    uint64_t cum = 0;
    for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        cum += SUM(idp_latency_buckets[i]);
        out(b, "phantom_idp_latency_seconds_bucket{le=\"%g\"} %lu\n", metrics_latency_bounds[i],
            (unsigned long)cum);
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += w[i]->idp_latency_sum_s;
    out(b, "phantom_idp_latency_seconds_bucket{le=\"+Inf\"} %lu\n",
        (unsigned long)SUM(idp_latency_count));
    out(b, "phantom_idp_latency_seconds_sum %.6f\n", sum);
    out(b, "phantom_idp_latency_seconds_count %lu\n", (unsigned long)SUM(idp_latency_count));
    header(b, "phantom_idp_inflight", "gauge", "Introspections in flight or queued.");
    out(b, "phantom_idp_inflight %u\n", inflight);
}

static void render_cache(struct sbuf *b, const struct cache_stats *cs)
{
    header(b, "phantom_cache_lookups_total", "counter", "Cache lookups by result.");
    out(b, "phantom_cache_lookups_total{result=\"hit\"} %lu\n", (unsigned long)cs->hits);
    out(b, "phantom_cache_lookups_total{result=\"negative\"} %lu\n",
        (unsigned long)cs->negative_hits);
    out(b, "phantom_cache_lookups_total{result=\"miss\"} %lu\n", (unsigned long)cs->misses);
    out(b, "phantom_cache_lookups_total{result=\"coalesced\"} %lu\n", (unsigned long)cs->coalesced);
    out(b, "phantom_cache_lookups_total{result=\"stale\"} %lu\n", (unsigned long)cs->stale);
    header(b, "phantom_cache_evictions_total", "counter", "Entries evicted to stay in budget.");
    out(b, "phantom_cache_evictions_total %lu\n", (unsigned long)cs->evictions);
    header(b, "phantom_cache_expirations_total", "counter", "Entries dropped at expiry.");
    out(b, "phantom_cache_expirations_total %lu\n", (unsigned long)cs->expirations);
    header(b, "phantom_cache_entries", "gauge", "Entries in the cache.");
    out(b, "phantom_cache_entries %zu\n", cs->entries);
    header(b, "phantom_cache_bytes", "gauge", "Bytes held by the cache.");
    out(b, "phantom_cache_bytes %zu\n", cs->bytes);
}

static void render_spop(struct sbuf *b, const struct metrics *const *w, size_t n)
{
    header(b, "phantom_spop_connections_total", "counter", "SPOP connections accepted.");
    out(b, "phantom_spop_connections_total %lu\n", (unsigned long)SUM(spop_connections_total));
    header(b, "phantom_spop_connections", "gauge", "SPOP connections open.");
    out(b, "phantom_spop_connections %lu\n", (unsigned long)SUM(spop_connections_open));
    header(b, "phantom_spop_frames_total", "counter", "SPOP frames by direction.");
    out(b, "phantom_spop_frames_total{direction=\"in\"} %lu\n", (unsigned long)SUM(spop.frames_in));
    out(b, "phantom_spop_frames_total{direction=\"out\"} %lu\n",
        (unsigned long)SUM(spop.frames_out));
    header(b, "phantom_spop_errors_total", "counter", "SPOP connections ended by an error.");
    out(b, "phantom_spop_errors_total %lu\n", (unsigned long)SUM(spop.errors));
    header(b, "phantom_ack_too_big_total", "counter", "JWTs too large for the frame (502).");
    out(b, "phantom_ack_too_big_total %lu\n", (unsigned long)SUM(ack_too_big));
}

/* The IdP's failure handling: retries, stale answers, and each worker's circuit breaker (one
 * series per worker: "worker" is its index). */
static void render_failures(struct sbuf *b, const struct metrics *const *w, size_t n)
{
    header(b, "phantom_idp_retries_total", "counter", "Introspections retried.");
    out(b, "phantom_idp_retries_total %lu\n", (unsigned long)SUM(idp_retries));
    header(b, "phantom_rate_limited_total", "counter",
           "Misses answered 503 by max-introspection-rate, without calling the IdP.");
    out(b, "phantom_rate_limited_total %lu\n", (unsigned long)SUM(rate_limited));
    header(b, "phantom_stale_answers_total", "counter",
           "Requests answered from a stale entry while the IdP failed (stale-if-error).");
    out(b, "phantom_stale_answers_total %lu\n", (unsigned long)SUM(stale_served));
    static const char *const states[BREAKER__STATES] = {"closed", "open", "half-open"};
    header(b, "phantom_breaker_state", "gauge",
           "Circuit breaker state: 0 closed, 1 open, 2 half-open.");
    for (size_t i = 0; i < n; i++)
        if (w[i]->breaker)
            out(b, "phantom_breaker_state{worker=\"%zu\"} %d\n", i,
                (int)breaker_state(w[i]->breaker));
    header(b, "phantom_breaker_transitions_total", "counter", "Breaker changes into each state.");
    header(b, "phantom_breaker_open_seconds_total", "counter",
           "Time the breaker spent open or half-open.");
    header(b, "phantom_breaker_rejected_total", "counter",
           "Misses answered at once because the breaker was open.");
    for (size_t i = 0; i < n; i++) {
        if (!w[i]->breaker)
            continue;
        struct breaker_stats st;
        breaker_get_stats(w[i]->breaker, &st);
        for (int s = 0; s < BREAKER__STATES; s++)
            out(b, "phantom_breaker_transitions_total{worker=\"%zu\",to=\"%s\"} %lu\n", i,
                states[s], (unsigned long)st.transitions[s]);
        out(b, "phantom_breaker_open_seconds_total{worker=\"%zu\"} %.3f\n", i,
            st.open_ms_total / 1000.0);
        out(b, "phantom_breaker_rejected_total{worker=\"%zu\"} %lu\n", i,
            (unsigned long)st.rejected);
    }
}

static void render_l2(struct sbuf *b, const struct metrics *const *w, size_t n)
{
    bool enabled = false, up = false;
    for (size_t i = 0; i < n; i++) {
        enabled |= w[i]->l2_enabled;
        up |= w[i]->l2_up;
    }
    if (!enabled)
        return;
    header(b, "phantom_l2_up", "gauge", "1 when the shared cache (Redis) is connected.");
    out(b, "phantom_l2_up %d\n", up ? 1 : 0);
    header(b, "phantom_l2_lookups_total", "counter", "Shared cache lookups by result.");
    for (int r = 0; r < ML2__COUNT; r++)
        out(b, "phantom_l2_lookups_total{result=\"%s\"} %lu\n", l2_names[r],
            (unsigned long)SUM(l2_lookups[r]));
    header(b, "phantom_l2_invalid_total", "counter",
           "Shared cache entries refused (treated as misses) by reason.");
    for (int r = 1; r < L2_STATUS_COUNT; r++)
        out(b, "phantom_l2_invalid_total{reason=\"%s\"} %lu\n", l2_status_name(r),
            (unsigned long)SUM(l2_invalid[r]));
    header(b, "phantom_l2_latency_seconds", "histogram", "Shared cache GET latency.");
    uint64_t cum = 0;
    double sum = 0;
    for (int i = 0; i < METRICS_L2_LATENCY_BUCKETS; i++) {
        cum += SUM(l2_latency_buckets[i]);
        out(b, "phantom_l2_latency_seconds_bucket{le=\"%g\"} %lu\n", metrics_l2_latency_bounds[i],
            (unsigned long)cum);
    }
    for (size_t i = 0; i < n; i++)
        sum += w[i]->l2_latency_sum_s;
    out(b, "phantom_l2_latency_seconds_bucket{le=\"+Inf\"} %lu\n",
        (unsigned long)SUM(l2_latency_count));
    out(b, "phantom_l2_latency_seconds_sum %.6f\n", sum);
    out(b, "phantom_l2_latency_seconds_count %lu\n", (unsigned long)SUM(l2_latency_count));
    header(b, "phantom_l2_writes_total", "counter", "Shared cache writes by result.");
    out(b, "phantom_l2_writes_total{result=\"ok\"} %lu\n", (unsigned long)SUM(l2_writes));
    out(b, "phantom_l2_writes_total{result=\"failed\"} %lu\n", (unsigned long)SUM(l2_write_errors));
}

char *metrics_render(const struct metrics *const *w, size_t n, const struct cache_stats *cs,
                     unsigned inflight)
{
    struct sbuf b = {.cap = 4096};
    b.p = malloc(b.cap);
    if (!b.p)
        return NULL;
    render_decisions(&b, w, n);
    render_idp(&b, w, n, inflight);
    render_cache(&b, cs);
    render_spop(&b, w, n);
    render_failures(&b, w, n);
    render_l2(&b, w, n);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
