/* The retry policy of one introspection, as a pure function: retry once, after a jittered delay,
 * only when it is safe and useful (the connection was refused or reset before any response byte,
 * or the IdP said 503 with a Retry-After that fits the remaining time), never past the request's
 * deadline, never a timeout or a 4xx. Also the Retry-After parser. Used by the introspection path;
 * no I/O, no clock of its own (the caller passes times and a random number). */
#ifndef PTA_RETRY_H
#define PTA_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How an attempt ended, as far as retrying is concerned. */
enum retry_failure {
    RETRY_F_NONE,    /* an answer the caller uses (success, inactive, or a definitive error) */
    RETRY_F_REFUSED, /* the connection was refused */
    RETRY_F_RESET,   /* the connection was reset or closed (by the peer) */
    RETRY_F_TIMEOUT, /* connect or transfer timeout */
    RETRY_F_HTTP,    /* the IdP answered an HTTP status the caller does not accept */
    RETRY_F_OTHER,   /* TLS, DNS, an unusable or oversized answer, a local error */
};

struct retry_policy {
    unsigned max_retries;    /* 1: at most one retry; 0: never retry */
    unsigned jitter_ms;      /* a retry waits a random 0..jitter_ms more (spreads a herd) */
    unsigned min_attempt_ms; /* time a retry must still have after its delay to be worth it */
};

/* Defaults: one retry, 0..50 ms of jitter, at least 100 ms left for the retry. */
struct retry_policy retry_policy_default(void);

struct retry_attempt {
    enum retry_failure failure;
    bool response_started;  /* at least one response byte had arrived */
    int http_status;        /* with RETRY_F_HTTP */
    int64_t retry_after_ms; /* from the answer's Retry-After, or -1 when absent or unusable */
    unsigned retries_done;  /* retries already made for this request */
    int64_t now_ms;         /* same clock as deadline_ms */
    int64_t deadline_ms;    /* the request's deadline (introspection-timeout from its start) */
};

struct retry_decision {
    bool retry;
    unsigned delay_ms; /* wait that long before the retry */
    const char *why;   /* static text for the log, either way */
};

/* random: any 32-bit random number (the jitter is random % (jitter_ms + 1)). */
struct retry_decision retry_decide(const struct retry_policy *p, const struct retry_attempt *a,
                                   uint32_t random);

/* Parses a Retry-After value (RFC 9110 10.2.3): delay-seconds, or an IMF-fixdate relative to
 * now_epoch_ms (a date in the past is 0). Surrounding spaces are allowed. Returns 0 and sets
 * *delay_ms, or -1 (the obsolete date formats, garbage, overflow). */
int retry_after_parse(const char *value, size_t len, int64_t now_epoch_ms, int64_t *delay_ms);

#endif
