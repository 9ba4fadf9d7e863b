/* Token bucket; see ratelimit.h. */
#include "ratelimit.h"

static void refill(struct ratelimit *r, int64_t now_ms)
{
    if (now_ms > r->last_ms) {
        r->tokens += (double)(now_ms - r->last_ms) * r->rate / 1000.0;
        if (r->tokens > r->burst)
            r->tokens = r->burst;
    }
    r->last_ms = now_ms; /* a clock going back refills nothing, and takes nothing either */
}

void ratelimit_set(struct ratelimit *r, unsigned rate, unsigned burst, int64_t now_ms)
{
    refill(r, now_ms);
    r->rate = rate;
    r->burst = burst ? burst : (rate ? rate : 1);
    if (r->tokens > r->burst)
        r->tokens = r->burst;
}

void ratelimit_init(struct ratelimit *r, unsigned rate, unsigned burst, int64_t now_ms)
{
    r->rate = rate;
    r->burst = burst ? burst : (rate ? rate : 1);
    r->tokens = r->burst;
    r->last_ms = now_ms;
}

bool ratelimit_take(struct ratelimit *r, int64_t now_ms)
{
    if (r->rate == 0)
        return true;
    refill(r, now_ms);
    if (r->tokens < 1.0)
        return false;
    r->tokens -= 1.0;
    return true;
}
