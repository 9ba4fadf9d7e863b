/* Logout Token validation: see logout_token.h.
 *
 * The order follows section 2.6 of the spec: the signature first (nothing in an unsigned payload
 * is worth reading), then iss, aud, iat/exp, the events claim, sub/sid, nonce, and the jti replay
 * check last, so that only a token that passed everything is remembered (an attacker cannot fill
 * the replay cache with garbage: it needs tokens the IdP signed).
 *
 * The replay cache holds SHA-256(jti) and the time after which the token would fail the iat/exp
 * checks anyway; past that time the entry is dead and its slot reusable, so the cache is exact for
 * as long as it is not full. When it is full (more logouts inside one max_age window than
 * replay_cap), the entry whose window closes first is dropped: a replayed logout only repeats a
 * purge, which costs an introspection, whereas refusing fresh logouts would keep revoked sessions
 * cached. Lookups scan the array: it is bounded and logouts are rare next to requests. */
#include "logout_token.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "hex.h"
#include "jws_verify.h"
#include "jwt.h"

struct replay_entry {
    uint8_t h[SHA256_DIGEST_LENGTH];
    int64_t until; /* seconds; 0 = free slot */
};

struct logout_validator {
    char *issuer, *client_id;
    uint32_t skew, max_age;
    logout_clock_fn clock;
    void *clock_ud;
    size_t cap, used; /* used: slots ever filled, live or dead */
    struct replay_entry *seen;
};

static int64_t real_clock(void *ud)
{
    (void)ud;
    return (int64_t)time(NULL);
}

struct logout_validator *logout_validator_new(const struct logout_config *cfg,
                                              logout_clock_fn clock, void *clock_ud)
{
    if (!cfg->issuer || !*cfg->issuer || !cfg->client_id || !*cfg->client_id)
        return NULL;
    struct logout_validator *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->issuer = strdup(cfg->issuer);
    v->client_id = strdup(cfg->client_id);
    v->skew = cfg->skew ? cfg->skew : 60;
    v->max_age = cfg->max_age ? cfg->max_age : 300;
    v->cap = cfg->replay_cap ? cfg->replay_cap : LOGOUT_REPLAY_DEFAULT;
    v->seen = calloc(v->cap, sizeof(*v->seen));
    v->clock = clock ? clock : real_clock;
    v->clock_ud = clock_ud;
    if (!v->issuer || !v->client_id || !v->seen) {
        logout_validator_free(v);
        return NULL;
    }
    return v;
}

void logout_validator_free(struct logout_validator *v)
{
    if (!v)
        return;
    free(v->issuer);
    free(v->client_id);
    free(v->seen);
    free(v);
}

void logout_validator_reset(struct logout_validator *v)
{
    memset(v->seen, 0, v->cap * sizeof(*v->seen));
    v->used = 0;
}

size_t logout_replay_count(const struct logout_validator *v)
{
    int64_t now = v->clock(v->clock_ud);
    size_t n = 0;
    for (size_t i = 0; i < v->used; i++)
        n += v->seen[i].until > now;
    return n;
}

void logout_request_clear(struct logout_request *r)
{
    free(r->sub);
    free(r->sid);
    r->sub = r->sid = NULL;
}

/* ---- replay cache ---- */

static bool replay_seen(const struct logout_validator *v, const uint8_t h[32], int64_t now)
{
    for (size_t i = 0; i < v->used; i++)
        if (v->seen[i].until > now && CRYPTO_memcmp(v->seen[i].h, h, 32) == 0)
            return true;
    return false;
}

/* A dead slot if any, else a never used one, else the live entry that expires first. */
static struct replay_entry *replay_slot(struct logout_validator *v, int64_t now)
{
    struct replay_entry *soonest = NULL;
    for (size_t i = 0; i < v->used; i++) {
        struct replay_entry *e = &v->seen[i];
        if (e->until <= now)
            return e;
        if (!soonest || e->until < soonest->until)
            soonest = e;
    }
    if (v->used < v->cap)
        return &v->seen[v->used++];
    return soonest;
}

static void replay_remember(struct logout_validator *v, const uint8_t h[32], int64_t until,
                            int64_t now)
{
    struct replay_entry *e = replay_slot(v, now);
    memcpy(e->h, h, 32);
    e->until = until;
}

