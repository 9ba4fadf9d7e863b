/* Revocation endpoints: see revoke.h.
 *
 * Security. /admin/purge and /admin/cache are admin routes: the HTTP server only shows them with
 * an admin token configured (compared in constant time) or on the admin unix socket. The raw token
 * of a {"token": ...} purge is hashed by the parser and wiped there; the request body, which still
 * holds it, is wiped here before the answer goes out. Logs and metrics carry the selector kind
 * and the count, never a token, sub or sid. /backchannel-logout is public by design (the IdP
 * calls it): the logout token's signature, issuer, audience, age and jti are the credential, and
 * a refused one purges nothing.
 *
 * Back-channel logout purges by sid AND by sub when the token carries both: the cache cannot tell
 * whether an entry whose introspection answer had no sid belongs to the ended session, and purging
 * one user's other tokens only costs an introspection each, while keeping a revoked one would
 * accept it until its TTL. */
#include "revoke.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "jwks_fetch.h"
#include "log.h"

#define NO_STORE "no-store"

struct revoke {
    struct revoke_ops ops;
    void *ud;
    struct logout_validator *validator; /* NULL: back-channel logout off */
    struct jwks *keys;                  /* NULL until the first fetch */
    struct jwks_fetcher *fetcher;
    struct revoke_stats st;
    time_t refusal_logged; /* the endpoint is public: refusals are logged once a second at most */
    uint64_t refusals_unlogged;
};

/* ---- answers ---- */

static void answer_json(struct http_response *resp, unsigned status, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text)
        http_response_json(resp, status, text);
    else
        http_response_error(resp, 500, "out of memory");
    free(text);
    resp->cache_control = NO_STORE;
}

/* RFC 6749 section 5.2 shape, as Back-Channel Logout 1.0 section 2.8 asks for its 400. */
static void invalid_request(struct http_response *resp, const char *why)
{
    answer_json(resp, 400,
                json_pack("{ss ss}", "error", "invalid_request", "error_description", why));
}

/* ---- purge ---- */

static size_t apply(struct revoke *rv, const struct purge_selector *sel, const char *origin)
{
    size_t n = rv->ops.purge(rv->ud, sel);
    rv->st.purges[sel->kind]++;
    rv->st.purged_entries += n;
    log_info("purge (%s): by %s, %zu cache entries dropped", origin, purge_kind_name(sel->kind), n);
    return n;
}

static void token_key(void *ud, const char *token, size_t len, uint8_t out[PURGE_KEY_LEN])
{
    struct revoke *rv = ud;
    rv->ops.token_key(rv->ud, token, len, out);
}

void revoke_serve_purge(void *ud, const struct http_request *req, struct http_response *resp)
{
    struct revoke *rv = ud;
    struct purge_selector sel;
    const char *why = NULL;
    int r = purge_parse(req->body ? req->body : "", req->body ? req->body_len : 0, token_key, rv,
                        &sel, &why);
    if (req->body) /* the server's own heap copy; it may hold a raw token */
        OPENSSL_cleanse((char *)req->body, req->body_len);
    if (r != 0) {
        rv->st.purge_refused++;
        invalid_request(resp, why);
        return;
    }
    size_t n = apply(rv, &sel, "admin API");
    purge_selector_clear(&sel);
    answer_json(resp, 200, json_pack("{sI}", "purged", (json_int_t)n));
}

/* ---- listing ---- */

struct listing {
    json_t *arr;
    bool nomem;
};

static int set_opt(json_t *o, const char *name, const char *v)
{
    return v ? json_object_set_new(o, name, json_string(v)) : 0;
}

static void add_entry(void *ctx, const struct purge_entry *e)
{
    struct listing *l = ctx;
    json_t *o = json_pack("{ss sI ss}", "token_hash", e->token_hash, "expires_at",
                          (json_int_t)e->expires_at, "outcome", e->outcome);
    if (!o || set_opt(o, "sub", e->sub) || set_opt(o, "client_id", e->client_id) ||
        set_opt(o, "sid", e->sid) || set_opt(o, "scope", e->scope) ||
        json_array_append_new(l->arr, o) != 0)
        l->nomem = true;
}

/* The one query argument of GET /admin/cache: sub, client_id, sid or token_hash. */
static const char *list_selector(const struct http_request *req, struct purge_selector *sel)
{
    static const char *const names[] = {"sub", "client_id", "sid", "token_hash"};
    const char *found = NULL, *v = NULL;
    for (size_t i = 0; i < 4; i++) {
        const char *a = req->arg ? req->arg(req, names[i]) : NULL;
        if (!a)
            continue;
        if (found)
            return "give exactly one of sub, client_id, sid or token_hash";
        found = names[i];
        v = a;
    }
    if (!found)
        return "give one of sub, client_id, sid or token_hash";
    json_t *doc = json_pack("{ss}", found, v);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    const char *why = "out of memory";
    int r = text ? purge_parse(text, strlen(text), NULL, NULL, sel, &why) : -1;
    free(text);
    return r == 0 ? NULL : why;
}

