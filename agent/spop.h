/* SPOP v2 codec: encodes and decodes the frames of HAProxy's Stream Processing Offload Protocol
 * (doc/SPOE.txt). Pure: no sockets, no allocation; every decoder borrows from the caller's buffer.
 * Used by the connection engine (conn.c), the unit tests and the fuzz target. */
#ifndef PTA_SPOP_H
#define PTA_SPOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPOP_LEN_PREFIX 4               /* the 4-byte big-endian length before every frame */
#define SPOP_MIN_FRAME_SIZE 256         /* the spec's floor for max-frame-size */
#define SPOP_DEFAULT_MAX_FRAME 16380u   /* HAProxy's own default: tune.bufsize (16384) - 4 */
#define SPOP_MAX_FRAME_LIMIT (1u << 20) /* our ceiling for --max-frame-size */
#define SPOP_MAX_MSG_ARGS 32            /* args per message we accept; NB-ARGS is one byte */
#define SPOP_VARINT_MAX 10              /* bytes of the longest valid varint (2^64 - 1) */

enum spop_frame_type {
    SPOP_FRM_UNSET = 0,
    SPOP_FRM_HAPROXY_HELLO = 1,
    SPOP_FRM_HAPROXY_DISCON = 2,
    SPOP_FRM_NOTIFY = 3,
    SPOP_FRM_AGENT_HELLO = 101,
    SPOP_FRM_AGENT_DISCON = 102,
    SPOP_FRM_ACK = 103,
};

#define SPOP_FLAG_FIN 0x00000001u
#define SPOP_FLAG_ABORT 0x00000002u

enum spop_data_type {
    SPOP_DATA_NULL = 0,
    SPOP_DATA_BOOL = 1,
    SPOP_DATA_INT32 = 2,
    SPOP_DATA_UINT32 = 3,
    SPOP_DATA_INT64 = 4,
    SPOP_DATA_UINT64 = 5,
    SPOP_DATA_IPV4 = 6,
    SPOP_DATA_IPV6 = 7,
    SPOP_DATA_STR = 8,
    SPOP_DATA_BIN = 9,
};

enum spop_scope {
    SPOP_SCOPE_PROC = 0,
    SPOP_SCOPE_SESS = 1,
    SPOP_SCOPE_TXN = 2,
    SPOP_SCOPE_REQ = 3,
    SPOP_SCOPE_RES = 4,
};

enum spop_action { SPOP_ACT_SET_VAR = 1, SPOP_ACT_UNSET_VAR = 2 };

/* DISCONNECT status codes (SPOE.txt section 3.5). */
enum spop_status {
    SPOP_ST_NORMAL = 0,
    SPOP_ST_IO = 1,
    SPOP_ST_TIMEOUT = 2,
    SPOP_ST_TOO_BIG = 3,
    SPOP_ST_INVALID = 4,
    SPOP_ST_NO_VSN = 5,
    SPOP_ST_NO_FRAME_SIZE = 6,
    SPOP_ST_NO_CAP = 7,
    SPOP_ST_BAD_VSN = 8,
    SPOP_ST_BAD_FRAME_SIZE = 9,
    SPOP_ST_FRAG_NOT_SUPPORTED = 10,
    SPOP_ST_INTERLACED_FRAMES = 11,
    SPOP_ST_FRAMEID_NOTFOUND = 12,
    SPOP_ST_RES = 13,
    SPOP_ST_UNKNOWN = 99,
};

/* A byte range borrowed from a frame buffer; never NUL-terminated. */
struct spop_str {
    const uint8_t *ptr;
    size_t len;
};

struct spop_value {
    enum spop_data_type type;
    union {
        bool b;
        int64_t i;  /* INT32, INT64 */
        uint64_t u; /* UINT32, UINT64 */
        uint8_t ipv4[4];
        uint8_t ipv6[16];
        struct spop_str s; /* STR, BIN */
    } u;
};

struct spop_kv {
    struct spop_str name;
    struct spop_value value;
};

/* The frame without its length prefix. */
struct spop_frame {
    uint8_t type;
    uint32_t flags;
    uint64_t stream_id;
    uint64_t frame_id;
    const uint8_t *payload;
    size_t payload_len;
};

struct spop_hello {
    struct spop_str supported_versions;
    struct spop_str capabilities;
    struct spop_str engine_id;
    uint32_t max_frame_size;
    bool has_versions, has_max_frame_size, has_capabilities;
    bool healthcheck;
};

struct spop_disconnect {
    uint32_t status;
    struct spop_str message;
};

struct spop_message {
    struct spop_str name;
    unsigned nargs;
    struct spop_kv args[SPOP_MAX_MSG_ARGS];
};

/* A cursor over a byte range. Decoders advance p and never read past end. */
struct spop_reader {
    const uint8_t *p;
    const uint8_t *end;
};

/* A bounded output buffer. Writers never write past cap; the first write that does not fit sets
 * overflow and every later write is a no-op, so callers check once at the end. */
struct spop_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    size_t frame_start; /* offset of the current frame's length prefix */
    bool overflow;
};

/* ---- varints (HAProxy "peers" encoding) ---- */

/* Writes v into buf; returns the bytes written (1..10) or 0 when cap is too small. */
size_t spop_varint_encode(uint64_t v, uint8_t *buf, size_t cap);
/* Reads one varint; returns 0, or -1 when truncated or longer than 10 bytes / 64 bits. */
int spop_varint_decode(struct spop_reader *r, uint64_t *out);

