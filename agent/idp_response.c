/* Classification of introspection answers, following the mapping of Curity's phantom token module
 * (see idp_response.h), plus the JSON forms Keycloak and Curity use to carry the JWT. Anything the
 * agent cannot read with certainty is an IdP error, never an active token: fail closed. */
#include "idp_response.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "jwt.h"
#include "memdup.h"

/* RFC 9111 section 1.2.2: delta-seconds too large to represent are sent on as 2^31. */
#define CC_MAX_DELTA 2147483648L

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* ---- Cache-Control ---- */

/* A parsed directive: name and (unquoted) value as ranges of the header. */
struct cc_directive {
    const char *name, *val;
    size_t name_len, val_len;
    bool has_val;
};

static bool cc_name_is(const struct cc_directive *d, const char *name)
{
    return d->name_len == strlen(name) && strncasecmp(d->name, name, d->name_len) == 0;
}

/* Reads a quoted-string starting at the opening quote. The value keeps its backslash escapes;
 * only max-age's digits are interpreted, and an escape there makes the value invalid anyway. */
static const char *cc_read_quoted(const char *p, struct cc_directive *d)
{
    d->val = ++p;
    while (*p && *p != '"') {
        if (*p == '\\' && p[1])
            p++;
        p++;
    }
    d->val_len = (size_t)(p - d->val);
    return *p ? p + 1 : p; /* an unterminated string runs to the end */
}

/* Reads one directive at p (past separators). Returns where the next one may start. Garbage after
 * a value is skipped up to the next comma, so one bad directive cannot hide the others. */
static const char *cc_read_directive(const char *p, struct cc_directive *d)
{
    memset(d, 0, sizeof(*d));
    d->name = p;
    while (*p && *p != '=' && *p != ',' && !is_ows(*p))
        p++;
    d->name_len = (size_t)(p - d->name);
    while (is_ows(*p))
        p++;
    if (*p == '=') {
        d->has_val = true;
        p++;
        while (is_ows(*p))
            p++;
        if (*p == '"') {
            p = cc_read_quoted(p, d);
        } else {
            d->val = p;
            while (*p && *p != ',' && !is_ows(*p))
                p++;
            d->val_len = (size_t)(p - d->val);
        }
    }
    while (*p && *p != ',')
        p++;
    return p;
}

/* delta-seconds = 1*DIGIT. Returns -1 when the value is not that. */
static long cc_delta_seconds(const struct cc_directive *d)
{
    if (!d->has_val || d->val_len == 0)
        return -1;
    long v = 0;
    for (size_t i = 0; i < d->val_len; i++) {
        char c = d->val[i];
        if (c < '0' || c > '9')
            return -1;
        if (v < CC_MAX_DELTA)
            v = v * 10 + (c - '0');
    }
    return v > CC_MAX_DELTA ? CC_MAX_DELTA : v;
}

static void cc_apply(const struct cc_directive *d, long *max_age, int *no_store)
{
    if (cc_name_is(d, "max-age")) {
        /* RFC 9111 section 4.2.1: an invalid max-age makes the answer stale, so 0; of several, the
         * most restrictive wins. */
        long v = cc_delta_seconds(d);
        if (v < 0)
            v = 0;
        if (*max_age < 0 || v < *max_age)
            *max_age = v;
    } else if (cc_name_is(d, "no-store")) {
        *no_store = 1;
    } else if (cc_name_is(d, "no-cache") && !d->has_val) {
        /* no-cache allows storing but not reusing without revalidation, which the agent cannot do:
         * for us it means the same as no-store (and follows the same honour_no_store switch). */
        *no_store = 1;
    }
}

void idp_parse_cache_control(const char *v, long *max_age, int *no_store)
{
    *max_age = -1;
    *no_store = 0;
    if (!v)
        return;
    const char *p = v;
    while (*p) {
        if (*p == ',' || is_ows(*p)) {
            p++;
            continue;
        }
        struct cc_directive d;
        p = cc_read_directive(p, &d);
        cc_apply(&d, max_age, no_store);
    }
}

/* ---- Content-Type ---- */

enum body_kind { BODY_OTHER, BODY_JWT, BODY_INTROSPECTION_JWT, BODY_JSON };

static bool ends_with_ci(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && strncasecmp(s + len - n, suffix, n) == 0;
}

/* application/jwt, application/<x>+jwt, application/json, application/<x>+json; case-insensitive,
 * parameters (charset=...) ignored (RFC 9110 section 8.3.1). */
