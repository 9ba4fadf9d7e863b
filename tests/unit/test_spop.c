/* Unit tests for the SPOP v2 codec (agent/spop.c): varint edge values, frames captured from a real
 * HAProxy, every malformed input we know of, and the exact bytes of the frames we write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "spop.h"

/* Frames captured from HAProxy 2.6.12-1+deb12u4 (Debian 12, /usr/sbin/haproxy, 2 threads): a
 * frontend with "filter spoe", an spoe-agent with "messages phantom-token" and "option var-prefix
 * phantom", spoe-message phantom-token with "args authorization=req.fhdr(Authorization)
 * auth_count=req.hdr_cnt(Authorization) scopes=var(txn.phantom_scopes)
 * realm=var(txn.phantom_realm)" on "event on-frontend-http-request", and a "mode tcp" backend with
 * "option spop-check" pointing at a Python listener that logged each received frame in hex and
 * answered a hand-written AGENT-HELLO and ACK. Requests came from curl, the DISCONNECT from a
 * soft stop (SIGUSR1). Each array is a whole frame, length prefix included. */

/* HAPROXY-HELLO of a real connection: supported-versions "2.0", max-frame-size UINT32 16380
 * (fc f0 06), capabilities "pipelining,async", engine-id (a UUID, one per HAProxy thread). */
static const uint8_t hap_hello[] = {
    0x00, 0x00, 0x00, 0x81, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x12, 0x73, 0x75, 0x70,
    0x70, 0x6f, 0x72, 0x74, 0x65, 0x64, 0x2d, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x73,
    0x08, 0x03, 0x32, 0x2e, 0x30, 0x0e, 0x6d, 0x61, 0x78, 0x2d, 0x66, 0x72, 0x61, 0x6d, 0x65,
    0x2d, 0x73, 0x69, 0x7a, 0x65, 0x03, 0xfc, 0xf0, 0x06, 0x0c, 0x63, 0x61, 0x70, 0x61, 0x62,
    0x69, 0x6c, 0x69, 0x74, 0x69, 0x65, 0x73, 0x08, 0x10, 0x70, 0x69, 0x70, 0x65, 0x6c, 0x69,
    0x6e, 0x69, 0x6e, 0x67, 0x2c, 0x61, 0x73, 0x79, 0x6e, 0x63, 0x09, 0x65, 0x6e, 0x67, 0x69,
    0x6e, 0x65, 0x2d, 0x69, 0x64, 0x08, 0x24, 0x34, 0x66, 0x33, 0x65, 0x32, 0x62, 0x33, 0x31,
    0x2d, 0x37, 0x33, 0x30, 0x62, 0x2d, 0x34, 0x30, 0x66, 0x31, 0x2d, 0x39, 0x64, 0x64, 0x31,
    0x2d, 0x64, 0x66, 0x61, 0x63, 0x33, 0x62, 0x64, 0x34, 0x31, 0x36, 0x66, 0x61,
};

/* HAPROXY-HELLO of "option spop-check": capabilities is the EMPTY string (08 00), healthcheck
 * is BOOL true (0x11), no engine-id. */
static const uint8_t hap_hello_healthcheck[] = {
    0x00, 0x00, 0x00, 0x4e, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x12, 0x73, 0x75,
    0x70, 0x70, 0x6f, 0x72, 0x74, 0x65, 0x64, 0x2d, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f,
    0x6e, 0x73, 0x08, 0x03, 0x32, 0x2e, 0x30, 0x0e, 0x6d, 0x61, 0x78, 0x2d, 0x66, 0x72,
    0x61, 0x6d, 0x65, 0x2d, 0x73, 0x69, 0x7a, 0x65, 0x03, 0xfc, 0xf0, 0x06, 0x0c, 0x63,
    0x61, 0x70, 0x61, 0x62, 0x69, 0x6c, 0x69, 0x74, 0x69, 0x65, 0x73, 0x08, 0x00, 0x0b,
    0x68, 0x65, 0x61, 0x6c, 0x74, 0x68, 0x63, 0x68, 0x65, 0x63, 0x6b, 0x11,
};

/* NOTIFY without an Authorization header: stream-id 0, frame-id 1. The absent header, and the
 * unset variables, are NULL (00); hdr_cnt is INT64 (04) 0. */
static const uint8_t hap_notify_no_auth[] = {
    0x00, 0x00, 0x00, 0x41, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x0d, 0x70, 0x68,
    0x61, 0x6e, 0x74, 0x6f, 0x6d, 0x2d, 0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x04, 0x0d, 0x61,
    0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x0a,
    0x61, 0x75, 0x74, 0x68, 0x5f, 0x63, 0x6f, 0x75, 0x6e, 0x74, 0x04, 0x00, 0x06, 0x73,
    0x63, 0x6f, 0x70, 0x65, 0x73, 0x00, 0x05, 0x72, 0x65, 0x61, 0x6c, 0x6d, 0x00,
};

/* NOTIFY with "Authorization: Bearer abc.def" on another connection: stream-id 2, frame-id 1;
 * auth_count INT64 1. */
static const uint8_t hap_notify_auth[] = {
    0x00, 0x00, 0x00, 0x50, 0x03, 0x00, 0x00, 0x00, 0x01, 0x02, 0x01, 0x0d, 0x70, 0x68,
    0x61, 0x6e, 0x74, 0x6f, 0x6d, 0x2d, 0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x04, 0x0d, 0x61,
    0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x08, 0x0e,
    0x42, 0x65, 0x61, 0x72, 0x65, 0x72, 0x20, 0x61, 0x62, 0x63, 0x2e, 0x64, 0x65, 0x66,
    0x0a, 0x61, 0x75, 0x74, 0x68, 0x5f, 0x63, 0x6f, 0x75, 0x6e, 0x74, 0x04, 0x01, 0x06,
    0x73, 0x63, 0x6f, 0x70, 0x65, 0x73, 0x00, 0x05, 0x72, 0x65, 0x61, 0x6c, 0x6d, 0x00,
};

/* NOTIFY with a 307-byte header (its length is the 2-byte varint f3 04) and both variables set by
 * "tcp-request content set-var": scopes STR "read write", realm STR "example". */
