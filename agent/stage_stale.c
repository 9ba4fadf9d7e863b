/* Pipeline stage "stale", right below "l1": stale-if-error. When the answer coming back up is an
 * IdP failure (an error, a timeout, an open circuit breaker) and the cache still holds the token's
 * entry expired less than the grace ago, with the token's own exp not passed (cache_stale()), the
 * failure is replaced by a copy of that entry marked stale: the request is answered with the JWT
 * the IdP issued before, tagged cache=stale. l1 never stores the copy, so no entry lives longer
 * than it would have. Off (a pass-through) while cache-stale-if-error is 0. */
#include "stages.h"

#include "alloc.h"
#include "log.h"

struct stale_stage {
    struct cache *cache; /* borrowed */
};

static bool idp_failure(const struct token_info *ti)
{
    return ti && ti->outcome != TOKEN_ACTIVE && ti->outcome != TOKEN_INACTIVE;
}

static struct token_info *stale_result(void *self, struct flight *f, struct token_info *ti)
{
    struct stale_stage *st = self;
    if (!idp_failure(ti))
        return ti;
    struct token_info *old = cache_stale(st->cache, flight_key(f));
    if (!old)
        return ti;
    struct token_info *copy = token_info_stale_copy(old);
    token_unref(old);
    if (!copy)
        return ti; /* out of memory: the failure stands */
    if (log_enabled(LOG_LVL_DEBUG)) {
        size_t len;
        const char *tok = flight_token(f, &len);
        char tid[13];
        log_token_id(tok, len, tid);
        log_debug("token %s served from its stale entry: %s", tid,
                  ti->reason ? ti->reason : "IdP failure");
    }
    token_unref(ti);
    return copy;
}

static void stale_free(void *self)
{
    free(self);
}

static const struct stage_ops stale_ops = {
    .name = "stale", .result = stale_result, .free = stale_free};

int stage_stale_add(struct pipeline *p, struct cache *cache)
{
    struct stale_stage *st = pta_malloc(sizeof(*st));
    if (!st)
        return -1;
    st->cache = cache;
    return pipeline_add(p, &stale_ops, st);
}
