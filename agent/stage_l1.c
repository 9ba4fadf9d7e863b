/* Pipeline stage "l1": stores the answer in the in-process cache on its way back up, which also
 * completes the cache's flight (every waiting request gets the answer). */
#include "stages.h"

static struct token_info *l1_result(void *self, struct flight *f, struct token_info *ti)
{
    cache_resolve(self, flight_key(f), token_ref(ti));
    return ti;
}

static const struct stage_ops l1_ops = {.name = "l1", .result = l1_result};

int stage_l1_add(struct pipeline *p, struct cache *cache)
{
    return pipeline_add(p, &l1_ops, cache);
}