void revoke_serve_cache(void *ud, const struct http_request *req, struct http_response *resp)
{
    struct revoke *rv = ud;
    struct purge_selector sel;
    const char *why = list_selector(req, &sel);
    if (why) {
        invalid_request(resp, why);
        return;
    }
    struct listing l = {.arr = json_array()};
    size_t total = l.arr ? rv->ops.list(rv->ud, &sel, REVOKE_LIST_MAX, add_entry, &l) : 0;
    purge_selector_clear(&sel);
    if (!l.arr || l.nomem) {
        json_decref(l.arr);
        http_response_error(resp, 500, "out of memory");
        return;
    }
    answer_json(resp, 200,
                json_pack("{sI sb so}", "count", (json_int_t)total, "truncated",
                          total > json_array_size(l.arr), "entries", l.arr));
}

/* ---- back-channel logout ---- */

static bool form_content(const struct http_request *req)
{
    static const char form[] = "application/x-www-form-urlencoded";
    const char *ct = req->content_type;
    if (!ct || strncasecmp(ct, form, sizeof(form) - 1) != 0)
        return false;
    ct += sizeof(form) - 1;
    return *ct == '\0' || *ct == ';' || *ct == ' ';
}

static size_t purge_value(struct revoke *rv, enum purge_kind kind, char *value)
{
    struct purge_selector sel = {.kind = kind, .value = value};
    return apply(rv, &sel, "back-channel logout");
}

static void logout_refused(struct revoke *rv, struct http_response *resp, const char *why)
{
    time_t now = time(NULL);
    rv->st.logout_refused++;
    if (now != rv->refusal_logged) {
        log_info("back-channel logout refused: %s (%llu more refused since the last line)", why,
                 (unsigned long long)rv->refusals_unlogged);
        rv->refusal_logged = now;
        rv->refusals_unlogged = 0;
    } else {
        rv->refusals_unlogged++;
    }
    invalid_request(resp, why);
}

void revoke_serve_logout(void *ud, const struct http_request *req, struct http_response *resp)
{
    struct revoke *rv = ud;
    const char *why = NULL;
    char *token = NULL;
    if (!form_content(req)) {
        logout_refused(rv, resp, "the body must be application/x-www-form-urlencoded");
        return;
    }
    long len =
        logout_form_token(req->body ? req->body : "", req->body ? req->body_len : 0, &token, &why);
    if (len < 0) {
        logout_refused(rv, resp, why);
        return;
    }
    struct logout_request lr = {0};
    enum logout_result res =
        rv->keys ? logout_token_validate(rv->validator, rv->keys, token, (size_t)len, &lr, &why)
                 : LOGOUT_UNKNOWN_KEY;
    free(token);
    if (res == LOGOUT_UNKNOWN_KEY) {
        rv->st.logout_unknown_key++;
        if (rv->fetcher)
            jwks_fetcher_refetch(rv->fetcher); /* key rotation: the next try may succeed */
        logout_refused(rv, resp,
                       rv->keys ? "no key of the identity server matches the logout token"
                                : "the identity server's keys are not loaded yet");
        return;
    }
    if (res != LOGOUT_OK) {
        logout_refused(rv, resp, why);
        return;
    }
    size_t n = 0;
    if (lr.sid)
        n += purge_value(rv, PURGE_SID, lr.sid);
    if (lr.sub)
        n += purge_value(rv, PURGE_SUB, lr.sub);
    logout_request_clear(&lr);
    rv->st.logouts++;
    log_debug("back-channel logout accepted: %zu cache entries dropped", n);
    http_response_free(resp); /* 200 with an empty body (section 2.8) */
    resp->status = 200;
    resp->cache_control = NO_STORE;
}

/* ---- life cycle ---- */

static void on_keys(void *ud, struct jwks *fresh)
{
    struct revoke *rv = ud;
    log_info("back-channel logout: %zu signing keys loaded (%zu skipped)", fresh->n,
             fresh->skipped);
    revoke_set_keys(rv, fresh);
}

void revoke_set_keys(struct revoke *rv, struct jwks *s)
{
    jwks_free(rv->keys);
    rv->keys = s;
}

static int start_logout(struct revoke *rv, struct ev_loop *loop, const struct revoke_config *cfg,
                        char *err, size_t errlen)
{
    struct logout_config lc = {.issuer = cfg->issuer,
                               .client_id = cfg->client_id,
                               .skew = cfg->skew,
                               .max_age = cfg->max_age};
    rv->validator = logout_validator_new(&lc, cfg->clock, cfg->clock_ud);
    if (!rv->validator) {
        snprintf(err, errlen, "back-channel logout needs an issuer and a client id");
        return -1;
    }
    if (!loop)
        return 0;
    struct jwks_fetch_config fc = {
        .url = cfg->jwks_url, .ca_file = cfg->ca_file, .insecure = cfg->insecure};
    rv->fetcher = jwks_fetcher_start(loop, &fc, on_keys, rv, err, errlen);
    return rv->fetcher ? 0 : -1;
}

