/* A circuit breaker for one identity-server endpoint: closed -> open after N consecutive failures
 * or a failure ratio over a sliding window; open fails fast for a cool-down; half-open lets
 * exactly one probe through at a time and closes on its success. Pure (injected clock, no I/O);
 * transitions are reported once each through a callback, which the caller logs. Used by the
 * introspection path (one breaker per endpoint, per event loop: not thread-safe). */
#ifndef PTA_BREAKER_H
#define PTA_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#define BREAKER_WINDOW_SLOTS 10

struct breaker_config {
    unsigned failures;      /* consecutive failures that open it; 0: this trigger is off */
    unsigned ratio_percent; /* failure ratio (1..100) over the window that opens it; 0: off */
    unsigned min_requests;  /* the ratio counts only with at least this many outcomes */
    unsigned window_ms;     /* length of the sliding window of the ratio */
    unsigned open_ms;       /* cool-down before a probe is let through */
};

/* Defaults: 5 consecutive failures, ratio off (50 % over 10 s with >= 20 outcomes when on), 5 s
 * cool-down. */
struct breaker_config breaker_config_default(void);

/* With both triggers off the breaker never opens. */
static inline bool breaker_config_enabled(const struct breaker_config *c)
{
    return c->failures > 0 || c->ratio_percent > 0;
}

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN, BREAKER__STATES };

/* What breaker_allow() decided for one IdP call. */
enum breaker_verdict {
    BREAKER_PASS,   /* closed: call the IdP */
    BREAKER_PROBE,  /* half-open: this call is the one probe; its outcome decides */
    BREAKER_REJECT, /* open, or half-open with a probe in flight: do not call the IdP */
};

/* Outcome of a call breaker_allow() let through. NEUTRAL: says nothing about the IdP (aborted
 * at shutdown, a local error); it only frees the probe slot. */
enum breaker_outcome { BREAKER_SUCCESS, BREAKER_FAILURE, BREAKER_NEUTRAL };

/* Identifies the state a call was admitted in: outcomes of calls admitted before a transition
 * are ignored (a success that started before the breaker opened says nothing about now). */
struct breaker_ticket {
    uint64_t generation;
    bool probe;
};

/* Monotonic milliseconds (tests inject a fake clock). */
typedef int64_t (*breaker_clock_fn)(void *ud);
/* Called once per state change, after it happened; why is static text. */
typedef void (*breaker_transition_fn)(void *ud, const char *name, enum breaker_state from,
                                      enum breaker_state to, const char *why);

struct breaker_stats {
    enum breaker_state state;
    uint64_t transitions[BREAKER__STATES]; /* changes INTO each state */
    uint64_t rejected;                     /* calls refused without calling the IdP */
    uint64_t probes;                       /* probes let through */
    int64_t open_ms_total; /* time spent not closed (open or half-open), the current spell too */
};

/* name (copied, e.g. the endpoint's host) appears in transition reports. NULL on ENOMEM. */
struct breaker *breaker_new(const struct breaker_config *cfg, const char *name,
                            breaker_clock_fn clock, void *clock_ud);
void breaker_free(struct breaker *b);
void breaker_on_transition(struct breaker *b, breaker_transition_fn fn, void *ud);
/* New thresholds apply from now on; the state and the window are kept. */
void breaker_reconfigure(struct breaker *b, const struct breaker_config *cfg);

/* Asks to call the IdP. On PASS and PROBE *ticket must be handed to breaker_record() exactly once
 * when the call ends. An open breaker whose cool-down is over turns half-open here. */
enum breaker_verdict breaker_allow(struct breaker *b, struct breaker_ticket *ticket);
void breaker_record(struct breaker *b, const struct breaker_ticket *ticket,
                    enum breaker_outcome outcome);

enum breaker_state breaker_state(const struct breaker *b);
/* Milliseconds until an open breaker lets a probe through (0 when closed or half-open). */
int64_t breaker_retry_in_ms(const struct breaker *b);
void breaker_get_stats(const struct breaker *b, struct breaker_stats *out);
const char *breaker_state_name(enum breaker_state s); /* "closed", "open", "half-open" */

#endif
