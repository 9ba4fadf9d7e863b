/* One SPOP connection from HAProxy: buffered non-blocking I/O on the worker's libev loop, the HELLO
 * handshake, frame dispatch, DISCONNECT both ways, the idle timeout, and the output queue that lets
 * an ACK be written long after its NOTIFY arrived (pipelining: ACKs go out in completion order).
 * Created by listener.c, fed NOTIFYs to agent.c. */
#ifndef PTA_CONN_H
#define PTA_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "list.h"
#include "spop.h"

struct agent;
struct pending;

enum conn_state {
    CONN_HELLO,   /* waiting for HAPROXY-HELLO */
    CONN_READY,   /* handshake done: NOTIFY / ACK */
    CONN_CLOSING, /* flushing a last frame, then closed from the loop */
};

struct conn {
    struct agent *agent;
    int fd;
    enum conn_state state;
    bool healthcheck;
    uint32_t max_frame; /* ours until HELLO, then min(ours, HAProxy's) */
    ev_io rio, wio;
    ev_timer idle;  /* idle timeout; also bounds the CLOSING flush */
    ev_idle reaper; /* frees the connection from the loop, never from inside a callback chain */
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_off, out_len, out_cap;
    struct list pending; /* NOTIFYs waiting for an introspection (struct pending) */
    unsigned npending;
    struct list link;       /* in the agent's connections */
    struct list dirty_link; /* in the agent's connections with output queued, or unlinked */
    char peer[64];
};

/* Takes ownership of fd (already non-blocking). NULL on ENOMEM (fd closed). */
struct conn *conn_new(struct agent *a, int fd, const char *peer);

/* Opens a frame in the output queue with room for a whole max_frame frame. Every call is followed
 * by conn_commit() before anything else writes to the connection. */
void conn_begin(struct conn *c, struct spop_writer *w);
/* Queues what w holds (when it did not overflow). Returns 0, or -1 on overflow (nothing queued).
 * Queued frames go out together before the loop next waits (conn_flush_dirty): HAProxy packs
 * many NOTIFYs into one read, and one send() for all their ACKs instead of one each is most of
 * the agent's CPU on the cached path. */
int conn_commit(struct conn *c, struct spop_writer *w);

/* Sends what every connection of the agent has queued; called from the agent's ev_prepare. */
void conn_flush_dirty(struct agent *a);

/* Sends AGENT-DISCONNECT (status, message) and closes once it is flushed. */
void conn_disconnect(struct conn *c, int status, const char *message);
/* Closes without a word, from the loop. Safe to call from any callback, several times. */
void conn_close_soon(struct conn *c);
/* Frees at once: only for shutdown, outside any callback chain. */
void conn_destroy(struct conn *c);

static inline bool conn_is_open(const struct conn *c)
{
    return c->state != CONN_CLOSING;
}

#endif
