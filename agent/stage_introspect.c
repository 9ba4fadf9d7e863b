/* Pipeline stage "introspect": asks the identity server (RFC 7662) through the introspector,
 * which also classifies the answer (idp_classify). Answers every flight it gets, later, from the
 * loop: an IdP failure is an answer too (TOKEN_IDP_ERROR ...), never a pass-on. */
#include "stages.h"

#include "alloc.h"
#include "log.h"

struct introspect_stage {
    struct introspector *idp; /* borrowed */
    struct metrics *m;        /* borrowed */
};

static void on_introspected(void *ud, struct token_info *ti, double latency_ms)
{
    struct flight *f = ud;
    struct introspect_stage *st = flight_stage_self(f);
    metrics_observe_idp(st->m, ti->outcome, latency_ms);
    flight_resolve(f, ti);
}

static void introspect_lookup(void *self, struct flight *f)
{
    struct introspect_stage *st = self;
    size_t len;
    const char *tok = flight_token(f, &len);
    if (introspector_start(st->idp, tok, len, on_introspected, f) == 0)
        return;
    log_error("cannot start an introspection: out of memory");
    flight_resolve(f, token_info_new(TOKEN_IDP_ERROR, "out of memory"));
}

static void introspect_free(void *self)
{
    free(self);
}

static const struct stage_ops introspect_ops = {
    .name = "introspect", .lookup = introspect_lookup, .free = introspect_free};

int stage_introspect_add(struct pipeline *p, struct introspector *idp, struct metrics *m)
{
    struct introspect_stage *st = pta_malloc(sizeof(*st));
    if (!st)
        return -1;
    st->idp = idp;
    st->m = m;
    return pipeline_add(p, &introspect_ops, st);
}
