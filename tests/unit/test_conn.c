/* Unit tests for the SPOP connection layer with stub ops over a socketpair: handshake, split and
 * coalesced frames, pipelined NOTIFYs, back-pressure, DISCONNECT both ways, the idle timeout and
 * the out-of-memory paths (through the allocation hook). The loop runs without waiting
 * (EVRUN_NOWAIT) until a condition holds; only the idle-timeout tests wait for their timer. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "alloc.h"
#include "conn.h"
#include "log.h"
#include "spop_peer.h"

#define OUR_FRAME 16380u
#define MAX_SPINS 10000

struct stub {
    struct conn *c;
    int notifies, closes, busy_calls;
    uint64_t last_sid, last_fid, sids[64];
    bool busy;
    size_t ack_pad;      /* bytes of padding in each ACK (back-pressure) */
    int disconnect_on;   /* disconnect at this NOTIFY (1-based), 0 never */
    int commit_failures; /* ACKs that could not be queued */
};

struct fixture {
    struct ev_loop *loop;
    struct conn_flusher flusher;
    struct conn_counters counters;
    struct conn_settings set;
    struct stub st;
    int peer; /* HAProxy's end */
    int afd;  /* the agent's end (owned by the connection) */
    uint8_t rx[1 << 20];
    size_t rx_len;
};

static void stub_ack(struct stub *st, struct conn *c, const struct spop_frame *f)
{
    static char pad[OUR_FRAME];
    struct spop_writer w;
    conn_begin(c, &w);
    spop_frame_begin(&w, SPOP_FRM_ACK, SPOP_FLAG_FIN, f->stream_id, f->frame_id);
    struct spop_value v = spop_v_int(200);
    spop_put_set_var(&w, SPOP_SCOPE_TXN, "status", &v);
    if (st->ack_pad) {
        memset(pad, 'p', st->ack_pad);
        v = spop_v_str(pad, st->ack_pad);
        spop_put_set_var(&w, SPOP_SCOPE_TXN, "pad", &v);
    }
    if (spop_frame_end(&w, conn_max_frame(c)) < 0 || conn_commit(c, &w) < 0)
        st->commit_failures++;
}

static void stub_notify(struct conn *c, void *ud, const struct spop_frame *f)
{
    struct stub *st = ud;
    if (st->notifies < 64)
        st->sids[st->notifies] = f->stream_id;
    st->notifies++;
    st->last_sid = f->stream_id;
    st->last_fid = f->frame_id;
    if (st->disconnect_on == st->notifies) {
        conn_disconnect(c, SPOP_ST_INVALID, "stub says bye");
        return;
    }
    stub_ack(st, c, f);
}

static void stub_close(struct conn *c, void *ud)
{
    struct stub *st = ud;
    st->closes++;
    st->c = NULL;
}

static bool stub_busy(const struct conn *c, void *ud)
{
    struct stub *st = ud;
    st->busy_calls++;
    return st->busy;
}

static const struct conn_ops stub_ops = {
    .on_notify = stub_notify, .on_close = stub_close, .busy = stub_busy};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    int sv[2];
    assert_non_null(fx);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    fx->loop = ev_loop_new(EVFLAG_AUTO);
    conn_flusher_init(&fx->flusher, fx->loop);
    fx->set = (struct conn_settings){.loop = fx->loop,
                                     .max_frame = OUR_FRAME,
                                     .idle_timeout_ms = 0,
                                     .counters = &fx->counters,
                                     .flusher = &fx->flusher};
    fx->peer = sv[1];
    fx->afd = sv[0];
    fx->st.c = conn_new(&fx->set, &stub_ops, &fx->st, sv[0], "test-peer");
    assert_non_null(fx->st.c);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    pta_alloc_fail_at(0, 0);
    if (fx->st.c)
        conn_destroy(fx->st.c);
    conn_flusher_stop(&fx->flusher);
    ev_loop_destroy(fx->loop);
    close(fx->peer);
    free(fx);
    return 0;
}