static enum body_kind body_kind_of(const char *ct)
{
    static const char APP[] = "application/";
    if (!ct)
        return BODY_OTHER;
    while (is_ows(*ct))
        ct++;
    size_t len = strcspn(ct, ";");
    while (len > 0 && is_ows(ct[len - 1]))
        len--;
    if (len <= sizeof(APP) - 1 || strncasecmp(ct, APP, sizeof(APP) - 1) != 0)
        return BODY_OTHER;
    const char *sub = ct + sizeof(APP) - 1;
    size_t sub_len = len - (sizeof(APP) - 1);
    if (sub_len == 23 && strncasecmp(sub, "token-introspection+jwt", 23) == 0)
        return BODY_INTROSPECTION_JWT;
    if ((sub_len == 3 && strncasecmp(sub, "jwt", 3) == 0) || ends_with_ci(sub, sub_len, "+jwt"))
        return BODY_JWT;
    if ((sub_len == 4 && strncasecmp(sub, "json", 4) == 0) || ends_with_ci(sub, sub_len, "+json"))
        return BODY_JSON;
    return BODY_OTHER;
}

/* ---- answers ---- */

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && (is_ows(**s) || **s == '\r' || **s == '\n')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && (is_ows((*s)[*len - 1]) || (*s)[*len - 1] == '\r' || (*s)[*len - 1] == '\n'))
        (*len)--;
}

/* The active token that forwards jwt (may be NULL for a claims-only answer) with the claims c
 * (taken over) and the claims object obj (taken over, may be NULL). NULL on ENOMEM. */
static struct token_info *active_token(const char *jwt, size_t len, struct token_claims c,
                                       json_t *obj, enum idp_kind kind)
{
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, jwt ? "IdP returned a JWT"
                                                             : "IdP returned claims without a JWT");
    char *copy = ti && jwt ? mem_strdup(jwt, len) : NULL;
    if (!ti || (jwt && !copy)) {
        token_claims_clear(&c);
        json_decref(obj);
        token_unref(ti);
        return NULL;
    }
    ti->jwt = copy;
    ti->jwt_len = jwt ? len : 0;
    ti->claims = c;
    ti->kind = kind;
    token_info_set_introspection(ti, obj);
    return ti;
}

/* An active token from the JWT the IdP returned, or an IdP error when the JWT is unusable. The
 * claims, and the object kept for minting, come from the JWT's payload even when the JWT sat in a
 * JSON answer: the decision and a minted JWT must say what the forwarded JWT says. */
static struct token_info *active_from_jwt(const char *jwt, size_t len, bool keep)
{
    struct token_claims c;
    const char *why;
    json_t *obj = NULL;
    trim(&jwt, &len);
    if (jwt_parse_claims_obj(jwt, len, &c, keep ? &obj : NULL, &why) < 0)
        return token_info_new(TOKEN_IDP_ERROR, why);
    return active_token(jwt, len, c, obj, IDP_KIND_JWT);
}

/* RFC 9701: the signed introspection answer. It may say "inactive" (a well-formed JWT that must
 * never be forwarded); when active, its claims are read from its token_introspection object. The
 * old mapping forwards it; with minting, finish.c replaces it by an access token. */
static struct token_info *from_introspection_jwt(const char *jwt, size_t len, bool keep)
{
    struct token_claims c;
    const char *why;
    bool active;
    json_t *obj = NULL;
    trim(&jwt, &len);
    if (jwt_parse_introspection_obj(jwt, len, &active, &c, keep ? &obj : NULL, &why) < 0)
        return token_info_new(TOKEN_IDP_ERROR, why);
    if (!active)
        return token_info_new(TOKEN_INACTIVE, "IdP said the token is inactive");
    return active_token(jwt, len, c, obj, IDP_KIND_INTROSPECTION);
}

/* The JWT member of an active JSON answer: "jwt" (Keycloak >= 25) or "phantom_token" (Curity). */
static json_t *json_jwt_member(json_t *obj)
{
    json_t *j = json_object_get(obj, "jwt");
    return j ? j : json_object_get(obj, "phantom_token");
}

/* Plain RFC 7662: the claims are the answer's members. */
static struct token_info *active_from_claims(json_t *obj)
{
    struct token_claims c;
    const char *why;
    if (jwt_claims_from_json(obj, &c, &why) < 0)
        return token_info_new(TOKEN_IDP_ERROR, "IdP JSON answer has claims of the wrong type");
    return active_token(NULL, 0, c, json_incref(obj), IDP_KIND_CLAIMS);
}

static struct token_info *classify_json_object(json_t *obj, bool keep)
{
    json_t *active = json_object_get(obj, "active");
    if (!json_is_boolean(active))
        return token_info_new(TOKEN_IDP_ERROR, "IdP JSON answer has no boolean \"active\"");
    if (!json_is_true(active))
        return token_info_new(TOKEN_INACTIVE, "IdP said the token is inactive");
    json_t *jwt = json_jwt_member(obj);
    if (jwt && !json_is_string(jwt))
        return token_info_new(TOKEN_IDP_ERROR,
                              "IdP JSON answer has a JWT member that is no string");
    if (jwt)
        return active_from_jwt(json_string_value(jwt), json_string_length(jwt), keep);
    if (!keep)
        return token_info_new(TOKEN_IDP_ERROR, "IdP said active but returned no JWT");
    return active_from_claims(obj);
}

