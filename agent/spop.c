/* SPOP v2 codec. Every decoder checks each length against the bytes left before touching them, so
 * a hostile or truncated frame can only make a function return an error, never read past `end`.
 * Nothing here allocates: decoded strings point into the caller's buffer. */
#include "spop.h"

#include <string.h>

/* ---- varints ---- */

/* Peers encoding: the first byte carries 4 bits once x >= 240 (its high nibble is all ones, which
 * is what marks a long varint), every following byte 7 bits, the high bit meaning "more". */
size_t spop_varint_encode(uint64_t v, uint8_t *buf, size_t cap)
{
    uint8_t tmp[SPOP_VARINT_MAX];
    size_t n = 0;

    if (v < 240) {
        tmp[n++] = (uint8_t)v;
    } else {
        tmp[n++] = (uint8_t)(v | 0xF0);
        v = (v - 240) >> 4;
        while (v >= 128) {
            tmp[n++] = (uint8_t)(v | 0x80);
            v = (v - 128) >> 7;
        }
        tmp[n++] = (uint8_t)v;
    }
    if (n > cap)
        return 0;
    memcpy(buf, tmp, n);
    return n;
}

/* The encoding is additive (each byte adds b << shift), so the bound is checked on both the shift
 * and the sum: 2^64 - 1 takes exactly 10 bytes, anything beyond is hostile. */
int spop_varint_decode(struct spop_reader *r, uint64_t *out)
{
    const uint8_t *p = r->p;
    uint64_t v;
    unsigned shift = 4;

    if (p >= r->end)
        return -1;
    v = *p++;
    if (v >= 240) {
        for (;;) {
            uint64_t b, add;

            if (p >= r->end || p - r->p >= SPOP_VARINT_MAX)
                return -1;
            b = *p++;
            if ((b >> (64 - shift)) != 0)
                return -1; /* bits would fall off the top (only possible from the 10th byte) */
            add = b << shift;
            if (v + add < v)
                return -1;
            v += add;
            if (b < 128)
                break;
            shift += 7; /* stays < 64: the 10th byte always fails the check above or ends */
        }
    }
    r->p = p;
    *out = v;
    return 0;
}

/* ---- decoding ---- */

const char *spop_status_str(int status)
{
    static const char *const names[] = {
        [SPOP_ST_NORMAL] = "normal",
        [SPOP_ST_IO] = "I/O error",
        [SPOP_ST_TIMEOUT] = "a timeout occurred",
        [SPOP_ST_TOO_BIG] = "frame is too big",
        [SPOP_ST_INVALID] = "invalid frame received",
        [SPOP_ST_NO_VSN] = "version value not found",
        [SPOP_ST_NO_FRAME_SIZE] = "max-frame-size value not found",
        [SPOP_ST_NO_CAP] = "capabilities value not found",
        [SPOP_ST_BAD_VSN] = "unsupported version",
        [SPOP_ST_BAD_FRAME_SIZE] = "max-frame-size too big or too small",
        [SPOP_ST_FRAG_NOT_SUPPORTED] = "fragmentation not supported",
        [SPOP_ST_INTERLACED_FRAMES] = "invalid interlaced frames",
        [SPOP_ST_FRAMEID_NOTFOUND] = "frame-id not found",
        [SPOP_ST_RES] = "resource allocation error",
    };

    /* Callers often hold the negated return value; unsigned negation cannot overflow. */
    unsigned s = status < 0 ? 0u - (unsigned)status : (unsigned)status;

    if (s < sizeof(names) / sizeof(names[0]) && names[s])
        return names[s];
    return "unknown error";
}

