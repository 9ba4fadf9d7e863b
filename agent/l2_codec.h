/* The shared (L2) cache's wire format: fleet key -> HKDF sub-keys, the Redis key of a token, the
 * encrypted and authenticated MessagePack value of an entry, and the encrypted purge message sent
 * over pub/sub. Pure (no sockets; the clock is a parameter). Used by the L2 stage and revocation.
 */
#ifndef PTA_L2_CODEC_H
#define PTA_L2_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "token.h"

#define L2_KEY_LEN 32         /* entry key = HMAC-SHA-256(token): same size as struct cache_key */
#define L2_FLEET_KEY_MIN 32   /* bytes; shorter fleet keys are refused */
#define L2_FLEET_KEY_MAX 1024 /* bytes */
#define L2_NONCE_LEN 12
#define L2_TAG_LEN 16
#define L2_FORMAT 1 /* first byte of every blob: lets a later format (or a key id) coexist */
#define L2_VALUE_VERSION 1
#define L2_BLOB_MAX (256 * 1024) /* any larger value or message is refused unread */
#define L2_FIELD_MAX (64 * 1024) /* each string (JWT, sub, client_id, scope, sid) */
#define L2_PURGE_VALUE_MAX 1024
#define L2_PURGE_ID_LEN 16

/* Why a value or message was not used. Every one but L2_OK is a miss for the caller (counted). */
enum l2_status {
    L2_OK,
    L2_E_SIZE,    /* too short to hold nonce and tag, or larger than L2_BLOB_MAX */
    L2_E_AUTH,    /* wrong format byte, wrong key, wrong entry key (AAD) or tampered bytes */
    L2_E_FORMAT,  /* authentic but not the expected MessagePack shape */
    L2_E_VERSION, /* authentic, but a version this agent does not know */
    L2_E_FIELD,   /* a field out of range: unknown outcome, oversize string, missing JWT... */
    L2_E_EXPIRED, /* the entry's absolute expiry (or the message's age limit) has passed */
    L2_E_REPLAY,  /* a purge message id seen before */
    L2_E_NOMEM,
    L2_E_CRYPTO, /* OpenSSL failed (not the data's fault) */
    L2_STATUS_COUNT
};
const char *l2_status_name(enum l2_status s); /* "ok", "size", "auth", ... for logs and metrics */

/* Keys derived from the fleet key with HKDF-SHA-256 (distinct labels, so one never serves
 * another's purpose). Opaque: holds the derived keys and the fetched OpenSSL algorithms. */
struct l2_codec;

/* NULL on failure (fleet key shorter than L2_FLEET_KEY_MIN or longer than L2_FLEET_KEY_MAX,
 * OpenSSL failure). The fleet key is not retained. */
struct l2_codec *l2_codec_new(const uint8_t *fleet_key, size_t len);
void l2_codec_free(struct l2_codec *c); /* cleanses the keys; NULL is a no-op */

/* The HMAC key of entry keys: hand it to cache_new() so that L1 and L2 compute the same key. */
const uint8_t *l2_codec_entry_hmac_key(const struct l2_codec *c, size_t *len);

/* The same key without keeping a codec: for the L1 cache, created before the worker. Returns 0,
 * or -1 (fleet key of a refused length, OpenSSL failure). */
int l2_entry_hmac_key_of(const uint8_t *fleet_key, size_t len, uint8_t out[L2_KEY_LEN]);

/* HMAC-SHA-256 of the token under the entry sub-key. Returns 0 or -1 (OpenSSL failure). */
int l2_entry_key(const struct l2_codec *c, const char *token, size_t len, uint8_t out[L2_KEY_LEN]);

/* prefix + lower-case hex of the entry key, NUL-terminated. Returns the length, or -1 when cap is
 * too small (strlen(prefix) + 65 bytes are needed). */
int l2_redis_key(const char *prefix, const uint8_t ek[L2_KEY_LEN], char *out, size_t cap);

/* Encodes an ACTIVE (with JWT) or INACTIVE entry valid until expires_ms (absolute, ms since the
 * epoch). Other outcomes are refused (IdP errors are never shared). *out is malloc'ed (caller
 * frees). Returns L2_OK, L2_E_FIELD (not shareable / oversize), L2_E_NOMEM or L2_E_CRYPTO. */
enum l2_status l2_value_encode(const struct l2_codec *c, const uint8_t ek[L2_KEY_LEN],
                               const struct token_info *ti, int64_t expires_ms, uint8_t **out,
                               size_t *outlen);

/* Authenticates (ek is the associated data: a value copied under another key fails), decrypts and
 * parses blob. On L2_OK *ti is a new token_info (refcnt 1, reason "shared cache", max_age = the
 * whole seconds left, so L1 never outlives the entry) and *expires_ms its absolute expiry. On any
 * other status *ti is NULL. Never reads outside blob, whatever it holds. */
enum l2_status l2_value_decode(const struct l2_codec *c, const uint8_t ek[L2_KEY_LEN],
                               const uint8_t *blob, size_t len, int64_t now_ms,
                               struct token_info **ti, int64_t *expires_ms);

/* ---- purge messages (pub/sub) ---- */

enum l2_purge_kind {
    L2_PURGE_ALL,
    L2_PURGE_ENTRY_KEY, /* value: the 32-byte entry key (a purge by raw token, hashed at once) */
    L2_PURGE_TOKEN_ID,  /* value: the 12-hex SHA-256 prefix the logs print */
    L2_PURGE_SUB,
    L2_PURGE_CLIENT_ID,
    L2_PURGE_SID,
    L2_PURGE_KIND_COUNT
};

struct l2_purge_msg {
    enum l2_purge_kind kind;
    uint8_t value[L2_PURGE_VALUE_MAX]; /* not NUL-terminated; empty for L2_PURGE_ALL */
    size_t value_len;
    int64_t ts_ms;               /* when it was sent */
    uint8_t id[L2_PURGE_ID_LEN]; /* random per message: drops replays */
    uint8_t origin[8];           /* random per agent process: a sender can skip its own */
};

/* Encodes m, bound to channel (the associated data includes it). id is drawn at random here and
 * written back into m. *out is malloc'ed. */
enum l2_status l2_purge_encode(const struct l2_codec *c, const char *channel,
                               struct l2_purge_msg *m, uint8_t **out, size_t *outlen);

/* Remembers the ids of recent purge messages, so that a replayed one is dropped. Fixed size;
 * a message older than max_age_ms is refused by age instead, so the ring only needs to cover
 * max_age_ms worth of purges. Caller-allocated; zero it (or l2_replay_init) to reset. */
#define L2_REPLAY_SLOTS 512
struct l2_replay {
    uint8_t ids[L2_REPLAY_SLOTS][L2_PURGE_ID_LEN];
    size_t next, used;
};
void l2_replay_init(struct l2_replay *r);

/* Authenticates, decrypts and parses a purge message: refused when |now - ts| > max_age_ms
 * (L2_E_EXPIRED) or when rp has seen its id (L2_E_REPLAY; rp may be NULL). An accepted id is
 * added to rp. */
enum l2_status l2_purge_decode(const struct l2_codec *c, const char *channel, const uint8_t *blob,
                               size_t len, int64_t now_ms, int64_t max_age_ms, struct l2_replay *rp,
                               struct l2_purge_msg *m);

#endif