struct revoke *revoke_new(struct ev_loop *loop, const struct revoke_config *cfg,
                          const struct revoke_ops *ops, void *ud, char *err, size_t errlen)
{
    struct revoke *rv = calloc(1, sizeof(*rv));
    if (!rv) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rv->ops = *ops;
    rv->ud = ud;
    if (cfg->issuer && cfg->jwks_url && start_logout(rv, loop, cfg, err, errlen) != 0) {
        revoke_free(rv);
        return NULL;
    }
    return rv;
}

void revoke_free(struct revoke *rv)
{
    if (!rv)
        return;
    jwks_fetcher_stop(rv->fetcher);
    logout_validator_free(rv->validator);
    jwks_free(rv->keys);
    free(rv);
}

bool revoke_logout_enabled(const struct revoke *rv)
{
    return rv->validator != NULL;
}

struct logout_validator *revoke_validator(struct revoke *rv)
{
    return rv->validator;
}

int revoke_add_routes(struct revoke *rv, struct http_router *r)
{
    const struct http_route purge = {.method = "POST",
                                     .path = "/admin/purge",
                                     .auth = HTTP_AUTH_ADMIN,
                                     .max_body = PURGE_MAX_BODY,
                                     .fn = revoke_serve_purge,
                                     .ud = rv};
    const struct http_route list = {.method = "GET",
                                    .path = "/admin/cache",
                                    .auth = HTTP_AUTH_ADMIN,
                                    .fn = revoke_serve_cache,
                                    .ud = rv};
    const struct http_route logout = {.method = "POST",
                                      .path = "/backchannel-logout",
                                      .auth = HTTP_AUTH_NONE,
                                      .max_body = REVOKE_LOGOUT_BODY,
                                      .fn = revoke_serve_logout,
                                      .ud = rv};
    if (http_router_add(r, &purge) != 0 || http_router_add(r, &list) != 0)
        return -1;
    return rv->validator ? http_router_add(r, &logout) : 0;
}

void revoke_get_stats(struct revoke *rv, struct revoke_stats *st)
{
    *st = rv->st;
    if (rv->fetcher)
        jwks_fetcher_counts(rv->fetcher, &st->jwks_fetches, &st->jwks_fetch_errors);
}

char *revoke_metrics_text(struct revoke *rv)
{
    struct revoke_stats st;
    revoke_get_stats(rv, &st);
    size_t cap = 4096, o = 0;
    char *b = malloc(cap);
    if (!b)
        return NULL;
#define OUT(...) o += (size_t)snprintf(b + o, o < cap ? cap - o : 0, __VA_ARGS__)
    OUT("# HELP phantom_purges_total Purge requests applied, by selector kind.\n"
        "# TYPE phantom_purges_total counter\n");
    for (int k = 0; k <= PURGE_ALL; k++)
        OUT("phantom_purges_total{selector=\"%s\"} %llu\n", purge_kind_name((enum purge_kind)k),
            (unsigned long long)st.purges[k]);
    OUT("# HELP phantom_purged_entries_total Cache entries dropped by purges.\n"
        "# TYPE phantom_purged_entries_total counter\nphantom_purged_entries_total %llu\n",
        (unsigned long long)st.purged_entries);
    OUT("# HELP phantom_purge_refused_total Purge requests answered 400.\n"
        "# TYPE phantom_purge_refused_total counter\nphantom_purge_refused_total %llu\n",
        (unsigned long long)st.purge_refused);
    OUT("# HELP phantom_backchannel_logouts_total Back-channel logout requests, by result.\n"
        "# TYPE phantom_backchannel_logouts_total counter\n"
        "phantom_backchannel_logouts_total{result=\"ok\"} %llu\n"
        "phantom_backchannel_logouts_total{result=\"refused\"} %llu\n"
        "phantom_backchannel_logouts_total{result=\"unknown_key\"} %llu\n",
        (unsigned long long)st.logouts, (unsigned long long)st.logout_refused,
        (unsigned long long)st.logout_unknown_key);
    OUT("# HELP phantom_logout_jwks_fetches_total Fetches of the identity server's JWKS, by "
        "result.\n"
        "# TYPE phantom_logout_jwks_fetches_total counter\n"
        "phantom_logout_jwks_fetches_total{result=\"ok\"} %llu\n"
        "phantom_logout_jwks_fetches_total{result=\"error\"} %llu\n",
        (unsigned long long)st.jwks_fetches, (unsigned long long)st.jwks_fetch_errors);
#undef OUT
    if (o >= cap) { /* cannot happen with the fixed text above; fail safe anyway */
        free(b);
        return NULL;
    }
    return b;
}