static struct token_info *classify_json(const char *body, size_t len, bool keep)
{
    json_t *obj = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return token_info_new(TOKEN_IDP_ERROR, "IdP answered 200 with unparseable JSON");
    }
    struct token_info *ti = classify_json_object(obj, keep);
    json_decref(obj);
    return ti;
}

static struct token_info *classify_200(const struct idp_answer *a, bool keep)
{
    const char *body = a->body ? a->body : "";
    size_t len = a->body ? a->body_len : 0;
    switch (body_kind_of(a->content_type)) {
    case BODY_JWT:
        return active_from_jwt(body, len, keep);
    case BODY_INTROSPECTION_JWT:
        return from_introspection_jwt(body, len, keep);
    case BODY_JSON:
        return classify_json(body, len, keep);
    case BODY_OTHER:
        break;
    }
    return token_info_new(TOKEN_IDP_ERROR, "IdP answered 200 with an unexpected content type");
}
/* Every status but 200, per Curity's module: 204 is its "inactive"; 401/403 mean the agent's own
 * client credentials are wrong and 404 a wrong URL, IdP-side problems like 5xx; 503 keeps its
 * meaning so clients may retry; anything else is unexpected. */
static struct token_info *classify_status(long status)
{
    switch (status) {
    case 0:
        return token_info_new(TOKEN_IDP_ERROR, "no answer from the IdP");
    case 204:
        return token_info_new(TOKEN_INACTIVE, "IdP answered 204: token inactive");
    case 401:
        return token_info_new(TOKEN_IDP_ERROR, "IdP answered 401: check the agent's credentials");
    case 403:
        return token_info_new(TOKEN_IDP_ERROR, "IdP answered 403: check the agent's credentials");
    case 404:
        return token_info_new(TOKEN_IDP_ERROR, "IdP answered 404: check the introspection URL");
    case 503:
        return token_info_new(TOKEN_IDP_UNAVAIL, "IdP answered 503");
    }
    if (status >= 500 && status <= 599)
        return token_info_new(TOKEN_IDP_ERROR, "IdP answered a 5xx status");
    return token_info_new(TOKEN_IDP_UNKNOWN, "IdP answered an unexpected status");
}

/* ---- inactive statuses ---- */

#define STATUS_SET_MIN 400
#define STATUS_SET_MAX 499

bool idp_status_in(const struct idp_status_set *set, long status)
{
    if (!set || status < STATUS_SET_MIN || status > STATUS_SET_MAX)
        return false;
    unsigned i = (unsigned)(status - STATUS_SET_MIN);
    return (set->bits[i / 64] >> (i % 64)) & 1;
}

int idp_parse_statuses(const char *list, struct idp_status_set *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *p = list ? list : "";
    if (strcasecmp(p, "none") == 0)
        return 0;
    while (*p) {
        p += strspn(p, ", \t");
        size_t len = strcspn(p, ", \t");
        if (!len)
            continue;
        long v = 0;
        for (size_t i = 0; i < len && v <= STATUS_SET_MAX; i++)
            v = p[i] >= '0' && p[i] <= '9' ? v * 10 + (p[i] - '0') : STATUS_SET_MAX + 1;
        if (len > 3 || v < STATUS_SET_MIN || v > STATUS_SET_MAX) {
            snprintf(err, errlen, "inactive-statuses: '%.*s' is not a status from %d to %d",
                     (int)(len > 16 ? 16 : len), p, STATUS_SET_MIN, STATUS_SET_MAX);
            return -1;
        }
        unsigned i = (unsigned)(v - STATUS_SET_MIN);
        out->bits[i / 64] |= UINT64_C(1) << (i % 64);
        p += len;
    }
    return 0;
}

struct token_info *idp_classify(const struct idp_answer *a)
{
    return idp_classify_with(a, NULL);
}

struct token_info *idp_classify_with(const struct idp_answer *a, const struct idp_settings *s)
{
    bool keep = s && s->keep_claims;
    struct token_info *ti;
    if (a->http_status == 200)
        ti = classify_200(a, keep);
    else if (s && idp_status_in(s->inactive, a->http_status))
        ti = token_info_new(TOKEN_INACTIVE, "IdP answered a status configured as inactive");
    else
        ti = classify_status(a->http_status);
    if (!ti)
        return NULL;
    long max_age;
    int no_store;
    idp_parse_cache_control(a->cache_control, &max_age, &no_store);
    ti->max_age = max_age;
    ti->no_store = no_store != 0;
    return ti;
}
