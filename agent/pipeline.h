/* The resolver pipeline: what a cache miss goes through. An ordered chain of stages (L1 store,
 * later a shared L2, finishing, introspection...), built at start-up; each stage is its own module
 * behind struct stage_ops. A flight walks down the chain until a stage answers, then the answer
 * walks back up through every stage above that one. Single flight stays in front of the chain
 * (the cache's flights): one pipeline flight per token however many requests wait. Used by
 * agent.c; stages are written against this header only. See /work/notes/SEAMS.md. */
#ifndef PTA_PIPELINE_H
#define PTA_PIPELINE_H

#include <stddef.h>

#include "cache.h"
#include "token.h"

struct flight;
struct pipeline;

struct stage_ops {
    const char *name; /* for logs: "l1", "finish", "introspect" */
    /* The flight reached this stage going down: answer it (flight_resolve(), now or later from the
     * loop) or pass it on (flight_next()). Exactly one of the two, once. Optional: absent means
     * "pass it on". */
    void (*lookup)(void *self, struct flight *f);
    /* The answer going back up, from a stage below this one (or the end of the chain). Takes the
     * reference to ti (may be NULL: out of memory) and returns the one passed further up, the
     * same or a replacement (finishing mints here, L2 writes here, L1 stores here). Optional:
     * absent means "pass it through". Must not call flight_resolve()/flight_next(). */
    struct token_info *(*result)(void *self, struct flight *f, struct token_info *ti);
    /* Frees self; called by pipeline_free(). Optional. */
    void (*free)(void *self);
};

/* An empty chain. NULL on ENOMEM. */
struct pipeline *pipeline_new(void);
/* Appends a stage below the ones already added. self is owned by the pipeline from now on, even on
 * failure (-1: out of memory; ops->free(self) has then been called). */
int pipeline_add(struct pipeline *p, const struct stage_ops *ops, void *self);
/* Frees the stages (ops->free, top first). Flights still in progress must have ended: free the
 * things stages wait on (e.g. the introspector, which resolves what it holds) before this. */
void pipeline_free(struct pipeline *p);
size_t pipeline_length(const struct pipeline *p);
const char *pipeline_stage_name(const struct pipeline *p, size_t i);

/* Starts a flight for token (copied; wiped when the flight ends) under key k, at the top stage.
 * Returns 0, or -1 when out of memory (nothing started, nothing called). Stages may answer before
 * this returns. */
int pipeline_start(struct pipeline *p, const struct cache_key *k, const char *token, size_t len);

/* For stages. */
void flight_next(struct flight *f);                           /* on to the stage below */
void flight_resolve(struct flight *f, struct token_info *ti); /* takes the reference to ti */
const struct cache_key *flight_key(const struct flight *f);
const char *flight_token(const struct flight *f, size_t *len);
/* The self of the stage holding the flight (for a stage's asynchronous callbacks). */
void *flight_stage_self(const struct flight *f);
/* Which stage produced the answer going up (its name), or NULL before the flight is resolved. */
const char *flight_source(const struct flight *f);

#endif
