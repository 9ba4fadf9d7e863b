/* The fast path's pure part (see fastpath.h): admission, the map key, command lines, the table. */
#include "fastpath.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "spop.h" /* HAProxy's varint, which set-headers-bin reads too */

const char *fp_refusal_name(enum fp_refusal r)
{
    switch (r) {
    case FP_OK:
        return "ok";
    case FP_NOT_200:
        return "not-200";
    case FP_NO_JWT:
        return "no-jwt";
    case FP_BAD_JWT:
        return "bad-jwt";
    case FP_MULTI_AUTH:
        return "multi-auth";
    case FP_BAD_AUTH:
        return "bad-auth";
    case FP_BAD_SCOPES:
        return "bad-scopes";
    case FP_BAD_AUDIENCE:
        return "bad-audience";
    case FP_SHORT_LIFETIME:
        return "short-lifetime";
    }
    return "?";
}

/* ---- admission ---- */

/* base64url and the dots of a compact JWS/JWE: what a map value may hold after "<exp>:". */
static bool is_jwt_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

static bool jwt_ok(const char *jwt, size_t len, size_t max)
{
    if (len == 0 || len > max || len > FP_JWT_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_jwt_char((unsigned char)jwt[i]))
            return false;
    return true;
}

/* The key's message is auth "|" scopes "|" audience "|" secret. With '|' in no part (the secret is
 * base64)
 * the message splits one way only, so no other (auth, scopes) pair can share an entry's key. Only
 * visible ASCII and spaces: HAProxy never sends anything else in a header value it parsed. */
static bool key_part_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '|')
            return false;
    }
    return true;
}

static int64_t min_positive(int64_t a, int64_t b)
{
    if (b <= 0)
        return a;
    return b < a ? b : a;
}

enum fp_refusal fp_admit(const struct fp_candidate *c, const struct fp_limits *l, int64_t now,
                         int64_t *expires)
{
    if (c->status != 200)
        return FP_NOT_200;
    if (!c->jwt || c->jwt_len == 0)
        return FP_NO_JWT;
    if (!jwt_ok(c->jwt, c->jwt_len, l->max_jwt))
        return FP_BAD_JWT;
    if (c->auth_count != 1)
        return FP_MULTI_AUTH;
    if (!c->auth || c->auth_len == 0 || c->auth_len > l->max_auth ||
        !key_part_ok(c->auth, c->auth_len))
        return FP_BAD_AUTH;
    if (c->scopes && !key_part_ok(c->scopes, c->scopes_len))
        return FP_BAD_SCOPES;
    if (c->audience && !key_part_ok(c->audience, c->audience_len))
        return FP_BAD_AUDIENCE;
    int64_t end = now + (int64_t)l->ttl;
    if (c->token_exp > 0)
        end = min_positive(end, c->token_exp - (int64_t)l->skew);
    end = min_positive(end, c->not_after);
    /* The cfg reads the expiry as 10 digits: anything else is refused, never mis-parsed. */
    if (end <= now || end > 9999999999LL || end < 1000000000LL)
        return FP_SHORT_LIFETIME;
    *expires = end;
    return FP_OK;
}

/* ---- the shared key ---- */

static bool is_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '=';
}

static int perr(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return -1;
}

/* One "fastpath-key <base64>" line: exactly one space or tab run between, nothing after (HAProxy
 * and the agent must read the same bytes, so nothing that either could trim is accepted). */
static int parse_key_line(const char *p, size_t n, char out[FP_SECRET_MAX + 1], char *err,
                          size_t errlen)
{
    static const char name[] = "fastpath-key";
    size_t nl = sizeof(name) - 1;
    if (n <= nl || memcmp(p, name, nl) != 0 || (p[nl] != ' ' && p[nl] != '\t'))
        return perr(err, errlen, "the key file's line must be \"fastpath-key <base64>\"");
    size_t i = nl;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    size_t vlen = n - i;
    if (vlen < FP_SECRET_MIN || vlen > FP_SECRET_MAX)
        return perr(err, errlen, "the fast-path key must be the base64 of 32 to 96 random bytes");
    for (size_t k = i; k < n; k++)
        if (!is_b64_char((unsigned char)p[k]))
            return perr(err, errlen,
                        "the fast-path key holds a byte outside base64 (or a "
                        "trailing space or CR)");
    memcpy(out, p + i, vlen);
    out[vlen] = '\0';
    return 0;
}

