/* Pipeline stage "finish": what the API receives, decided from the classified answer by finish()
 * (finish.h) per jwt-source: the IdP's JWT passes through, or the gateway mints one. It runs on
 * the way up, before l1 stores, so cached entries hold the minted JWT and a hit never re-signs. An
 * answer from a stage above it (a shared L2 holding finished entries) skips it. The settings come
 * from a getter, because a reload swaps them (between loop iterations: result() runs on the loop
 * and finishes before any swap). */
#include <stdlib.h>

#include "clock.h"
#include "finish.h"
#include "log.h"
#include "stages.h"

struct finish_stage {
    const struct minting *(*current)(void *ud);
    void *ud;
};

static struct token_info *finish_result(void *self, struct flight *f, struct token_info *ti)
{
    struct finish_stage *st = self;
    const struct minting *m = st->current ? st->current(st->ud) : NULL;
    if (!m || !ti)
        return ti;
    bool mints = finish_would_mint(ti, m->mode);
    struct token_info *out = finish(ti, m->mode, &m->minter, NULL, clock_seconds());
    if (mints && out && out->outcome != TOKEN_ACTIVE)
        log_warn("minting refused: %s", out->reason ? out->reason : "?");
    return out;
}

static const struct stage_ops finish_ops = {
    .name = "finish", .result = finish_result, .free = free};

int stage_finish_add(struct pipeline *p, const struct minting *(*current)(void *ud), void *ud)
{
    struct finish_stage *st = calloc(1, sizeof(*st));
    if (!st)
        return -1;
    st->current = current;
    st->ud = ud;
    return pipeline_add(p, &finish_ops, st);
}
