/* Purge selector parsing: see purge.h.
 *
 * token_hash. The access log identifies a token by the first 12 hex digits of SHA-256(token)
 * (log_token_id()), while the cache is keyed by an HMAC under a per-process (or fleet) key, which
 * an operator cannot compute. So each cache entry also keeps those 6 bytes, and a token_hash purge
 * drops every entry whose id matches. 48 bits can collide (at a million entries, a given id matches
 * another entry with probability ~4e-9); a collision only purges one extra entry, which costs an
 * introspection, never an acceptance. */
#include "purge.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "hex.h"

static const char *const NAMES[] = {
    [PURGE_TOKEN] = "token", [PURGE_TOKEN_HASH] = "token_hash",
    [PURGE_SUB] = "sub",     [PURGE_CLIENT_ID] = "client_id",
    [PURGE_SID] = "sid",     [PURGE_ALL] = "all",
};

const char *purge_kind_name(enum purge_kind kind)
{
    if ((size_t)kind < sizeof(NAMES) / sizeof(NAMES[0]))
        return NAMES[kind];
    return "unknown";
}

static int kind_of(const char *name, enum purge_kind *kind)
{
    for (size_t i = 0; i < sizeof(NAMES) / sizeof(NAMES[0]); i++)
        if (strcmp(name, NAMES[i]) == 0) {
            *kind = (enum purge_kind)i;
            return 0;
        }
    return -1;
}

static const char *parse_id(json_t *v, uint8_t id[PURGE_ID_LEN])
{
    if (!json_is_string(v) || json_string_length(v) != 2 * PURGE_ID_LEN)
        return "token_hash must be the 12 hex digits the access log prints";
    const char *s = json_string_value(v);
    for (size_t i = 0; i < PURGE_ID_LEN; i++) {
        int hi = hex_digit((unsigned char)s[2 * i]), lo = hex_digit((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return "token_hash must be the 12 hex digits the access log prints";
        id[i] = (uint8_t)(hi << 4 | lo);
    }
    return NULL;
}

/* The raw token is hashed, then the parser's copy is overwritten: the JSON tree is freed by the
 * caller with the rest and must not leave the token in freed heap. */
static const char *parse_token(json_t *v, purge_key_fn key_of, void *ud, uint8_t key[32])
{
    if (!json_is_string(v))
        return "token must be a string";
    size_t len = json_string_length(v);
    char *s = (char *)json_string_value(v); /* jansson's own heap buffer */
    const char *why = NULL;
    if (len == 0 || len > PURGE_MAX_TOKEN)
        why = "token must be 1 to 4096 bytes";
    else if (!key_of)
        why = "token is not accepted here";
    else
        key_of(ud, s, len, key);
    OPENSSL_cleanse(s, len);
    return why;
}

static const char *parse_value(json_t *v, char **out)
{
    if (!json_is_string(v))
        return "sub, client_id and sid must be strings";
    size_t len = json_string_length(v);
    if (len == 0 || len > PURGE_MAX_VALUE || strlen(json_string_value(v)) != len)
        return "sub, client_id and sid must be 1 to 1024 bytes without NUL";
    *out = strdup(json_string_value(v));
    return *out ? NULL : "out of memory";
}

static const char *parse_member(const char *name, json_t *v, purge_key_fn key_of, void *ud,
                                struct purge_selector *sel)
{
    if (kind_of(name, &sel->kind) != 0)
        return "unknown selector: use token, token_hash, sub, client_id, sid or all";
    switch (sel->kind) {
    case PURGE_TOKEN:
        return parse_token(v, key_of, ud, sel->key);
    case PURGE_TOKEN_HASH:
        return parse_id(v, sel->id);
    case PURGE_ALL:
        return json_is_true(v) ? NULL : "all must be true";
    case PURGE_SUB:
    case PURGE_CLIENT_ID:
    case PURGE_SID:
        break;
    }
    return parse_value(v, &sel->value);
}

/* A token in a body that is otherwise wrong is wiped too. */
static void wipe_token_member(json_t *root)
{
    json_t *v = json_object_get(root, "token");
    if (json_is_string(v))
        OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
}

int purge_parse(const char *body, size_t len, purge_key_fn key_of, void *ud,
                struct purge_selector *sel, const char **why)
{
    const char *dummy, *err = NULL;
    if (!why)
        why = &dummy;
    memset(sel, 0, sizeof(*sel));
    if (len == 0 || len > PURGE_MAX_BODY) {
        *why = len ? "body too large" : "body is empty: send a JSON object";
        return -1;
    }
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(root)) {
        err = "body is not a JSON object";
    } else if (json_object_size(root) != 1) {
        err = "body must hold exactly one selector";
    } else {
        const char *name = json_object_iter_key(json_object_iter(root));
        err = parse_member(name, json_object_iter_value(json_object_iter(root)), key_of, ud, sel);
    }
    if (root)
        wipe_token_member(root);
    json_decref(root);
    if (err) {
        purge_selector_clear(sel);
        *why = err;
        return -1;
    }
    return 0;
}

void purge_selector_clear(struct purge_selector *sel)
{
    free(sel->value);
    OPENSSL_cleanse(sel, sizeof(*sel));
}