/* ---- claims ---- */

/* A string claim without NUL, 1..LOGOUT_CLAIM_MAX bytes. NULL when absent or unusable; *bad is
 * set when present but unusable. */
static const char *claim_string(json_t *p, const char *name, bool *bad)
{
    json_t *v = json_object_get(p, name);
    *bad = false;
    if (!v)
        return NULL;
    size_t len = json_is_string(v) ? json_string_length(v) : 0;
    if (len == 0 || len > LOGOUT_CLAIM_MAX || strlen(json_string_value(v)) != len) {
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

/* NumericDate: a number in [0, JWT_MAX_EXP], fractions truncated. 1 present, 0 absent, -1 bad. */
static int claim_time(json_t *p, const char *name, int64_t *out)
{
    json_t *v = json_object_get(p, name);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return -1;
    double d = json_number_value(v);
    if (!isfinite(d) || d < 0 || d > (double)JWT_MAX_EXP)
        return -1;
    *out = (int64_t)d;
    return 1;
}

static bool aud_contains(json_t *aud, const char *client_id)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), client_id) == 0;
    if (!json_is_array(aud))
        return false;
    size_t i;
    json_t *e;
    json_array_foreach(aud, i, e)
    {
        if (json_is_string(e) && strcmp(json_string_value(e), client_id) == 0)
            return true;
    }
    return false;
}

/* typ absent, "JWT" or "logout+jwt" (RFC 7515 section 4.1.9: the "application/" prefix may be
 * present and media types compare case-insensitively). Anything else is some other kind of JWT. */
static bool typ_ok(const struct jws_header *h)
{
    const char *t = h->typ;
    if (!h->has_typ)
        return true;
    if (strncasecmp(t, "application/", 12) == 0)
        t += 12;
    return strcasecmp(t, "logout+jwt") == 0 || strcasecmp(t, "JWT") == 0;
}

/* iat present and within [now - max_age - skew, now + skew]; exp, if present, not passed. Sets
 * *until to the time after which the token fails these checks (for the replay cache). */
static const char *check_times(const struct logout_validator *v, json_t *p, int64_t now,
                               int64_t *until)
{
    int64_t iat = 0, exp = 0;
    int has_iat = claim_time(p, "iat", &iat), has_exp = claim_time(p, "exp", &exp);
    if (has_iat != 1)
        return "logout token iat is missing or not a NumericDate";
    if (has_exp < 0)
        return "logout token exp is not a NumericDate";
    if (iat > now + v->skew)
        return "logout token iat is in the future";
    if (iat + v->max_age + v->skew < now)
        return "logout token is too old";
    if (has_exp == 1 && exp + v->skew <= now)
        return "logout token has expired";
    *until = iat + v->max_age + v->skew + 1;
    if (has_exp == 1 && exp + v->skew < *until)
        *until = exp + v->skew;
    return NULL;
}

static const char *check_events(json_t *p)
{
    json_t *ev = json_object_get(p, "events");
    if (!json_is_object(ev))
        return "logout token has no events object";
    if (!json_is_object(json_object_get(ev, LOGOUT_EVENT)))
        return "logout token events lacks the back-channel logout event";
    return NULL;
}

/* Everything but the signature and the replay check. */
static const char *check_claims(const struct logout_validator *v, json_t *p, int64_t now,
                                int64_t *until)
{
    bool bad;
    const char *iss = claim_string(p, "iss", &bad), *why;
    if (!iss || strcmp(iss, v->issuer) != 0)
        return "logout token iss is not the configured issuer";
    if (!aud_contains(json_object_get(p, "aud"), v->client_id))
        return "logout token aud does not contain our client id";
    if ((why = check_times(v, p, now, until)) != NULL)
        return why;
    if ((why = check_events(p)) != NULL)
        return why;
    if (json_object_get(p, "nonce"))
        return "logout token must not contain a nonce";
    bool bad_sub, bad_sid;
    const char *sub = claim_string(p, "sub", &bad_sub), *sid = claim_string(p, "sid", &bad_sid);
    if (bad_sub || bad_sid)
        return "logout token sub or sid is not a usable string";
    if (!sub && !sid)
        return "logout token has neither sub nor sid";
    if (!claim_string(p, "jti", &bad))
        return "logout token jti is missing or not a usable string";
    return NULL;
}

