/* Compact JWS shape checks and claim extraction (RFC 7515 section 7.1, RFC 7519, RFC 9068).
 * The signature is not verified: the JWT comes straight from the IdP over TLS and the API verifies
 * it. What is checked here is what the agent itself relies on: that the value forwarded to the API
 * is a well-formed JWS (only base64url and dots, so it is safe in a header), and that the claims
 * the decision uses (exp, scope) have the types the RFCs give them. */
#include "jwt.h"
#include "memdup.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* The base64url alphabet (RFC 4648 section 5): each character's value plus one, 0 for any other
 * byte. A table, not a chain of range tests: JWTs are decoded on every introspection. */
static const uint8_t B64URL[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['-'] = 63, ['_'] = 64,
};

/* The value of c, or -1. */
static int b64url_value(unsigned char c)
{
    return (int)B64URL[c] - 1;
}

size_t b64url_encode(const void *data, size_t len, char *out)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const uint8_t *in = data;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = A[v >> 18];
        out[o++] = A[(v >> 12) & 63];
        out[o++] = A[(v >> 6) & 63];
        out[o++] = A[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = A[v >> 18];
        out[o++] = A[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = A[v >> 18];
        out[o++] = A[(v >> 12) & 63];
        out[o++] = A[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

/* Drops up to two '=' of padding. Padding, when present, must complete a 4-char group, so that
 * "QQ=" (neither padded nor unpadded) is refused. Returns the unpadded length or -1. */
static long strip_padding(const char *in, size_t len)
{
    size_t n = len;
    while (n > 0 && in[n - 1] == '=' && len - n < 2)
        n--;
    if (n > 0 && in[n - 1] == '=')
        return -1; /* three or more '=' */
    if (n != len && len % 4 != 0)
        return -1;
    return (long)n;
}

long b64url_decode(const char *in, size_t len, uint8_t *out)
{
    long n = strip_padding(in, len);
    if (n < 0 || n % 4 == 1)
        return -1; /* one char left over carries only 6 bits: no byte can end there */
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    long i = 0;
    /* whole groups of 4 characters: 3 bytes each */
    for (; i + 4 <= n; i += 4) {
        const unsigned char *q = (const unsigned char *)in + i;
        uint8_t a = B64URL[q[0]], b = B64URL[q[1]], c = B64URL[q[2]], d = B64URL[q[3]];
        if (!a || !b || !c || !d)
            return -1;
        uint32_t v = (uint32_t)(a - 1) << 18 | (uint32_t)(b - 1) << 12 | (uint32_t)(c - 1) << 6 |
                     (uint32_t)(d - 1);
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    for (; i < n; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (long)o;
}

/* Decodes one JWS part into a fresh buffer. Returns the length, or -1 (bad base64url or ENOMEM). */
static long decode_part(const char *p, size_t len, uint8_t **out)
{
    *out = malloc(len * 3 / 4 + 3);
    if (!*out)
        return -1;
    long n = b64url_decode(p, len, *out);
    if (n < 0) {
        free(*out);
        *out = NULL;
    }
    return n;
}

/* Decodes a base64url part and parses it as a JSON object; NULL otherwise. Duplicate member names
 * are refused: RFC 7519 section 4 lets a parser reject them, and two different "exp" or "scope"
 * values would make our reading differ from the API's. */
static json_t *decode_json_object(const char *p, size_t len)
{
    uint8_t *raw;
    long n = decode_part(p, len, &raw);
    if (n < 0)
        return NULL;
    json_t *j = json_loadb((const char *)raw, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static bool part_is_b64url(const char *p, size_t len)
{
    uint8_t *raw;
    long n = decode_part(p, len, &raw);
    free(raw);
    return n >= 0;
}

/* Splits a compact JWS at its two dots. Returns false unless there are exactly three parts. */
static bool split_jws(const char *jwt, size_t len, size_t dots[2])
{
    int found = 0;
    for (size_t i = 0; i < len; i++) {
        if (jwt[i] != '.')
            continue;
        if (found == 2)
            return false;
        dots[found++] = i;
    }
    return found == 2;
}

/* Claim values end up in SPOE variables that HAProxy configurations copy into headers and logs, so
 * control characters (CR/LF above all) are refused outright rather than passed along. */
static bool has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

/* Reads exp as NumericDate: an integer, or a real truncated towards zero (RFC 7519 section 2 allows
 * fractions). Returns 1 when present, 0 when absent or null, -1 when it has an unusable value. */
static int read_exp(json_t *payload, int64_t *exp)
{
    json_t *v = json_object_get(payload, "exp");
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > JWT_MAX_EXP)
            return -1;
        *exp = (int64_t)i;
        return 1;
    }
    if (!json_is_real(v))
        return -1;
    double d = json_real_value(v);
    if (!isfinite(d) || d < 0 || d > (double)JWT_MAX_EXP)
        return -1;
    *exp = (int64_t)d;
    return 1;
}

/* Reads an optional string claim into a heap copy. Returns 0 (absent, null, or copied) or -1 when
 * the claim has another type, a control character, or on ENOMEM. */
static int read_string(json_t *payload, const char *name, char **out)
{
    json_t *v = json_object_get(payload, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (has_control(s, len))
        return -1;
    *out = mem_strdup(s, len);
    return *out ? 0 : -1;
}

/* Collapses runs of spaces into one and trims both ends, in place. NULL when nothing remains, so an
 * empty scope reads exactly like an absent one. */
static char *normalise_scope(char *s)
{
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == ' ' && (o == 0 || s[o - 1] == ' '))
            continue;
        s[o++] = s[i];
    }
    if (o > 0 && s[o - 1] == ' ')
        o--;
    s[o] = '\0';
    if (o == 0) {
        free(s);
        return NULL;
    }
    return s;
}

/* Joins a JSON array of strings with single spaces. NULL on a non-string element, a control
 * character, or ENOMEM. */
static char *join_scope_array(json_t *arr)
{
    size_t total = 1, idx;
    json_t *e;
    json_array_foreach(arr, idx, e)
    {
        if (!json_is_string(e) || has_control(json_string_value(e), json_string_length(e)))
            return NULL;
        total += json_string_length(e) + 1;
    }
    char *s = malloc(total);
    if (!s)
        return NULL;
    size_t o = 0;
    json_array_foreach(arr, idx, e)
    {
        memcpy(s + o, json_string_value(e), json_string_length(e));
        o += json_string_length(e);
        s[o++] = ' ';
    }
    s[o] = '\0';
    return s;
}

/* scope is a space-separated string (RFC 8693 section 4.2, RFC 9068 section 2.2.3); some IdPs send
 * a JSON array of strings instead ("scp"-style), which reads the same once joined. */
static int read_scope(json_t *payload, char **out)
{
    json_t *v = json_object_get(payload, "scope");
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    char *s = NULL;
    if (json_is_string(v)) {
        if (has_control(json_string_value(v), json_string_length(v)))
            return -1;
        s = mem_strdup(json_string_value(v), json_string_length(v));
    } else if (json_is_array(v)) {
        s = join_scope_array(v);
    } else {
        return -1;
    }
    if (!s)
        return -1;
    *out = normalise_scope(s);
    return 0;
}

static int read_claims(json_t *payload, struct token_claims *c, const char **why)
{
    if (!json_is_object(payload)) {
        *why = "claims are not a JSON object";
        return -1;
    }
    int r = read_exp(payload, &c->exp);
    if (r < 0) {
        *why = "JWT exp is not a valid NumericDate";
        return -1;
    }
    c->has_exp = r == 1;
    if (read_string(payload, "sub", &c->sub) < 0 ||
        read_string(payload, "client_id", &c->client_id) < 0) {
        *why = "JWT sub or client_id is not a usable string";
        return -1;
    }
    if (read_string(payload, "sid", &c->sid) < 0) {
        *why = "JWT sid is not a usable string";
        return -1;
    }
    if (read_scope(payload, &c->scope) < 0) {
        *why = "JWT scope is not a usable string or array of strings";
        return -1;
    }
    return 0;
}

/* Checks the JWS shape; returns the payload object (a new reference) or NULL with *why set. */
static json_t *check_jws(const char *jwt, size_t len, const char **why)
{
    size_t d[2];
    if (len == 0 || len > JWT_MAX_LEN) {
        *why = len ? "JWT too long" : "JWT empty";
        return NULL;
    }
    if (!split_jws(jwt, len, d)) {
        *why = "JWT is not three dot-separated parts";
        return NULL;
    }
    size_t hlen = d[0], plen = d[1] - d[0] - 1, slen = len - d[1] - 1;
    /* An empty signature would be an unsecured JWS (alg "none"): no API should accept it, and an
     * IdP that issues one is misconfigured, so it surfaces here as an IdP error rather than at the
     * API. */
    if (hlen == 0 || plen == 0 || slen == 0) {
        *why = "JWT has an empty part";
        return NULL;
    }
    json_t *header = decode_json_object(jwt, hlen);
    if (!header) {
        *why = "JWT header is not base64url JSON object";
        return NULL;
    }
    json_decref(header);
    if (!part_is_b64url(jwt + d[1] + 1, slen)) {
        *why = "JWT signature is not base64url";
        return NULL;
    }
    json_t *payload = decode_json_object(jwt + d[0] + 1, plen);
    if (!payload)
        *why = "JWT payload is not base64url JSON object";
    return payload;
}

/* Reads the claims from the payload itself or, for an RFC 9701 answer, from its nested
 * "token_introspection" object, whose boolean "active" must be present. *from is the object the
 * claims were read from (borrowed from payload), NULL when inactive. */
static int claims_from(json_t *payload, const char *nested, bool *active, struct token_claims *c,
                       json_t **from, const char **why)
{
    *active = true;
    *from = payload;
    if (!nested)
        return read_claims(payload, c, why);
    json_t *obj = json_object_get(payload, nested);
    json_t *act = json_object_get(obj, "active");
    *from = NULL;
    if (!json_is_object(obj) || !json_is_boolean(act)) {
        *why = "introspection JWT has no token_introspection object with a boolean active";
        return -1;
    }
    *active = json_is_true(act);
    if (!*active)
        return 0;
    *from = obj;
    return read_claims(obj, c, why);
}

static int parse(const char *jwt, size_t len, const char *nested, bool *active,
                 struct token_claims *c, json_t **obj, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    memset(c, 0, sizeof(*c));
    if (obj)
        *obj = NULL;
    *active = false;
    json_t *payload = check_jws(jwt, len, why);
    if (!payload)
        return -1;
    json_t *from;
    int r = claims_from(payload, nested, active, c, &from, why);
    if (r == 0 && obj && from)
        *obj = json_incref(from);
    json_decref(payload);
    if (r < 0)
        token_claims_clear(c);
    return r;
}

int jwt_parse_claims(const char *jwt, size_t len, struct token_claims *c, const char **why)
{
    return jwt_parse_claims_obj(jwt, len, c, NULL, why);
}

int jwt_parse_claims_obj(const char *jwt, size_t len, struct token_claims *c, json_t **obj,
                         const char **why)
{
    bool active;
    return parse(jwt, len, NULL, &active, c, obj, why);
}

int jwt_parse_introspection(const char *jwt, size_t len, bool *active, struct token_claims *c,
                            const char **why)
{
    return jwt_parse_introspection_obj(jwt, len, active, c, NULL, why);
}

int jwt_parse_introspection_obj(const char *jwt, size_t len, bool *active, struct token_claims *c,
                                json_t **obj, const char **why)
{
    return parse(jwt, len, "token_introspection", active, c, obj, why);
}

int jwt_claims_from_json(json_t *obj, struct token_claims *c, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    memset(c, 0, sizeof(*c));
    int r = read_claims(obj, c, why);
    if (r < 0)
        token_claims_clear(c);
    return r;
}
