/* What the SPOP connection layer counts: a plain struct the owner of the connections hands to
 * conn.c (by pointer, in its settings) and renders with its other metrics. Used by conn.c and
 * metrics.h. */
#ifndef PTA_CONN_COUNTERS_H
#define PTA_CONN_COUNTERS_H

#include <stdint.h>

struct conn_counters {
    uint64_t frames_in, frames_out;
    uint64_t errors; /* connections ended by a protocol error */
    /* HELLOs from HAProxy 3.1+ offering pipelining (known to stall, see conn.c); the first one is
     * logged. Kept here, by the owner, so that "warned once" is per agent and tests can reset it.
     */
    uint64_t stall_prone_hellos;
};

#endif
