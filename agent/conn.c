/* SPOP connection engine. Reading: bytes accumulate in a buffer sized for one whole frame, every
 * complete frame is dispatched in place, the rest is kept for the next read (so partial and
 * coalesced frames both work). Writing: frames are appended to an output queue and sent with one
 * send() when possible, because HAProxy 3.2 has reset connections whose HELLO arrived split.
 * Everything it needs from its owner came in at creation (struct conn_settings, struct conn_ops).
 */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alloc.h"
#include "log.h"

#define CONN_CLOSE_LINGER 2.0 /* seconds a CLOSING connection may take to flush its last frame */
/* Unsent bytes above which the connection stops reading: a peer that sends NOTIFYs but never
 * reads the ACKs must not make the agent buffer without bound. Reading resumes below half. */
#define CONN_OUT_HIGH (256 * 1024)

enum conn_state {
    CONN_HELLO,   /* waiting for HAPROXY-HELLO */
    CONN_READY,   /* handshake done: NOTIFY / ACK */
    CONN_CLOSING, /* flushing a last frame, then closed from the loop */
};

struct conn {
    struct conn_settings set; /* snapshot taken at creation */
    const struct conn_ops *ops;
    void *ud;
    int fd;
    enum conn_state state;
    bool healthcheck;
    uint32_t max_frame; /* ours until HELLO, then min(ours, HAProxy's) */
    ev_io rio, wio;
    ev_timer idle;          /* idle timeout; also bounds the CLOSING flush */
    struct list close_link; /* in the flusher's closing list once conn_close_soon() ran */
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_off, out_len, out_cap;
    struct list dirty_link; /* in the flusher's list while output is queued, else unlinked */
    char peer[64];
};

static void conn_on_read(struct ev_loop *loop, ev_io *w, int revents);
static void conn_on_write(struct ev_loop *loop, ev_io *w, int revents);
static void conn_on_timer(struct ev_loop *loop, ev_timer *w, int revents);

struct conn *conn_new(const struct conn_settings *s, const struct conn_ops *ops, void *ud, int fd,
                      const char *peer)
{
    struct conn *c = pta_calloc(1, sizeof(*c));
    if (c)
        c->in_cap = SPOP_LEN_PREFIX + s->max_frame;
    if (c)
        c->in = pta_malloc(c->in_cap);
    if (!c || !c->in) {
        free(c);
        close(fd);
        return NULL;
    }
    c->set = *s;
    c->ops = ops;
    c->ud = ud;
    list_init(&c->dirty_link);
    list_init(&c->close_link);
    c->fd = fd;
    c->state = CONN_HELLO;
    c->max_frame = s->max_frame;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    ev_io_init(&c->rio, conn_on_read, fd, EV_READ);
    ev_io_init(&c->wio, conn_on_write, fd, EV_WRITE);
    ev_init(&c->idle, conn_on_timer);
    c->rio.data = c->wio.data = c->idle.data = c;
    ev_io_start(s->loop, &c->rio);
    c->idle.repeat = s->idle_timeout_ms / 1000.0;
    if (c->idle.repeat > 0)
        ev_timer_again(s->loop, &c->idle);
    return c;
}

void conn_destroy(struct conn *c)
{
    struct ev_loop *loop = c->set.loop;
    c->state = CONN_CLOSING; /* nothing may be queued on a connection being freed */
    c->ops->on_close(c, c->ud);
    list_del(&c->dirty_link);
    if (list_linked(&c->close_link)) {
        list_del(&c->close_link);
    }
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    ev_timer_stop(loop, &c->idle);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

void conn_close_soon(struct conn *c)
{
    struct ev_loop *loop = c->set.loop;
    c->state = CONN_CLOSING;
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    if (list_linked(&c->close_link))
        return;
    /* An active ev_idle keeps the loop from blocking (and alive) until the prepare frees it. */
    ev_idle_start(loop, &c->set.flusher->nowait);
    list_insert(&c->set.flusher->closing, &c->close_link);
}

void conn_reap_closing(struct conn_flusher *fl)
{
    while (!list_empty(&fl->closing)) /* on_close may close others: they are freed here too */
        conn_destroy(list_entry(fl->closing.next, struct conn, close_link));
}

/* ---- output ---- */

static int out_reserve(struct conn *c, size_t need)
{
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_cap - c->out_len >= need)
        return 0;
    if (c->out_off > 0) { /* slide the unsent bytes down before growing */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_cap - c->out_len >= need)
            return 0;
    }
    size_t cap = c->out_len + need;
    if (cap < 2 * c->out_cap) /* geometric, so a backlog is not copied once per frame */
        cap = 2 * c->out_cap;
    uint8_t *p = pta_realloc(c->out, cap);
    if (!p)
        return -1;
    c->out = p;
    c->out_cap = cap;
    return 0;
}

