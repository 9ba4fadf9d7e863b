/* Test helper: the HAProxy side of a SPOP connection, built with the agent's own encoder (the
 * frames' byte layout is pinned by test_spop.c against captured HAProxy frames). Used by
 * test_conn.c, test_agent.c and bench_decision.c. */
#ifndef PTA_TEST_SPOP_PEER_H
#define PTA_TEST_SPOP_PEER_H

#include <stdint.h>
#include <string.h>

#include "spop.h"

/* HAPROXY-HELLO announcing max_frame; healthcheck adds "healthcheck: true". Returns the length
 * (prefix included), 0 if buf is too small. */
static inline size_t peer_hello(uint8_t *buf, size_t cap, uint32_t max_frame, int healthcheck)
{
    struct spop_writer w;
    spop_writer_init(&w, buf, cap);
    spop_frame_begin(&w, SPOP_FRM_HAPROXY_HELLO, SPOP_FLAG_FIN, 0, 0);
    spop_put_kv_str(&w, "supported-versions", "2.0", 3);
    spop_put_kv_uint32(&w, "max-frame-size", max_frame);
    spop_put_kv_str(&w, "capabilities", "pipelining", 10);
    if (healthcheck) {
        struct spop_value t = {.type = SPOP_DATA_BOOL, .u.b = true};
        spop_put_str(&w, "healthcheck", 11);
        spop_put_value(&w, &t);
    }
    return spop_frame_end(&w, 65535) == 0 ? w.len : 0;
}

/* NOTIFY with the shipped message "check-token" (authorization STR, auth_count INT64, scopes NULL
 * or STR, realm STR). auth NULL leaves the authorization argument out. */
static inline size_t peer_notify(uint8_t *buf, size_t cap, uint64_t sid, uint64_t fid,
                                 const char *auth, const char *scopes)
{
    struct spop_writer w;
    spop_writer_init(&w, buf, cap);
    spop_frame_begin(&w, SPOP_FRM_NOTIFY, SPOP_FLAG_FIN, sid, fid);
    spop_put_str(&w, "check-token", 11);
    spop_put_u8(&w, auth ? 4 : 3);
    struct spop_value v;
    if (auth) {
        v = spop_v_str(auth, strlen(auth));
        spop_put_str(&w, "authorization", 13);
        spop_put_value(&w, &v);
    }
    v = (struct spop_value){.type = SPOP_DATA_INT64, .u.i = 1};
    spop_put_str(&w, "auth_count", 10);
    spop_put_value(&w, &v);
    v = scopes ? spop_v_str(scopes, strlen(scopes)) : (struct spop_value){.type = SPOP_DATA_NULL};
    spop_put_str(&w, "scopes", 6);
    spop_put_value(&w, &v);
    v = spop_v_str("api", 3);
    spop_put_str(&w, "realm", 5);
    spop_put_value(&w, &v);
    return spop_frame_end(&w, 65535) == 0 ? w.len : 0;
}

/* HAPROXY-DISCONNECT with status and message. */
static inline size_t peer_disconnect(uint8_t *buf, size_t cap, uint32_t status, const char *msg)
{
    struct spop_writer w;
    spop_writer_init(&w, buf, cap);
    spop_frame_begin(&w, SPOP_FRM_HAPROXY_DISCON, SPOP_FLAG_FIN, 0, 0);
    spop_put_kv_uint32(&w, "status-code", status);
    spop_put_kv_str(&w, "message", msg, strlen(msg));
    return spop_frame_end(&w, 65535) == 0 ? w.len : 0;
}

/* Finds the value an ACK payload sets for txn var name: 1 (set, *out filled), 0 (unset), -1
 * (not mentioned or malformed). */
static inline int peer_ack_var(const struct spop_frame *f, const char *name, struct spop_value *out)
{
    struct spop_reader r = {f->payload, f->payload + f->payload_len};
    while (r.p + 3 <= r.end) {
        uint8_t type = *r.p++, nargs = *r.p++;
        r.p++; /* scope */
        struct spop_str n;
        struct spop_value v = {0};
        if (spop_str_decode(&r, &n) < 0)
            return -1;
        if (type == SPOP_ACT_SET_VAR && nargs == 3 && spop_value_decode(&r, &v) < 0)
            return -1;
        if (n.len == strlen(name) && memcmp(n.ptr, name, n.len) == 0) {
            *out = v;
            return type == SPOP_ACT_SET_VAR ? 1 : 0;
        }
    }
    return -1;
}

/* The status an ACK sets; -1 when it sets none. */
static inline int peer_ack_status(const struct spop_frame *f)
{
    struct spop_value v;
    return peer_ack_var(f, "status", &v) == 1 ? (int)v.u.i : -1;
}

/* Whether the string var name is set to want. */
static inline int peer_ack_is(const struct spop_frame *f, const char *name, const char *want)
{
    struct spop_value v;
    return peer_ack_var(f, name, &v) == 1 && v.u.s.len == strlen(want) &&
           memcmp(v.u.s.ptr, want, v.u.s.len) == 0;
}

/* The integer value of key name in a KV-list payload (AGENT-HELLO, AGENT-DISCONNECT); -1 if absent.
 */
static inline long long peer_kv_int(const uint8_t *p, size_t len, const char *name)
{
    struct spop_reader r = {p, p + len};
    while (r.p < r.end) {
        struct spop_str k;
        struct spop_value v;
        if (spop_str_decode(&r, &k) < 0 || spop_value_decode(&r, &v) < 0)
            return -1;
        if (k.len == strlen(name) && memcmp(k.ptr, name, k.len) == 0)
            return (long long)v.u.i;
    }
    return -1;
}

#endif