int fp_secret_parse(const char *text, size_t len, char out[FP_SECRET_MAX + 1], char *err,
                    size_t errlen)
{
    bool found = false;
    size_t pos = 0;
    while (pos < len) {
        const char *nlp = memchr(text + pos, '\n', len - pos);
        size_t end = nlp ? (size_t)(nlp - text) : len;
        const char *line = text + pos;
        size_t n = end - pos;
        pos = end + 1;
        if (memchr(line, '\0', n))
            return perr(err, errlen, "the key file holds a NUL byte");
        size_t lead = 0;
        while (lead < n && (line[lead] == ' ' || line[lead] == '\t'))
            lead++;
        if (lead == n || line[lead] == '#')
            continue;
        if (lead != 0)
            return perr(err, errlen, "the key file's line must not be indented");
        if (found)
            return perr(err, errlen, "the key file holds more than one key line");
        if (parse_key_line(line, n, out, err, errlen) < 0)
            return -1;
        found = true;
    }
    if (!found)
        return perr(err, errlen, "the key file has no \"fastpath-key <base64>\" line");
    return 0;
}

/* ---- the map key ---- */

int fp_map_key(const char *secret, size_t secret_len, const char *auth, size_t auth_len,
               const char *scopes, size_t scopes_len, const char *audience, size_t audience_len,
               char out[FP_KEY_HEX + 1])
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, auth, auth_len) == 1 && EVP_DigestUpdate(ctx, "|", 1) == 1 &&
             (!scopes || EVP_DigestUpdate(ctx, scopes, scopes_len) == 1) &&
             EVP_DigestUpdate(ctx, "|", 1) == 1 &&
             (!audience || EVP_DigestUpdate(ctx, audience, audience_len) == 1) &&
             EVP_DigestUpdate(ctx, "|", 1) == 1 && EVP_DigestUpdate(ctx, secret, secret_len) == 1 &&
             EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen >= FP_KEY_HEX / 2;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    for (size_t i = 0; i < FP_KEY_HEX / 2; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }
    out[FP_KEY_HEX] = '\0';
    OPENSSL_cleanse(md, sizeof(md));
    return 0;
}

/* ---- command lines ---- */

static bool is_map_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '/' || c == '#' || c == '@' || c == ':' || c == '+' || c == '-';
}

bool fp_map_name_valid(const char *name)
{
    if (!name || !*name || name[0] == '@')
        return false;
    size_t n = strnlen(name, FP_MAP_NAME_MAX + 1);
    if (n > FP_MAP_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_map_char((unsigned char)name[i]))
            return false;
    return true;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

bool fp_route_valid(const char *route)
{
    if (!route)
        return false;
    if (!*route)
        return true;
    if (strnlen(route, FP_PREFIX_MAX) >= FP_PREFIX_MAX - 1 || route[0] != '@')
        return false;
    return all_digits(route[1] == '!' ? route + 2 : route + 1);
}

static bool key_valid(const char *key)
{
    if (!key || strnlen(key, FP_KEY_HEX + 1) != FP_KEY_HEX)
        return false;
    for (size_t i = 0; i < FP_KEY_HEX; i++)
        if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'A' && key[i] <= 'F')))
            return false;
    return true;
}

/* "<route> " or "" */
static int route_prefix(const char *route, char out[FP_PREFIX_MAX + 1])
{
    if (!fp_route_valid(route))
        return -1;
    snprintf(out, FP_PREFIX_MAX + 1, "%s%s", route, *route ? " " : "");
    return 0;
}

static long finish(char *buf, size_t cap, int n)
{
    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            buf[0] = '\0';
        return -1;
    }
    return n;
}

enum fp_value_format fp_value_format_for(int haproxy_version)
{
    return haproxy_version >= 304 ? FP_VALUE_HDRS_BIN : FP_VALUE_JWT;
}

/* Appends n bytes at buf + len, each as %XX when escape_all or outside [A-Za-z0-9._-] (what
 * url_dec turns back, and what the CLI takes as one plain word). The new length, or -1 when cap
 * is too small. */
static long pct_put(char *buf, size_t cap, size_t len, const uint8_t *p, size_t n, bool escape_all)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        if (!escape_all && is_jwt_char(p[i])) {
            if (len + 1 >= cap)
                return -1;
            buf[len++] = (char)p[i];
            continue;
        }
        if (len + 3 >= cap)
            return -1;
        buf[len++] = '%';
        buf[len++] = hex[p[i] >> 4];
        buf[len++] = hex[p[i] & 15];
    }
    return (long)len;
}

