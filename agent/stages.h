/* The stages of the resolver pipeline the daemon ships, each in its own module (stage_l1.c,
 * stage_finish.c, stage_introspect.c): a constructor that appends it to a chain. The chain is
 * built by agent.c (agent_build_pipeline); tests build their own. See pipeline.h. */
#ifndef PTA_STAGES_H
#define PTA_STAGES_H

#include "cache.h"
#include "introspect.h"
#include "metrics.h"
#include "pipeline.h"

/* "l1": the top of the chain. Its lookup happened in front of the chain (cache_lookup() is the
 * single-flight gate), so it only stores on the way back: cache_resolve() fills the cache and
 * wakes every request waiting for the token. cache is borrowed. */
int stage_l1_add(struct pipeline *p, struct cache *cache);

/* "l2": the cache the fleet shares, in Redis (stage_l2.c), between l1 and finish. Going down, a
 * GET bounded by the client's command timeout: a usable entry answers, anything else passes on.
 * Going up, shareable answers are written with the lifetime cache_ttl_ms() gives them. All
 * borrowed; the cache must be keyed with the fleet's entry key (checked: -1 otherwise), and rc
 * must be freed before the stage below it (its pending GETs then pass their flights on). */
struct redis_client;
struct l2_codec;
int stage_l2_add(struct pipeline *p, struct redis_client *rc, const struct l2_codec *codec,
                 const char *prefix, struct cache *cache, struct metrics *m);

/* "finish": turns the classified answer into what the API receives. Today a pass-through (the
 * IdP's JWT is forwarded); minting a gateway JWT replaces it (issue 11). */
int stage_finish_add(struct pipeline *p);

/* "introspect": RFC 7662 through the introspector (borrowed; it classifies the answer too, with
 * idp_classify()), and counts the IdP's outcomes and latency in m (borrowed). Always answers. */
int stage_introspect_add(struct pipeline *p, struct introspector *idp, struct metrics *m);

#endif