void conn_begin(struct conn *c, struct spop_writer *w)
{
    size_t need = SPOP_LEN_PREFIX + c->max_frame;
    if (out_reserve(c, need) < 0) {
        spop_writer_init(w, NULL, 0); /* every write overflows: the caller sees -1 */
        return;
    }
    spop_writer_init(w, c->out + c->out_len, need);
}

/* Pauses or resumes reading from how much output the peer has not taken yet. */
static void conn_backpressure(struct conn *c)
{
    size_t unsent = c->out_len - c->out_off;
    bool reading = ev_is_active(&c->rio);
    if (reading && unsent > CONN_OUT_HIGH) {
        log_debug("spop %s: peer not reading its ACKs: pausing input", c->peer);
        ev_io_stop(c->set.loop, &c->rio);
    } else if (!reading && unsent <= CONN_OUT_HIGH / 2 && c->state != CONN_CLOSING) {
        ev_io_start(c->set.loop, &c->rio);
    }
}

/* One send() of everything queued; the rest waits for EV_WRITE. On errors the connection is freed
 * from the loop, never from inside a callback chain. */
static void conn_flush(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->set.loop, &c->wio);
            conn_backpressure(c);
            return;
        }
        if (errno != EPIPE && errno != ECONNRESET)
            log_warn("spop %s: send failed: %s", c->peer, strerror(errno));
        c->out_off = c->out_len; /* drop it: the peer is gone */
        conn_close_soon(c);
        return;
    }
    ev_io_stop(c->set.loop, &c->wio);
    if (c->state == CONN_CLOSING)
        conn_close_soon(c);
    else
        conn_backpressure(c);
}

int conn_commit(struct conn *c, struct spop_writer *w)
{
    if (w->overflow || !w->buf)
        return -1;
    c->out_len += w->len;
    c->set.counters->frames_out++;
    if (ev_is_active(&c->wio)) /* the peer is not taking what we send: EV_WRITE flushes it */
        conn_backpressure(c);
    else if (!list_linked(&c->dirty_link))
        list_insert(&c->set.flusher->dirty, &c->dirty_link);
    return 0;
}

void conn_flush_dirty(struct conn_flusher *fl)
{
    while (!list_empty(&fl->dirty)) {
        struct conn *c = list_entry(fl->dirty.next, struct conn, dirty_link);
        list_del(&c->dirty_link);
        conn_flush(c);
    }
}

static void on_nowait(struct ev_loop *loop, ev_idle *w, int revents)
{
    /* Runs once the loop has nothing else to do: the prepare freed the connections, and the
     * other prepares (the drain check) have seen them gone. Only now may the loop block. */
    conn_reap_closing(w->data);
    ev_idle_stop(loop, w);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct conn_flusher *fl = w->data;
    /* A flush may close a connection (its last frame sent) and an on_close may queue output on
     * another: until both lists are empty, so that nothing waits for the next wake-up. */
    while (!list_empty(&fl->dirty) || !list_empty(&fl->closing)) {
        conn_flush_dirty(fl);
        conn_reap_closing(fl);
    }
}

void conn_flusher_init(struct conn_flusher *fl, struct ev_loop *loop)
{
    fl->loop = loop;
    list_init(&fl->dirty);
    list_init(&fl->closing);
    ev_idle_init(&fl->nowait, on_nowait);
    fl->nowait.data = fl;
    ev_prepare_init(&fl->prepare, on_prepare);
    fl->prepare.data = fl;
    ev_prepare_start(loop, &fl->prepare);
    ev_unref(loop); /* flushing alone must not keep a drained loop running */
}

void conn_flusher_stop(struct conn_flusher *fl)
{
    if (!ev_is_active(&fl->prepare))
        return;
    conn_reap_closing(fl);
    ev_idle_stop(fl->loop, &fl->nowait);
    ev_ref(fl->loop);
    ev_prepare_stop(fl->loop, &fl->prepare);
}

static void conn_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    conn_flush(w->data);
}

