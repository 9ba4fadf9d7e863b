/* The wall clock, with a source a test can replace and reset (clock_inject(NULL, NULL)). */
#include "clock.h"

#include <time.h>

static clock_source_fn source;
static void *source_ud;

static int64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_ms(void *ud)
{
    (void)ud;
    return source ? source(source_ud) : realtime_ms();
}

int64_t clock_seconds(void)
{
    int64_t ms = clock_ms(NULL);
    /* Floor, not truncation: a fake clock may be set before 1970 in a test. */
    return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

void clock_inject(clock_source_fn fn, void *ud)
{
    source = fn;
    source_ud = ud;
}
