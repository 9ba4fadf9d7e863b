/* The failing-allocation hook for test builds (see alloc.h). Compiled only with PTA_ALLOC_HOOK. */
#include "alloc.h"

#ifdef PTA_ALLOC_HOOK

static unsigned long fail_at, count;
static int fail_after;

static int should_fail(void)
{
    count++;
    if (fail_at == 0)
        return 0;
    return count == fail_at || (fail_after && count > fail_at);
}

void *pta_malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n);
}

void *pta_calloc(size_t nmemb, size_t n)
{
    return should_fail() ? NULL : calloc(nmemb, n);
}

void *pta_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n);
}

void pta_alloc_fail_at(unsigned long nth, int every_after)
{
    fail_at = nth;
    fail_after = every_after;
    count = 0;
}

unsigned long pta_alloc_count(void)
{
    return count;
}

#endif
