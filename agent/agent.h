/* One worker: its libev loop, SPOP listener and connections, resolver pipeline and counters; the
 * cache may be shared between workers. Turns each NOTIFY into a decision, at once on a cache hit or
 * malformed credentials, or when the token's flight through the pipeline completes. The
 * connections (conn.c) and the listener know nothing of it: it hands them callbacks and settings.
 * Used by main.c. */
#ifndef PTA_AGENT_H
#define PTA_AGENT_H

#include <stdbool.h>

#include <ev.h>

#include "breaker.h"
#include "cache.h"
#include "config.h"
#include "conn.h"
#include "introspect.h"
#include "list.h"
#include "metrics.h"
#include "pipeline.h"
#include "stages.h"

struct fastpath_writer;
struct l2_codec;
struct listener;
struct pending;
struct redis_client;

struct agent {
    struct ev_loop *loop;
    const struct config *cfg;  /* swapped on reload, between loop iterations */
    struct cache *cache;       /* shared, not owned */
    struct introspector *idp;  /* owned; NULL with agent_init_with() */
    struct pipeline *pipeline; /* owned: what a cache miss goes through */
    struct breaker *breaker;   /* owned: the IdP endpoint's circuit breaker; NULL with _with() */
    struct breaker_settings breaker_set; /* what the breaker stage answers (reloadable) */
    struct ratelimit admission;          /* max-introspection-rate (rate 0: off) */
    struct redis_client *l2;             /* owned; NULL without cache-redis-url */
    struct l2_codec *l2_codec;           /* owned; with l2 */
    /* Told when l2's subscriber connection goes up or down (the fleet purge broadcast). */
    void (*l2_subscriber_state)(void *ud, bool up);
    void *l2_subscriber_ud;
    struct listener *listener; /* NULL with agent_init_with() */
    struct list sessions;      /* one per SPOP connection (struct session in agent.c) */
    struct conn_flusher flusher;
    struct conn_settings conn_set; /* what new connections get; max_frame fixed at start */
    unsigned nconns;
    bool draining;
    bool warned_no_auth_arg; /* said once: the SPOE message lacks the authorization argument */
    struct pending *spare;   /* a preallocated waiter, so a cache hit allocates nothing */
    struct fastpath_writer *fastpath; /* owned; NULL without fastpath-socket */
    struct metrics metrics;
};

/* The daemon's worker: an introspector and the pipeline agent_build_pipeline() gives, listening on
 * cfg->listen. cfg must outlive the agent or the next reload. */
int agent_init(struct agent *a, struct ev_loop *loop, const struct config *cfg,
               struct cache *cache);
/* A worker around a pipeline the caller built (tests): takes ownership of it (freed even on
 * failure). Its top stage must be stage_l1_add(cache): that is what ends the cache's flights. No
 * introspector, no listener: hand it sockets with agent_adopt(). */
int agent_init_with(struct agent *a, struct ev_loop *loop, const struct config *cfg,
                    struct cache *cache, struct pipeline *p);
/* The daemon's chain: l1 (store) -> stale -> [l2 with cache-redis-url] -> finish -> admission ->
 * breaker -> introspect (breaker only when a->breaker is set). NULL when out of memory. This is
 * where a new stage is added. */
struct pipeline *agent_build_pipeline(struct agent *a);

/* Serves an accepted SPOP socket (the listener's callback; tests use it with socketpairs). Takes
 * fd. Returns the connection, or NULL when out of memory (fd closed, logged). */
struct conn *agent_adopt(struct agent *a, int fd, const char *peer);

/* Closes every connection, aborts introspections, frees what the agent owns. */
void agent_fini(struct agent *a);
/* Applies a reloaded configuration (cfg must outlive the agent or the next reload). New
 * connections get the new idle timeout; the frame size stays what the agent started with. */
int agent_reconfigure(struct agent *a, const struct config *cfg);

/* Stops accepting and closes each connection once its pending NOTIFYs are answered. */
void agent_drain(struct agent *a);
bool agent_drained(const struct agent *a);

#endif
