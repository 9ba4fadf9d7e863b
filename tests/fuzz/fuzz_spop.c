/* libFuzzer target for the SPOP codec. The input is a byte stream as read from HAProxy: it is cut
 * into frames and every payload goes through every decoder (whatever its type, for coverage).
 * Decoded NOTIFY args are re-encoded into an ACK and decoded back, so the fuzzer also checks that
 * the writer produces what the reader accepts. Any mismatch aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static bool str_same(struct spop_str a, struct spop_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool value_same(const struct spop_value *a, const struct spop_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case SPOP_DATA_NULL:
        return true;
    case SPOP_DATA_BOOL:
        return a->u.b == b->u.b;
    case SPOP_DATA_INT32:
    case SPOP_DATA_INT64:
        return a->u.i == b->u.i;
    case SPOP_DATA_UINT32:
    case SPOP_DATA_UINT64:
        return a->u.u == b->u.u;
    case SPOP_DATA_IPV4:
        return memcmp(a->u.ipv4, b->u.ipv4, 4) == 0;
    case SPOP_DATA_IPV6:
        return memcmp(a->u.ipv6, b->u.ipv6, 16) == 0;
    case SPOP_DATA_STR:
    case SPOP_DATA_BIN:
        return str_same(a->u.s, b->u.s);
    }
    return false;
}

/* Copies s into a C string; false when it cannot be one (embedded NUL or too long). */
static bool to_cstr(struct spop_str s, char *out, size_t cap)
{
    if (s.len >= cap || (s.len && memchr(s.ptr, '\0', s.len)))
        return false;
    if (s.len)
        memcpy(out, s.ptr, s.len);
    out[s.len] = '\0';
    return true;
}

/* Decoding any varint and re-encoding its value must give back the same value. */
static void fuzz_varint(const uint8_t *data, size_t size)
{
    struct spop_reader r = {data, data + size};
    uint8_t buf[SPOP_VARINT_MAX];
    uint64_t v, back;
    size_t n;

    if (spop_varint_decode(&r, &v) < 0)
        return;
    CHECK(r.p > data && r.p - data <= SPOP_VARINT_MAX);
    n = spop_varint_encode(v, buf, sizeof(buf));
    CHECK(n > 0);
    r = (struct spop_reader){buf, buf + n};
    CHECK(spop_varint_decode(&r, &back) == 0 && back == v && r.p == buf + n);
}

static void fuzz_hello(const struct spop_frame *f)
{
    struct spop_hello h;
    uint8_t out[512];
    uint32_t flen;
    size_t n;

    if (spop_hello_decode(f->payload, f->payload_len, &h) < 0)
        return;
    CHECK(h.has_versions && h.has_max_frame_size && h.has_capabilities);
    (void)spop_versions_support_v2(h.supported_versions);
    (void)spop_caps_has(h.capabilities, "pipelining");
    (void)spop_caps_has(h.engine_id, "");
    n = spop_encode_agent_hello(out, sizeof(out), h.max_frame_size, "pipelining,async");
    if (n)
        CHECK(spop_frame_complete(out, n, h.max_frame_size, &flen) == 1 && flen + 4 == n);
}

static void fuzz_disconnect(const struct spop_frame *f)
{
    struct spop_disconnect d, back;
    struct spop_frame rf;
    uint8_t out[512];
    char msg[300];
    uint32_t flen;
    size_t n;

    if (spop_disconnect_decode(f->payload, f->payload_len, &d) < 0)
        return;
    (void)spop_status_str((int)d.status);
    if (!to_cstr(d.message, msg, sizeof(msg)))
        return;
    n = spop_encode_agent_disconnect(out, sizeof(out), d.status, msg);
    CHECK(n > 0 && spop_frame_complete(out, n, SPOP_MIN_FRAME_SIZE, &flen) == 1);
    CHECK(spop_frame_decode(out + 4, flen, &rf) == 0);
    CHECK(spop_disconnect_decode(rf.payload, rf.payload_len, &back) == 0);
    CHECK(back.status == d.status && back.message.len <= d.message.len);
    CHECK(back.message.len == 0 || memcmp(back.message.ptr, msg, back.message.len) == 0);
}

