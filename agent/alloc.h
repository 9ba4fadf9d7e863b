/* Allocation for the modules whose out-of-memory paths are tested (agent.c, cache.c, conn.c, the
 * resolver pipeline): plain malloc/calloc/realloc in the daemon; in test builds (PTA_ALLOC_HOOK)
 * wrappers that can be told to fail the Nth allocation from now, so every such path runs. */
#ifndef PTA_ALLOC_H
#define PTA_ALLOC_H

#include <stddef.h>
#include <stdlib.h>

#ifdef PTA_ALLOC_HOOK
void *pta_malloc(size_t n);
void *pta_calloc(size_t nmemb, size_t n);
void *pta_realloc(void *p, size_t n);
/* The nth allocation from now (1 = the next one) returns NULL; 0 disarms. With every_after, each
 * allocation after it fails too (a machine out of memory rather than one unlucky call). */
void pta_alloc_fail_at(unsigned long nth, int every_after);
/* Allocations made through the wrappers since the last pta_alloc_fail_at(). */
unsigned long pta_alloc_count(void);
#else
#define pta_malloc malloc
#define pta_calloc calloc
#define pta_realloc realloc
#endif

#endif
