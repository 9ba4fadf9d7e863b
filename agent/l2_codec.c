/* L2 wire format. A blob is: format byte || 96-bit random nonce || AES-256-GCM ciphertext || tag.
 * The associated data is the format byte, a label naming the blob's purpose and what binds it
 * (the entry key for values, the channel for purge messages), so a blob is only ever accepted
 * where it was written. The plaintext is one MessagePack map of scalars keyed by small integers;
 * it is authenticated before it is parsed, and checked for shape and lengths by our own scan
 * before msgpack-c sees it, so msgpack-c never allocates for lengths the bytes do not hold. */
#include "l2_codec.h"

#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "jwt.h"
#include "memdup.h"

#define HKDF_SALT "phantom-token-agent fleet key v1"
#define LABEL_ENTRY "l2 entry key"
#define LABEL_VALUE "l2 value key"
#define LABEL_PURGE "purge message key"
#define AAD_VALUE "pta l2 value v1"
#define AAD_PURGE "pta purge v1"
#define HDR_LEN (1 + L2_NONCE_LEN)
#define MAX_PAIRS 32
#define PURGE_VERSION 1

/* Outcome numbers on the wire, independent of the order of enum token_outcome. */
#define WIRE_ACTIVE 1
#define WIRE_INACTIVE 2

/* Field numbers of the value map. Unknown numbers are skipped (a later agent may add fields). */
enum vfield {
    V_VERSION,
    V_OUTCOME,
    V_EXPIRES,
    V_JWT,
    V_EXP,
    V_SUB,
    V_CLIENT_ID,
    V_SCOPE,
    V_SID,
    V_MINTED_AUD, /* present: the gateway minted V_JWT for this audience (token_info.aud) */
    V_ALT0,       /* minted JWTs for other audiences: aud at V_ALT0 + 2i, JWT at V_ALT0 + 2i + 1 */
};
/* Per-audience JWTs an entry can carry (the field numbers stay below FIELD_SLOTS). */
#define L2_MAX_ALTS 7
/* Field numbers of the purge map. */
enum pfield { P_VERSION, P_KIND, P_VALUE, P_TS, P_ID, P_ORIGIN };
#define FIELD_SLOTS 32

struct l2_codec {
    uint8_t k_entry[L2_KEY_LEN], k_value[32], k_purge[32];
    EVP_MAC *mac;
    EVP_CIPHER *gcm;
};

static const char *const status_names[L2_STATUS_COUNT] = {
    "ok", "size", "auth", "format", "version", "field", "expired", "replay", "nomem", "crypto"};

const char *l2_status_name(enum l2_status s)
{
    return (unsigned)s < L2_STATUS_COUNT ? status_names[s] : "unknown";
}

/* ---- keys ---- */

static int hkdf(const uint8_t *ikm, size_t len, const char *label, uint8_t out[32])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!kc)
        return -1;
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)HKDF_SALT,
                                          sizeof(HKDF_SALT) - 1),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)label, strlen(label)),
        OSSL_PARAM_construct_end()};
    int ok = EVP_KDF_derive(kc, out, 32, p) == 1;
    EVP_KDF_CTX_free(kc);
    return ok ? 0 : -1;
}

struct l2_codec *l2_codec_new(const uint8_t *fleet_key, size_t len)
{
    if (!fleet_key || len < L2_FLEET_KEY_MIN || len > L2_FLEET_KEY_MAX)
        return NULL;
    struct l2_codec *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    c->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (!c->mac || !c->gcm || hkdf(fleet_key, len, LABEL_ENTRY, c->k_entry) < 0 ||
        hkdf(fleet_key, len, LABEL_VALUE, c->k_value) < 0 ||
        hkdf(fleet_key, len, LABEL_PURGE, c->k_purge) < 0) {
        l2_codec_free(c);
        return NULL;
    }
    return c;
}

