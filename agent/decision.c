/* The per-request decision (RFC 6750 section 3) and the SPOE variables that carry it to HAProxy.
 * Every input that comes from a frame (realm, required scopes) is a length-bounded byte range, not
 * a C string: nothing here relies on a NUL terminator. */
#include "decision.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char DESC_MALFORMED[] = "Malformed Authorization header";
static const char DESC_MULTIPLE[] = "Multiple Authorization headers";
static const char DESC_INVALID[] = "The access token is invalid or has expired";
static const char DESC_SCOPE[] =
    "The request requires higher privileges than provided by the access token";

/* ---- realm ---- */

/* The realm goes inside a quoted-string. Control characters and non-ASCII bytes have no safe
 * rendering there (CR/LF would split the header), so such a realm, an empty one or an overlong one
 * is replaced by the default rather than repaired. */
static bool realm_usable(const char *r, size_t len)
{
    if (!r || len == 0 || len > DECISION_MAX_REALM)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)r[i];
        if (c < 0x20 || c > 0x7e)
            return false;
    }
    return true;
}

/* Writes the realm with '"' and '\' escaped (RFC 9110 section 5.6.4); out holds 2 * max + 1. */
static void escape_realm(const char *r, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (r[i] == '"' || r[i] == '\\')
            out[o++] = '\\';
        out[o++] = r[i];
    }
    out[o] = '\0';
}

static void realm_of(const struct decision_input *in, char out[2 * DECISION_MAX_REALM + 1])
{
    if (realm_usable(in->realm, in->realm_len))
        escape_realm(in->realm, in->realm_len, out);
    else
        strcpy(out, DECISION_DEFAULT_REALM);
}

/* ---- required scopes ---- */

/* scope-token = 1*NQCHAR (RFC 6749 section 3.3): what may appear in scope="..." unescaped. */
static bool is_nqchar(char ch)
{
    unsigned char c = (unsigned char)ch;
    return c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

/* Normalises the route's requirement into out (single spaces, trimmed). Returns its length, or -1
 * when it is too long or holds a character no scope can have: a configuration error that must not
 * turn into "no requirement", so the caller answers 500. */
static long normalise_required(const char *s, size_t len, char out[DECISION_MAX_SCOPES + 1])
{
    if (!s)
        len = 0;
    if (len > DECISION_MAX_SCOPES)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ' || s[i] == '\t') {
            if (o > 0 && out[o - 1] != ' ')
                out[o++] = ' ';
        } else if (is_nqchar(s[i])) {
            out[o++] = s[i];
        } else {
            return -1;
        }
    }
    if (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    return (long)o;
}

