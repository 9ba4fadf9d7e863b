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
        dup_opt(ti->claims.scope, &c->claims.scope) < 0) {
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

size_t token_info_size(const struct token_info *ti)
{
    return sizeof(*ti) + (ti->jwt ? ti->jwt_len + 1 : 0) + opt_len(ti->claims.sub) +
           opt_len(ti->claims.client_id) + opt_len(ti->claims.scope) + opt_len(ti->claims.sid);
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