static const uint8_t hap_notify_long[] = {
    0x00, 0x00, 0x01, 0x89, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x0d, 0x70, 0x68, 0x61, 0x6e,
    0x74, 0x6f, 0x6d, 0x2d, 0x74, 0x6f, 0x6b, 0x65, 0x6e, 0x04, 0x0d, 0x61, 0x75, 0x74, 0x68, 0x6f,
    0x72, 0x69, 0x7a, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x08, 0xf3, 0x04, 0x42, 0x65, 0x61, 0x72, 0x65,
    0x72, 0x20, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78,
    0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x78, 0x0a, 0x61,
    0x75, 0x74, 0x68, 0x5f, 0x63, 0x6f, 0x75, 0x6e, 0x74, 0x04, 0x01, 0x06, 0x73, 0x63, 0x6f, 0x70,
    0x65, 0x73, 0x08, 0x0a, 0x72, 0x65, 0x61, 0x64, 0x20, 0x77, 0x72, 0x69, 0x74, 0x65, 0x05, 0x72,
    0x65, 0x61, 0x6c, 0x6d, 0x08, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65,
};

/* HAPROXY-DISCONNECT sent on soft stop (SIGUSR1): status-code UINT32 0, message "normal". */
static const uint8_t hap_disconnect[] = {
    0x00, 0x00, 0x00, 0x25, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x0b, 0x73, 0x74,
    0x61, 0x74, 0x75, 0x73, 0x2d, 0x63, 0x6f, 0x64, 0x65, 0x03, 0x00, 0x07, 0x6d, 0x65,
    0x73, 0x73, 0x61, 0x67, 0x65, 0x08, 0x06, 0x6e, 0x6f, 0x72, 0x6d, 0x61, 0x6c,
};

/* The bytes of the hand-written AGENT-HELLO and ACK HAProxy 2.6 accepted during the capture (the
 * ACK's variable reached "http-request return"), so matching them proves wire compatibility. The
 * same setup was replayed with frames from this encoder (AGENT-HELLO with "pipelining"; an ACK with
 * set-var STR, INT32 and IPV4 plus an unset-var) and HAProxy applied all four actions. */
static const uint8_t ref_agent_hello[] = {
    0x00, 0x00, 0x00, 0x36, 0x65, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x07, 'v',  'e',  'r',
    's',  'i',  'o',  'n',  0x08, 0x03, '2',  '.',  '0',  0x0e, 'm',  'a',  'x',  '-',  'f',
    'r',  'a',  'm',  'e',  '-',  's',  'i',  'z',  'e',  0x03, 0xfc, 0xf0, 0x06, 0x0c, 'c',
    'a',  'p',  'a',  'b',  'i',  'l',  'i',  't',  'i',  'e',  's',  0x08, 0x00,
};
static const uint8_t ref_ack[] = {
    0x00, 0x00, 0x00, 0x1b, 0x67, 0x00, 0x00, 0x00, 0x01, 0x02, 0x01, 0x01, 0x03, 0x02, 0x06, 'r',
    'e',  's',  'u',  'l',  't',  0x08, 0x08, 'h',  'a',  'n',  'd',  'm',  'a',  'd',  'e',
};

/* ---- helpers ---- */

static struct spop_str S(const char *s) {
    struct spop_str r = {(const uint8_t *)s, strlen(s)};
    return r;
}

static bool
str_is(struct spop_str s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

/* Decodes a captured frame (prefix included) down to its payload. */
static void decode_captured(const uint8_t *buf, size_t len, struct spop_frame *f)
{
    uint32_t flen = 0;
    assert_int_equal(spop_frame_complete(buf, len, SPOP_DEFAULT_MAX_FRAME, &flen), 1);
    assert_int_equal(flen, len - SPOP_LEN_PREFIX);
    assert_int_equal(spop_frame_decode(buf + SPOP_LEN_PREFIX, flen, f), 0);
    assert_int_equal(f->flags, SPOP_FLAG_FIN);
}

static int decode_hex_varint(const uint8_t *b, size_t n, uint64_t *v, size_t *used)
{
    struct spop_reader r = {b, b + n};
    int rc = spop_varint_decode(&r, v);
    *used = (size_t)(r.p - b);
    return rc;
}

/* ---- varints ---- */

struct vcase {
    uint64_t v;
    size_t n;
    uint8_t b[SPOP_VARINT_MAX];
};

static const struct vcase vcases[] = {
    {0, 1, {0x00}},
    {239, 1, {0xef}},
    {240, 2, {0xf0, 0x00}},
    {2287, 2, {0xff, 0x7f}},
    {2288, 3, {0xf0, 0x80, 0x00}},
    {16380, 3, {0xfc, 0xf0, 0x06}},
    {UINT32_MAX, 5, {0xff, 0xf0, 0xfe, 0xfe, 0x7e}},
    {UINT64_MAX, 10, {0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0e}},
};

static void test_varint_edges(void **state)
{
    for (size_t i = 0; i < sizeof(vcases) / sizeof(vcases[0]); i++) {
        uint8_t buf[SPOP_VARINT_MAX + 2];
        uint64_t back = 0;
        size_t used = 0;

        assert_int_equal(spop_varint_encode(vcases[i].v, buf, sizeof(buf)), vcases[i].n);
        assert_memory_equal(buf, vcases[i].b, vcases[i].n);
        buf[vcases[i].n] = 0x55; /* a trailing byte must not be consumed */
        assert_int_equal(decode_hex_varint(buf, vcases[i].n + 1, &back, &used), 0);
        assert_int_equal(used, vcases[i].n);
        assert_true(back == vcases[i].v);
    }
}

/* Every length class boundary, both ways, plus a sweep of small values. */
static void test_varint_round_trip(void **state)
{
    static const uint64_t edges[] = {264431,     264432,     33818863,   33818864,
                                     4328786159, 4328786160, 1ull << 63, (1ull << 63) - 1};
    uint8_t buf[SPOP_VARINT_MAX];

    for (uint64_t v = 0; v < 70000; v++) {
        uint64_t back;
        size_t n = spop_varint_encode(v, buf, sizeof(buf)), used;
        assert_int_equal(decode_hex_varint(buf, n, &back, &used), 0);
        assert_int_equal(used, n);
        assert_true(back == v);
    }
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        uint64_t back;
        size_t n = spop_varint_encode(edges[i], buf, sizeof(buf)), used;
        assert_int_equal(decode_hex_varint(buf, n, &back, &used), 0);
        assert_true(back == edges[i]);
    }
    assert_int_equal(spop_varint_encode(264431, buf, 8), 3);
    assert_int_equal(spop_varint_encode(264432, buf, 8), 4);
}

