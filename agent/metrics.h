/* Counters the agent keeps for operators, and their Prometheus text rendering. The counters are
 * plain fields of one struct per worker (no globals, no locks on the hot path); the exporter sums
 * the workers' structs when scraped. Used by agent.c, the pipeline stages and the metrics listener.
 */
#ifndef PTA_METRICS_H
#define PTA_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "cache.h"
#include "conn_counters.h"

enum metrics_status { MST_200, MST_400, MST_401, MST_403, MST_500, MST_502, MST_503, MST__COUNT };
enum metrics_idp {
    MIDP_ACTIVE,
    MIDP_INACTIVE,
    MIDP_ERROR,
    MIDP_UNAVAIL,
    MIDP_UNKNOWN,
    MIDP__COUNT
};

#define METRICS_LATENCY_BUCKETS 12

/* Shared cache (L2, Redis) lookups by result: hit (a usable entry), miss (none), invalid (an
 * entry that failed to authenticate or decode: counted by reason too), timeout, error (Redis
 * answered an error or the connection broke), skipped (not asked: Redis down or saturated). */
enum metrics_l2 { ML2_HIT, ML2_MISS, ML2_INVALID, ML2_TIMEOUT, ML2_ERROR, ML2_SKIPPED, ML2__COUNT };
#define METRICS_L2_REASONS 16 /* >= L2_STATUS_COUNT (l2_codec.h) */
#define METRICS_L2_LATENCY_BUCKETS 10

struct metrics {
    uint64_t decisions[MST__COUNT];
    uint64_t idp_requests[MIDP__COUNT];
    uint64_t idp_latency_buckets[METRICS_LATENCY_BUCKETS]; /* cumulative at render time */
    double idp_latency_sum_s;
    uint64_t idp_latency_count;
    uint64_t spop_connections_total, spop_connections_open;
    struct conn_counters spop; /* incremented by conn.c */
    uint64_t notify_total, ack_total;
    uint64_t ack_too_big;          /* JWT did not fit the negotiated frame: answered 502 */
    uint64_t stale_served;         /* requests answered from a stale entry (stale-if-error) */
    uint64_t idp_retries;          /* introspections retried (copied from the introspector) */
    uint64_t rate_limited;         /* misses refused by max-introspection-rate */
    const struct breaker *breaker; /* the IdP endpoint's circuit breaker; NULL: none */
    /* Shared cache; rendered only when l2_enabled. */
    bool l2_enabled, l2_up;
    uint64_t l2_lookups[ML2__COUNT];
    uint64_t l2_invalid[METRICS_L2_REASONS]; /* by enum l2_status */
    uint64_t l2_latency_buckets[METRICS_L2_LATENCY_BUCKETS];
    double l2_latency_sum_s;
    uint64_t l2_latency_count;
    uint64_t l2_writes, l2_write_errors;
};

/* Upper bounds of the IdP latency histogram, seconds. */
extern const double metrics_latency_bounds[METRICS_LATENCY_BUCKETS];
/* Upper bounds of the L2 (Redis GET) latency histogram, seconds. */
extern const double metrics_l2_latency_bounds[METRICS_L2_LATENCY_BUCKETS];

void metrics_count_decision(struct metrics *m, int http_status);
void metrics_observe_idp(struct metrics *m, int outcome /* enum token_outcome */,
                         double latency_ms);

/* latency_ms < 0: not observed (a lookup that was skipped or timed out). */
void metrics_observe_l2(struct metrics *m, enum metrics_l2 result, double latency_ms);
void metrics_count_l2_invalid(struct metrics *m, int reason /* enum l2_status */);
void metrics_count_l2_write(struct metrics *m, bool ok);

/* Renders Prometheus text format (version 0.0.4) for the summed workers and the cache. Returns a
 * malloc'd NUL-terminated string, or NULL on ENOMEM. inflight: introspections in flight. */
char *metrics_render(const struct metrics *const *workers, size_t nworkers,
                     const struct cache_stats *cs, unsigned inflight);

#endif