void l2_codec_free(struct l2_codec *c)
{
    if (!c)
        return;
    EVP_MAC_free(c->mac);
    EVP_CIPHER_free(c->gcm);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

const uint8_t *l2_codec_entry_hmac_key(const struct l2_codec *c, size_t *len)
{
    *len = sizeof(c->k_entry);
    return c->k_entry;
}

int l2_entry_hmac_key_of(const uint8_t *fleet_key, size_t len, uint8_t out[L2_KEY_LEN])
{
    if (!fleet_key || len < L2_FLEET_KEY_MIN || len > L2_FLEET_KEY_MAX)
        return -1;
    return hkdf(fleet_key, len, LABEL_ENTRY, out);
}

int l2_entry_key(const struct l2_codec *c, const char *token, size_t len, uint8_t out[L2_KEY_LEN])
{
    EVP_MAC_CTX *m = EVP_MAC_CTX_new(c->mac);
    if (!m)
        return -1;
    OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                      OSSL_PARAM_construct_end()};
    size_t n = 0;
    int ok = EVP_MAC_init(m, c->k_entry, sizeof(c->k_entry), p) == 1 &&
             EVP_MAC_update(m, (const unsigned char *)token, len) == 1 &&
             EVP_MAC_final(m, out, &n, L2_KEY_LEN) == 1 && n == L2_KEY_LEN;
    EVP_MAC_CTX_free(m);
    return ok ? 0 : -1;
}

int l2_redis_key(const char *prefix, const uint8_t ek[L2_KEY_LEN], char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t pl = strlen(prefix);
    if (cap < pl + 2 * L2_KEY_LEN + 1)
        return -1;
    memcpy(out, prefix, pl);
    for (size_t i = 0; i < L2_KEY_LEN; i++) {
        out[pl + 2 * i] = hex[ek[i] >> 4];
        out[pl + 2 * i + 1] = hex[ek[i] & 15];
    }
    out[pl + 2 * L2_KEY_LEN] = '\0';
    return (int)(pl + 2 * L2_KEY_LEN);
}

/* ---- AEAD ---- */

/* aad = label (with its NUL, so "ab"+"c" and "a"+"bc" differ) || bind. */
static uint8_t *build_aad(const char *label, const void *bind, size_t bind_len, size_t *len)
{
    size_t ll = strlen(label) + 1;
    uint8_t *a = malloc(1 + ll + bind_len);
    if (!a)
        return NULL;
    a[0] = L2_FORMAT;
    memcpy(a + 1, label, ll);
    memcpy(a + 1 + ll, bind, bind_len);
    *len = 1 + ll + bind_len;
    return a;
}

static enum l2_status seal(const struct l2_codec *c, const uint8_t key[32], const uint8_t *aad,
                           size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t **out,
                           size_t *out_len)
{
    size_t total = HDR_LEN + pt_len + L2_TAG_LEN;
    if (total > L2_BLOB_MAX)
        return L2_E_FIELD;
    uint8_t *b = malloc(total);
    if (!b)
        return L2_E_NOMEM;
    b[0] = L2_FORMAT;
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    int ok = x && RAND_bytes(b + 1, L2_NONCE_LEN) == 1 &&
             EVP_EncryptInit_ex2(x, c->gcm, key, b + 1, NULL) == 1 &&
             EVP_EncryptUpdate(x, NULL, &n, aad, (int)aad_len) == 1 &&
             EVP_EncryptUpdate(x, b + HDR_LEN, &n, pt, (int)pt_len) == 1 &&
             EVP_EncryptFinal_ex(x, b + HDR_LEN + n, &fin) == 1 && (size_t)(n + fin) == pt_len &&
             EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, L2_TAG_LEN, b + HDR_LEN + pt_len) == 1;
    EVP_CIPHER_CTX_free(x);
    if (!ok) {
        free(b);
        return L2_E_CRYPTO;
    }
    *out = b;
    *out_len = total;
    return L2_OK;
}

/* On L2_OK *pt (malloc'ed, *pt_len bytes, at least one byte allocated) holds the plaintext. */
static enum l2_status open_blob(const struct l2_codec *c, const uint8_t key[32], const uint8_t *aad,
                                size_t aad_len, const uint8_t *b, size_t len, uint8_t **pt,
                                size_t *pt_len)
{
    if (len < HDR_LEN + L2_TAG_LEN || len > L2_BLOB_MAX)
        return L2_E_SIZE;
    if (b[0] != L2_FORMAT)
        return L2_E_VERSION;
    size_t n_ct = len - HDR_LEN - L2_TAG_LEN;
    uint8_t *p = malloc(n_ct ? n_ct : 1);
    if (!p)
        return L2_E_NOMEM;
    uint8_t tag[L2_TAG_LEN];
    memcpy(tag, b + HDR_LEN + n_ct, L2_TAG_LEN); /* OpenSSL wants a writable tag buffer */
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    enum l2_status st = L2_E_CRYPTO;
    if (x && EVP_DecryptInit_ex2(x, c->gcm, key, b + 1, NULL) == 1 &&
        EVP_DecryptUpdate(x, NULL, &n, aad, (int)aad_len) == 1 &&
        EVP_DecryptUpdate(x, p, &n, b + HDR_LEN, (int)n_ct) == 1 &&
        EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, L2_TAG_LEN, tag) == 1)
        st = EVP_DecryptFinal_ex(x, p + n, &fin) == 1 ? L2_OK : L2_E_AUTH;
    EVP_CIPHER_CTX_free(x);
    if (st != L2_OK) {
        OPENSSL_cleanse(p, n_ct);
        free(p);
        return st;
    }
    *pt = p;
    *pt_len = n_ct;
    return L2_OK;
}