/* A NULL buffer with length 0 is allowed; NULL + 0 is not valid C, hence the guard. */
static struct spop_reader reader_of(const uint8_t *p, size_t len)
{
    struct spop_reader r = {p, p ? p + len : p};
    return r;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* TOO_BIG is reported as soon as the prefix is in, so a peer cannot make us buffer a huge frame. */
int spop_frame_complete(const uint8_t *buf, size_t avail, uint32_t max_frame, uint32_t *frame_len)
{
    uint32_t len;

    if (avail < SPOP_LEN_PREFIX)
        return 0;
    len = be32(buf);
    if (len == 0)
        return -SPOP_ST_INVALID;
    if (len > max_frame)
        return -SPOP_ST_TOO_BIG;
    if (avail - SPOP_LEN_PREFIX < len)
        return 0;
    *frame_len = len;
    return 1;
}

/* Structural only: unknown frame types and fragmentation flags are the caller's policy. */
int spop_frame_decode(const uint8_t *buf, size_t len, struct spop_frame *f)
{
    struct spop_reader r;

    if (!buf || len < 1 + 4)
        return -SPOP_ST_INVALID;
    f->type = buf[0];
    f->flags = be32(buf + 1);
    r = reader_of(buf + 5, len - 5);
    if (spop_varint_decode(&r, &f->stream_id) < 0 || spop_varint_decode(&r, &f->frame_id) < 0)
        return -SPOP_ST_INVALID;
    f->payload = r.p;
    f->payload_len = (size_t)(r.end - r.p);
    return 0;
}

static int take_bytes(struct spop_reader *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n)
        return -SPOP_ST_INVALID;
    *out = r->p;
    r->p += n;
    return 0;
}

int spop_str_decode(struct spop_reader *r, struct spop_str *s)
{
    uint64_t len;

    if (spop_varint_decode(r, &len) < 0)
        return -SPOP_ST_INVALID;
    /* Compare before narrowing so a 2^64-ish length cannot wrap into a small size_t. */
    if (len > (uint64_t)(r->end - r->p))
        return -SPOP_ST_INVALID;
    s->len = (size_t)len;
    return take_bytes(r, s->len, &s->ptr);
}

/* Integers keep their declared width: an INT32/UINT32 outside its range is a malformed frame. */
static int int_decode(struct spop_reader *r, struct spop_value *v)
{
    uint64_t u;

    if (spop_varint_decode(r, &u) < 0)
        return -SPOP_ST_INVALID;
    switch (v->type) {
    case SPOP_DATA_INT32:
        /* Negative numbers travel as their 64-bit two's complement. */
        v->u.i = (int64_t)u;
        return (v->u.i < INT32_MIN || v->u.i > INT32_MAX) ? -SPOP_ST_INVALID : 0;
    case SPOP_DATA_INT64:
        v->u.i = (int64_t)u;
        return 0;
    case SPOP_DATA_UINT32:
        v->u.u = u;
        return u > UINT32_MAX ? -SPOP_ST_INVALID : 0;
    default:
        v->u.u = u;
        return 0;
    }
}

int spop_value_decode(struct spop_reader *r, struct spop_value *v)
{
    const uint8_t *raw;
    uint8_t tf;

    if (r->p >= r->end)
        return -SPOP_ST_INVALID;
    tf = *r->p++;
    v->type = (enum spop_data_type)(tf & 0x0F);
    switch (v->type) {
    case SPOP_DATA_NULL:
        return 0;
    case SPOP_DATA_BOOL:
        v->u.b = (tf & 0x10) != 0;
        return 0;
    case SPOP_DATA_INT32:
    case SPOP_DATA_UINT32:
    case SPOP_DATA_INT64:
    case SPOP_DATA_UINT64:
        return int_decode(r, v);
    case SPOP_DATA_IPV4:
        if (take_bytes(r, 4, &raw) < 0)
            return -SPOP_ST_INVALID;
        memcpy(v->u.ipv4, raw, 4);
        return 0;
    case SPOP_DATA_IPV6:
        if (take_bytes(r, 16, &raw) < 0)
            return -SPOP_ST_INVALID;
        memcpy(v->u.ipv6, raw, 16);
        return 0;
    case SPOP_DATA_STR:
    case SPOP_DATA_BIN:
        return spop_str_decode(r, &v->u.s);
    }
    return -SPOP_ST_INVALID; /* types 10..15 are reserved */
}

static int kv_decode(struct spop_reader *r, struct spop_kv *kv)
{
    if (spop_str_decode(r, &kv->name) < 0 || spop_value_decode(r, &kv->value) < 0)
        return -SPOP_ST_INVALID;
    return 0;
}

static bool str_eq(struct spop_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && (n == 0 || memcmp(s.ptr, lit, n) == 0);
}

static bool value_is_str(const struct spop_value *v)
{
    return v->type == SPOP_DATA_STR;
}