/* The FP_VALUE_HDRS_BIN text of jwt (already checked by jwt_ok) at buf + len: the head, whose
 * filler record grows by 3 bytes for every byte the length varint is shorter than 3 (each varint
 * byte is always written as %XX), then the JWT. */
static long hdrs_bin_put(char *buf, size_t cap, size_t len, const char *jwt, size_t jwt_len)
{
    static const char name[] = "Authorization", scheme[] = "Bearer ", filler[] = "xxxxxxx";
    uint8_t v[SPOP_VARINT_MAX], n[SPOP_VARINT_MAX];
    size_t vlen = spop_varint_encode(sizeof(scheme) - 1 + jwt_len, v, sizeof(v));
    if (vlen > 3)
        return -1;
    size_t fill = 1 + 3 * (3 - vlen);
    long at = pct_put(buf, cap, len, n, spop_varint_encode(fill, n, sizeof(n)), true);
    if (at >= 0)
        at = pct_put(buf, cap, (size_t)at, (const uint8_t *)filler, fill, false);
    if (at >= 0)
        at = pct_put(buf, cap, (size_t)at, (const uint8_t *)"", 1, true); /* the empty value */
    if (at >= 0)
        at = pct_put(buf, cap, (size_t)at, n, spop_varint_encode(sizeof(name) - 1, n, sizeof(n)),
                     true);
    if (at >= 0)
        at = pct_put(buf, cap, (size_t)at, (const uint8_t *)name, sizeof(name) - 1, false);
    if (at >= 0)
        at = pct_put(buf, cap, (size_t)at, v, vlen, true);
    if (at >= 0)
        at = pct_put(buf, cap, (size_t)at, (const uint8_t *)scheme, sizeof(scheme) - 1, false);
    if (at < 0 || (size_t)at - len != FP_HDRS_BIN_HEAD)
        return -1;
    return pct_put(buf, cap, (size_t)at, (const uint8_t *)jwt, jwt_len, false);
}

long fp_cmd_put(char *buf, size_t cap, bool replace, const char *route, const char *map,
                const char *key, int64_t expires, enum fp_value_format fmt, const char *jwt,
                size_t jwt_len)
{
    char pfx[FP_PREFIX_MAX + 1];
    if (!buf || route_prefix(route, pfx) < 0 || !fp_map_name_valid(map) || !key_valid(key) ||
        expires < 1000000000LL || expires > 9999999999LL || !jwt_ok(jwt, jwt_len, FP_JWT_MAX))
        return finish(buf, cap, -1);
    if (fmt == FP_VALUE_JWT) {
        int n = snprintf(buf, cap, "%s%s map %s %s %010" PRId64 ":%.*s\n", pfx,
                         replace ? "set" : "add", map, key, expires, (int)jwt_len, jwt);
        return finish(buf, cap, n);
    }
    int n = snprintf(buf, cap, "%s%s map %s %s %010" PRId64 ":", pfx, replace ? "set" : "add", map,
                     key, expires);
    if (n < 0 || (size_t)n >= cap)
        return finish(buf, cap, -1);
    long len = hdrs_bin_put(buf, cap, (size_t)n, jwt, jwt_len);
    if (len < 0 || (size_t)len + 1 >= cap)
        return finish(buf, cap, -1);
    buf[len++] = '\n';
    buf[len] = '\0';
    return len;
}

long fp_cmd_del(char *buf, size_t cap, const char *route, const char *map, const char *key)
{
    char pfx[FP_PREFIX_MAX + 1];
    if (!buf || route_prefix(route, pfx) < 0 || !fp_map_name_valid(map) || !key_valid(key))
        return finish(buf, cap, -1);
    return finish(buf, cap, snprintf(buf, cap, "%sdel map %s %s\n", pfx, map, key));
}

long fp_cmd_clear(char *buf, size_t cap, const char *route, const char *map)
{
    char pfx[FP_PREFIX_MAX + 1];
    if (!buf || route_prefix(route, pfx) < 0 || !fp_map_name_valid(map))
        return finish(buf, cap, -1);
    return finish(buf, cap, snprintf(buf, cap, "%sclear map %s\n", pfx, map));
}

/* ---- the table ---- */

