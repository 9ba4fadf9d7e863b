/* The resolver chain and its flights. A flight remembers where it is (at) so that a stage can
 * answer or pass it on later, from the loop; the walk back up runs result() of every stage above
 * the one that answered, then the flight (and its copy of the token) is wiped and freed. */
#include "pipeline.h"

#include <string.h>

#include <openssl/crypto.h>

#include "alloc.h"

struct stage {
    const struct stage_ops *ops;
    void *self;
};

struct pipeline {
    struct stage *stages;
    size_t n, cap;
};

struct flight {
    struct pipeline *p;
    size_t at;          /* the stage holding the flight; n when it fell off the end */
    size_t answered_by; /* SIZE_MAX until resolved */
    struct cache_key key;
    size_t len;
    char token[]; /* NUL-terminated copy */
};

struct pipeline *pipeline_new(void)
{
    return pta_calloc(1, sizeof(struct pipeline));
}

int pipeline_add(struct pipeline *p, const struct stage_ops *ops, void *self)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 4;
        struct stage *s = pta_realloc(p->stages, cap * sizeof(*s));
        if (!s) {
            if (ops->free)
                ops->free(self);
            return -1;
        }
        p->stages = s;
        p->cap = cap;
    }
    p->stages[p->n].ops = ops;
    p->stages[p->n].self = self;
    p->n++;
    return 0;
}

void pipeline_free(struct pipeline *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        if (p->stages[i].ops->free)
            p->stages[i].ops->free(p->stages[i].self);
    free(p->stages);
    free(p);
}

size_t pipeline_length(const struct pipeline *p)
{
    return p->n;
}

const char *pipeline_stage_name(const struct pipeline *p, size_t i)
{
    return i < p->n ? p->stages[i].ops->name : NULL;
}

/* Calls lookup() of the stage at f->at, skipping stages without one. */
static void flight_enter(struct flight *f)
{
    struct pipeline *p = f->p;
    while (f->at < p->n && !p->stages[f->at].ops->lookup)
        f->at++;
    if (f->at == p->n) { /* nobody answered: fail closed */
        flight_resolve(f, token_info_new(TOKEN_IDP_ERROR, "no resolver stage answered"));
        return;
    }
    p->stages[f->at].ops->lookup(p->stages[f->at].self, f);
}

int pipeline_start(struct pipeline *p, const struct cache_key *k, const char *token, size_t len)
{
    struct flight *f = pta_malloc(sizeof(*f) + len + 1);
    if (!f)
        return -1;
    f->p = p;
    f->at = 0;
    f->answered_by = SIZE_MAX;
    f->key = *k;
    f->len = len;
    memcpy(f->token, token, len);
    f->token[len] = '\0';
    flight_enter(f);
    return 0;
}

void flight_next(struct flight *f)
{
    f->at++;
    flight_enter(f);
}

void flight_resolve(struct flight *f, struct token_info *ti)
{
    struct pipeline *p = f->p;
    f->answered_by = f->at;
    for (size_t i = f->at; i-- > 0;) {
        const struct stage *s = &p->stages[i];
        if (s->ops->result)
            ti = s->ops->result(s->self, f, ti);
    }
    token_unref(ti);
    OPENSSL_cleanse(f->token, f->len);
    free(f);
}

const struct cache_key *flight_key(const struct flight *f)
{
    return &f->key;
}

const char *flight_token(const struct flight *f, size_t *len)
{
    *len = f->len;
    return f->token;
}

const char *flight_source(const struct flight *f)
{
    if (f->answered_by == SIZE_MAX)
        return NULL;
    return f->answered_by < f->p->n ? f->p->stages[f->answered_by].ops->name : "end of chain";
}

void *flight_stage_self(const struct flight *f)
{
    return f->at < f->p->n ? f->p->stages[f->at].self : NULL;
}