/* HAProxy announces max-frame-size as UINT32, but any integer type is taken so that a future
 * sender using SINT (sent as INT64) still works. Returns 1 when set, 0 when the type is not an
 * integer (treated as missing), -SPOP_ST_BAD_FRAME_SIZE when the value cannot be a frame size. */
static int frame_size_from(const struct spop_value *v, uint32_t *out)
{
    switch (v->type) {
    case SPOP_DATA_INT32:
    case SPOP_DATA_INT64:
        if (v->u.i < 0 || v->u.i > (int64_t)UINT32_MAX)
            return -SPOP_ST_BAD_FRAME_SIZE;
        *out = (uint32_t)v->u.i;
        return 1;
    case SPOP_DATA_UINT32:
    case SPOP_DATA_UINT64:
        if (v->u.u > UINT32_MAX)
            return -SPOP_ST_BAD_FRAME_SIZE;
        *out = (uint32_t)v->u.u;
        return 1;
    default:
        return 0;
    }
}

/* A key with the wrong value type counts as absent, so it yields the "not found" status. */
static int hello_kv(struct spop_hello *h, const struct spop_kv *kv)
{
    const struct spop_value *v = &kv->value;
    int rc;

    if (str_eq(kv->name, "supported-versions") && value_is_str(v)) {
        h->supported_versions = v->u.s;
        h->has_versions = true;
    } else if (str_eq(kv->name, "max-frame-size")) {
        rc = frame_size_from(v, &h->max_frame_size);
        if (rc < 0)
            return rc;
        if (rc > 0)
            h->has_max_frame_size = true;
    } else if (str_eq(kv->name, "capabilities") && value_is_str(v)) {
        h->capabilities = v->u.s;
        h->has_capabilities = true; /* even when empty: the health check sends "" */
    } else if (str_eq(kv->name, "healthcheck") && v->type == SPOP_DATA_BOOL) {
        h->healthcheck = v->u.b;
    } else if (str_eq(kv->name, "engine-id") && value_is_str(v)) {
        h->engine_id = v->u.s;
    }
    return 0; /* unknown keys are ignored, as the spec asks */
}

int spop_hello_decode(const uint8_t *payload, size_t len, struct spop_hello *h)
{
    struct spop_reader r = reader_of(payload, len);
    struct spop_kv kv;
    int rc;

    memset(h, 0, sizeof(*h));
    while (r.p < r.end) {
        if (kv_decode(&r, &kv) < 0)
            return -SPOP_ST_INVALID;
        rc = hello_kv(h, &kv);
        if (rc < 0)
            return rc;
    }
    if (!h->has_versions)
        return -SPOP_ST_NO_VSN;
    if (!h->has_max_frame_size)
        return -SPOP_ST_NO_FRAME_SIZE;
    if (!h->has_capabilities)
        return -SPOP_ST_NO_CAP;
    return 0;
}

int spop_disconnect_decode(const uint8_t *payload, size_t len, struct spop_disconnect *d)
{
    struct spop_reader r = reader_of(payload, len);
    struct spop_kv kv;
    uint32_t status;

    /* Lenient on absent keys: the peer is leaving anyway and the status is only logged. */
    d->status = SPOP_ST_UNKNOWN;
    d->message.ptr = payload;
    d->message.len = 0;
    while (r.p < r.end) {
        if (kv_decode(&r, &kv) < 0)
            return -SPOP_ST_INVALID;
        if (str_eq(kv.name, "status-code") && frame_size_from(&kv.value, &status) > 0)
            d->status = status; /* same integer rules as max-frame-size */
        else if (str_eq(kv.name, "message") && value_is_str(&kv.value))
            d->message = kv.value.u.s;
    }
    return 0;
}

/* ---- comma-separated lists ---- */

/* Calls back on each item of a comma-separated list with the spaces stripped from its ends. */
static bool list_any(struct spop_str list,
                     bool (*match)(const uint8_t *p, size_t n, const void *arg), const void *arg)
{
    const uint8_t *p = list.ptr, *end;

    if (!p)
        return false;
    end = p + list.len;
    while (p < end) {
        const uint8_t *item = p, *stop;

        while (p < end && *p != ',')
            p++;
        stop = p;
        while (item < stop && (*item == ' ' || *item == '\t'))
            item++;
        while (stop > item && (stop[-1] == ' ' || stop[-1] == '\t'))
            stop--;
        if (match(item, (size_t)(stop - item), arg))
            return true;
        if (p < end)
            p++; /* skip the comma */
    }
    return false;
}

