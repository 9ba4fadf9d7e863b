/* A non-blocking client of one HAProxy runtime API socket (a worker's stats socket, or the master
 * CLI with a route prefix) on a libev loop: one interactive ("prompt") session, a bounded queue of
 * command lines, a window of lines in flight, reconnect with backoff, and a process check on a
 * fresh connection that notices a reload (an old worker keeps answering an open session). Used by
 * the fast-path writer; the command lines come from fastpath.c. */
#ifndef PTA_HAPROXY_CLI_H
#define PTA_HAPROXY_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#define HCLI_LINE_MAX 65536 /* a command line; HAProxy's own limit is tune.bufsize */

struct hcli;

struct hcli_settings {
    const char *address;   /* "unix:/path", "/path", "ip:port" or "[ipv6]:port" (numeric) */
    const char *route;     /* "" on a worker's socket, "@1" or "@!<pid>" on the master CLI */
    size_t max_queue;      /* lines waiting to be sent (0: 4096); beyond: everything is resent */
    unsigned window;       /* lines sent and not yet answered (0: 16); 2.6/3.x answer a lone
                              line late, a window keeps the session busy */
    double probe_interval; /* seconds between process checks (0: 1) */
    double timeout;        /* connect and answer timeout in seconds (0: 2) */
    double backoff_max;    /* longest pause between reconnects in seconds (0: 5) */
};

struct hcli_ops {
    /* A session is ready. resync: the queue was emptied because commands may have been lost
     * (first session, a new HAProxy process, a connection lost with lines in flight, an overflow):
     * the caller queues what rebuilds HAProxy's state from its own (clear + re-fill). */
    void (*on_ready)(void *ud, struct hcli *c, long pid, bool resync);
    /* The process behind the open session is no longer the one the socket leads to (reloaded):
     * the caller may queue last lines for it (e.g. "clear map") before the session closes. */
    void (*on_stale)(void *ud, struct hcli *c);
};

struct hcli_stats {
    uint64_t sent, answered, errors, dropped, sessions, resyncs;
    bool ready;
    long pid; /* of the current or last session's process; 0 before the first */
    size_t queued, in_flight;
};

/* Copies the settings. NULL on a bad address or no memory (err says which). Connects at once. */
struct hcli *hcli_new(struct ev_loop *loop, const struct hcli_settings *s,
                      const struct hcli_ops *ops, void *ud, char *err, size_t errlen);
void hcli_free(struct hcli *c); /* closes; queued lines are dropped */

/* Queues one command line (exactly one '\n', at its end; at most HCLI_LINE_MAX bytes). 0, or -1
 * when the line is malformed (nothing queued) or the queue is full (everything queued is dropped,
 * the session restarts and on_ready() gets resync). Never blocks. */
int hcli_send(struct hcli *c, const char *line, size_t len);

void hcli_get_stats(const struct hcli *c, struct hcli_stats *out);
const char *hcli_address(const struct hcli *c);
const char *hcli_route(const struct hcli *c);
/* The HAProxy version behind the ready session, as major * 100 + minor (304 for 3.4.x); 0 before
 * the first session or when "show info" had no readable Version line. */
int hcli_version(const struct hcli *c);

#endif
