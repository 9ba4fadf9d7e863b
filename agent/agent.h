/* One worker: its libev loop, SPOP listener and connections, introspector and counters; the cache
 * may be shared between workers. Turns each NOTIFY into a decision, at once on a cache hit or
 * malformed credentials, or when the introspection it waits for completes. Used by main.c and
 * conn.c. */
#ifndef PTA_AGENT_H
#define PTA_AGENT_H

#include <stdbool.h>

#include <ev.h>

#include "cache.h"
#include "config.h"
#include "introspect.h"
#include "list.h"
#include "metrics.h"
#include "spop.h"

struct conn;
struct listener;
struct pending;

struct agent {
    struct ev_loop *loop;
    const struct config *cfg; /* swapped on reload, between loop iterations */
    struct cache *cache;      /* shared, not owned */
    struct introspector *idp; /* owned */
    struct listener *listener;
    struct list conns;
    struct list dirty; /* connections with output queued, flushed before the loop waits */
    ev_prepare flusher;
    unsigned nconns;
    bool draining;
    bool warned_no_auth_arg; /* said once: the SPOE message lacks the authorization argument */
    struct pending *spare;   /* a preallocated waiter, so a cache hit allocates nothing */
    struct metrics metrics;
};

int agent_init(struct agent *a, struct ev_loop *loop, const struct config *cfg,
               struct cache *cache);
/* Closes every connection, aborts introspections, frees what the agent owns. */
void agent_fini(struct agent *a);
/* Applies a reloaded configuration (cfg must outlive the agent or the next reload). */
int agent_reconfigure(struct agent *a, const struct config *cfg);

/* Stops accepting and closes each connection once its pending NOTIFYs are answered. */
void agent_drain(struct agent *a);
bool agent_drained(const struct agent *a);

/* From conn.c. */
void agent_on_notify(struct agent *a, struct conn *c, const struct spop_frame *f);
void agent_conn_added(struct agent *a, struct conn *c);
void agent_conn_removed(struct agent *a, struct conn *c); /* cancels its pending NOTIFYs */
void agent_conn_idle(struct agent *a, struct conn *c);    /* no NOTIFY pending any more */

#endif