static void test_varint_encode_small_cap(void **state)
{
    uint8_t buf[SPOP_VARINT_MAX];
    memset(buf, 0xaa, sizeof(buf));
    assert_int_equal(spop_varint_encode(16380, buf, 2), 0);
    assert_int_equal(buf[0], 0xaa); /* nothing written */
    assert_int_equal(spop_varint_encode(1, buf, 0), 0);
    assert_int_equal(spop_varint_encode(UINT64_MAX, buf, 9), 0);
}

static void test_varint_truncated(void **state)
{
    static const uint8_t t1[] = {0xf0};
    static const uint8_t t2[] = {0xfc, 0xf0};
    static const uint8_t t9[] = {0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe};
    struct spop_reader r;
    uint64_t v;

    r.p = r.end = t1;
    assert_int_equal(spop_varint_decode(&r, &v), -1);
    r = (struct spop_reader){t1, t1 + sizeof(t1)};
    assert_int_equal(spop_varint_decode(&r, &v), -1);
    assert_ptr_equal(r.p, t1); /* a failed read does not move the cursor */
    r = (struct spop_reader){t2, t2 + sizeof(t2)};
    assert_int_equal(spop_varint_decode(&r, &v), -1);
    r = (struct spop_reader){t9, t9 + sizeof(t9)};
    assert_int_equal(spop_varint_decode(&r, &v), -1);
}

static void test_varint_too_long(void **state)
{
    /* 11 bytes: the 10th still has the continuation bit. */
    static const uint8_t eleven[] = {0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe,
                                     0xfe, 0xfe, 0xfe, 0xfe, 0x0e};
    static const uint8_t eleven_small[] = {0xf0, 0x80, 0x80, 0x80, 0x80, 0x80,
                                           0x80, 0x80, 0x80, 0x80, 0x00};
    uint64_t v;
    size_t used;

    assert_int_equal(decode_hex_varint(eleven, sizeof(eleven), &v, &used), -1);
    assert_int_equal(decode_hex_varint(eleven_small, sizeof(eleven_small), &v, &used), -1);
}

static void test_varint_overflow(void **state)
{
    /* 2^64 - 1 with a last byte one higher: the sum wraps. */
    static const uint8_t wraps[] = {0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0f};
    /* 10th byte 0x10 at shift 60: a bit would be shifted out. */
    static const uint8_t shifted[] = {0xf0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10};
    uint64_t v;
    size_t used;

    assert_int_equal(decode_hex_varint(wraps, sizeof(wraps), &v, &used), -1);
    assert_int_equal(decode_hex_varint(shifted, sizeof(shifted), &v, &used), -1);
}

/* ---- framing ---- */

static void test_frame_complete(void **state)
{
    uint8_t buf[16] = {0, 0, 0, 5, 3, 0, 0, 0, 1, 0xaa};
    uint32_t flen = 0;

    assert_int_equal(spop_frame_complete(buf, 0, 1000, &flen), 0);
    assert_int_equal(spop_frame_complete(buf, 3, 1000, &flen), 0); /* truncated prefix */
    assert_int_equal(spop_frame_complete(buf, 4, 1000, &flen), 0);
    assert_int_equal(spop_frame_complete(buf, 8, 1000, &flen), 0); /* length past the buffer */
    assert_int_equal(spop_frame_complete(buf, 9, 1000, &flen), 1);
    assert_int_equal(flen, 5);
    assert_int_equal(spop_frame_complete(buf, 10, 1000, &flen), 1); /* the next frame's bytes */
    assert_int_equal(spop_frame_complete(buf, 9, 5, &flen), 1);     /* exactly max */
    assert_int_equal(spop_frame_complete(buf, 9, 4, &flen), -SPOP_ST_TOO_BIG);

    /* Over max is reported from the prefix alone, before the body arrives. */
    buf[0] = 0xff;
    assert_int_equal(spop_frame_complete(buf, 4, SPOP_DEFAULT_MAX_FRAME, &flen), -SPOP_ST_TOO_BIG);
    memset(buf, 0, 4);
    assert_int_equal(spop_frame_complete(buf, 4, 1000, &flen), -SPOP_ST_INVALID); /* zero-length */
}

static void test_frame_decode_malformed(void **state)
{
    static const uint8_t ok[] = {3, 0, 0, 0, 1, 0xfc, 0xf0, 0x06, 7, 'x'};
    static const uint8_t no_fid[] = {3, 0, 0, 0, 1, 0};
    static const uint8_t bad_sid[] = {3, 0, 0, 0, 1, 0xfc, 0xf0};
    struct spop_frame f;

    for (size_t n = 0; n < 5; n++)
        assert_int_equal(spop_frame_decode(ok, n, &f), -SPOP_ST_INVALID); /* truncated header */
    assert_int_equal(spop_frame_decode(NULL, 0, &f), -SPOP_ST_INVALID);
    assert_int_equal(spop_frame_decode(no_fid, sizeof(no_fid), &f), -SPOP_ST_INVALID);
    assert_int_equal(spop_frame_decode(bad_sid, sizeof(bad_sid), &f), -SPOP_ST_INVALID);
    assert_int_equal(spop_frame_decode(ok, sizeof(ok), &f), 0);
    assert_int_equal(f.type, SPOP_FRM_NOTIFY);
    assert_int_equal(f.flags, SPOP_FLAG_FIN);
    assert_int_equal(f.stream_id, 16380);
    assert_int_equal(f.frame_id, 7);
    assert_int_equal(f.payload_len, 1);
    assert_int_equal(f.payload[0], 'x');
    /* Header only: an empty payload is fine at this level. */
    assert_int_equal(spop_frame_decode(ok, 9, &f), 0);
    assert_int_equal(f.payload_len, 0);
}

/* ---- captured HAProxy 2.6 frames ---- */

static void test_captured_hello(void **state)
{
    struct spop_frame f;
    struct spop_hello h;

    decode_captured(hap_hello, sizeof(hap_hello), &f);
    assert_int_equal(f.type, SPOP_FRM_HAPROXY_HELLO);
    assert_int_equal(f.stream_id, 0);
    assert_int_equal(f.frame_id, 0);
    assert_int_equal(spop_hello_decode(f.payload, f.payload_len, &h), 0);
    assert_true(str_is(h.supported_versions, "2.0"));
    assert_true(spop_versions_support_v2(h.supported_versions));
    assert_int_equal(h.max_frame_size, 16380);
    assert_true(str_is(h.capabilities, "pipelining,async"));
    assert_true(spop_caps_has(h.capabilities, "pipelining"));
    assert_true(spop_caps_has(h.capabilities, "async"));
    assert_false(spop_caps_has(h.capabilities, "fragmentation"));
    assert_int_equal(h.engine_id.len, 36);
    assert_false(h.healthcheck);
}

