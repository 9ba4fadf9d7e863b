/* A token bucket: at most `rate` events per second on average, `burst` at once. Pure (the caller
 * passes the time). Used by the "admission" pipeline stage to bound new-token introspections
 * under a flood of unknown tokens. */
#ifndef PTA_RATELIMIT_H
#define PTA_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
    unsigned rate;  /* events per second; 0: unlimited */
    unsigned burst; /* bucket size; at least 1 when rate > 0 */
    double tokens;  /* what the bucket holds */
    int64_t last_ms;
};

/* A full bucket. burst 0 means "one second's worth" (= rate). */
void ratelimit_init(struct ratelimit *r, unsigned rate, unsigned burst, int64_t now_ms);
/* New limits from now on (reload); what the bucket holds is kept, capped at the new burst. */
void ratelimit_set(struct ratelimit *r, unsigned rate, unsigned burst, int64_t now_ms);
/* Takes one event; false (nothing taken) when the bucket is empty. Always true when unlimited. */
bool ratelimit_take(struct ratelimit *r, int64_t now_ms);

#endif