static void spin(struct fixture *fx, int n)
{
    for (int i = 0; i < n; i++)
        ev_run(fx->loop, EVRUN_NOWAIT);
}

static void peer_send(struct fixture *fx, const uint8_t *p, size_t len)
{
    assert_int_equal(send(fx->peer, p, len, 0), (ssize_t)len);
}

/* Reads what the agent sent so far; true at EOF. */
static bool peer_read(struct fixture *fx)
{
    for (;;) {
        ssize_t n = recv(fx->peer, fx->rx + fx->rx_len, sizeof(fx->rx) - fx->rx_len, 0);
        if (n > 0) {
            fx->rx_len += (size_t)n;
            continue;
        }
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
    }
}

/* Pops the next complete frame the agent sent, running the loop (ev_run flags) until there is
 * one. */
static void next_frame_run(struct fixture *fx, struct spop_frame *f, uint8_t *copy, int flags)
{
    uint32_t flen = 0;
    for (int i = 0; i < MAX_SPINS; i++) {
        peer_read(fx);
        if (spop_frame_complete(fx->rx, fx->rx_len, 65535, &flen) == 1)
            break;
        ev_run(fx->loop, flags);
    }
    assert_int_equal(spop_frame_complete(fx->rx, fx->rx_len, 65535, &flen), 1);
    memcpy(copy, fx->rx + SPOP_LEN_PREFIX, flen);
    memmove(fx->rx, fx->rx + SPOP_LEN_PREFIX + flen, fx->rx_len - SPOP_LEN_PREFIX - flen);
    fx->rx_len -= SPOP_LEN_PREFIX + flen;
    assert_int_equal(spop_frame_decode(copy, flen, f), 0);
}

/* Runs the loop until the agent closed its end (on_close called and EOF seen). */
static void next_frame(struct fixture *fx, struct spop_frame *f, uint8_t *copy)
{
    next_frame_run(fx, f, copy, EVRUN_NOWAIT);
}

static void wait_closed(struct fixture *fx, int flags)
{
    for (int i = 0; i < MAX_SPINS && !(fx->st.closes && peer_read(fx)); i++)
        ev_run(fx->loop, flags);
    assert_int_equal(fx->st.closes, 1);
    assert_null(fx->st.c);
}

static void handshake(struct fixture *fx, uint32_t theirs)
{
    uint8_t buf[256], copy[65536];
    struct spop_frame f;
    size_t n = peer_hello(buf, sizeof(buf), theirs, 0);
    peer_send(fx, buf, n);
    next_frame(fx, &f, copy);
    assert_int_equal(f.type, SPOP_FRM_AGENT_HELLO);
    assert_int_equal(peer_kv_int(f.payload, f.payload_len, "max-frame-size"),
                     theirs < OUR_FRAME ? theirs : OUR_FRAME);
}

static void test_hello_negotiates_frame_size(void **state)
{
    struct fixture *fx = *state;
    handshake(fx, 1024);
    assert_int_equal(conn_max_frame(fx->st.c), 1024);
    assert_string_equal(conn_peer(fx->st.c), "test-peer");
    assert_int_equal(fx->counters.frames_in, 1);
    assert_int_equal(fx->counters.frames_out, 1);
}

/* The settings are a snapshot: changing the owner's copy after creation changes nothing. */
static void test_settings_are_a_snapshot(void **state)
{
    struct fixture *fx = *state;
    fx->set.max_frame = 1024; /* what a reload would do to the owner's settings */
    handshake(fx, 65535);
    assert_int_equal(conn_max_frame(fx->st.c), OUR_FRAME);
}

