/* RFC 9068 access tokens from introspected claims. Nothing from the IdP's answer decides the
 * token's issuer, audience, issue time or id: those are always the gateway's, so an API that
 * trusts the gateway's key cannot be steered by a claim the IdP echoed. The lifetime is the
 * opaque token's own, bounded, never longer (unlike fixed-lifetime mutators). */
#include "mint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "jwt.h"
#include "memdup.h"

const char *const mint_default_claims[] = {
    /* RFC 7519 / 7662 */
    "nbf", "username",
    /* RFC 9068 section 2.2 (auth_time, acr, amr) and 2.2.3.1 (RFC 7643 attributes) */
    "auth_time", "acr", "amr", "groups", "roles", "entitlements",
    /* RFC 8705 / 9449 confirmation, RFC 8693 actor */
    "cnf", "act", NULL};

static const char *const reserved[] = {"iss",       "aud",   "iat",    "jti",        "exp", "sub",
                                       "client_id", "scope", "active", "token_type", NULL};

bool mint_claim_reserved(const char *name)
{
    for (size_t i = 0; reserved[i]; i++)
        if (strcmp(name, reserved[i]) == 0)
            return true;
    return false;
}

/* ---- claim reading ---- */

/* exp as NumericDate (integer, or real truncated), as jwt.c reads it. 1 present, 0 absent, -1 bad.
 */
static int claim_exp(const json_t *claims, int64_t *exp)
{
    json_t *v = json_object_get(claims, "exp");
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= JWT_MAX_EXP) {
        *exp = (int64_t)json_integer_value(v);
        return 1;
    }
    if (json_is_real(v) && isfinite(json_real_value(v)) && json_real_value(v) >= 0 &&
        json_real_value(v) <= (double)JWT_MAX_EXP) {
        *exp = (int64_t)json_real_value(v);
        return 1;
    }
    return -1;
}

/* An optional string claim: its value, NULL when absent or null; *bad set on another type. */
static const char *claim_str(const json_t *claims, const char *name, bool *bad)
{
    json_t *v = json_object_get(claims, name);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v) || json_string_length(v) == 0) {
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

/* scope as one space-separated string (RFC 9068 section 2.2.3); an array is joined. */
static json_t *claim_scope(const json_t *claims, bool *bad)
{
    json_t *v = json_object_get(claims, "scope");
    if (!v || json_is_null(v))
        return NULL;
    if (json_is_string(v))
        return json_string_length(v) ? json_incref(v) : NULL;
    if (!json_is_array(v)) {
        *bad = true;
        return NULL;
    }
    size_t total = 1, i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e)) {
            *bad = true;
            return NULL;
        }
        total += json_string_length(e) + 1;
    }
    char *s = malloc(total);
    if (!s) {
        *bad = true;
        return NULL;
    }
    size_t o = 0;
    json_array_foreach(v, i, e)
    {
        if (o)
            s[o++] = ' ';
        memcpy(s + o, json_string_value(e), json_string_length(e));
        o += json_string_length(e);
    }
    s[o] = '\0';
    json_t *r = o ? json_stringn(s, o) : NULL;
    free(s);
    return r;
}

/* ---- payload ---- */

static int set_str(json_t *obj, const char *name, const char *v)
{
    return json_object_set_new(obj, name, json_string(v));
}

static int set_int(json_t *obj, const char *name, int64_t v)
{
    return json_object_set_new(obj, name, json_integer((json_int_t)v));
}

static int random_jti(const struct mint_settings *s, char out[B64URL_ENC_LEN(MINT_JTI_BYTES) + 1])
{
    uint8_t raw[MINT_JTI_BYTES];
    int r = s->random ? s->random(raw, sizeof(raw), s->random_arg)
                      : (RAND_bytes(raw, sizeof(raw)) == 1 ? 0 : -1);
    if (r != 0)
        return -1;
    b64url_encode(raw, sizeof(raw), out);
    return 0;
}

/* Copies the allowed extra claims that the answer has (deep copies: the answer may be shared). */
static int copy_extra(json_t *payload, const json_t *claims, const char *const *allow)
{
    for (size_t i = 0; allow[i]; i++) {
        if (mint_claim_reserved(allow[i]))
            continue; /* the parser refuses them; a hand-built list must not smuggle them in */
        json_t *v = json_object_get(claims, allow[i]);
        if (!v || json_is_null(v))
            continue;
        if (json_object_set_new(payload, allow[i], json_deep_copy(v)) < 0)
            return -1;
    }
    return 0;
}

/* The identity claims: sub (client_id for a client-credentials token), client_id, scope. */
static int put_identity(json_t *payload, const json_t *claims, const char **why)
{
    bool bad = false;
    const char *sub = claim_str(claims, "sub", &bad);
    const char *client_id = claim_str(claims, "client_id", &bad);
    json_t *scope = bad ? NULL : claim_scope(claims, &bad);
    if (bad) {
        json_decref(scope);
        *why = "introspected sub, client_id or scope has the wrong type";
        return -1;
    }
    if (!sub)
        sub = client_id;
    if (!sub || !client_id) {
        json_decref(scope);
        *why = "introspection answer has neither sub nor client_id";
        return -1;
    }
    int r = set_str(payload, "sub", sub) | set_str(payload, "client_id", client_id);
    if (scope)
        r |= json_object_set_new(payload, "scope", scope);
    if (r)
        *why = "out of memory";
    return r ? -1 : 0;
}

