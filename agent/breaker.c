/* Circuit breaker state machine; see breaker.h. Every transition goes through transition(), so the
 * generation, the time-open accounting and the report happen once per change. */
#include "breaker.h"

#include <stdlib.h>
#include <string.h>

struct slot {
    int64_t epoch; /* now / slot_ms when the slot was last reset; -1: never used */
    uint32_t total, failed;
};

struct breaker {
    struct breaker_config cfg;
    char *name;
    breaker_clock_fn clock;
    void *clock_ud;
    breaker_transition_fn on_transition;
    void *transition_ud;

    enum breaker_state state;
    uint64_t generation;      /* bumped on every transition */
    unsigned consecutive;     /* failures in a row while closed */
    bool probe_in_flight;     /* half-open only */
    int64_t opened_at;        /* when it last turned open */
    int64_t not_closed_since; /* when it last left closed */
    struct slot window[BREAKER_WINDOW_SLOTS];
    struct breaker_stats stats;
};

struct breaker_config breaker_config_default(void)
{
    struct breaker_config c = {
        .failures = 5, .ratio_percent = 0, .min_requests = 20, .window_ms = 10000, .open_ms = 5000};
    return c;
}

static int64_t now_ms(const struct breaker *b)
{
    return b->clock(b->clock_ud);
}

static void window_reset(struct breaker *b)
{
    for (int i = 0; i < BREAKER_WINDOW_SLOTS; i++)
        b->window[i] = (struct slot){.epoch = -1};
}

static int64_t slot_ms(const struct breaker *b)
{
    int64_t ms = b->cfg.window_ms / BREAKER_WINDOW_SLOTS;
    return ms > 0 ? ms : 1;
}

static void window_add(struct breaker *b, int64_t now, bool failed)
{
    int64_t epoch = now / slot_ms(b);
    struct slot *s = &b->window[epoch % BREAKER_WINDOW_SLOTS];
    if (s->epoch != epoch)
        *s = (struct slot){.epoch = epoch};
    s->total++;
    if (failed)
        s->failed++;
}

/* Outcomes of the last BREAKER_WINDOW_SLOTS slots, the current one included. */
static void window_sum(const struct breaker *b, int64_t now, uint64_t *total, uint64_t *failed)
{
    int64_t epoch = now / slot_ms(b);
    *total = *failed = 0;
    for (int i = 0; i < BREAKER_WINDOW_SLOTS; i++) {
        const struct slot *s = &b->window[i];
        if (s->epoch >= 0 && s->epoch > epoch - BREAKER_WINDOW_SLOTS && s->epoch <= epoch) {
            *total += s->total;
            *failed += s->failed;
        }
    }
}

struct breaker *breaker_new(const struct breaker_config *cfg, const char *name,
                            breaker_clock_fn clock, void *clock_ud)
{
    struct breaker *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->name = strdup(name ? name : "");
    if (!b->name) {
        free(b);
        return NULL;
    }
    b->cfg = *cfg;
    b->clock = clock;
    b->clock_ud = clock_ud;
    b->state = BREAKER_CLOSED;
    window_reset(b);
    return b;
}

void breaker_free(struct breaker *b)
{
    if (!b)
        return;
    free(b->name);
    free(b);
}

void breaker_on_transition(struct breaker *b, breaker_transition_fn fn, void *ud)
{
    b->on_transition = fn;
    b->transition_ud = ud;
}

void breaker_reconfigure(struct breaker *b, const struct breaker_config *cfg)
{
    bool window_changed = cfg->window_ms != b->cfg.window_ms;
    b->cfg = *cfg;
    if (window_changed)
        window_reset(b); /* slots of another length cannot be summed */
}

