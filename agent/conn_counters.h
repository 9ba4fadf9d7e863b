/* What the SPOP connection layer counts: a plain struct the owner of the connections hands to
 * conn.c (by pointer, in its settings) and renders with its other metrics. Used by conn.c and
 * metrics.h. */
#ifndef PTA_CONN_COUNTERS_H
#define PTA_CONN_COUNTERS_H

#include <stdint.h>

struct conn_counters {
    uint64_t frames_in, frames_out;
    uint64_t errors; /* connections ended by a protocol error */
};

#endif