/* exp bounded by now + max_lifetime. MINT_EXPIRED when the token's own exp has passed. */
static enum mint_result bounded_exp(const struct mint_settings *s, const json_t *claims,
                                    int64_t now, int64_t *exp, const char **why)
{
    int64_t limit = now + s->max_lifetime, own = 0;
    int r = claim_exp(claims, &own);
    if (r < 0) {
        *why = "introspected exp is not a valid NumericDate";
        return MINT_ERROR;
    }
    *exp = r == 1 && own < limit ? own : limit;
    if (*exp <= now) {
        *why = "token expired";
        return MINT_EXPIRED;
    }
    return MINT_OK;
}

static json_t *build_header(const struct jws_key *k)
{
    json_t *h = json_object();
    if (h && (set_str(h, "alg", jws_alg_name(k->alg)) | set_str(h, "typ", "at+jwt") |
              set_str(h, "kid", k->kid))) {
        json_decref(h);
        return NULL;
    }
    return h;
}

static enum mint_result check_inputs(const struct mint_settings *s, const struct jws_key *k,
                                     const json_t *claims, const char *aud, const char **why)
{
    if (!s->issuer || !*s->issuer)
        *why = "no jwt-issuer configured";
    else if (!aud || !*aud)
        *why = "no audience (jwt-audience or the request's audience)";
    else if (!k || !k->has_private)
        *why = "no signing key";
    else if (s->max_lifetime <= 0)
        *why = "jwt-max-lifetime must be positive";
    else if (!json_is_object(claims))
        *why = "no introspected claims to mint from";
    else
        return MINT_OK;
    return MINT_ERROR;
}

/* Serializes header and payload and signs them, within the size bound. */
static enum mint_result sign(const struct mint_settings *s, const struct jws_key *k, json_t *header,
                             json_t *payload, struct mint_out *out, const char **why)
{
    size_t max = s->max_jwt_len ? s->max_jwt_len : MINT_DEFAULT_MAX_JWT;
    char *h = json_dumps(header, JSON_COMPACT);
    char *p = json_dumps(payload, JSON_COMPACT);
    enum mint_result r = MINT_ERROR;
    *why = "out of memory";
    if (h && p) {
        size_t hl = strlen(h), pl = strlen(p);
        /* The signature's encoded size is known before signing: refuse early, sign nothing. */
        size_t sig = B64URL_ENC_LEN((size_t)EVP_PKEY_get_size(k->pkey));
        if (B64URL_ENC_LEN(hl) + B64URL_ENC_LEN(pl) + sig + 2 > max) {
            *why = "minted JWT would exceed its size limit (too many or too large claims)";
        } else if ((out->jwt = jws_compact(k, h, hl, p, pl, &out->jwt_len))) {
            r = MINT_OK;
        } else {
            *why = "signing failed";
        }
    }
    free(h);
    free(p);
    return r;
}

enum mint_result mint_jwt(const struct mint_settings *s, const struct jws_key *k,
                          const json_t *claims, const char *audience, int64_t now,
                          struct mint_out *out, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    memset(out, 0, sizeof(*out));
    const char *aud = audience && *audience ? audience : s->audience;
    enum mint_result r = check_inputs(s, k, claims, aud, why);
    int64_t exp = 0;
    if (r == MINT_OK)
        r = bounded_exp(s, claims, now, &exp, why);
    if (r != MINT_OK)
        return r;
    char jti[B64URL_ENC_LEN(MINT_JTI_BYTES) + 1];
    if (random_jti(s, jti) < 0) {
        *why = "no random bytes for jti";
        return MINT_ERROR;
    }
    json_t *payload = json_object(), *header = build_header(k);
    r = MINT_ERROR;
    *why = "out of memory";
    if (payload && header && set_str(payload, "iss", s->issuer) == 0 &&
        put_identity(payload, claims, why) == 0 && set_str(payload, "aud", aud) == 0 &&
        set_int(payload, "exp", exp) == 0 && set_int(payload, "iat", now) == 0 &&
        set_str(payload, "jti", jti) == 0 &&
        copy_extra(payload, claims, s->claims ? s->claims : mint_default_claims) == 0)
        r = sign(s, k, header, payload, out, why);
    json_decref(payload);
    json_decref(header);
    if (r == MINT_OK)
        out->exp = exp;
    return r;
}

/* ---- allow-list ---- */

void mint_claims_free(char **claims)
{
    if (!claims)
        return;
    for (size_t i = 0; claims[i]; i++)
        free(claims[i]);
    free(claims);
}

static int claim_name_ok(const char *p, size_t len, char *err, size_t errlen)
{
    if (len > MINT_MAX_CLAIM_NAME) {
        snprintf(err, errlen, "claim name longer than %d bytes", MINT_MAX_CLAIM_NAME);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f || p[i] == '"') {
            snprintf(err, errlen, "claim names are printable ASCII without quotes");
            return -1;
        }
    }
    return 0;
}

int mint_parse_claims(const char *list, char ***out, char *err, size_t errlen)
{
    char **names = calloc(MINT_MAX_CLAIM_NAMES + 1, sizeof(*names));
    size_t n = 0;
    *out = NULL;
    if (!names) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *p = list ? list : "";
    while (*p) {
        size_t skip = strspn(p, ", \t");
        p += skip;
        size_t len = strcspn(p, ", \t");
        if (!len)
            continue;
        char *name = NULL;
        if (n == MINT_MAX_CLAIM_NAMES)
            snprintf(err, errlen, "more than %d claim names", MINT_MAX_CLAIM_NAMES);
        else if (claim_name_ok(p, len, err, errlen) == 0 && !(name = mem_strdup(p, len)))
            snprintf(err, errlen, "out of memory");
        if (name && mint_claim_reserved(name)) {
            snprintf(err, errlen, "claim '%s' is set by the gateway itself or never copied", name);
            free(name);
            name = NULL;
        }
        if (!name) {
            mint_claims_free(names);
            return -1;
        }
        names[n++] = name;
        p += len;
    }
    *out = names;
    return 0;
}
