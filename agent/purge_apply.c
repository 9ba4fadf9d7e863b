/* Purge selectors applied to the cache: see purge_apply.h. */
#include "purge_apply.h"

#include <stdio.h>
#include <string.h>

_Static_assert(PURGE_KEY_LEN == CACHE_KEY_LEN, "a token purge carries the cache key");
_Static_assert(PURGE_ID_LEN == CACHE_TOKEN_ID_LEN, "token_hash is the cache's token id");

/* The index a value selector uses; CACHE_BY_KINDS for the others. */
static enum cache_by index_of(enum purge_kind k)
{
    switch (k) {
    case PURGE_SUB:
        return CACHE_BY_SUB;
    case PURGE_CLIENT_ID:
        return CACHE_BY_CLIENT_ID;
    case PURGE_SID:
        return CACHE_BY_SID;
    case PURGE_TOKEN_HASH:
        return CACHE_BY_TOKEN_ID;
    case PURGE_TOKEN:
    case PURGE_ALL:
        break;
    }
    return CACHE_BY_KINDS;
}

size_t purge_apply(struct cache *c, const struct purge_selector *sel)
{
    struct cache_key k;
    switch (sel->kind) {
    case PURGE_TOKEN:
        memcpy(k.b, sel->key, CACHE_KEY_LEN);
        return cache_purge_key(c, &k);
    case PURGE_TOKEN_HASH:
        return cache_purge_by(c, CACHE_BY_TOKEN_ID, sel->id, sizeof(sel->id));
    case PURGE_ALL:
        return cache_purge_all(c);
    case PURGE_SUB:
    case PURGE_CLIENT_ID:
    case PURGE_SID:
        break;
    }
    return cache_purge_by(c, index_of(sel->kind), sel->value, strlen(sel->value));
}

struct list_ctx {
    purge_entry_fn fn;
    void *ctx;
};

static void hex_id(const uint8_t *id, char out[2 * CACHE_TOKEN_ID_LEN + 1])
{
    for (size_t i = 0; i < CACHE_TOKEN_ID_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static void one(void *ud, const struct cache_entry_view *v)
{
    struct list_ctx *l = ud;
    char id[2 * CACHE_TOKEN_ID_LEN + 1] = "unknown";
    if (v->token_id)
        hex_id(v->token_id, id);
    const struct token_claims *cl = &v->ti->claims;
    struct purge_entry e = {
        .token_hash = id,
        .expires_at = v->expires_ms / 1000,
        .outcome = v->ti->outcome == TOKEN_ACTIVE ? "active" : "inactive",
        .sub = cl->sub,
        .client_id = cl->client_id,
        .sid = cl->sid,
        .scope = cl->scope,
    };
    l->fn(l->ctx, &e);
}

size_t purge_list(struct cache *c, const struct purge_selector *sel, size_t max, purge_entry_fn fn,
                  void *ctx)
{
    struct list_ctx l = {fn, ctx};
    enum cache_by by = index_of(sel->kind);
    if (by == CACHE_BY_KINDS)
        return 0;
    if (by == CACHE_BY_TOKEN_ID)
        return cache_list_by(c, by, sel->id, sizeof(sel->id), max, one, &l);
    return cache_list_by(c, by, sel->value, strlen(sel->value), max, one, &l);
}