static void test_captured_hello_healthcheck(void **state)
{
    struct spop_frame f;
    struct spop_hello h;

    decode_captured(hap_hello_healthcheck, sizeof(hap_hello_healthcheck), &f);
    assert_int_equal(f.type, SPOP_FRM_HAPROXY_HELLO);
    assert_int_equal(spop_hello_decode(f.payload, f.payload_len, &h), 0);
    assert_true(h.healthcheck);
    assert_true(h.has_capabilities); /* empty, yet present */
    assert_int_equal(h.capabilities.len, 0);
    assert_false(spop_caps_has(h.capabilities, "pipelining"));
    assert_int_equal(h.max_frame_size, 16380);
    assert_int_equal(h.engine_id.len, 0);
}

static void test_captured_notify_no_auth(void **state)
{
    struct spop_frame f;
    struct spop_reader r;
    struct spop_message m;
    const struct spop_value *v;

    decode_captured(hap_notify_no_auth, sizeof(hap_notify_no_auth), &f);
    assert_int_equal(f.type, SPOP_FRM_NOTIFY);
    assert_int_equal(f.stream_id, 0);
    assert_int_equal(f.frame_id, 1);
    r = (struct spop_reader){f.payload, f.payload + f.payload_len};
    assert_int_equal(spop_notify_next(&r, &m), 1);
    assert_true(str_is(m.name, "phantom-token"));
    assert_int_equal(m.nargs, 4);
    v = spop_message_arg(&m, "authorization");
    assert_non_null(v);
    assert_int_equal(v->type, SPOP_DATA_NULL); /* a missing header is NULL, not "" */
    v = spop_message_arg(&m, "auth_count");
    assert_non_null(v);
    assert_int_equal(v->type, SPOP_DATA_INT64);
    assert_int_equal(v->u.i, 0);
    assert_int_equal(spop_message_arg(&m, "scopes")->type, SPOP_DATA_NULL);
    assert_int_equal(spop_message_arg(&m, "realm")->type, SPOP_DATA_NULL);
    assert_null(spop_message_arg(&m, "Authorization")); /* names are case-sensitive */
    assert_null(spop_message_arg(&m, "auth"));
    assert_int_equal(spop_notify_next(&r, &m), 0);
}

static void test_captured_notify_auth(void **state)
{
    struct spop_frame f;
    struct spop_reader r;
    struct spop_message m;
    const struct spop_value *v;

    decode_captured(hap_notify_auth, sizeof(hap_notify_auth), &f);
    assert_int_equal(f.stream_id, 2);
    assert_int_equal(f.frame_id, 1);
    r = (struct spop_reader){f.payload, f.payload + f.payload_len};
    assert_int_equal(spop_notify_next(&r, &m), 1);
    v = spop_message_arg(&m, "authorization");
    assert_int_equal(v->type, SPOP_DATA_STR);
    assert_true(str_is(v->u.s, "Bearer abc.def"));
    assert_int_equal(spop_message_arg(&m, "auth_count")->u.i, 1);
    assert_int_equal(spop_notify_next(&r, &m), 0);
}

static void test_captured_notify_long(void **state)
{
    struct spop_frame f;
    struct spop_reader r;
    struct spop_message m;
    const struct spop_value *v;

    decode_captured(hap_notify_long, sizeof(hap_notify_long), &f);
    r = (struct spop_reader){f.payload, f.payload + f.payload_len};
    assert_int_equal(spop_notify_next(&r, &m), 1);
    v = spop_message_arg(&m, "authorization");
    assert_int_equal(v->type, SPOP_DATA_STR);
    assert_int_equal(v->u.s.len, 307);
    assert_memory_equal(v->u.s.ptr, "Bearer xxx", 10);
    assert_true(str_is(spop_message_arg(&m, "scopes")->u.s, "read write"));
    assert_true(str_is(spop_message_arg(&m, "realm")->u.s, "example"));
    assert_int_equal(spop_notify_next(&r, &m), 0);

    /* Every truncation of the payload fails cleanly instead of reading on. */
    for (size_t n = 1; n < f.payload_len; n++) {
        r = (struct spop_reader){f.payload, f.payload + n};
        assert_int_equal(spop_notify_next(&r, &m), -SPOP_ST_INVALID);
    }
}

static void test_captured_disconnect(void **state)
{
    struct spop_frame f;
    struct spop_disconnect d;

    decode_captured(hap_disconnect, sizeof(hap_disconnect), &f);
    assert_int_equal(f.type, SPOP_FRM_HAPROXY_DISCON);
    assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), 0);
    assert_int_equal(d.status, SPOP_ST_NORMAL);
    assert_true(str_is(d.message, "normal"));
}

/* ---- typed values ---- */

static void test_value_round_trip(void **state)
{
    struct spop_value in[12], out;
    uint8_t buf[256];
    struct spop_writer w;
    struct spop_reader r;
    size_t n = 0;

    memset(in, 0, sizeof(in));
    in[n++].type = SPOP_DATA_NULL;
    in[n].type = SPOP_DATA_BOOL, in[n++].u.b = true;
    in[n].type = SPOP_DATA_BOOL, in[n++].u.b = false;
    in[n++] = spop_v_int(-1);
    in[n++] = spop_v_int(INT32_MIN);
    in[n].type = SPOP_DATA_INT64, in[n++].u.i = INT64_MIN;
    in[n].type = SPOP_DATA_UINT32, in[n++].u.u = UINT32_MAX;
    in[n].type = SPOP_DATA_UINT64, in[n++].u.u = UINT64_MAX;
    in[n].type = SPOP_DATA_IPV4, memcpy(in[n++].u.ipv4, "\x7f\0\0\1", 4);
    in[n].type = SPOP_DATA_IPV6, memcpy(in[n++].u.ipv6, "0123456789abcdef", 16);
    in[n++] = spop_v_str("hello", 5);
    in[n] = spop_v_str("\0\1\2", 3), in[n++].type = SPOP_DATA_BIN;

    spop_writer_init(&w, buf, sizeof(buf));
    for (size_t i = 0; i < n; i++)
        spop_put_value(&w, &in[i]);
    assert_false(w.overflow);
    r = (struct spop_reader){buf, buf + w.len};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(spop_value_decode(&r, &out), 0);
        assert_int_equal(out.type, in[i].type);
        switch (out.type) {
        case SPOP_DATA_STR:
        case SPOP_DATA_BIN:
            assert_int_equal(out.u.s.len, in[i].u.s.len);
            assert_memory_equal(out.u.s.ptr, in[i].u.s.ptr, out.u.s.len);
            break;
        case SPOP_DATA_BOOL:
            assert_int_equal(out.u.b, in[i].u.b);
            break;
        case SPOP_DATA_NULL:
            break;
        case SPOP_DATA_IPV4:
            assert_memory_equal(out.u.ipv4, in[i].u.ipv4, 4);
            break;
        case SPOP_DATA_IPV6:
            assert_memory_equal(out.u.ipv6, in[i].u.ipv6, 16);
            break;
        default: /* integers: u and i share their storage */
            assert_true(out.u.u == in[i].u.u);
        }
    }
    assert_ptr_equal(r.p, r.end);
}