static void test_split_frames(void **state)
{
    struct fixture *fx = *state;
    uint8_t buf[512], copy[65536];
    struct spop_frame f;
    size_t n = peer_hello(buf, sizeof(buf), 16380, 0);
    for (size_t i = 0; i < n; i++) { /* one byte per read */
        peer_send(fx, buf + i, 1);
        spin(fx, 2);
    }
    next_frame(fx, &f, copy);
    assert_int_equal(f.type, SPOP_FRM_AGENT_HELLO);
    n = peer_notify(buf, sizeof(buf), 7, 9, "Bearer abc", NULL);
    peer_send(fx, buf, n / 2);
    spin(fx, 3);
    assert_int_equal(fx->st.notifies, 0);
    peer_send(fx, buf + n / 2, n - n / 2);
    next_frame(fx, &f, copy);
    assert_int_equal(fx->st.notifies, 1);
    assert_int_equal(f.type, SPOP_FRM_ACK);
    assert_int_equal(f.stream_id, 7);
    assert_int_equal(f.frame_id, 9);
    assert_int_equal(peer_ack_status(&f), 200);
}

/* HELLO and three NOTIFYs in one write: every frame dispatched in order, the ACKs come back. */
static void test_coalesced_and_pipelined(void **state)
{
    struct fixture *fx = *state;
    uint8_t buf[2048], copy[65536];
    struct spop_frame f;
    size_t n = peer_hello(buf, sizeof(buf), 16380, 0);
    for (uint64_t sid = 1; sid <= 3; sid++)
        n += peer_notify(buf + n, sizeof(buf) - n, sid, 1, "Bearer abc", NULL);
    peer_send(fx, buf, n);
    next_frame(fx, &f, copy);
    assert_int_equal(f.type, SPOP_FRM_AGENT_HELLO);
    for (uint64_t sid = 1; sid <= 3; sid++) {
        next_frame(fx, &f, copy);
        assert_int_equal(f.type, SPOP_FRM_ACK);
        assert_int_equal(f.stream_id, sid);
    }
    assert_int_equal(fx->st.notifies, 3);
    assert_int_equal(fx->counters.frames_in, 4);
    assert_int_equal(fx->counters.frames_out, 4);
}

/* A peer that sends NOTIFYs but reads no ACK: the connection stops reading once too much is
 * unsent, and resumes when the peer catches up; nothing is lost. */
static void test_backpressure(void **state)
{
    struct fixture *fx = *state;
    int small = 4096;
    uint8_t buf[8192];
    handshake(fx, 16380);
    fx->st.ack_pad = 15000;
    /* a small send buffer on the agent's end, so that the queue grows */
    assert_int_equal(setsockopt(fx->afd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    size_t n = 0;
    for (uint64_t sid = 1; sid <= 40; sid++)
        n += peer_notify(buf + n, sizeof(buf) - n, sid, 1, "Bearer abc", NULL);
    peer_send(fx, buf, n); /* 40 ACKs of 15 kB: far above the 256 kB high mark */
    spin(fx, 10);
    assert_int_equal(fx->st.notifies, 40);
    n = 0;
    for (uint64_t sid = 41; sid <= 50; sid++)
        n += peer_notify(buf + n, sizeof(buf) - n, sid, 1, "Bearer abc", NULL);
    peer_send(fx, buf, n);
    spin(fx, 10);
    assert_int_equal(fx->st.notifies, 40); /* paused: the next NOTIFYs wait in the socket */
    for (int i = 0; i < MAX_SPINS && fx->st.notifies < 50; i++) {
        fx->rx_len = 0; /* the peer reads (and discards) its ACKs */
        peer_read(fx);
        ev_run(fx->loop, EVRUN_NOWAIT);
    }
    assert_int_equal(fx->st.notifies, 50);
    assert_int_equal(fx->st.last_sid, 50);
    assert_int_equal(fx->st.commit_failures, 0);
}

static void test_haproxy_disconnect(void **state)
{
    struct fixture *fx = *state;
    uint8_t buf[256], copy[65536];
    struct spop_frame f;
    struct spop_disconnect d;
    handshake(fx, 16380);
    peer_send(fx, buf, peer_disconnect(buf, sizeof(buf), 0, "bye"));
    next_frame(fx, &f, copy);
    assert_int_equal(f.type, SPOP_FRM_AGENT_DISCON);
    assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), 0);
    assert_int_equal(d.status, SPOP_ST_NORMAL);
    wait_closed(fx, EVRUN_NOWAIT);
    assert_int_equal(fx->counters.errors, 0);
}

