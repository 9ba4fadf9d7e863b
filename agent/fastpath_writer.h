/* The fast-path writer: publishes the worker's positive decisions into HAProxy's decision map over
 * one or more runtime API sockets (haproxy_cli.c), keeps the table of live entries (fastpath.c),
 * deletes them at expiry, eviction and purge, and re-fills a process that lost them (reload,
 * restart, lost commands). Used by agent.c (publish) and the purge paths. */
#ifndef PTA_FASTPATH_WRITER_H
#define PTA_FASTPATH_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "fastpath.h"
#include "haproxy_cli.h"

struct fastpath_writer;

struct fpw_settings {
    /* Comma-separated runtime API sockets: "unix:/path", "/path" or "ip:port"; a "master:"
     * prefix marks HAProxy's master CLI (commands are routed to the current worker, "@1"). */
    const char *sockets;
    const char *map;    /* the map identifier haproxy.cfg uses (its file path) */
    const char *secret; /* the shared key's base64 text (fp_secret_parse) */
    size_t max_entries;
};

struct fpw_stats {
    uint64_t published; /* entries written (new or changed) */
    uint64_t unchanged; /* decisions already live in the map: nothing sent */
    uint64_t refused;   /* decisions fp_admit() kept out */
    uint64_t removed;   /* entries deleted: expiry, eviction, purge */
    uint64_t refills;   /* sessions re-filled from the table */
    size_t entries;     /* live now */
};

/* NULL with a message in err when a socket address, the map name or the settings are bad. */
struct fastpath_writer *fpw_new(struct ev_loop *loop, const struct fpw_settings *s, char *err,
                                size_t errlen);
void fpw_free(struct fastpath_writer *w);

/* Offers one decision; only what fp_admit() accepts is published. now in seconds. */
void fpw_publish(struct fastpath_writer *w, const struct fp_candidate *c, const struct fp_limits *l,
                 const uint8_t token_id[FP_TOKEN_ID_LEN], int64_t now);

/* Revocation: removes every entry of one token (all its routes), or all. Returns how many. */
size_t fpw_purge_token(struct fastpath_writer *w, const uint8_t token_id[FP_TOKEN_ID_LEN]);
size_t fpw_purge_all(struct fastpath_writer *w);

void fpw_get_stats(const struct fastpath_writer *w, struct fpw_stats *out);
/* Prometheus text of the counters above, for /metrics (malloc'd; NULL on ENOMEM). */
char *fpw_metrics_text(const struct fastpath_writer *w);
size_t fpw_nsockets(const struct fastpath_writer *w);
const struct hcli *fpw_socket(const struct fastpath_writer *w, size_t i);

#endif