static int decode_one(const uint8_t *b, size_t n, struct spop_value *v)
{
    struct spop_reader r = {b, b + n};
    return spop_value_decode(&r, v);
}

static void test_value_malformed(void **state)
{
    static const uint8_t str_past_end[] = {SPOP_DATA_STR, 5, 'a', 'b'};
    static const uint8_t str_huge[] = {SPOP_DATA_BIN, 0xff, 0xf0, 0xfe, 0xfe, 0xfe,
                                       0xfe,          0xfe, 0xfe, 0xfe, 0x0e};
    static const uint8_t ipv4_short[] = {SPOP_DATA_IPV4, 1, 2, 3};
    static const uint8_t ipv6_short[] = {SPOP_DATA_IPV6, 1, 2, 3, 4, 5, 6, 7, 8};
    static const uint8_t int_trunc[] = {SPOP_DATA_INT64, 0xf0};
    static const uint8_t int32_big[] = {SPOP_DATA_INT32, 0xff, 0xf0, 0xfe, 0xfe, 0x7e};
    static const uint8_t uint32_big[] = {
        SPOP_DATA_UINT32, 0xf0, 0xf0, 0xfe, 0xfe, 0x7f}; /* 2^32+ */
    static const uint8_t bool_flags[] = {SPOP_DATA_BOOL | 0x10 | 0x40};
    struct spop_value v;

    for (uint8_t t = 10; t < 16; t++) {
        uint8_t b[4] = {t, 0, 0, 0};
        assert_int_equal(decode_one(b, sizeof(b), &v), -SPOP_ST_INVALID); /* unknown type */
        b[0] = (uint8_t)(t | 0x10);
        assert_int_equal(decode_one(b, sizeof(b), &v), -SPOP_ST_INVALID);
    }
    assert_int_equal(decode_one(str_past_end, 0, &v), -SPOP_ST_INVALID);
    assert_int_equal(decode_one(str_past_end, 1, &v), -SPOP_ST_INVALID);
    assert_int_equal(decode_one(str_past_end, sizeof(str_past_end), &v), -SPOP_ST_INVALID);
    assert_int_equal(decode_one(str_huge, sizeof(str_huge), &v), -SPOP_ST_INVALID);
    assert_int_equal(decode_one(ipv4_short, sizeof(ipv4_short), &v), -SPOP_ST_INVALID);
    assert_int_equal(decode_one(ipv6_short, sizeof(ipv6_short), &v), -SPOP_ST_INVALID);
    assert_int_equal(decode_one(int_trunc, sizeof(int_trunc), &v), -SPOP_ST_INVALID);
    assert_int_equal(decode_one(int32_big, sizeof(int32_big), &v), -SPOP_ST_INVALID);
    assert_int_equal(decode_one(uint32_big, sizeof(uint32_big), &v), -SPOP_ST_INVALID);
    assert_int_equal(decode_one(uint32_big, 5, &v), -SPOP_ST_INVALID); /* truncated varint */
    /* Unused flag bits are ignored; only 0x10 carries the boolean. */
    assert_int_equal(decode_one(bool_flags, sizeof(bool_flags), &v), 0);
    assert_true(v.u.b);
}

/* ---- HELLO ---- */

/* Builds a HELLO payload from the keys flagged in mask (1 versions, 2 max-frame-size,
 * 4 capabilities). */
static size_t hello_payload(uint8_t *buf, size_t cap, unsigned mask)
{
    struct spop_writer w;
    spop_writer_init(&w, buf, cap);
    if (mask & 1)
        spop_put_kv_str(&w, "supported-versions", "2.0", 3);
    if (mask & 2)
        spop_put_kv_uint32(&w, "max-frame-size", 1024);
    if (mask & 4)
        spop_put_kv_str(&w, "capabilities", "", 0);
    return w.len;
}

static void test_hello_missing_keys(void **state)
{
    uint8_t buf[128];
    struct spop_hello h;

    assert_int_equal(spop_hello_decode(buf, hello_payload(buf, sizeof(buf), 7), &h), 0);
    assert_int_equal(h.max_frame_size, 1024);
    assert_int_equal(spop_hello_decode(buf, hello_payload(buf, sizeof(buf), 6), &h),
                     -SPOP_ST_NO_VSN);
    assert_int_equal(spop_hello_decode(buf, hello_payload(buf, sizeof(buf), 5), &h),
                     -SPOP_ST_NO_FRAME_SIZE);
    assert_int_equal(spop_hello_decode(buf, hello_payload(buf, sizeof(buf), 3), &h),
                     -SPOP_ST_NO_CAP);
    assert_int_equal(spop_hello_decode(NULL, 0, &h), -SPOP_ST_NO_VSN);
}