/* ---- MessagePack shape check ---- */

static size_t be(const uint8_t *p, size_t n)
{
    size_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Length of the scalar (nil, bool, int, float, str, bin) at p, or 0 if it is anything else or
 * does not fit in n bytes. */
static size_t scalar_len(const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    uint8_t t = p[0];
    size_t hdr = 1, body = 0;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
        hdr = 1;
    else if (t >= 0xa0 && t <= 0xbf)
        body = t & 0x1f;
    else if (t == 0xcc || t == 0xd0)
        hdr = 2;
    else if (t == 0xcd || t == 0xd1)
        hdr = 3;
    else if (t == 0xce || t == 0xd2 || t == 0xca)
        hdr = 5;
    else if (t == 0xcf || t == 0xd3 || t == 0xcb)
        hdr = 9;
    else if (t == 0xd9 || t == 0xc4)
        hdr = 2;
    else if (t == 0xda || t == 0xc5)
        hdr = 3;
    else if (t == 0xdb || t == 0xc6)
        hdr = 5;
    else
        return 0; /* array, map, ext, reserved */
    if (hdr > n)
        return 0;
    if (t == 0xd9 || t == 0xc4 || t == 0xda || t == 0xc5 || t == 0xdb || t == 0xc6)
        body = be(p + 1, hdr - 1);
    if (body > n - hdr)
        return 0;
    return hdr + body;
}

/* True if p[0..n) is exactly one map of at most MAX_PAIRS pairs of scalars. */
static bool flat_map(const uint8_t *p, size_t n)
{
    if (n == 0)
        return false;
    size_t pairs, off;
    if (p[0] >= 0x80 && p[0] <= 0x8f) {
        pairs = p[0] & 0x0f;
        off = 1;
    } else if (p[0] == 0xde && n >= 3) {
        pairs = be(p + 1, 2);
        off = 3;
    } else {
        return false;
    }
    if (pairs > MAX_PAIRS)
        return false;
    for (size_t i = 0; i < 2 * pairs; i++) {
        size_t l = scalar_len(p + off, n - off);
        if (l == 0)
            return false;
        off += l;
    }
    return off == n;
}

/* Parses a checked flat map into slots indexed by field number (< FIELD_SLOTS; others skipped).
 * A field present twice is a format error. */
static enum l2_status parse_fields(const uint8_t *p, size_t n, msgpack_unpacked *u,
                                   const msgpack_object *slot[FIELD_SLOTS])
{
    if (!flat_map(p, n))
        return L2_E_FORMAT;
    size_t off = 0;
    if (msgpack_unpack_next(u, (const char *)p, n, &off) != MSGPACK_UNPACK_SUCCESS || off != n ||
        u->data.type != MSGPACK_OBJECT_MAP)
        return L2_E_FORMAT;
    memset(slot, 0, FIELD_SLOTS * sizeof(slot[0]));
    const msgpack_object_map *m = &u->data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return L2_E_FORMAT;
        if (k->via.u64 >= FIELD_SLOTS)
            continue;
        if (slot[k->via.u64])
            return L2_E_FORMAT;
        slot[k->via.u64] = &m->ptr[i].val;
    }
    return L2_OK;
}

static bool get_int(const msgpack_object *o, int64_t lo, int64_t hi, int64_t *v)
{
    if (!o)
        return false;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= (uint64_t)INT64_MAX)
        *v = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *v = o->via.i64;
    else
        return false;
    return *v >= lo && *v <= hi;
}