/* "2.<digits>": any 2.x minor means 2.0 is supported too (SPOE.txt 3.2.4). */
static bool is_v2(const uint8_t *p, size_t n, const void *arg)
{
    (void)arg;
    if (n < 3 || p[0] != '2' || p[1] != '.')
        return false;
    for (size_t i = 2; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

bool spop_versions_support_v2(struct spop_str versions)
{
    return list_any(versions, is_v2, NULL);
}

static bool is_name(const uint8_t *p, size_t n, const void *arg)
{
    const char *name = arg;
    return n > 0 && n == strlen(name) && memcmp(p, name, n) == 0;
}

bool spop_caps_has(struct spop_str caps, const char *name)
{
    return list_any(caps, is_name, name);
}

/* ---- NOTIFY ---- */

int spop_notify_next(struct spop_reader *r, struct spop_message *m)
{
    if (r->p >= r->end)
        return 0;
    if (spop_str_decode(r, &m->name) < 0 || r->p >= r->end)
        return -SPOP_ST_INVALID;
    m->nargs = *r->p++;
    if (m->nargs > SPOP_MAX_MSG_ARGS)
        return -SPOP_ST_INVALID; /* the array is fixed-size; more is not something we expect */
    for (unsigned i = 0; i < m->nargs; i++)
        if (kv_decode(r, &m->args[i]) < 0)
            return -SPOP_ST_INVALID;
    return 1;
}

const struct spop_value *spop_message_arg(const struct spop_message *m, const char *name)
{
    for (unsigned i = 0; i < m->nargs && i < SPOP_MAX_MSG_ARGS; i++)
        if (str_eq(m->args[i].name, name))
            return &m->args[i].value;
    return NULL;
}

/* ---- encoding ---- */

void spop_writer_init(struct spop_writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->frame_start = 0;
    w->overflow = false;
}

static void put_bytes(struct spop_writer *w, const void *p, size_t n)
{
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = true;
        return;
    }
    if (n)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
}

void spop_put_u8(struct spop_writer *w, uint8_t v)
{
    put_bytes(w, &v, 1);
}

void spop_put_varint(struct spop_writer *w, uint64_t v)
{
    uint8_t tmp[SPOP_VARINT_MAX];
    put_bytes(w, tmp, spop_varint_encode(v, tmp, sizeof(tmp)));
}

static void put_be32(struct spop_writer *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put_bytes(w, b, 4);
}

void spop_frame_begin(struct spop_writer *w, uint8_t type, uint32_t flags, uint64_t stream_id,
                      uint64_t frame_id)
{
    w->frame_start = w->len;
    put_be32(w, 0); /* patched by spop_frame_end */
    spop_put_u8(w, type);
    put_be32(w, flags);
    spop_put_varint(w, stream_id);
    spop_put_varint(w, frame_id);
}

int spop_frame_end(struct spop_writer *w, uint32_t max_frame)
{
    size_t flen;

    if (!w->overflow && w->len - w->frame_start >= SPOP_LEN_PREFIX) {
        flen = w->len - w->frame_start - SPOP_LEN_PREFIX;
        if (flen <= max_frame) {
            uint8_t *p = w->buf + w->frame_start;
            p[0] = (uint8_t)(flen >> 24);
            p[1] = (uint8_t)(flen >> 16);
            p[2] = (uint8_t)(flen >> 8);
            p[3] = (uint8_t)flen;
            return 0;
        }
    }
    /* Drop the partial frame so the frames before it can still be flushed. */
    if (w->frame_start <= w->len)
        w->len = w->frame_start;
    return -1;
}

void spop_put_str(struct spop_writer *w, const void *s, size_t len)
{
    spop_put_varint(w, len);
    put_bytes(w, s, len);
}

void spop_put_value(struct spop_writer *w, const struct spop_value *v)
{
    switch (v->type) {
    case SPOP_DATA_NULL:
        spop_put_u8(w, SPOP_DATA_NULL);
        return;
    case SPOP_DATA_BOOL:
        spop_put_u8(w, SPOP_DATA_BOOL | (v->u.b ? 0x10 : 0));
        return;
    case SPOP_DATA_INT32:
    case SPOP_DATA_INT64:
        spop_put_u8(w, (uint8_t)v->type);
        spop_put_varint(w, (uint64_t)v->u.i);
        return;
    case SPOP_DATA_UINT32:
    case SPOP_DATA_UINT64:
        spop_put_u8(w, (uint8_t)v->type);
        spop_put_varint(w, v->u.u);
        return;
    case SPOP_DATA_IPV4:
        spop_put_u8(w, SPOP_DATA_IPV4);
        put_bytes(w, v->u.ipv4, 4);
        return;
    case SPOP_DATA_IPV6:
        spop_put_u8(w, SPOP_DATA_IPV6);
        put_bytes(w, v->u.ipv6, 16);
        return;
    case SPOP_DATA_STR:
    case SPOP_DATA_BIN:
        spop_put_u8(w, (uint8_t)v->type);
        spop_put_str(w, v->u.s.ptr, v->u.s.len);
        return;
    }
    w->overflow = true; /* a caller bug; fail the frame rather than send garbage */
}

void spop_put_kv_str(struct spop_writer *w, const char *name, const char *s, size_t len)
{
    struct spop_value v = spop_v_str(s, len);
    spop_put_str(w, name, strlen(name));
    spop_put_value(w, &v);
}

void spop_put_kv_uint32(struct spop_writer *w, const char *name, uint32_t v)
{
    spop_put_str(w, name, strlen(name));
    spop_put_u8(w, SPOP_DATA_UINT32);
    spop_put_varint(w, v);
}

/* Scope and name are raw (no type byte), as HAProxy decodes them; only the value is typed. */
void spop_put_set_var(struct spop_writer *w, enum spop_scope scope, const char *name,
                      const struct spop_value *v)
{
    spop_put_u8(w, SPOP_ACT_SET_VAR);
    spop_put_u8(w, 3);
    spop_put_u8(w, (uint8_t)scope);
    spop_put_str(w, name, strlen(name));
    spop_put_value(w, v);
}

void spop_put_unset_var(struct spop_writer *w, enum spop_scope scope, const char *name)
{
    spop_put_u8(w, SPOP_ACT_UNSET_VAR);
    spop_put_u8(w, 2);
    spop_put_u8(w, (uint8_t)scope);
    spop_put_str(w, name, strlen(name));
}

size_t spop_encode_agent_hello(uint8_t *buf, size_t cap, uint32_t max_frame_size,
                               const char *capabilities)
{
    struct spop_writer w;

    if (!capabilities)
        capabilities = "";
    spop_writer_init(&w, buf, cap);
    spop_frame_begin(&w, SPOP_FRM_AGENT_HELLO, SPOP_FLAG_FIN, 0, 0);
    spop_put_kv_str(&w, "version", "2.0", 3);
    spop_put_kv_uint32(&w, "max-frame-size", max_frame_size);
    spop_put_kv_str(&w, "capabilities", capabilities, strlen(capabilities));
    return spop_frame_end(&w, max_frame_size) < 0 ? 0 : w.len;
}

/* The message is cut so the frame fits SPOP_MIN_FRAME_SIZE, which every peer must accept: a
 * DISCONNECT may be sent before (or because) max-frame-size was agreed. */
size_t spop_encode_agent_disconnect(uint8_t *buf, size_t cap, uint32_t status, const char *message)
{
    /* header 7 (type, flags, two 1-byte ids) + "status-code" kv <= 18 (name 12, type 1, varint
     * <= 5) + "message" name 8 + type 1 + length varint <= 2: 36 bytes besides the text. */
    const size_t max_msg = SPOP_MIN_FRAME_SIZE - 36;
    size_t mlen = message ? strlen(message) : 0;
    struct spop_writer w;

    if (mlen > max_msg)
        mlen = max_msg;
    spop_writer_init(&w, buf, cap);
    spop_frame_begin(&w, SPOP_FRM_AGENT_DISCON, SPOP_FLAG_FIN, 0, 0);
    spop_put_kv_uint32(&w, "status-code", status);
    spop_put_kv_str(&w, "message", message ? message : "", mlen);
    return spop_frame_end(&w, SPOP_MIN_FRAME_SIZE) < 0 ? 0 : w.len;
}