struct fp_node {
    struct fp_entry e;
    struct list by_key;   /* bucket chain of the key index */
    struct list by_token; /* bucket chain of the token index */
    size_t heap_idx;      /* position in the expiry heap */
};

struct fp_table {
    size_t max, count, nbuckets; /* nbuckets: a power of two */
    struct list *keys, *tokens;
    struct fp_node **heap; /* min-heap on e.expires, max entries */
};

static uint64_t hash_bytes(const void *p, size_t n)
{
    /* FNV-1a: keys and token ids are digests already, the hash only has to mix them. */
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static struct list *key_bucket(const struct fp_table *t, const char *key)
{
    return &t->keys[hash_bytes(key, FP_KEY_HEX) & (t->nbuckets - 1)];
}

static struct list *token_bucket(const struct fp_table *t, const uint8_t *id)
{
    return &t->tokens[hash_bytes(id, FP_TOKEN_ID_LEN) & (t->nbuckets - 1)];
}

struct fp_table *fp_table_new(size_t max_entries)
{
    if (max_entries == 0 || max_entries > ((size_t)1 << 28))
        return NULL;
    struct fp_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->max = max_entries;
    t->nbuckets = 16;
    while (t->nbuckets < max_entries)
        t->nbuckets <<= 1;
    t->keys = calloc(t->nbuckets, sizeof(*t->keys));
    t->tokens = calloc(t->nbuckets, sizeof(*t->tokens));
    t->heap = calloc(max_entries, sizeof(*t->heap));
    if (!t->keys || !t->tokens || !t->heap) {
        fp_table_free(t);
        return NULL;
    }
    for (size_t i = 0; i < t->nbuckets; i++) {
        list_init(&t->keys[i]);
        list_init(&t->tokens[i]);
    }
    return t;
}

static void node_free(struct fp_node *n)
{
    if (n->e.jwt)
        OPENSSL_cleanse(n->e.jwt, n->e.jwt_len);
    free(n->e.jwt);
    free(n);
}

void fp_table_free(struct fp_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->count; i++)
        node_free(t->heap[i]);
    free(t->keys);
    free(t->tokens);
    free(t->heap);
    free(t);
}

size_t fp_table_count(const struct fp_table *t)
{
    return t->count;
}

size_t fp_table_capacity(const struct fp_table *t)
{
    return t->max;
}

static void heap_swap(struct fp_table *t, size_t a, size_t b)
{
    struct fp_node *x = t->heap[a];
    t->heap[a] = t->heap[b];
    t->heap[b] = x;
    t->heap[a]->heap_idx = a;
    t->heap[b]->heap_idx = b;
}

static void heap_up(struct fp_table *t, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (t->heap[p]->e.expires <= t->heap[i]->e.expires)
            return;
        heap_swap(t, i, p);
        i = p;
    }
}

static void heap_down(struct fp_table *t, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->count && t->heap[l]->e.expires < t->heap[m]->e.expires)
            m = l;
        if (r < t->count && t->heap[r]->e.expires < t->heap[m]->e.expires)
            m = r;
        if (m == i)
            return;
        heap_swap(t, i, m);
        i = m;
    }
}

/* Restores the heap after the expiry of the node at i changed (or another node moved there). */
static void heap_fix(struct fp_table *t, size_t i)
{
    struct fp_node *n = t->heap[i];
    heap_up(t, i);
    heap_down(t, n->heap_idx);
}

/* Unlinks n from every index, tells the caller, frees it. */
static void node_remove(struct fp_table *t, struct fp_node *n, fp_removed_fn removed, void *ud)
{
    size_t i = n->heap_idx;
    t->count--;
    if (i != t->count) {
        t->heap[i] = t->heap[t->count];
        t->heap[i]->heap_idx = i;
        heap_fix(t, i);
    }
    t->heap[t->count] = NULL;
    list_del(&n->by_key);
    list_del(&n->by_token);
    if (removed)
        removed(ud, &n->e);
    node_free(n);
}

static struct fp_node *find(const struct fp_table *t, const char *key)
{
    struct list *head = key_bucket(t, key);
    for (struct list *p = head->next; p != head; p = p->next) {
        struct fp_node *n = list_entry(p, struct fp_node, by_key);
        if (memcmp(n->e.key, key, FP_KEY_HEX) == 0)
            return n;
    }
    return NULL;
}

