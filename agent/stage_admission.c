/* Pipeline stage "admission", above "breaker": an optional global limit on new-token
 * introspections per second (max-introspection-rate, a token bucket). A flood of distinct unknown
 * tokens then costs the IdP at most that rate; the flights beyond it are answered 503 at once
 * (Retry-After 1). Cached tokens never get here, so they are not slowed down. A pass-through at
 * rate 0 (the default). */
#include "stages.h"

#include "alloc.h"
#include "clock.h"

struct admission_stage {
    struct ratelimit *rl; /* borrowed: the agent reconfigures it */
    struct metrics *m;    /* borrowed */
};

static void admission_lookup(void *self, struct flight *f)
{
    struct admission_stage *st = self;
    if (ratelimit_take(st->rl, clock_ms(NULL))) {
        flight_next(f);
        return;
    }
    st->m->rate_limited++;
    struct token_info *ti = token_info_new(TOKEN_IDP_UNAVAIL, "new-token rate limit");
    if (ti)
        ti->retry_after_s = 1;
    flight_resolve(f, ti);
}

static void admission_free(void *self)
{
    free(self);
}

static const struct stage_ops admission_ops = {
    .name = "admission", .lookup = admission_lookup, .free = admission_free};

int stage_admission_add(struct pipeline *p, struct ratelimit *rl, struct metrics *m)
{
    struct admission_stage *st = pta_malloc(sizeof(*st));
    if (!st)
        return -1;
    st->rl = rl;
    st->m = m;
    return pipeline_add(p, &admission_ops, st);
}