static void transition(struct breaker *b, enum breaker_state to, int64_t now, const char *why)
{
    enum breaker_state from = b->state;
    if (from == to)
        return;
    if (from == BREAKER_CLOSED)
        b->not_closed_since = now;
    if (to == BREAKER_CLOSED) {
        b->stats.open_ms_total += now - b->not_closed_since;
        window_reset(b); /* a fresh start: old failures must not reopen it at once */
    }
    if (to == BREAKER_OPEN)
        b->opened_at = now;
    b->state = to;
    b->generation++;
    b->consecutive = 0;
    b->probe_in_flight = false;
    b->stats.transitions[to]++;
    if (b->on_transition)
        b->on_transition(b->transition_ud, b->name, from, to, why);
}

enum breaker_verdict breaker_allow(struct breaker *b, struct breaker_ticket *ticket)
{
    int64_t now = now_ms(b);
    if (b->state == BREAKER_OPEN && now - b->opened_at >= (int64_t)b->cfg.open_ms)
        transition(b, BREAKER_HALF_OPEN, now, "cool-down over");
    *ticket = (struct breaker_ticket){.generation = b->generation, .probe = false};
    switch (b->state) {
    case BREAKER_CLOSED:
        return BREAKER_PASS;
    case BREAKER_HALF_OPEN:
        if (!b->probe_in_flight) {
            b->probe_in_flight = true;
            b->stats.probes++;
            ticket->probe = true;
            return BREAKER_PROBE;
        }
        break;
    default:
        break;
    }
    b->stats.rejected++;
    return BREAKER_REJECT;
}

static void record_closed(struct breaker *b, int64_t now, enum breaker_outcome outcome)
{
    if (outcome == BREAKER_NEUTRAL)
        return;
    bool failed = outcome == BREAKER_FAILURE;
    window_add(b, now, failed);
    if (!failed) {
        b->consecutive = 0;
        return;
    }
    b->consecutive++;
    if (b->cfg.failures > 0 && b->consecutive >= b->cfg.failures) {
        transition(b, BREAKER_OPEN, now, "consecutive failures");
        return;
    }
    if (b->cfg.ratio_percent == 0)
        return;
    uint64_t total, nfailed;
    window_sum(b, now, &total, &nfailed);
    uint64_t min = b->cfg.min_requests > 0 ? b->cfg.min_requests : 1;
    if (total >= min && nfailed * 100 >= (uint64_t)b->cfg.ratio_percent * total)
        transition(b, BREAKER_OPEN, now, "failure ratio over the window");
}

void breaker_record(struct breaker *b, const struct breaker_ticket *ticket,
                    enum breaker_outcome outcome)
{
    if (ticket->generation != b->generation)
        return; /* admitted in an earlier state: says nothing about this one */
    int64_t now = now_ms(b);
    if (b->state == BREAKER_CLOSED) {
        record_closed(b, now, outcome);
        return;
    }
    if (b->state != BREAKER_HALF_OPEN || !ticket->probe)
        return;
    if (outcome == BREAKER_SUCCESS)
        transition(b, BREAKER_CLOSED, now, "probe succeeded");
    else if (outcome == BREAKER_FAILURE)
        transition(b, BREAKER_OPEN, now, "probe failed");
    else
        b->probe_in_flight = false; /* the next call may probe */
}

enum breaker_state breaker_state(const struct breaker *b)
{
    return b->state;
}

int64_t breaker_retry_in_ms(const struct breaker *b)
{
    if (b->state != BREAKER_OPEN)
        return 0;
    int64_t left = b->opened_at + (int64_t)b->cfg.open_ms - now_ms(b);
    return left > 0 ? left : 0;
}

void breaker_get_stats(const struct breaker *b, struct breaker_stats *out)
{
    *out = b->stats;
    out->state = b->state;
    if (b->state != BREAKER_CLOSED)
        out->open_ms_total += now_ms(b) - b->not_closed_since;
}

const char *breaker_state_name(enum breaker_state s)
{
    switch (s) {
    case BREAKER_CLOSED:
        return "closed";
    case BREAKER_OPEN:
        return "open";
    case BREAKER_HALF_OPEN:
        return "half-open";
    default:
        return "unknown";
    }
}