static void test_hello_value_types(void **state)
{
    uint8_t buf[128];
    struct spop_writer w;
    struct spop_hello h;
    struct spop_value v = spop_v_int(4096);

    /* max-frame-size as INT32, INT64 and UINT64 are all accepted. */
    for (int t = SPOP_DATA_INT32; t <= SPOP_DATA_UINT64; t++) {
        size_t n = hello_payload(buf, sizeof(buf), 5);
        spop_writer_init(&w, buf + n, sizeof(buf) - n);
        v.type = (enum spop_data_type)t;
        if (t == SPOP_DATA_UINT32 || t == SPOP_DATA_UINT64)
            v.u.u = 4096;
        else
            v.u.i = 4096;
        spop_put_str(&w, "max-frame-size", 14);
        spop_put_value(&w, &v);
        assert_int_equal(spop_hello_decode(buf, n + w.len, &h), 0);
        assert_int_equal(h.max_frame_size, 4096);
    }

    /* Negative, or too big for 32 bits. */
    {
        size_t n = hello_payload(buf, sizeof(buf), 5);
        v.type = SPOP_DATA_INT64;
        v.u.i = -1;
        spop_writer_init(&w, buf + n, sizeof(buf) - n);
        spop_put_str(&w, "max-frame-size", 14);
        spop_put_value(&w, &v);
        assert_int_equal(spop_hello_decode(buf, n + w.len, &h), -SPOP_ST_BAD_FRAME_SIZE);
        v.type = SPOP_DATA_UINT64;
        v.u.u = 1ull << 32;
        spop_writer_init(&w, buf + n, sizeof(buf) - n);
        spop_put_str(&w, "max-frame-size", 14);
        spop_put_value(&w, &v);
        assert_int_equal(spop_hello_decode(buf, n + w.len, &h), -SPOP_ST_BAD_FRAME_SIZE);
    }

    /* A mandatory key of the wrong type counts as missing. */
    {
        size_t n = hello_payload(buf, sizeof(buf), 6);
        spop_writer_init(&w, buf + n, sizeof(buf) - n);
        spop_put_kv_uint32(&w, "supported-versions", 2);
        assert_int_equal(spop_hello_decode(buf, n + w.len, &h), -SPOP_ST_NO_VSN);
        n = hello_payload(buf, sizeof(buf), 3);
        spop_writer_init(&w, buf + n, sizeof(buf) - n);
        spop_put_kv_uint32(&w, "capabilities", 0);
        assert_int_equal(spop_hello_decode(buf, n + w.len, &h), -SPOP_ST_NO_CAP);
        n = hello_payload(buf, sizeof(buf), 5);
        spop_writer_init(&w, buf + n, sizeof(buf) - n);
        spop_put_kv_str(&w, "max-frame-size", "1024", 4);
        assert_int_equal(spop_hello_decode(buf, n + w.len, &h), -SPOP_ST_NO_FRAME_SIZE);
    }

    /* Unknown keys are skipped; a broken KV-list is invalid whatever it contains. */
    {
        size_t n = hello_payload(buf, sizeof(buf), 7);
        spop_writer_init(&w, buf + n, sizeof(buf) - n);
        spop_put_kv_str(&w, "future-key", "x", 1);
        assert_int_equal(spop_hello_decode(buf, n + w.len, &h), 0);
        buf[n + w.len] = 3; /* a name with no value */
        memcpy(buf + n + w.len + 1, "abc", 3);
        assert_int_equal(spop_hello_decode(buf, n + w.len + 4, &h), -SPOP_ST_INVALID);
        assert_int_equal(spop_hello_decode(buf, n + w.len - 1, &h), -SPOP_ST_INVALID);
    }
}

/* ---- DISCONNECT ---- */

static void test_disconnect_malformed(void **state)
{
    static const uint8_t only_name[] = {11, 's', 't', 'a', 't', 'u', 's', '-', 'c', 'o', 'd', 'e'};
    static const uint8_t bad_type[] = {1, 'x', 0x0a};
    struct spop_disconnect d;

    assert_int_equal(spop_disconnect_decode(only_name, sizeof(only_name), &d), -SPOP_ST_INVALID);
    assert_int_equal(spop_disconnect_decode(bad_type, sizeof(bad_type), &d), -SPOP_ST_INVALID);
    /* Absent keys are tolerated. */
    assert_int_equal(spop_disconnect_decode(NULL, 0, &d), 0);
    assert_int_equal(d.status, SPOP_ST_UNKNOWN);
    assert_int_equal(d.message.len, 0);
}

/* ---- NOTIFY ---- */

static void test_notify_zero_messages(void **state)
{
    static const uint8_t hdr[] = {3, 0, 0, 0, 1, 5, 9};
    struct spop_frame f;
    struct spop_reader r;
    struct spop_message m;

    assert_int_equal(spop_frame_decode(hdr, sizeof(hdr), &f), 0);
    r = (struct spop_reader){f.payload, f.payload + f.payload_len};
    assert_int_equal(spop_notify_next(&r, &m), 0);
    r.p = r.end = NULL;
    assert_int_equal(spop_notify_next(&r, &m), 0);
}

/* A message with nargs KVs named a0, a1, ... holding INT32 i. */
static size_t notify_payload(uint8_t *buf, size_t cap, unsigned nargs)
{
    struct spop_writer w;
    spop_writer_init(&w, buf, cap);
    spop_put_str(&w, "m", 1);
    spop_put_u8(&w, (uint8_t)nargs);
    for (unsigned i = 0; i < nargs; i++) {
        char name[8];
        struct spop_value v = spop_v_int(i);
        int n = snprintf(name, sizeof(name), "a%u", i);
        spop_put_str(&w, name, (size_t)n);
        spop_put_value(&w, &v);
    }
    assert_false(w.overflow);
    return w.len;
}

static void test_notify_args(void **state)
{
    uint8_t buf[1024];
    struct spop_reader r;
    struct spop_message m;
    size_t n;

    /* Zero args, then the maximum, then two messages in one frame. */
    n = notify_payload(buf, sizeof(buf), 0);
    r = (struct spop_reader){buf, buf + n};
    assert_int_equal(spop_notify_next(&r, &m), 1);
    assert_int_equal(m.nargs, 0);
    assert_null(spop_message_arg(&m, "a0"));
    assert_int_equal(spop_notify_next(&r, &m), 0);

    n = notify_payload(buf, sizeof(buf), SPOP_MAX_MSG_ARGS);
    n += notify_payload(buf + n, sizeof(buf) - n, 1);
    r = (struct spop_reader){buf, buf + n};
    assert_int_equal(spop_notify_next(&r, &m), 1);
    assert_int_equal(m.nargs, SPOP_MAX_MSG_ARGS);
    assert_int_equal(spop_message_arg(&m, "a31")->u.i, 31);
    assert_int_equal(spop_notify_next(&r, &m), 1);
    assert_int_equal(m.nargs, 1);
    assert_int_equal(spop_notify_next(&r, &m), 0);

    n = notify_payload(buf, sizeof(buf), SPOP_MAX_MSG_ARGS + 1);
    r = (struct spop_reader){buf, buf + n};
    assert_int_equal(spop_notify_next(&r, &m), -SPOP_ST_INVALID);
}

