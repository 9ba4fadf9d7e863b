/* One SPOP connection: handshake, frame reassembly, NOTIFY dispatch, output queue and closing.
 * Knows nothing of its owner: what it needs comes in at creation, an ops table (NOTIFY, close,
 * "busy" for the idle timer) and a settings snapshot that does not change while it lives.
 * Depends on the SPOP codec, lists and logging only. Created by agent.c; tests drive it directly.
 */
#ifndef PTA_CONN_H
#define PTA_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "conn_counters.h"
#include "list.h"
#include "spop.h"

struct conn;

/* Connections with output queued, sent together before the loop next waits: HAProxy packs many
 * NOTIFYs into one read, and one send() for all their ACKs instead of one each is most of the
 * agent's CPU on the cached path. One per loop, shared by its connections.
 * It also frees the connections closed since the last iteration: from the ev_prepare, so every
 * iteration frees them, however busy the loop is (an ev_idle never runs on a loaded loop). */
struct conn_flusher {
    struct ev_loop *loop;
    struct list dirty;
    struct list closing; /* closed with conn_close_soon(), freed before the loop next waits */
    ev_prepare prepare;
    ev_idle nowait; /* from a close until the loop idles: it does not block meanwhile */
};

/* Starts the ev_prepare (unreferenced: flushing alone never keeps a loop alive; a connection
 * waiting to be freed keeps it running, through the ev_idle, until it is). */
void conn_flusher_init(struct conn_flusher *fl, struct ev_loop *loop);
/* Stops it; every connection using it must be gone. */
void conn_flusher_stop(struct conn_flusher *fl);
/* Sends what every connection of the flusher has queued (also called by the ev_prepare). */
void conn_flush_dirty(struct conn_flusher *fl);
/* Frees the connections closed with conn_close_soon() (also called by the ev_prepare). */
void conn_reap_closing(struct conn_flusher *fl);

/* Fixed for the connection's whole life (a reload changes what new connections get, never the
 * frame size a live one negotiated). The pointed-to objects must outlive the connection. */
struct conn_settings {
    struct ev_loop *loop;
    uint32_t max_frame;       /* ours: announced in AGENT-HELLO (HAProxy may lower it) */
    unsigned idle_timeout_ms; /* close after that long without input; 0: never */
    struct conn_counters *counters;
    struct conn_flusher *flusher;
};

/* The owner's callbacks; ud is the pointer given to conn_new(). */
struct conn_ops {
    /* A NOTIFY (the frame is borrowed: copy what must outlive the call). May queue ACKs,
     * disconnect or close c. */
    void (*on_notify)(struct conn *c, void *ud, const struct spop_frame *f);
    /* Once, just before c is freed (closed by either side, or destroyed): ud may be freed. */
    void (*on_close)(struct conn *c, void *ud);
    /* Optional: true while the owner still owes answers, which keeps the idle timer from closing.
     */
    bool (*busy)(const struct conn *c, void *ud);
};

/* Takes ownership of fd (already non-blocking). s and ops are copied/borrowed (ops must outlive the
 * connection). NULL on ENOMEM (fd closed, on_close not called). */
struct conn *conn_new(const struct conn_settings *s, const struct conn_ops *ops, void *ud, int fd,
                      const char *peer);

/* Opens a frame in the output queue with room for a whole negotiated frame. Every call is followed
 * by conn_commit() before anything else writes to the connection. */
void conn_begin(struct conn *c, struct spop_writer *w);
/* Queues what w holds (when it did not overflow). Returns 0, or -1 on overflow (nothing queued). */
int conn_commit(struct conn *c, struct spop_writer *w);

/* Sends AGENT-DISCONNECT (status, message) and closes once it is flushed. */
void conn_disconnect(struct conn *c, int status, const char *message);
/* Closes without a word; freed before the loop next waits (the flusher's ev_prepare). Safe to
 * call from any callback, several times. */
void conn_close_soon(struct conn *c);
/* Frees at once (calls on_close): only for shutdown and tests, outside any callback chain. */
void conn_destroy(struct conn *c);

bool conn_is_open(const struct conn *c);       /* false once closing */
uint32_t conn_max_frame(const struct conn *c); /* negotiated: min(ours, HAProxy's) after HELLO */
const char *conn_peer(const struct conn *c);

/* For tests and benchmarks: processes bytes as if read from the socket (at most a frame's room),
 * and gives or drops what is queued and not sent yet. */
size_t conn_feed(struct conn *c, const uint8_t *buf, size_t len);
size_t conn_unsent(const struct conn *c, const uint8_t **data);
void conn_drop_unsent(struct conn *c);

#endif
