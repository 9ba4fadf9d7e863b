/* Pipeline stage "breaker", directly above "introspect": asks the endpoint's circuit breaker
 * (breaker.c) before a miss reaches the IdP. Open: the flight is answered at once with the
 * configured failure (503 with a Retry-After by default), the IdP is not called. Otherwise the
 * flight goes on, and its answer, on the way back up, is the breaker's success or failure. The
 * breaker's ticket of each flight in progress is kept here, found again by the flight's address
 * (bucketed by its key, which is uniformly distributed). */
#include "stages.h"

#include <string.h>

#include "alloc.h"
#include "list.h"
#include "log.h"

#define CALL_BUCKETS 256

struct call {
    struct list link;
    const struct flight *f;
    struct breaker_ticket ticket;
};

struct breaker_stage {
    struct breaker *b;                  /* borrowed */
    const struct breaker_settings *set; /* borrowed: changes on reload */
    struct list calls[CALL_BUCKETS];    /* flights let through, not back yet */
};

static struct list *bucket_of(struct breaker_stage *st, const struct flight *f)
{
    return &st->calls[flight_key(f)->b[0] % CALL_BUCKETS];
}

/* Answers that say nothing about the IdP's health: the agent's own limits and errors. */
static bool local_failure(const char *reason)
{
    static const char *const local[] = {
        "out of memory",
        "introspection aborted",
        "introspection queue full",
        "introspection not configured",
        "introspection request setup failed",
        "waited too long for an introspection slot",
        "circuit open",
    };
    if (!reason)
        return false;
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++)
        if (strcmp(reason, local[i]) == 0)
            return true;
    return false;
}

enum breaker_outcome stage_breaker_classify(const struct token_info *ti)
{
    if (!ti)
        return BREAKER_NEUTRAL;
    if (ti->outcome == TOKEN_ACTIVE || ti->outcome == TOKEN_INACTIVE)
        return BREAKER_SUCCESS;
    return local_failure(ti->reason) ? BREAKER_NEUTRAL : BREAKER_FAILURE;
}

static struct token_info *open_answer(const struct breaker_stage *st)
{
    bool bad_gateway = st->set->failure_status == 502;
    struct token_info *ti =
        token_info_new(bad_gateway ? TOKEN_IDP_ERROR : TOKEN_IDP_UNAVAIL, "circuit open");
    if (!ti || bad_gateway)
        return ti;
    /* Half-open with its probe in flight: the answer is due within the probe's time limit. */
    int64_t ms = breaker_retry_in_ms(st->b);
    ti->retry_after_s = ms > 0 ? (uint32_t)((ms + 999) / 1000) : 1;
    return ti;
}

static void breaker_lookup(void *self, struct flight *f)
{
    struct breaker_stage *st = self;
    struct breaker_ticket t;
    if (breaker_allow(st->b, &t) == BREAKER_REJECT) {
        flight_resolve(f, open_answer(st));
        return;
    }
    struct call *c = pta_malloc(sizeof(*c));
    if (!c) {
        breaker_record(st->b, &t, BREAKER_NEUTRAL); /* frees a probe slot; says nothing else */
        flight_next(f);
        return;
    }
    c->f = f;
    c->ticket = t;
    list_insert(bucket_of(st, f), &c->link);
    flight_next(f);
}

static struct token_info *breaker_result(void *self, struct flight *f, struct token_info *ti)
{
    struct breaker_stage *st = self;
    struct list *head = bucket_of(st, f);
    for (struct list *l = head->next; l != head; l = l->next) {
        struct call *c = list_entry(l, struct call, link);
        if (c->f != f)
            continue;
        list_del(&c->link);
        breaker_record(st->b, &c->ticket, stage_breaker_classify(ti));
        free(c);
        break;
    }
    return ti;
}

static void breaker_stage_free(void *self)
{
    struct breaker_stage *st = self;
    for (int i = 0; i < CALL_BUCKETS; i++)
        while (!list_empty(&st->calls[i])) {
            struct call *c = list_entry(st->calls[i].next, struct call, link);
            list_del(&c->link);
            free(c);
        }
    free(st);
}

static const struct stage_ops breaker_ops = {.name = "breaker",
                                             .lookup = breaker_lookup,
                                             .result = breaker_result,
                                             .free = breaker_stage_free};

int stage_breaker_add(struct pipeline *p, struct breaker *b, const struct breaker_settings *set)
{
    struct breaker_stage *st = pta_malloc(sizeof(*st));
    if (!st)
        return -1;
    st->b = b;
    st->set = set;
    for (int i = 0; i < CALL_BUCKETS; i++)
        list_init(&st->calls[i]);
    return pipeline_add(p, &breaker_ops, st);
}