/* Version first: a later format may change everything else. */
static enum l2_status check_version(const msgpack_object *o, int64_t want)
{
    int64_t v;
    if (!o)
        return L2_E_FORMAT;
    if (!get_int(o, 0, INT64_MAX, &v))
        return L2_E_FORMAT;
    return v == want ? L2_OK : L2_E_VERSION;
}

/* Copies an optional string field (absent or nil -> NULL). false if it is not a string, is
 * longer than L2_FIELD_MAX or holds a NUL byte. */
static bool dup_str(const msgpack_object *o, char **out, size_t *len)
{
    *out = NULL;
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        return true;
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > L2_FIELD_MAX ||
        memchr(o->via.str.ptr, '\0', o->via.str.size))
        return false;
    *out = mem_strdup(o->via.str.ptr, o->via.str.size);
    if (len)
        *len = o->via.str.size;
    return *out != NULL;
}

/* ---- values ---- */

static int pack_str(msgpack_packer *pk, unsigned field, const char *s, size_t len)
{
    return msgpack_pack_unsigned_int(pk, field) || msgpack_pack_str(pk, len) ||
           msgpack_pack_str_body(pk, s, len);
}

static bool field_ok(const char *s)
{
    return !s || strlen(s) <= L2_FIELD_MAX;
}

static int pack_value(msgpack_packer *pk, const struct token_info *ti, int64_t expires_ms)
{
    bool act = ti->outcome == TOKEN_ACTIVE;
    const struct token_claims *cl = &ti->claims;
    unsigned pairs = 3 + (act ? 1 : 0) + (act && cl->has_exp) + (act && cl->sub) +
                     (act && cl->client_id) + (act && cl->scope) + (act && cl->sid) +
                     (act && ti->minted && ti->aud) + (act ? 2 * (unsigned)ti->nalts : 0);
    int e = msgpack_pack_map(pk, pairs) || msgpack_pack_unsigned_int(pk, V_VERSION) ||
            msgpack_pack_unsigned_int(pk, L2_VALUE_VERSION) ||
            msgpack_pack_unsigned_int(pk, V_OUTCOME) ||
            msgpack_pack_unsigned_int(pk, act ? WIRE_ACTIVE : WIRE_INACTIVE) ||
            msgpack_pack_unsigned_int(pk, V_EXPIRES) || msgpack_pack_int64(pk, expires_ms);
    if (e || !act)
        return e;
    e = pack_str(pk, V_JWT, ti->jwt, ti->jwt_len);
    if (!e && cl->has_exp)
        e = msgpack_pack_unsigned_int(pk, V_EXP) || msgpack_pack_int64(pk, cl->exp);
    if (!e && cl->sub)
        e = pack_str(pk, V_SUB, cl->sub, strlen(cl->sub));
    if (!e && cl->client_id)
        e = pack_str(pk, V_CLIENT_ID, cl->client_id, strlen(cl->client_id));
    if (!e && cl->scope)
        e = pack_str(pk, V_SCOPE, cl->scope, strlen(cl->scope));
    if (!e && cl->sid)
        e = pack_str(pk, V_SID, cl->sid, strlen(cl->sid));
    if (!e && ti->minted && ti->aud)
        e = pack_str(pk, V_MINTED_AUD, ti->aud, strlen(ti->aud));
    for (size_t i = 0; !e && i < ti->nalts; i++) {
        const struct token_alt_jwt *a = &ti->alts[i];
        e = pack_str(pk, V_ALT0 + 2 * (unsigned)i, a->aud, strlen(a->aud)) ||
            pack_str(pk, V_ALT0 + 2 * (unsigned)i + 1, a->jwt, a->jwt_len);
    }
    return e;
}

static bool shareable(const struct token_info *ti, int64_t expires_ms)
{
    if (expires_ms <= 0)
        return false;
    if (ti->outcome == TOKEN_INACTIVE)
        return true;
    if (ti->outcome != TOKEN_ACTIVE || !ti->jwt || ti->jwt_len == 0 || ti->jwt_len > L2_FIELD_MAX ||
        memchr(ti->jwt, '\0', ti->jwt_len))
        return false;
    const struct token_claims *cl = &ti->claims;
    if (ti->nalts > L2_MAX_ALTS || (ti->nalts && !(ti->minted && ti->aud)))
        return false;
    for (size_t i = 0; i < ti->nalts; i++)
        if (!ti->alts[i].aud || !field_ok(ti->alts[i].aud) || !ti->alts[i].jwt ||
            ti->alts[i].jwt_len == 0 || ti->alts[i].jwt_len > L2_FIELD_MAX)
            return false;
    return field_ok(cl->sub) && field_ok(cl->client_id) && field_ok(cl->scope) &&
           field_ok(cl->sid) && field_ok(ti->minted ? ti->aud : NULL) &&
           (!cl->has_exp || (cl->exp >= 0 && cl->exp <= JWT_MAX_EXP));
}