const struct fp_entry *fp_table_get(const struct fp_table *t, const char *key)
{
    struct fp_node *n = find(t, key);
    return n ? &n->e : NULL;
}

static char *dup_bytes(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

static enum fp_put_result refresh(struct fp_table *t, struct fp_node *n,
                                  const uint8_t token_id[FP_TOKEN_ID_LEN], int64_t expires,
                                  const char *jwt, size_t jwt_len)
{
    bool same_jwt = n->e.jwt_len == jwt_len && memcmp(n->e.jwt, jwt, jwt_len) == 0;
    if (same_jwt && memcmp(n->e.token_id, token_id, FP_TOKEN_ID_LEN) == 0 &&
        expires <= n->e.expires + 1)
        return FP_PUT_UNCHANGED;
    if (!same_jwt) {
        char *copy = dup_bytes(jwt, jwt_len);
        if (!copy)
            return FP_PUT_NOMEM;
        OPENSSL_cleanse(n->e.jwt, n->e.jwt_len);
        free(n->e.jwt);
        n->e.jwt = copy;
        n->e.jwt_len = jwt_len;
    }
    if (memcmp(n->e.token_id, token_id, FP_TOKEN_ID_LEN) != 0) {
        list_del(&n->by_token);
        memcpy(n->e.token_id, token_id, FP_TOKEN_ID_LEN);
        list_insert(token_bucket(t, token_id), &n->by_token);
    }
    n->e.expires = expires;
    heap_fix(t, n->heap_idx);
    return FP_PUT_REPLACED;
}

enum fp_put_result fp_table_put(struct fp_table *t, const char *key,
                                const uint8_t token_id[FP_TOKEN_ID_LEN], int64_t expires,
                                const char *jwt, size_t jwt_len, fp_removed_fn removed, void *ud)
{
    if (!key_valid(key))
        return FP_PUT_NOMEM;
    struct fp_node *n = find(t, key);
    if (n)
        return refresh(t, n, token_id, expires, jwt, jwt_len);
    n = calloc(1, sizeof(*n));
    char *copy = n ? dup_bytes(jwt, jwt_len) : NULL;
    if (!copy) {
        free(n);
        return FP_PUT_NOMEM;
    }
    if (t->count == t->max)
        node_remove(t, t->heap[0], removed, ud);
    memcpy(n->e.key, key, FP_KEY_HEX + 1);
    memcpy(n->e.token_id, token_id, FP_TOKEN_ID_LEN);
    n->e.expires = expires;
    n->e.jwt = copy;
    n->e.jwt_len = jwt_len;
    list_insert(key_bucket(t, key), &n->by_key);
    list_insert(token_bucket(t, token_id), &n->by_token);
    n->heap_idx = t->count;
    t->heap[t->count++] = n;
    heap_up(t, n->heap_idx);
    return FP_PUT_NEW;
}

size_t fp_table_expire(struct fp_table *t, int64_t now, fp_removed_fn removed, void *ud)
{
    size_t n = 0;
    while (t->count > 0 && t->heap[0]->e.expires <= now) {
        node_remove(t, t->heap[0], removed, ud);
        n++;
    }
    return n;
}

size_t fp_table_purge_token(struct fp_table *t, const uint8_t token_id[FP_TOKEN_ID_LEN],
                            fp_removed_fn removed, void *ud)
{
    struct list *head = token_bucket(t, token_id);
    size_t n = 0;
    struct list *p = head->next;
    while (p != head) {
        struct list *next = p->next;
        struct fp_node *node = list_entry(p, struct fp_node, by_token);
        if (CRYPTO_memcmp(node->e.token_id, token_id, FP_TOKEN_ID_LEN) == 0) {
            node_remove(t, node, removed, ud);
            n++;
        }
        p = next;
    }
    return n;
}

size_t fp_table_purge_all(struct fp_table *t, fp_removed_fn removed, void *ud)
{
    size_t n = 0;
    while (t->count > 0) {
        node_remove(t, t->heap[t->count - 1], removed, ud);
        n++;
    }
    return n;
}

int64_t fp_table_next_expiry(const struct fp_table *t)
{
    return t->count ? t->heap[0]->e.expires : 0;
}

void fp_table_foreach(const struct fp_table *t, void (*fn)(void *ud, const struct fp_entry *e),
                      void *ud)
{
    for (size_t i = 0; i < t->count; i++)
        fn(ud, &t->heap[i]->e);
}