static void test_agent_disconnect(void **state)
{
    struct fixture *fx = *state;
    uint8_t buf[512], copy[65536];
    struct spop_frame f;
    struct spop_disconnect d;
    handshake(fx, 16380);
    fx->st.disconnect_on = 2;
    size_t n = peer_notify(buf, sizeof(buf), 1, 1, "Bearer a", NULL);
    n += peer_notify(buf + n, sizeof(buf) - n, 2, 1, "Bearer a", NULL);
    n += peer_notify(buf + n, sizeof(buf) - n, 3, 1, "Bearer a", NULL);
    peer_send(fx, buf, n);
    next_frame(fx, &f, copy);
    assert_int_equal(f.type, SPOP_FRM_ACK);
    next_frame(fx, &f, copy);
    assert_int_equal(f.type, SPOP_FRM_AGENT_DISCON);
    assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), 0);
    assert_int_equal(d.status, SPOP_ST_INVALID);
    wait_closed(fx, EVRUN_NOWAIT);
    assert_int_equal(fx->st.notifies, 2); /* nothing dispatched after the disconnect */
    assert_int_equal(fx->counters.errors, 1);
}

static void test_frame_too_big(void **state)
{
    struct fixture *fx = *state;
    uint8_t buf[8], copy[65536];
    struct spop_frame f;
    struct spop_disconnect d;
    handshake(fx, 1024);
    buf[0] = 0, buf[1] = 0, buf[2] = 0x10, buf[3] = 0; /* 4096 > 1024 */
    peer_send(fx, buf, 4);
    next_frame(fx, &f, copy);
    assert_int_equal(f.type, SPOP_FRM_AGENT_DISCON);
    assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), 0);
    assert_int_equal(d.status, SPOP_ST_TOO_BIG);
    wait_closed(fx, EVRUN_NOWAIT);
}

static void test_peer_closes(void **state)
{
    struct fixture *fx = *state;
    handshake(fx, 16380);
    shutdown(fx->peer, SHUT_WR);
    wait_closed(fx, EVRUN_NOWAIT);
}

static void on_busy(struct ev_loop *loop, ev_io *w, int revents)
{
    (*(int *)w->data)++; /* never reads: the pipe stays readable, the loop never idles */
}

/* A closed connection is freed on the next loop iteration even when the loop never idles (an
 * other watcher always pending): under sustained load an ev_idle reaper never ran, and closed
 * connections kept their fd, buffers and session until the load stopped. */
static void test_closed_while_loop_busy(void **state)
{
    struct fixture *fx = *state;
    int p[2], fired = 0;
    ev_io busy;
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    ev_io_init(&busy, on_busy, p[0], EV_READ);
    busy.data = &fired;
    ev_io_start(fx->loop, &busy);
    handshake(fx, 16380);
    shutdown(fx->peer, SHUT_WR);
    for (int i = 0; i < 10 && fx->st.closes == 0; i++)
        ev_run(fx->loop, EVRUN_ONCE); /* never blocks: the pipe is readable */
    assert_true(fired > 0);
    assert_int_equal(fx->st.closes, 1);
    assert_null(fx->st.c);
    assert_true(peer_read(fx)); /* the fd is closed too */
    ev_io_stop(fx->loop, &busy);
    close(p[0]);
    close(p[1]);
}

