/* The selector of POST /admin/purge: a JSON object with exactly one of "token", "token_hash",
 * "sub", "client_id", "sid" or "all":true. Pure (no I/O): a raw token is turned into its cache key
 * through a callback at once and never kept. Used by the admin HTTP handler and the fleet
 * broadcast, which apply the selector to the cache. */
#ifndef PTA_PURGE_H
#define PTA_PURGE_H

#include <stddef.h>
#include <stdint.h>

#define PURGE_MAX_BODY 8192  /* bytes of JSON body accepted */
#define PURGE_MAX_VALUE 1024 /* bytes of a sub, client_id or sid */
#define PURGE_MAX_TOKEN 4096 /* like BEARER_MAX_TOKEN: a longer token can never be cached */
#define PURGE_KEY_LEN 32     /* the cache key (HMAC-SHA-256) */
#define PURGE_ID_LEN 6       /* the 12 hex digits of the access log's token id, as bytes */

enum purge_kind {
    PURGE_TOKEN,      /* key: the cache key of the token */
    PURGE_TOKEN_HASH, /* id: the first 6 bytes of SHA-256(token), as log_token_id() prints */
    PURGE_SUB,        /* value */
    PURGE_CLIENT_ID,  /* value */
    PURGE_SID,        /* value */
    PURGE_ALL,
};

struct purge_selector {
    enum purge_kind kind;
    uint8_t key[PURGE_KEY_LEN];
    uint8_t id[PURGE_ID_LEN];
    char *value; /* heap, NUL-terminated; only for SUB, CLIENT_ID, SID */
};

/* Derives the cache key of a raw token (the cache's own HMAC). */
typedef void (*purge_key_fn)(void *ud, const char *token, size_t len, uint8_t out[PURGE_KEY_LEN]);

/* Parses body into *sel. Returns 0, or -1 with *why (static text for the 400 answer; it never
 * echoes the body) set. On failure *sel holds nothing to free. The copy of a raw token that the
 * JSON parser made is wiped before returning; the caller wipes its own body buffer. key_of may be
 * NULL where raw tokens are refused (listings). */
int purge_parse(const char *body, size_t len, purge_key_fn key_of, void *ud,
                struct purge_selector *sel, const char **why);
void purge_selector_clear(struct purge_selector *sel);

/* One cache entry as GET /admin/cache shows it: never the token or the JWT. */
struct purge_entry {
    const char *token_hash;                    /* 12 hex digits, as the access log prints */
    int64_t expires_at;                        /* seconds since the epoch */
    const char *outcome;                       /* "active" or "inactive" */
    const char *sub, *client_id, *sid, *scope; /* NULL when absent */
};

typedef void (*purge_entry_fn)(void *ctx, const struct purge_entry *e);

/* "token", "token_hash", "sub", "client_id", "sid", "all": for logs and metric labels. */
const char *purge_kind_name(enum purge_kind kind);

#endif