void conn_disconnect(struct conn *c, int status, const char *message)
{
    if (c->state == CONN_CLOSING)
        return;
    if (status != SPOP_ST_NORMAL) {
        c->set.counters->errors++;
        log_warn("spop %s: closing: %s (status %d: %s)", c->peer, message, status,
                 spop_status_str(status));
    }
    struct spop_writer w;
    conn_begin(c, &w);
    w.len = spop_encode_agent_disconnect(w.buf, w.cap, (uint32_t)status, message);
    c->state = CONN_CLOSING;
    ev_io_stop(c->set.loop, &c->rio);
    if (w.len == 0 || conn_commit(c, &w) < 0) {
        conn_close_soon(c);
        return;
    }
    /* Bound the flush: a peer that never reads must not keep us. */
    c->idle.repeat = CONN_CLOSE_LINGER;
    ev_timer_again(c->set.loop, &c->idle);
}

/* ---- frames ---- */

/* HAProxy 3.1 to 3.5 stop reading a pipelined SPOP connection for good once one read fills their
 * receive buffer (tune.bufsize = max-frame-size + 4) with ACKs, and put up to 20 streams on one
 * connection: pipelined answers above (tune.bufsize / 20) bytes can stall it (README, "HAProxy
 * versions"). Their HELLO offers "pipelining" without 2.x's "async". Warned once per process. */
#define HAPROXY3_STREAMS_PER_CONN 20
static void warn_if_stall_prone(const struct conn *c, const struct spop_hello *h)
{
    if (h->healthcheck || !spop_caps_has(h->capabilities, "pipelining") ||
        spop_caps_has(h->capabilities, "async"))
        return;
    if (c->set.counters->stall_prone_hellos++ > 0)
        return;
    uint32_t per_answer = (h->max_frame_size + 4) / HAPROXY3_STREAMS_PER_CONN;
    log_warn("spop %s: HAProxy 3.x offers pipelining with tune.bufsize %u: it stalls a connection "
             "once the answers waiting on it fill tune.bufsize, so JWTs above ~%u bytes can make "
             "requests time out; add 'no option pipelining' to the SPOE agent section "
             "(spoe/phantom-token.conf does on 3.1+)",
             c->peer, h->max_frame_size + 4, per_answer > 256 ? per_answer - 256 : 0);
}

static void conn_on_hello(struct conn *c, const struct spop_frame *f)
{
    struct spop_hello h;
    int rc = spop_hello_decode(f->payload, f->payload_len, &h);
    if (rc < 0) {
        conn_disconnect(c, -rc, "bad HAPROXY-HELLO");
        return;
    }
    if (!spop_versions_support_v2(h.supported_versions)) {
        conn_disconnect(c, SPOP_ST_BAD_VSN, "HAProxy supports no SPOP 2.x version");
        return;
    }
    if (h.max_frame_size < SPOP_MIN_FRAME_SIZE) {
        conn_disconnect(c, SPOP_ST_BAD_FRAME_SIZE, "max-frame-size below 256");
        return;
    }
    if (h.max_frame_size < c->max_frame)
        c->max_frame = h.max_frame_size;
    c->healthcheck = h.healthcheck;
    warn_if_stall_prone(c, &h);

    struct spop_writer w;
    conn_begin(c, &w);
    w.len = spop_encode_agent_hello(w.buf, w.cap, c->max_frame, "pipelining");
    if (w.len == 0 || conn_commit(c, &w) < 0) {
        conn_close_soon(c);
        return;
    }
    log_debug("spop %s: hello: max-frame-size %u%s", c->peer, c->max_frame,
              c->healthcheck ? " (health check)" : "");
    if (c->healthcheck) { /* SPOE.txt: the agent may close right after a health-check HELLO */
        c->state = CONN_CLOSING;
        ev_io_stop(c->set.loop, &c->rio);
        conn_flush(c);
        return;
    }
    c->state = CONN_READY;
}

static void conn_on_haproxy_disconnect(struct conn *c, const struct spop_frame *f)
{
    struct spop_disconnect d;
    char msg[128];
    if (spop_disconnect_decode(f->payload, f->payload_len, &d) == 0 && d.status != 0) {
        log_printable(d.message.ptr, d.message.len, msg, sizeof(msg));
        log_info("spop %s: HAProxy disconnects: status %u (%s): %s", c->peer, d.status,
                 spop_status_str((int)d.status), msg);
    } else
        log_debug("spop %s: HAProxy disconnects", c->peer);
    conn_disconnect(c, SPOP_ST_NORMAL, "");
}