static void test_notify_malformed(void **state)
{
    static const uint8_t no_nargs[] = {1, 'm'};
    static const uint8_t name_past_end[] = {9, 'm', 0};
    static const uint8_t missing_arg[] = {1, 'm', 2, 1, 'a', 0};
    static const uint8_t unknown_type[] = {1, 'm', 1, 1, 'a', 0x0b};
    const uint8_t *cases[] = {no_nargs, name_past_end, missing_arg, unknown_type};
    const size_t lens[] = {sizeof(no_nargs), sizeof(name_past_end), sizeof(missing_arg),
                           sizeof(unknown_type)};
    struct spop_message m;

    for (size_t i = 0; i < 4; i++) {
        struct spop_reader r = {cases[i], cases[i] + lens[i]};
        assert_int_equal(spop_notify_next(&r, &m), -SPOP_ST_INVALID);
    }
}

/* ---- encoding ---- */

static void test_encode_ack(void **state)
{
    uint8_t buf[128];
    struct spop_writer w;
    struct spop_value v = spop_v_str("handmade", 8);

    spop_writer_init(&w, buf, sizeof(buf));
    spop_frame_begin(&w, SPOP_FRM_ACK, SPOP_FLAG_FIN, 2, 1);
    spop_put_set_var(&w, SPOP_SCOPE_TXN, "result", &v);
    assert_int_equal(spop_frame_end(&w, SPOP_DEFAULT_MAX_FRAME), 0);
    assert_int_equal(w.len, sizeof(ref_ack));
    assert_memory_equal(buf, ref_ack, sizeof(ref_ack));
}

static void test_encode_ack_actions(void **state)
{
    static const char want[] = "\0\0\0\x14"                /* length */
                               "\x67"                      /* type: ACK */
                               "\0\0\0\x01"                /* flags: FIN */
                               "\xf0\x00\x00"              /* stream-id 240, frame-id 0 */
                               "\x01\x03\x01\x01n\x02\x07" /* set-var, 3 args, sess, "n", INT32 7 */
                               "\x02\x02\x03\x01r";        /* unset-var, 2 args, req, "r" */
    uint8_t buf[64];
    struct spop_writer w;
    struct spop_value v = spop_v_int(7);

    spop_writer_init(&w, buf, sizeof(buf));
    spop_frame_begin(&w, SPOP_FRM_ACK, SPOP_FLAG_FIN, 240, 0);
    spop_put_set_var(&w, SPOP_SCOPE_SESS, "n", &v);
    spop_put_unset_var(&w, SPOP_SCOPE_REQ, "r");
    assert_int_equal(spop_frame_end(&w, SPOP_DEFAULT_MAX_FRAME), 0);
    assert_int_equal(w.len, sizeof(want) - 1);
    assert_memory_equal(buf, want, sizeof(want) - 1);
}

static void test_encode_agent_hello(void **state)
{
    uint8_t buf[256];
    struct spop_frame f;
    struct spop_reader r;
    struct spop_kv kv;
    size_t n;

    n = spop_encode_agent_hello(buf, sizeof(buf), SPOP_DEFAULT_MAX_FRAME, "");
    assert_int_equal(n, sizeof(ref_agent_hello));
    assert_memory_equal(buf, ref_agent_hello, n);
    assert_int_equal(spop_encode_agent_hello(buf, sizeof(buf), 16380, NULL), n);

    /* All three keys, in order, with capabilities when given. */
    n = spop_encode_agent_hello(buf, sizeof(buf), 1024, "pipelining");
    decode_captured(buf, n, &f);
    assert_int_equal(f.type, SPOP_FRM_AGENT_HELLO);
    r = (struct spop_reader){f.payload, f.payload + f.payload_len};
    assert_int_equal(spop_str_decode(&r, &kv.name), 0);
    assert_int_equal(spop_value_decode(&r, &kv.value), 0);
    assert_true(str_is(kv.name, "version") && str_is(kv.value.u.s, "2.0"));
    assert_int_equal(spop_str_decode(&r, &kv.name), 0);
    assert_int_equal(spop_value_decode(&r, &kv.value), 0);
    assert_int_equal(kv.value.type, SPOP_DATA_UINT32);
    assert_int_equal(kv.value.u.u, 1024);
    assert_int_equal(spop_str_decode(&r, &kv.name), 0);
    assert_int_equal(spop_value_decode(&r, &kv.value), 0);
    assert_true(str_is(kv.name, "capabilities") && str_is(kv.value.u.s, "pipelining"));
    assert_ptr_equal(r.p, r.end);

    for (size_t cap = 0; cap < sizeof(ref_agent_hello); cap++)
        assert_int_equal(spop_encode_agent_hello(buf, cap, 16380, ""), 0);
    assert_int_equal(spop_encode_agent_hello(buf, sizeof(buf), 20, ""), 0); /* over its own max */
}

static void test_encode_agent_disconnect(void **state)
{
    uint8_t buf[600];
    char longmsg[400];
    struct spop_frame f;
    struct spop_disconnect d;
    size_t n;

    n = spop_encode_agent_disconnect(buf, sizeof(buf), SPOP_ST_BAD_VSN, "unsupported version");
    assert_true(n > 0);
    decode_captured(buf, n, &f);
    assert_int_equal(f.type, SPOP_FRM_AGENT_DISCON);
    assert_int_equal(f.stream_id, 0);
    assert_int_equal(f.frame_id, 0);
    assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), 0);
    assert_int_equal(d.status, SPOP_ST_BAD_VSN);
    assert_true(str_is(d.message, "unsupported version"));

    /* A long message is cut so the frame fits the spec's 256-byte floor. */
    memset(longmsg, 'z', sizeof(longmsg) - 1);
    longmsg[sizeof(longmsg) - 1] = '\0';
    n = spop_encode_agent_disconnect(buf, sizeof(buf), UINT32_MAX, longmsg);
    assert_true(n > 0 && n <= SPOP_LEN_PREFIX + SPOP_MIN_FRAME_SIZE);
    decode_captured(buf, n, &f);
    assert_int_equal(spop_disconnect_decode(f.payload, f.payload_len, &d), 0);
    assert_int_equal(d.status, UINT32_MAX);
    assert_true(d.message.len > 200);
    assert_int_equal(spop_encode_agent_disconnect(buf, 10, 0, "x"), 0);
    assert_true(spop_encode_agent_disconnect(buf, sizeof(buf), 0, NULL) > 0);
}

