/* The one wall clock of the agent: milliseconds or seconds since the epoch, from CLOCK_REALTIME
 * unless a test injects another source. Used by the cache (its default clock), the worker
 * (decisions compare exp with it) and main.c. */
#ifndef PTA_CLOCK_H
#define PTA_CLOCK_H

#include <stdint.h>

/* A source of milliseconds since the epoch; the shape of cache_clock_fn. */
typedef int64_t (*clock_source_fn)(void *ud);

/* Milliseconds since the epoch from the current source. ud is ignored, so that this function can
 * be handed to cache_new() as its clock. */
int64_t clock_ms(void *ud);
/* Whole seconds since the epoch from the current source (JWT/introspection exp are seconds). */
int64_t clock_seconds(void);

/* Replaces the source (tests). NULL restores CLOCK_REALTIME. */
void clock_inject(clock_source_fn fn, void *ud);

#endif