static bool copy_request(json_t *p, struct logout_request *out)
{
    json_t *sub = json_object_get(p, "sub"), *sid = json_object_get(p, "sid");
    out->sub = sub ? strdup(json_string_value(sub)) : NULL;
    out->sid = sid ? strdup(json_string_value(sid)) : NULL;
    if ((sub && !out->sub) || (sid && !out->sid)) {
        logout_request_clear(out);
        return false;
    }
    return true;
}

/* Header and signature. Returns the verified payload or NULL with *res and *why set. */
static json_t *verified_payload(const struct jwks *keys, const char *token, size_t len,
                                enum logout_result *res, const char **why)
{
    struct jws_header h;
    bool unknown = false;
    *res = LOGOUT_INVALID;
    if (jws_parse_header(token, len, &h, why) != 0)
        return NULL;
    if (!typ_ok(&h)) {
        *why = "logout token typ is neither logout+jwt nor JWT";
        return NULL;
    }
    const struct jwk *k = jwks_select(keys, h.has_kid ? h.kid : NULL, h.alg, &unknown, why);
    if (!k) {
        if (unknown)
            *res = LOGOUT_UNKNOWN_KEY;
        return NULL;
    }
    if (jws_verify(token, len, h.alg, k, why) != 0)
        return NULL;
    return jws_payload(token, len, why);
}

enum logout_result logout_token_validate(struct logout_validator *v, const struct jwks *keys,
                                         const char *token, size_t len, struct logout_request *out,
                                         const char **why)
{
    const char *dummy;
    enum logout_result res;
    int64_t now = v->clock(v->clock_ud), until = 0;
    uint8_t h[SHA256_DIGEST_LENGTH];
    if (!why)
        why = &dummy;
    out->sub = out->sid = NULL;
    json_t *p = verified_payload(keys, token, len, &res, why);
    if (!p)
        return res;
    res = LOGOUT_INVALID;
    const char *bad = check_claims(v, p, now, &until);
    json_t *jti = json_object_get(p, "jti");
    if (bad) {
        *why = bad;
    } else if (!SHA256((const unsigned char *)json_string_value(jti), json_string_length(jti), h)) {
        *why = "out of memory";
    } else if (replay_seen(v, h, now)) {
        *why = "logout token jti was already used";
    } else if (!copy_request(p, out)) {
        *why = "out of memory";
    } else {
        replay_remember(v, h, until, now);
        res = LOGOUT_OK;
    }
    json_decref(p);
    return res;
}

/* ---- the form body ---- */

/* Decodes one form value into out (at least len + 1 bytes). -1 on a bad escape or a NUL. */
static long form_decode(const char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < len ? hex_digit((unsigned char)in[i + 1]) : -1;
            int lo = i + 2 < len ? hex_digit((unsigned char)in[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0')
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return (long)o;
}

long logout_form_token(const char *body, size_t len, char **out, const char **why)
{
    static const char name[] = "logout_token=";
    const size_t nlen = sizeof(name) - 1;
    const char *dummy, *val = NULL;
    size_t vlen = 0;
    if (!why)
        why = &dummy;
    *out = NULL;
    for (size_t i = 0; i < len;) {
        const char *amp = memchr(body + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - body) : len;
        if (end - i >= nlen && memcmp(body + i, name, nlen) == 0) {
            if (val) {
                *why = "logout_token is given twice";
                return -1;
            }
            val = body + i + nlen;
            vlen = end - i - nlen;
        }
        i = end + 1;
    }
    if (!val || vlen == 0) {
        *why = "the body has no logout_token field";
        return -1;
    }
    char *buf = malloc(vlen + 1);
    if (!buf) {
        *why = "out of memory";
        return -1;
    }
    long n = form_decode(val, vlen, buf);
    if (n <= 0) {
        free(buf);
        *why = "logout_token is not form-urlencoded";
        return -1;
    }
    *out = buf;
    return n;
}