/* Reads back the ACK written from m and checks each set-var against the arg it came from. */
static void check_ack(const uint8_t *out, size_t n, const struct spop_frame *f,
                      const struct spop_message *m, const bool *used)
{
    struct spop_frame af;
    struct spop_reader r;
    uint32_t flen;

    CHECK(spop_frame_complete(out, n, SPOP_MAX_FRAME_LIMIT, &flen) == 1 && flen + 4 == n);
    CHECK(spop_frame_decode(out + 4, flen, &af) == 0);
    CHECK(af.type == SPOP_FRM_ACK && af.flags == SPOP_FLAG_FIN);
    CHECK(af.stream_id == f->stream_id && af.frame_id == f->frame_id);
    r = (struct spop_reader){af.payload, af.payload + af.payload_len};
    for (unsigned i = 0; i < m->nargs; i++) {
        struct spop_str name;
        struct spop_value v;

        if (!used[i])
            continue;
        CHECK(r.end - r.p >= 3 && r.p[0] == SPOP_ACT_SET_VAR && r.p[1] == 3);
        CHECK(r.p[2] == i % 5);
        r.p += 3;
        CHECK(spop_str_decode(&r, &name) == 0 && str_same(name, m->args[i].name));
        CHECK(spop_value_decode(&r, &v) == 0 && value_same(&v, &m->args[i].value));
    }
    CHECK(r.p == r.end);
}

static void fuzz_ack(const struct spop_frame *f, const struct spop_message *m)
{
    static uint8_t out[1 << 16];
    bool used[SPOP_MAX_MSG_ARGS] = {false};
    struct spop_writer w;

    spop_writer_init(&w, out, sizeof(out));
    spop_frame_begin(&w, SPOP_FRM_ACK, SPOP_FLAG_FIN, f->stream_id, f->frame_id);
    for (unsigned i = 0; i < m->nargs; i++) {
        char name[256];

        if (!to_cstr(m->args[i].name, name, sizeof(name)))
            continue;
        /* The first arg of a name is the one spop_message_arg must find. */
        const struct spop_value *found = spop_message_arg(m, name);
        CHECK(found != NULL && found <= &m->args[i].value);
        spop_put_set_var(&w, (enum spop_scope)(i % 5), name, &m->args[i].value);
        used[i] = true;
    }
    if (spop_frame_end(&w, SPOP_MAX_FRAME_LIMIT) == 0)
        check_ack(out, w.len, f, m, used);
    else
        CHECK(w.overflow || w.len == 0);
}

static void fuzz_notify(const struct spop_frame *f)
{
    static struct spop_message m; /* 32 KVs: keep it off the small fuzzer stack */
    struct spop_reader r = {f->payload, f->payload + f->payload_len};
    int rc;

    while ((rc = spop_notify_next(&r, &m)) == 1) {
        CHECK(m.nargs <= SPOP_MAX_MSG_ARGS);
        CHECK(r.p <= r.end);
        fuzz_ack(f, &m);
    }
    CHECK(rc == 0 || rc == -SPOP_ST_INVALID);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    uint32_t flen;

    fuzz_varint(data, size);
    /* Cut the stream into frames the way the connection engine does. */
    while (spop_frame_complete(p, (size_t)(end - p), SPOP_MAX_FRAME_LIMIT, &flen) == 1) {
        struct spop_frame f;

        if (spop_frame_decode(p + SPOP_LEN_PREFIX, flen, &f) == 0) {
            CHECK(f.payload >= p + SPOP_LEN_PREFIX && f.payload + f.payload_len == p + 4 + flen);
            fuzz_hello(&f);
            fuzz_disconnect(&f);
            fuzz_notify(&f);
        }
        p += SPOP_LEN_PREFIX + flen;
    }
    return 0;
}