/* ---- decoding ---- */

const char *spop_status_str(int status);

/* Looks at the bytes received so far. Returns 1 and sets *frame_len (the length after the prefix)
 * when a whole frame is present, 0 when more bytes are needed, or -SPOP_ST_TOO_BIG when the
 * announced length exceeds max_frame (or -SPOP_ST_INVALID when it is zero). */
int spop_frame_complete(const uint8_t *buf, size_t avail, uint32_t max_frame, uint32_t *frame_len);

/* Decodes a frame's header (buf excludes the length prefix). Returns 0 or -SPOP_ST_INVALID. */
int spop_frame_decode(const uint8_t *buf, size_t len, struct spop_frame *f);

/* Reads one typed value. Returns 0 or -SPOP_ST_INVALID (truncated, unknown type, bad length, or an
 * INT32/UINT32 whose value does not fit its width). Negative integers are the varint of their
 * 64-bit two's complement, as HAProxy sends them. */
int spop_value_decode(struct spop_reader *r, struct spop_value *v);
/* Reads a raw length-prefixed string (KV names, message names). */
int spop_str_decode(struct spop_reader *r, struct spop_str *s);

/* HAPROXY-HELLO payload. Returns 0, -SPOP_ST_INVALID, -SPOP_ST_NO_VSN, -SPOP_ST_NO_FRAME_SIZE or
 * -SPOP_ST_NO_CAP (an empty capabilities string is present, not missing). A key whose value has
 * the wrong type counts as missing. max-frame-size may be any integer type (HAProxy 2.6 sends
 * UINT32); a negative value or one above UINT32_MAX gives -SPOP_ST_BAD_FRAME_SIZE. Checking it
 * against SPOP_MIN_FRAME_SIZE and the version/capabilities contents is the caller's job. */
int spop_hello_decode(const uint8_t *payload, size_t len, struct spop_hello *h);
/* HAPROXY-DISCONNECT payload. Returns 0 or -SPOP_ST_INVALID (malformed KV-list). Absent keys are
 * tolerated: status defaults to SPOP_ST_UNKNOWN, message to "". */
int spop_disconnect_decode(const uint8_t *payload, size_t len, struct spop_disconnect *d);

/* True when a comma-separated list (spaces ignored) names a 2.x version ("2.0", " 2.0 , 1.0"). */
bool spop_versions_support_v2(struct spop_str versions);
/* True when a comma-separated capabilities list (spaces ignored) contains name. */
bool spop_caps_has(struct spop_str caps, const char *name);

/* Iterates the LIST-OF-MESSAGES of a NOTIFY payload: returns 1 with *m filled, 0 at the end,
 * or -SPOP_ST_INVALID. Initialise r over the payload first. */
int spop_notify_next(struct spop_reader *r, struct spop_message *m);

/* Finds a message argument by name (exact, case-sensitive); NULL when absent. */
const struct spop_value *spop_message_arg(const struct spop_message *m, const char *name);

/* ---- encoding ---- */

void spop_writer_init(struct spop_writer *w, uint8_t *buf, size_t cap);
/* Starts a frame at the writer's position: reserves the length prefix, writes type, flags and ids.
 */
void spop_frame_begin(struct spop_writer *w, uint8_t type, uint32_t flags, uint64_t stream_id,
                      uint64_t frame_id);
/* Patches the length prefix. Returns 0, or -1 on overflow or when the frame exceeds max_frame;
 * on failure the partial frame is dropped (len goes back to frame_start, overflow stays set). */
int spop_frame_end(struct spop_writer *w, uint32_t max_frame);

void spop_put_u8(struct spop_writer *w, uint8_t v);
void spop_put_varint(struct spop_writer *w, uint64_t v);
void spop_put_str(struct spop_writer *w, const void *s, size_t len);    /* raw: length + bytes */
void spop_put_value(struct spop_writer *w, const struct spop_value *v); /* bad type: overflow */
void spop_put_kv_str(struct spop_writer *w, const char *name, const char *s, size_t len);
void spop_put_kv_uint32(struct spop_writer *w, const char *name, uint32_t v);
void spop_put_set_var(struct spop_writer *w, enum spop_scope scope, const char *name,
                      const struct spop_value *v);
void spop_put_unset_var(struct spop_writer *w, enum spop_scope scope, const char *name);

/* Whole frames, prefix included. Return the bytes written, or 0 when buf is too small. The
 * AGENT-HELLO must itself fit max_frame_size (capabilities NULL means ""); the DISCONNECT message
 * is truncated so that the frame fits SPOP_MIN_FRAME_SIZE, which any peer accepts. */
size_t spop_encode_agent_hello(uint8_t *buf, size_t cap, uint32_t max_frame_size,
                               const char *capabilities);
size_t spop_encode_agent_disconnect(uint8_t *buf, size_t cap, uint32_t status, const char *message);

/* Value constructors, for building ACK actions. */
static inline struct spop_value spop_v_str(const char *s, size_t len)
{
    struct spop_value v = {.type = SPOP_DATA_STR};
    v.u.s.ptr = (const uint8_t *)s;
    v.u.s.len = len;
    return v;
}

static inline struct spop_value spop_v_int(int64_t i)
{
    struct spop_value v = {.type = SPOP_DATA_INT32};
    v.u.i = i;
    return v;
}

#endif