/* Returns false when the connection must stop reading. */
static bool conn_dispatch(struct conn *c, const uint8_t *buf, uint32_t len)
{
    struct spop_frame f;
    c->set.counters->frames_in++;
    if (spop_frame_decode(buf, len, &f) < 0) {
        conn_disconnect(c, SPOP_ST_INVALID, "malformed frame header");
        return false;
    }
    if (!(f.flags & SPOP_FLAG_FIN)) {
        conn_disconnect(c, SPOP_ST_FRAG_NOT_SUPPORTED, "fragmented frame");
        return false;
    }
    if (c->state == CONN_HELLO) {
        if (f.type != SPOP_FRM_HAPROXY_HELLO) {
            conn_disconnect(c, SPOP_ST_INVALID, "expected HAPROXY-HELLO");
            return false;
        }
        conn_on_hello(c, &f);
        return c->state == CONN_READY;
    }
    switch (f.type) {
    case SPOP_FRM_NOTIFY:
        c->ops->on_notify(c, c->ud, &f);
        return conn_is_open(c);
    case SPOP_FRM_HAPROXY_DISCON:
        conn_on_haproxy_disconnect(c, &f);
        return false;
    case SPOP_FRM_HAPROXY_HELLO:
        conn_disconnect(c, SPOP_ST_INVALID, "second HAPROXY-HELLO");
        return false;
    default: /* SPOE.txt: unknown frames may be silently skipped */
        log_debug("spop %s: skipping frame type %u", c->peer, f.type);
        return true;
    }
}

/* Dispatches every complete frame in the input buffer and keeps the remainder. */
static void conn_process_input(struct conn *c)
{
    size_t off = 0;
    while (conn_is_open(c)) {
        uint32_t flen;
        int rc = spop_frame_complete(c->in + off, c->in_len - off, c->max_frame, &flen);
        if (rc == 0)
            break;
        if (rc < 0) {
            conn_disconnect(c, -rc, rc == -SPOP_ST_TOO_BIG ? "frame too big" : "bad frame length");
            break;
        }
        const uint8_t *frame = c->in + off + SPOP_LEN_PREFIX;
        off += SPOP_LEN_PREFIX + flen;
        if (!conn_dispatch(c, frame, flen))
            break;
    }
    if (!conn_is_open(c))
        return;
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static void conn_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        /* EOF and resets are ordinary closes: HAProxy 3.x resets after its DISCONNECT. */
        if (n < 0 && errno != ECONNRESET && errno != EPIPE)
            log_warn("spop %s: recv failed: %s", c->peer, strerror(errno));
        log_debug("spop %s: closed by peer", c->peer);
        conn_close_soon(c);
        return;
    }
    c->in_len += (size_t)n;
    if (c->idle.repeat > 0)
        ev_timer_again(loop, &c->idle);
    conn_process_input(c);
}

static void conn_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct conn *c = w->data;
    if (c->state == CONN_CLOSING) { /* the last frame could not be flushed in time */
        conn_close_soon(c);
        return;
    }
    if (c->ops->busy && c->ops->busy(c, c->ud)) { /* waiting on the IdP is not idleness */
        ev_timer_again(loop, &c->idle);
        return;
    }
    log_debug("spop %s: idle timeout", c->peer);
    conn_disconnect(c, SPOP_ST_TIMEOUT, "idle timeout");
}

bool conn_is_open(const struct conn *c)
{
    return c->state != CONN_CLOSING;
}

uint32_t conn_max_frame(const struct conn *c)
{
    return c->max_frame;
}

const char *conn_peer(const struct conn *c)
{
    return c->peer;
}

size_t conn_feed(struct conn *c, const uint8_t *buf, size_t len)
{
    size_t n = c->in_cap - c->in_len;
    if (!conn_is_open(c))
        return 0;
    if (n > len)
        n = len;
    memcpy(c->in + c->in_len, buf, n);
    c->in_len += n;
    conn_process_input(c);
    return n;
}

size_t conn_unsent(const struct conn *c, const uint8_t **data)
{
    *data = c->out ? c->out + c->out_off : NULL;
    return c->out_len - c->out_off;
}

void conn_drop_unsent(struct conn *c)
{
    c->out_off = c->out_len = 0;
    list_del(&c->dirty_link);
}
