/* The stages of the resolver pipeline the daemon ships, each in its own module (stage_l1.c,
 * stage_finish.c, stage_introspect.c): a constructor that appends it to a chain. The chain is
 * built by agent.c (agent_build_pipeline); tests build their own. See pipeline.h. */
#ifndef PTA_STAGES_H
#define PTA_STAGES_H

#include "breaker.h"
#include "cache.h"
#include "introspect.h"
#include "metrics.h"
#include "minting.h"
#include "pipeline.h"
#include "ratelimit.h"

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

/* "finish": turns the classified answer into what the API receives (finish.h): the IdP's JWT, or
 * one the gateway mints. current() gives the minting settings in force (NULL, or current NULL:
 * pass-through); it is called on the loop for each answer. */
int stage_finish_add(struct pipeline *p, const struct minting *(*current)(void *ud), void *ud);

/* "introspect": RFC 7662 through the introspector (borrowed; it classifies the answer too, with
 * idp_classify()), and counts the IdP's outcomes and latency in m (borrowed). Always answers. */
int stage_introspect_add(struct pipeline *p, struct introspector *idp, struct metrics *m);

/* "stale": stale-if-error, right below l1 (above finish, so a stale entry is served as it was
 * finished). On an IdP failure coming back up, swaps in a copy of the token's expired-but-in-grace
 * entry (cache_stale()) marked stale; l1 does not store it. cache is borrowed. */
int stage_stale_add(struct pipeline *p, struct cache *cache);

/* "admission": the optional global limit on new-token introspections (a token bucket, borrowed,
 * rate 0: off), above breaker. Beyond it a flight is answered 503 "new-token rate limit" with a
 * Retry-After of 1 s, counted in m->rate_limited. */
int stage_admission_add(struct pipeline *p, struct ratelimit *rl, struct metrics *m);

/* What the breaker stage answers while the circuit is open (changes on reload). */
struct breaker_settings {
    unsigned failure_status; /* 503 (with retry_after_s) or 502 */
};

/* "breaker": the identity server's circuit breaker, directly above introspect. Open: answers
 * failure_status at once ("circuit open"), without calling the IdP; otherwise passes the flight on
 * and records its answer as the breaker's success or failure. b and set are borrowed. */
int stage_breaker_add(struct pipeline *p, struct breaker *b, const struct breaker_settings *set);
/* How an answer counts for the breaker: active/inactive succeed, the agent's own limits (queue
 * full, out of memory, aborted, circuit open) are neutral, every other IdP failure fails. */
enum breaker_outcome stage_breaker_classify(const struct token_info *ti);

#endif