/* Idle timeout: busy() keeps the connection while the owner owes answers, then it closes with
 * AGENT-DISCONNECT "timeout". Waits for the (short) timer, asserts no duration. */
static void test_idle_timeout(void **state)
{
    struct fixture *fx = *state;
    uint8_t copy[65536];
    struct spop_frame f;
    struct spop_disconnect d;
    conn_destroy(fx->st.c);
    fx->st = (struct stub){0};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    close(fx->peer);
    fx->peer = sv[1];
    fx->set.idle_timeout_ms = 20;
    fx->st.c = conn_new(&fx->set, &stub_ops, &fx->st, sv[0], "idle");
    assert_non_null(fx->st.c);
    handshake(fx, 16380);
    fx->st.busy = true;
    while (fx->st.busy_calls < 3)
        ev_run(fx->loop, EVRUN_ONCE);
    assert_non_null(fx->st.c);
    assert_true(conn_is_open(fx->st.c));
    fx->st.busy = false;
    next_frame_run(fx, &f, copy, EVRUN_ONCE); /* waits for the timer */
    assert_int_equal(f.type, SPOP_FRM_AGENT_DISCON);
    assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), 0);
    assert_int_equal(d.status, SPOP_ST_TIMEOUT);
    wait_closed(fx, EVRUN_ONCE);
}

/* conn_new(): the struct, then the input buffer; either failing gives NULL and closes fd. */
static void test_oom_new(void **state)
{
    struct fixture *fx = *state;
    for (unsigned long nth = 1; nth <= 2; nth++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        pta_alloc_fail_at(nth, 0);
        struct conn *c = conn_new(&fx->set, &stub_ops, &fx->st, sv[0], "oom");
        pta_alloc_fail_at(0, 0);
        assert_null(c);
        assert_int_equal(fcntl(sv[0], F_GETFD), -1); /* closed */
        assert_int_equal(errno, EBADF);
        close(sv[1]);
    }
    assert_int_equal(fx->st.closes, 0);
}

/* No memory for the AGENT-HELLO: the connection closes without a word. */
static void test_oom_hello(void **state)
{
    struct fixture *fx = *state;
    uint8_t buf[256];
    pta_alloc_fail_at(1, 1);
    peer_send(fx, buf, peer_hello(buf, sizeof(buf), 16380, 0));
    wait_closed(fx, EVRUN_NOWAIT);
    pta_alloc_fail_at(0, 0);
    assert_int_equal(fx->rx_len, 0);
}

/* No memory to grow the output queue: conn_commit() says so, the connection stays usable. Two
 * NOTIFYs in one read: the first ACK fills the queue the HELLO left, the second needs it to grow.
 */
static void test_oom_ack(void **state)
{
    struct fixture *fx = *state;
    uint8_t buf[512], copy[65536];
    struct spop_frame f;
    handshake(fx, 16380);
    size_t n = peer_notify(buf, sizeof(buf), 1, 1, "Bearer a", NULL);
    n += peer_notify(buf + n, sizeof(buf) - n, 2, 1, "Bearer a", NULL);
    pta_alloc_fail_at(1, 0);
    peer_send(fx, buf, n);
    spin(fx, 3);
    pta_alloc_fail_at(0, 0);
    assert_int_equal(fx->st.notifies, 2);
    assert_int_equal(fx->st.commit_failures, 1);
    next_frame(fx, &f, copy);
    assert_int_equal(f.type, SPOP_FRM_ACK);
    assert_int_equal(f.stream_id, 1);
    peer_send(fx, buf, peer_notify(buf, sizeof(buf), 3, 1, "Bearer a", NULL));
    next_frame(fx, &f, copy);
    assert_int_equal(f.type, SPOP_FRM_ACK);
    assert_int_equal(f.stream_id, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello_negotiates_frame_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_are_a_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalesced_and_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_haproxy_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_while_loop_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom_ack, setup, teardown),
    };
    log_init(LOG_LVL_ERROR, false);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