static void test_writer_overflow(void **state)
{
    uint8_t buf[16];
    struct spop_writer w;
    struct spop_value bad = {.type = (enum spop_data_type)12};

    spop_writer_init(&w, buf, sizeof(buf));
    spop_put_str(&w, "0123456789", 10);
    assert_false(w.overflow);
    assert_int_equal(w.len, 11);
    spop_put_str(&w, "abcdef", 6); /* the length byte fits, the 6 bytes do not */
    assert_true(w.overflow);
    assert_int_equal(w.len, 12);
    spop_put_u8(&w, 1); /* would fit, but the writer stays failed */
    assert_int_equal(w.len, 12);

    /* A frame that overflows is dropped whole; the frames before it survive. */
    spop_writer_init(&w, buf, sizeof(buf));
    spop_frame_begin(&w, SPOP_FRM_ACK, SPOP_FLAG_FIN, 1, 1);
    assert_int_equal(spop_frame_end(&w, 256), 0);
    assert_int_equal(w.len, 11);
    spop_frame_begin(&w, SPOP_FRM_ACK, SPOP_FLAG_FIN, 2, 1);
    assert_true(w.overflow);
    assert_int_equal(spop_frame_end(&w, 256), -1);
    assert_int_equal(w.len, 11);

    /* An invalid value type fails the writer instead of emitting garbage. */
    spop_writer_init(&w, buf, sizeof(buf));
    spop_put_value(&w, &bad);
    assert_true(w.overflow);
}

static void test_frame_end_max(void **state)
{
    uint8_t buf[64];
    struct spop_writer w;

    spop_writer_init(&w, buf, sizeof(buf));
    spop_frame_begin(&w, SPOP_FRM_ACK, SPOP_FLAG_FIN, 0, 0);
    spop_put_str(&w, "abc", 3); /* frame = 7 + 4 = 11 bytes */
    assert_int_equal(spop_frame_end(&w, 10), -1);
    assert_int_equal(w.len, 0);
    spop_frame_begin(&w, SPOP_FRM_ACK, SPOP_FLAG_FIN, 0, 0);
    spop_put_str(&w, "abc", 3);
    assert_int_equal(spop_frame_end(&w, 11), 0);
    assert_memory_equal(buf, "\0\0\0\x0b", 4);
}

/* ---- lists ---- */

static void test_versions(void **state)
{
    static const char *yes[] = {"2.0",  " 2.0 , 1.0", "1.0,2.0", "1.0, 2.5",
                                "2.10", "\t2.0\t",    ",2.0"};
    static const char *no[] = {"",     "1.0",  "3.0", "20.0", "2.",   "2",
                               "2.0a", "2 .0", ",,",  " ",    "12.0", "2.0.1"};
    struct spop_str empty = {NULL, 0};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(spop_versions_support_v2(S(yes[i])));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(spop_versions_support_v2(S(no[i])));
    assert_false(spop_versions_support_v2(empty));
}

static void test_caps(void **state)
{
    struct spop_str empty = {NULL, 0};

    assert_true(spop_caps_has(S("pipelining,async"), "async"));
    assert_true(spop_caps_has(S(" pipelining , async "), "pipelining"));
    assert_true(spop_caps_has(S(" pipelining , async "), "async"));
    assert_true(spop_caps_has(S(",,async,"), "async"));
    assert_false(spop_caps_has(S("asyncx,xasync"), "async"));
    assert_false(spop_caps_has(S("pipe lining"), "pipelining"));
    assert_false(spop_caps_has(S(""), "async"));
    assert_false(spop_caps_has(S(",,"), ""));
    assert_false(spop_caps_has(S("async"), ""));
    assert_false(spop_caps_has(empty, "async"));
    /* Not NUL-terminated: the byte after the range must not count. */
    assert_false(spop_caps_has((struct spop_str){(const uint8_t *)"asyncx", 4}, "async"));
}

static void test_status_str(void **state)
{
    assert_string_equal(spop_status_str(SPOP_ST_NORMAL), "normal");
    assert_string_equal(spop_status_str(-SPOP_ST_TOO_BIG), spop_status_str(SPOP_ST_TOO_BIG));
    assert_string_equal(spop_status_str(SPOP_ST_UNKNOWN), "unknown error");
    assert_string_equal(spop_status_str(50), "unknown error");
    assert_string_equal(spop_status_str(INT_MIN), "unknown error");
    for (int s = 0; s <= SPOP_ST_RES; s++)
        assert_non_null(spop_status_str(s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint_edges),
        cmocka_unit_test(test_varint_round_trip),
        cmocka_unit_test(test_varint_encode_small_cap),
        cmocka_unit_test(test_varint_truncated),
        cmocka_unit_test(test_varint_too_long),
        cmocka_unit_test(test_varint_overflow),
        cmocka_unit_test(test_frame_complete),
        cmocka_unit_test(test_frame_decode_malformed),
        cmocka_unit_test(test_captured_hello),
        cmocka_unit_test(test_captured_hello_healthcheck),
        cmocka_unit_test(test_captured_notify_no_auth),
        cmocka_unit_test(test_captured_notify_auth),
        cmocka_unit_test(test_captured_notify_long),
        cmocka_unit_test(test_captured_disconnect),
        cmocka_unit_test(test_value_round_trip),
        cmocka_unit_test(test_value_malformed),
        cmocka_unit_test(test_hello_missing_keys),
        cmocka_unit_test(test_hello_value_types),
        cmocka_unit_test(test_disconnect_malformed),
        cmocka_unit_test(test_notify_zero_messages),
        cmocka_unit_test(test_notify_args),
        cmocka_unit_test(test_notify_malformed),
        cmocka_unit_test(test_encode_ack),
        cmocka_unit_test(test_encode_ack_actions),
        cmocka_unit_test(test_encode_agent_hello),
        cmocka_unit_test(test_encode_agent_disconnect),
        cmocka_unit_test(test_writer_overflow),
        cmocka_unit_test(test_frame_end_max),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_status_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
