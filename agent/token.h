/* The result of resolving one access token: the JWT the API receives and the claims the agent
 * decides with. Immutable once built and reference-counted, so the cache, every waiting request
 * and (later) several worker threads can share one without copying. Built by idp_response.c. */
#ifndef PTA_TOKEN_H
#define PTA_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* What the identity server said about the token. The HTTP status the client gets follows. */
enum token_outcome {
    TOKEN_ACTIVE,      /* 200: forward the JWT */
    TOKEN_INACTIVE,    /* 401 invalid_token: unknown, expired or revoked */
    TOKEN_IDP_ERROR,   /* 502 server_error: IdP 4xx/5xx, unreachable, timeout, unusable answer */
    TOKEN_IDP_UNAVAIL, /* 503 server_error: IdP said 503 */
    TOKEN_IDP_UNKNOWN, /* 500 server_error: any other IdP status */
};

struct token_claims {
    int64_t exp; /* seconds since the epoch; valid when has_exp */
    bool has_exp;
    char *sub;       /* NUL-terminated or NULL */
    char *client_id; /* NUL-terminated or NULL */
    char *scope;     /* space-separated, single spaces, no leading/trailing space; or NULL */
    char *sid;       /* OpenID session id (purge by session); NUL-terminated or NULL */
};

/* What the identity server handed back for an active token; the finishing stage (finish.h)
 * decides from it whether the JWT is forwarded or a new one is minted. */
enum idp_kind {
    IDP_KIND_NONE,          /* not active, or built before classification knew */
    IDP_KIND_JWT,           /* an access-token JWT to forward (application/jwt, "jwt", ...) */
    IDP_KIND_CLAIMS,        /* plain RFC 7662 JSON: claims only, no JWT */
    IDP_KIND_INTROSPECTION, /* RFC 9701 signed introspection answer */
};

/* A minted JWT for one of the other configured audiences (routes choose with the SPOE audience
 * argument). */
struct token_alt_jwt {
    char *aud; /* NUL-terminated */
    char *jwt; /* NUL-terminated */
    size_t jwt_len;
};

struct token_info {
    int refcnt; /* atomic: see token_ref/token_unref */
    enum token_outcome outcome;
    char *jwt; /* NUL-terminated; only for TOKEN_ACTIVE */
    size_t jwt_len;
    struct token_claims claims;
    /* Caching hints from the IdP's HTTP answer. */
    int64_t max_age;    /* Cache-Control max-age in seconds, or -1 when absent */
    bool no_store;      /* Cache-Control: no-store */
    const char *reason; /* static text for logs, e.g. "IdP answered 401"; never token data */
    /* Failure answers: > 0 lets the client retry after that many seconds (an open circuit
     * breaker); HAProxy sends it as Retry-After with a 503. */
    uint32_t retry_after_s;
    /* Served from a cache entry past its TTL because the IdP failed (stale-if-error). Never
     * stored again: the cache does not extend an entry's life. */
    bool stale;
    /* Decoded from the shared cache (L2) rather than introspected by this agent: the request
     * that led the flight reports cache=l2. */
    bool from_l2;
    enum idp_kind kind; /* for TOKEN_ACTIVE: what the IdP gave */
    /* The introspected claims (the RFC 7662 JSON object, the JWT payload or RFC 9701's
     * token_introspection), owned, for minting; NULL when not kept. Never modified once the entry
     * is shared: jansson reads are safe from several threads, writes are not. */
    json_t *introspection;
    size_t introspection_size;  /* estimated heap bytes of introspection, for token_info_size */
    bool minted;                /* jwt was signed by the agent (finish.c), not the IdP's */
    char *aud;                  /* minted entries only: the aud of jwt; owned */
    struct token_alt_jwt *alts; /* minted entries only: one JWT per extra audience; owned */
    size_t nalts;
};

/* The JWT to forward for a request asking for audience (a byte range; NULL or empty: the default
 * jwt). Only minted entries have per-audience JWTs: for the IdP's own JWT the audience is not
 * ours to choose and jwt is returned. NULL when a minted entry has no JWT for that audience. */
const char *token_jwt_for(const struct token_info *ti, const char *audience, size_t audience_len,
                          size_t *jwt_len);

/* Allocates an entry with refcnt 1 and the given outcome; jwt and claims empty. NULL on ENOMEM. */
struct token_info *token_info_new(enum token_outcome outcome, const char *reason);
struct token_info *token_ref(struct token_info *ti);
void token_unref(struct token_info *ti); /* frees at zero; NULL is a no-op */
void token_claims_clear(struct token_claims *c);

/* A copy of an active entry marked stale (stale-if-error): the JWT and the claims duplicated, the
 * caching hints dropped. NULL on ENOMEM or when ti is not active. */
struct token_info *token_info_stale_copy(const struct token_info *ti);
/* Takes over obj (a JSON object) as ti->introspection and records its estimated size. NULL
 * drops the current one. */
void token_info_set_introspection(struct token_info *ti, json_t *obj);

/* Bytes the entry holds on the heap, for the cache's byte budget. */
size_t token_info_size(const struct token_info *ti);

/* HTTP status a request gets for this outcome (200/401/502/503/500). */
int token_outcome_status(enum token_outcome o);

#endif
