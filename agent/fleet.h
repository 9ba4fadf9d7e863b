/* Fleet-wide purges over Redis pub/sub, on the shared cache's client and keys: a purge on one
 * agent is published (encrypted and authenticated like the L2 values, l2_codec.c), every other
 * agent applies it to its L1 (which also remembers it against L2 hits, cache.h's tombstones). An
 * agent whose subscription was down may have missed purges: when it comes back, it drops its L1
 * and refuses L2 hits for one cache lifetime (cache_purge_all). Used by main.c's revoke_ops. */
#ifndef PTA_FLEET_H
#define PTA_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "l2_codec.h"
#include "purge.h"
#include "redis_client.h"

#define FLEET_MAX_AGE_MS 30000 /* older messages (or clocks further apart) are refused */

struct fleet_stats {
    uint64_t published, publish_failed;  /* messages sent / not accepted or refused by Redis */
    uint64_t received, applied, refused; /* refused: unauthentic, replayed, too old, malformed */
    uint64_t resyncs;                    /* L1 dropped after the subscription came back */
};

/* The message for a purge (value copied), and the purge for a message. Pure; -1 on a selector or
 * message that cannot be expressed (an empty value, an id of the wrong length). */
int fleet_msg_from_selector(const struct purge_selector *sel, struct l2_purge_msg *m);
int fleet_selector_from_msg(const struct l2_purge_msg *m, struct purge_selector *sel);

/* Subscribes to <prefix>purge on rc (its second connection). rc, codec and cache are borrowed and
 * must outlive the fleet... except that redis_client_free() may still call the fleet's callbacks,
 * so free the fleet after the client. NULL with err filled on failure. */
struct fleet *fleet_new(struct redis_client *rc, const struct l2_codec *codec, const char *prefix,
                        struct cache *cache, char *err, size_t errlen);
void fleet_free(struct fleet *f); /* NULL is a no-op */
/* Called after each purge the fleet applied to the cache (a message from another agent, or the
 * drop-everything resync, as a PURGE_ALL selector): for tiers the fleet does not know, such as
 * HAProxy's fast-path map. fn may be NULL. */
typedef void (*fleet_purge_fn)(void *ud, const struct purge_selector *sel);
void fleet_on_purge(struct fleet *f, fleet_purge_fn fn, void *ud);

/* After a local purge: publishes it, and DELs the L2 entry of a token purge. */
void fleet_publish(struct fleet *f, const struct purge_selector *sel);
/* The subscriber connection went up or down (redis_client_ops.state). */
void fleet_subscriber_state(struct fleet *f, bool up);
void fleet_get_stats(const struct fleet *f, struct fleet_stats *st);
/* Prometheus text for /metrics (malloc'd; NULL on ENOMEM). */
char *fleet_metrics_text(const struct fleet *f);

#endif