/* Bytes the packed map takes at most: each string's length plus its header, and the scalars. */
static size_t plain_estimate(const struct token_info *ti)
{
    const struct token_claims *cl = &ti->claims;
    size_t n = 64 + ti->jwt_len;
    n += (cl->sub ? strlen(cl->sub) : 0) + (cl->client_id ? strlen(cl->client_id) : 0) +
         (cl->scope ? strlen(cl->scope) : 0) + (cl->sid ? strlen(cl->sid) : 0) +
         (ti->minted && ti->aud ? strlen(ti->aud) : 0);
    for (size_t i = 0; i < ti->nalts; i++)
        n += strlen(ti->alts[i].aud) + ti->alts[i].jwt_len + 2 * 8;
    return n + 8 * 8;
}

enum l2_status l2_value_encode(const struct l2_codec *c, const uint8_t ek[L2_KEY_LEN],
                               const struct token_info *ti, int64_t expires_ms, uint8_t **out,
                               size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (!shareable(ti, expires_ms))
        return L2_E_FIELD;
    /* Sized up front: no realloc leaves a stray copy of the JWT behind, and only what was
     * written needs wiping. */
    msgpack_sbuffer sb = {.alloc = plain_estimate(ti)};
    if (!(sb.data = malloc(sb.alloc)))
        return L2_E_NOMEM;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t aad_len = 0;
    uint8_t *aad = NULL;
    enum l2_status st = L2_E_NOMEM;
    if (pack_value(&pk, ti, expires_ms) == 0 &&
        (aad = build_aad(AAD_VALUE, ek, L2_KEY_LEN, &aad_len)))
        st = seal(c, c->k_value, aad, aad_len, (const uint8_t *)sb.data, sb.size, out, outlen);
    free(aad);
    if (sb.data)
        OPENSSL_cleanse(sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return st;
}

/* The per-audience JWTs of a minted entry: consecutive (aud, JWT) pairs, both strings, only on a
 * minted entry; a half pair is a field error. */
static enum l2_status fill_alts(const msgpack_object *const f[FIELD_SLOTS], struct token_info *ti)
{
    size_t n = 0;
    while (n < L2_MAX_ALTS && (f[V_ALT0 + 2 * n] || f[V_ALT0 + 2 * n + 1]))
        n++;
    if (!n)
        return L2_OK;
    if (!ti->minted || !(ti->alts = calloc(n, sizeof(*ti->alts))))
        return ti->minted ? L2_E_NOMEM : L2_E_FIELD;
    for (size_t i = 0; i < n; i++) {
        struct token_alt_jwt *a = &ti->alts[ti->nalts++];
        const msgpack_object *aud = f[V_ALT0 + 2 * i], *jwt = f[V_ALT0 + 2 * i + 1];
        if (!aud || !jwt || aud->type != MSGPACK_OBJECT_STR || jwt->type != MSGPACK_OBJECT_STR ||
            !jwt->via.str.size || !dup_str(aud, &a->aud, NULL) ||
            !dup_str(jwt, &a->jwt, &a->jwt_len))
            return L2_E_FIELD;
    }
    return L2_OK;
}

static enum l2_status fill_active(const msgpack_object *const f[FIELD_SLOTS], struct token_info *ti)
{
    if (!f[V_JWT] || f[V_JWT]->type != MSGPACK_OBJECT_STR || f[V_JWT]->via.str.size == 0)
        return L2_E_FIELD;
    struct token_claims *cl = &ti->claims;
    if (!dup_str(f[V_JWT], &ti->jwt, &ti->jwt_len) || !dup_str(f[V_SUB], &cl->sub, NULL) ||
        !dup_str(f[V_CLIENT_ID], &cl->client_id, NULL) || !dup_str(f[V_SCOPE], &cl->scope, NULL))
        return L2_E_FIELD;
    if (!dup_str(f[V_SID], &cl->sid, NULL) || !dup_str(f[V_MINTED_AUD], &ti->aud, NULL))
        return L2_E_FIELD;
    ti->minted = ti->aud != NULL;
    enum l2_status st = fill_alts(f, ti);
    if (st != L2_OK)
        return st;
    if (f[V_EXP]) {
        if (!get_int(f[V_EXP], 0, JWT_MAX_EXP, &cl->exp))
            return L2_E_FIELD;
        cl->has_exp = true;
    }
    return L2_OK;
}

static enum l2_status fill_value(const msgpack_object *const f[FIELD_SLOTS], int64_t now_ms,
                                 struct token_info **out, int64_t *expires_ms)
{
    int64_t outcome, exp_ms;
    if (!get_int(f[V_OUTCOME], WIRE_ACTIVE, WIRE_INACTIVE, &outcome) ||
        !get_int(f[V_EXPIRES], 1, INT64_MAX, &exp_ms))
        return L2_E_FIELD;
    if (exp_ms <= now_ms)
        return L2_E_EXPIRED;
    if (outcome == WIRE_INACTIVE && f[V_JWT])
        return L2_E_FIELD;
    struct token_info *ti =
        token_info_new(outcome == WIRE_ACTIVE ? TOKEN_ACTIVE : TOKEN_INACTIVE, "shared cache");
    if (!ti)
        return L2_E_NOMEM;
    enum l2_status st = outcome == WIRE_ACTIVE ? fill_active(f, ti) : L2_OK;
    if (st != L2_OK) {
        token_unref(ti);
        return st;
    }
    ti->max_age = (exp_ms - now_ms) / 1000;
    *out = ti;
    *expires_ms = exp_ms;
    return L2_OK;
}

enum l2_status l2_value_decode(const struct l2_codec *c, const uint8_t ek[L2_KEY_LEN],
                               const uint8_t *blob, size_t len, int64_t now_ms,
                               struct token_info **ti, int64_t *expires_ms)
{
    *ti = NULL;
    size_t aad_len = 0;
    uint8_t *aad = build_aad(AAD_VALUE, ek, L2_KEY_LEN, &aad_len);
    if (!aad)
        return L2_E_NOMEM;
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    enum l2_status st = open_blob(c, c->k_value, aad, aad_len, blob, len, &pt, &pt_len);
    free(aad);
    if (st != L2_OK)
        return st;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *f[FIELD_SLOTS];
    st = parse_fields(pt, pt_len, &u, f);
    if (st == L2_OK)
        st = check_version(f[V_VERSION], L2_VALUE_VERSION);
    if (st == L2_OK)
        st = fill_value(f, now_ms, ti, expires_ms);
    msgpack_unpacked_destroy(&u);
    OPENSSL_cleanse(pt, pt_len);
    free(pt);
    return st;
}

/* ---- purge messages ---- */

static int pack_bin(msgpack_packer *pk, unsigned field, const void *p, size_t len)
{
    return msgpack_pack_unsigned_int(pk, field) || msgpack_pack_bin(pk, len) ||
           msgpack_pack_bin_body(pk, p, len);
}

static int pack_purge(msgpack_packer *pk, const struct l2_purge_msg *m)
{
    return msgpack_pack_map(pk, 6) || msgpack_pack_unsigned_int(pk, P_VERSION) ||
           msgpack_pack_unsigned_int(pk, PURGE_VERSION) || msgpack_pack_unsigned_int(pk, P_KIND) ||
           msgpack_pack_unsigned_int(pk, m->kind) ||
           pack_bin(pk, P_VALUE, m->value, m->value_len) || msgpack_pack_unsigned_int(pk, P_TS) ||
           msgpack_pack_int64(pk, m->ts_ms) || pack_bin(pk, P_ID, m->id, sizeof(m->id)) ||
           pack_bin(pk, P_ORIGIN, m->origin, sizeof(m->origin));
}

static bool purge_value_ok(enum l2_purge_kind k, size_t len)
{
    switch (k) {
    case L2_PURGE_ALL:
        return len == 0;
    case L2_PURGE_ENTRY_KEY:
        return len == L2_KEY_LEN;
    case L2_PURGE_TOKEN_ID:
        return len == 12;
    case L2_PURGE_SUB:
    case L2_PURGE_CLIENT_ID:
    case L2_PURGE_SID:
        return len > 0 && len <= L2_PURGE_VALUE_MAX;
    case L2_PURGE_KIND_COUNT:
        break;
    }
    return false;
}

enum l2_status l2_purge_encode(const struct l2_codec *c, const char *channel,
                               struct l2_purge_msg *m, uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (!purge_value_ok(m->kind, m->value_len))
        return L2_E_FIELD;
    if (RAND_bytes(m->id, sizeof(m->id)) != 1)
        return L2_E_CRYPTO;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t aad_len = 0;
    uint8_t *aad = NULL;
    enum l2_status st = L2_E_NOMEM;
    if (pack_purge(&pk, m) == 0 && (aad = build_aad(AAD_PURGE, channel, strlen(channel), &aad_len)))
        st = seal(c, c->k_purge, aad, aad_len, (const uint8_t *)sb.data, sb.size, out, outlen);
    free(aad);
    msgpack_sbuffer_destroy(&sb);
    return st;
}

void l2_replay_init(struct l2_replay *r)
{
    memset(r, 0, sizeof(*r));
}

static bool replay_seen(const struct l2_replay *r, const uint8_t id[L2_PURGE_ID_LEN])
{
    for (size_t i = 0; i < r->used; i++)
        if (memcmp(r->ids[i], id, L2_PURGE_ID_LEN) == 0)
            return true;
    return false;
}

static void replay_add(struct l2_replay *r, const uint8_t id[L2_PURGE_ID_LEN])
{
    memcpy(r->ids[r->next], id, L2_PURGE_ID_LEN);
    r->next = (r->next + 1) % L2_REPLAY_SLOTS;
    if (r->used < L2_REPLAY_SLOTS)
        r->used++;
}

static bool get_bin(const msgpack_object *o, void *dst, size_t min, size_t max, size_t *len)
{
    if (!o || o->type != MSGPACK_OBJECT_BIN || o->via.bin.size < min || o->via.bin.size > max)
        return false;
    memcpy(dst, o->via.bin.ptr, o->via.bin.size);
    if (len)
        *len = o->via.bin.size;
    return true;
}

static enum l2_status fill_purge(const msgpack_object *const f[FIELD_SLOTS], int64_t now_ms,
                                 int64_t max_age_ms, struct l2_purge_msg *m)
{
    int64_t kind;
    if (!get_int(f[P_KIND], 0, L2_PURGE_KIND_COUNT - 1, &kind) ||
        !get_int(f[P_TS], 0, INT64_MAX, &m->ts_ms) ||
        !get_bin(f[P_VALUE], m->value, 0, L2_PURGE_VALUE_MAX, &m->value_len) ||
        !get_bin(f[P_ID], m->id, L2_PURGE_ID_LEN, L2_PURGE_ID_LEN, NULL) ||
        !get_bin(f[P_ORIGIN], m->origin, sizeof(m->origin), sizeof(m->origin), NULL))
        return L2_E_FIELD;
    m->kind = (enum l2_purge_kind)kind;
    if (!purge_value_ok(m->kind, m->value_len))
        return L2_E_FIELD;
    int64_t age = now_ms - m->ts_ms;
    if (age > max_age_ms || age < -max_age_ms)
        return L2_E_EXPIRED;
    return L2_OK;
}

enum l2_status l2_purge_decode(const struct l2_codec *c, const char *channel, const uint8_t *blob,
                               size_t len, int64_t now_ms, int64_t max_age_ms, struct l2_replay *rp,
                               struct l2_purge_msg *m)
{
    memset(m, 0, sizeof(*m));
    size_t aad_len = 0;
    uint8_t *aad = build_aad(AAD_PURGE, channel, strlen(channel), &aad_len);
    if (!aad)
        return L2_E_NOMEM;
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    enum l2_status st = open_blob(c, c->k_purge, aad, aad_len, blob, len, &pt, &pt_len);
    free(aad);
    if (st != L2_OK)
        return st;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *f[FIELD_SLOTS];
    st = parse_fields(pt, pt_len, &u, f);
    if (st == L2_OK)
        st = check_version(f[P_VERSION], PURGE_VERSION);
    if (st == L2_OK)
        st = fill_purge(f, now_ms, max_age_ms, m);
    if (st == L2_OK && rp && replay_seen(rp, m->id))
        st = L2_E_REPLAY;
    if (st == L2_OK && rp)
        replay_add(rp, m->id);
    msgpack_unpacked_destroy(&u);
    OPENSSL_cleanse(pt, pt_len);
    free(pt);
    if (st != L2_OK)
        memset(m, 0, sizeof(*m));
    return st;
}
