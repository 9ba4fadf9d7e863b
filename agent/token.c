/* token_info lifetime: shared, immutable after construction, freed by the last unref. */
#include "token.h"

#include <stdlib.h>
#include <string.h>

struct token_info *token_info_new(enum token_outcome outcome, const char *reason)
{
    struct token_info *ti = calloc(1, sizeof(*ti));
    if (!ti)
        return NULL;
    ti->refcnt = 1;
    ti->outcome = outcome;
    ti->max_age = -1;
    ti->reason = reason;
    return ti;
}

struct token_info *token_ref(struct token_info *ti)
{
    if (ti)
        __atomic_add_fetch(&ti->refcnt, 1, __ATOMIC_RELAXED);
    return ti;
}

void token_claims_clear(struct token_claims *c)
{
    free(c->sub);
    free(c->client_id);
    free(c->scope);
    free(c->sid);
    memset(c, 0, sizeof(*c));
}

void token_unref(struct token_info *ti)
{
    if (!ti || __atomic_sub_fetch(&ti->refcnt, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    token_claims_clear(&ti->claims);
    json_decref(ti->introspection);
    for (size_t i = 0; i < ti->nalts; i++) {
        free(ti->alts[i].aud);
        free(ti->alts[i].jwt);
    }
    free(ti->alts);
    free(ti->aud);
    free(ti->jwt);
    free(ti);
}

static int dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (!s)
        return 0;
    *out = strdup(s);
    return *out ? 0 : -1;
}

/* What a minted entry adds (its audience and per-audience JWTs): a copy without them would
 * forward the default audience's JWT to a route that asked for another one. */
static int copy_minted(const struct token_info *ti, struct token_info *c)
{
    c->kind = ti->kind;
    c->minted = ti->minted;
    if (dup_opt(ti->aud, &c->aud) < 0)
        return -1;
    if (!ti->nalts)
        return 0;
    if (!(c->alts = calloc(ti->nalts, sizeof(*c->alts))))
        return -1;
    for (size_t i = 0; i < ti->nalts; i++) {
        struct token_alt_jwt *a = &c->alts[c->nalts++];
        a->jwt_len = ti->alts[i].jwt_len;
        if (dup_opt(ti->alts[i].aud, &a->aud) < 0 || dup_opt(ti->alts[i].jwt, &a->jwt) < 0)
            return -1;
    }
    return 0;
}

struct token_info *token_info_stale_copy(const struct token_info *ti)
{
    if (!ti || ti->outcome != TOKEN_ACTIVE)
        return NULL;
    struct token_info *c = token_info_new(TOKEN_ACTIVE, ti->reason);
    if (!c)
        return NULL;
    c->stale = true;
    c->claims.exp = ti->claims.exp;
    c->claims.has_exp = ti->claims.has_exp;
    c->jwt_len = ti->jwt_len;
    c->jwt = ti->jwt ? malloc(ti->jwt_len + 1) : NULL;
    if ((ti->jwt && !c->jwt) || dup_opt(ti->claims.sub, &c->claims.sub) < 0 ||
        dup_opt(ti->claims.client_id, &c->claims.client_id) < 0 ||
        dup_opt(ti->claims.scope, &c->claims.scope) < 0 ||
        dup_opt(ti->claims.sid, &c->claims.sid) < 0 || copy_minted(ti, c) < 0) {
        token_unref(c);
        return NULL;
    }
    if (c->jwt)
        memcpy(c->jwt, ti->jwt, ti->jwt_len + 1);
    return c;
}

static size_t opt_len(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* What a jansson tree takes on the heap, roughly: a fixed overhead per value (struct, hash slot,
 * allocator header) plus its keys' and strings' bytes. Good enough for the cache's byte budget,
 * and a walk only: serializing the tree to measure it cost ~25k instructions per introspection. */
#define JSON_NODE_COST 64

static size_t json_heap_estimate(const json_t *v)
{
    size_t n = JSON_NODE_COST, i;
    const char *k;
    json_t *e;
    if (json_is_string(v))
        return n + json_string_length(v) + 1;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, e)
        {
            n += strlen(k) + 1 + json_heap_estimate(e);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, e)
        {
            n += json_heap_estimate(e);
        }
    }
    return n;
}

void token_info_set_introspection(struct token_info *ti, json_t *obj)
{
    json_decref(ti->introspection);
    ti->introspection = obj;
    ti->introspection_size = obj ? json_heap_estimate(obj) : 0;
}

size_t token_info_size(const struct token_info *ti)
{
    size_t alts = ti->nalts * sizeof(*ti->alts);
    for (size_t i = 0; i < ti->nalts; i++)
        alts += opt_len(ti->alts[i].aud) + ti->alts[i].jwt_len + 1;
    return sizeof(*ti) + (ti->jwt ? ti->jwt_len + 1 : 0) + opt_len(ti->claims.sub) +
           opt_len(ti->claims.client_id) + opt_len(ti->claims.scope) + opt_len(ti->claims.sid) +
           ti->introspection_size + opt_len(ti->aud) + alts;
}

const char *token_jwt_for(const struct token_info *ti, const char *audience, size_t audience_len,
                          size_t *jwt_len)
{
    *jwt_len = ti->jwt_len;
    if (!audience || !audience_len || !ti->minted ||
        (ti->aud && strlen(ti->aud) == audience_len &&
         memcmp(ti->aud, audience, audience_len) == 0))
        return ti->jwt;
    for (size_t i = 0; i < ti->nalts; i++) {
        const struct token_alt_jwt *a = &ti->alts[i];
        if (strlen(a->aud) == audience_len && memcmp(a->aud, audience, audience_len) == 0) {
            *jwt_len = a->jwt_len;
            return a->jwt;
        }
    }
    *jwt_len = 0;
    return NULL;
}

int token_outcome_status(enum token_outcome o)
{
    switch (o) {
    case TOKEN_ACTIVE:
        return 200;
    case TOKEN_INACTIVE:
        return 401;
    case TOKEN_IDP_ERROR:
        return 502;
    case TOKEN_IDP_UNAVAIL:
        return 503;
    case TOKEN_IDP_UNKNOWN:
        return 500;
    }
    return 500;
}