/* True when the token's scope (normalised: single spaces) contains want[0, len) as a whole word. */
static bool has_scope(const char *scope, const char *want, size_t len)
{
    const char *p = scope;
    while (p && *p) {
        const char *end = strchr(p, ' ');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && memcmp(p, want, len) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* Every space-separated word of required (normalised) must be in the token's scope. */
static bool scopes_satisfied(const char *token_scope, const char *required)
{
    const char *p = required;
    while (*p) {
        const char *end = strchr(p, ' ');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (!has_scope(token_scope, p, n))
            return false;
        p = end ? end + 1 : p + n;
    }
    return true;
}

/* ---- outcomes ---- */

/* Bearer realm="r"[, error="e", error_description="d"][, scope="s"]. None of the parts but the
 * realm (escaped already) comes from outside: error texts are ours, scopes are NQCHAR-checked. */
static char *format_challenge(const char *realm, const char *error, const char *desc,
                              const char *scope)
{
    char *s = NULL;
    int n;
    if (!error)
        n = asprintf(&s, "Bearer realm=\"%s\"", realm);
    else if (!scope)
        n = asprintf(&s, "Bearer realm=\"%s\", error=\"%s\", error_description=\"%s\"", realm,
                     error, desc);
    else
        n = asprintf(&s,
                     "Bearer realm=\"%s\", error=\"%s\", error_description=\"%s\", scope=\"%s\"",
                     realm, error, desc, scope);
    return n < 0 ? NULL : s;
}

static int bare_500(struct decision *out)
{
    decision_clear(out);
    out->status = 500;
    out->error = "server_error";
    return -1;
}

/* A 400/401/403 with its WWW-Authenticate challenge. */
static int deny(struct decision *out, int status, const char *realm, const char *error,
                const char *desc, const char *scope)
{
    out->status = status;
    out->error = error;
    out->www_authenticate = format_challenge(realm, error, desc, scope);
    return out->www_authenticate ? 0 : bare_500(out);
}

/* A failure of the agent or the IdP: no challenge, the client is not at fault. */
static int server_error(struct decision *out, int status)
{
    out->status = status;
    out->error = "server_error";
    return 0;
}

/* The token is known active: identity claims are carried on every status from here (for logs),
 * the JWT only on 200. Expiry is checked again because a cached entry may outlive its token. */
static int decide_active(const struct decision_input *in, struct decision *out, const char *realm)
{
    const struct token_info *ti = in->ti;
    out->sub = ti->claims.sub;
    out->client_id = ti->claims.client_id;
    out->scope = ti->claims.scope;
    if (ti->claims.has_exp && ti->claims.exp <= in->now)
        return deny(out, 401, realm, "invalid_token", DESC_INVALID, NULL);

    char required[DECISION_MAX_SCOPES + 1];
    if (in->scopes_invalid ||
        normalise_required(in->required_scopes, in->required_scopes_len, required) < 0)
        return server_error(out, 500);
    if (!scopes_satisfied(ti->claims.scope, required))
        return deny(out, 403, realm, "insufficient_scope", DESC_SCOPE, required);

    /* A route asking for an audience the gateway does not mint for is a configuration error:
     * refuse rather than forward a JWT the API was not meant to get. */
    out->jwt = token_jwt_for(ti, in->audience, in->audience_len, &out->jwt_len);
    if (!out->jwt)
        return server_error(out, 500);
    out->status = 200;
    return 0;
}

static int decide_token(const struct decision_input *in, struct decision *out, const char *realm)
{
    if (!in->ti)
        return server_error(out, 500); /* BEARER_OK without a resolution: a caller bug */
    if (in->ti->outcome == TOKEN_ACTIVE)
        return decide_active(in, out, realm);
    if (in->ti->outcome == TOKEN_INACTIVE)
        return deny(out, 401, realm, "invalid_token", DESC_INVALID, NULL);
    /* The IdP's trouble: the one outcome -> status map (token.c), no challenge. */
    server_error(out, token_outcome_status(in->ti->outcome));
    if (out->status == 503)
        out->retry_after_s = in->ti->retry_after_s;
    return 0;
}

/* The cache variable: what the lookup said, refined by where the answer came from. */
static const char *cache_outcome(const struct decision_input *in)
{
    if (in->ti && in->ti->stale)
        return "stale";
    if (in->ti && in->ti->from_l2 && in->cache && strcmp(in->cache, "miss") == 0)
        return "l2";
    return in->cache;
}

int decide(const struct decision_input *in, struct decision *out)
{
    char realm[2 * DECISION_MAX_REALM + 1];
    memset(out, 0, sizeof(*out));
    out->cache = cache_outcome(in);
    realm_of(in, realm);

    /* RFC 6750 section 3.1: more than one way of sending a token is invalid_request. */
    if (in->auth_count > 1)
        return deny(out, 400, realm, "invalid_request", DESC_MULTIPLE, NULL);
    switch (in->bearer) {
    case BEARER_MISSING:
    case BEARER_NOT_BEARER:
        /* Section 3.1: no error code when the request carries no Bearer credentials at all. */
        return deny(out, 401, realm, NULL, NULL, NULL);
    case BEARER_MALFORMED:
        return deny(out, 400, realm, "invalid_request", DESC_MALFORMED, NULL);
    case BEARER_OK:
        return decide_token(in, out, realm);
    }
    return server_error(out, 500);
}

void decision_clear(struct decision *d)
{
    free(d->www_authenticate);
    memset(d, 0, sizeof(*d));
}

static void put_str(struct spop_writer *w, const char *name, const char *s, size_t len)
{
    struct spop_value v = spop_v_str(s, len);
    spop_put_set_var(w, SPOP_SCOPE_TXN, name, &v);
}

static void put_opt(struct spop_writer *w, const char *name, const char *s)
{
    if (s)
        put_str(w, name, s, strlen(s));
}

void decision_put_actions(struct spop_writer *w, const struct decision *d)
{
    struct spop_value status = spop_v_int(d->status);
    spop_put_set_var(w, SPOP_SCOPE_TXN, VAR_STATUS, &status);
    put_opt(w, VAR_ERROR, d->error);
    put_opt(w, VAR_WWW_AUTH, d->www_authenticate);
    /* Only a 200 forwards a JWT, whatever else the struct holds. */
    if (d->status == 200 && d->jwt)
        put_str(w, VAR_JWT, d->jwt, d->jwt_len);
    put_opt(w, VAR_SUB, d->sub);
    put_opt(w, VAR_CLIENT_ID, d->client_id);
    put_opt(w, VAR_SCOPE, d->scope);
    put_opt(w, VAR_CACHE, d->cache);
    if (d->retry_after_s > 0) {
        struct spop_value ra = spop_v_int(d->retry_after_s);
        spop_put_set_var(w, SPOP_SCOPE_TXN, VAR_RETRY_AFTER, &ra);
    }
}
