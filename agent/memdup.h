/* A NUL-terminated copy of a byte range that may not be NUL-terminated itself (a JSON string, a
 * MessagePack field, an OpenSSL memory BIO): strndup() would do, but string interceptors in strict
 * mode read such a range as a C string. Used wherever the tree copies a (pointer, length) pair. */
#ifndef PTA_MEMDUP_H
#define PTA_MEMDUP_H

#include <stdlib.h>
#include <string.h>

/* NULL when out of memory. */
static inline char *mem_strdup(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

#endif
