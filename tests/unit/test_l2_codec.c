/* Unit tests for the L2 wire format: key derivation (and agreement with the L1 cache's key),
 * value and purge round trips, and every way a blob from Redis can be wrong (tampered, wrong key,
 * wrong entry key, truncated, wrong version, bad shape, oversize fields, expired, replayed). The
 * "forged" blobs are built here from the documented format with OpenSSL directly, so the tests
 * also pin the format down independently of the encoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "cache.h"
#include "l2_codec.h"
#include "token.h"

#define NOW 1700000000000LL
#define JWT "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"

static const uint8_t fleet_key[] = "0123456789abcdef0123456789abcdef-fleet";
static const uint8_t other_key[] = "fedcba9876543210fedcba9876543210-other";

static struct l2_codec *codec(const uint8_t *k)
{
    struct l2_codec *c = l2_codec_new(k, strlen((const char *)k));
    assert_non_null(c);
    return c;
}

static struct token_info *active_ti(void)
{
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "test");
    assert_non_null(ti);
    ti->jwt = strdup(JWT);
    ti->jwt_len = strlen(JWT);
    ti->claims.exp = NOW / 1000 + 600;
    ti->claims.has_exp = true;
    ti->claims.sub = strdup("alice");
    ti->claims.client_id = strdup("web");
    ti->claims.scope = strdup("read write");
    return ti;
}

static void ek_of(const struct l2_codec *c, const char *tok, uint8_t ek[L2_KEY_LEN])
{
    assert_int_equal(l2_entry_key(c, tok, strlen(tok), ek), 0);
}

/* ---- an independent encoder of the documented format ---- */

static void derive(const uint8_t *ikm, size_t len, const char *label, uint8_t out[32])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                          (void *)"phantom-token-agent fleet key v1", 32),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)label, strlen(label)),
        OSSL_PARAM_construct_end()};
    assert_int_equal(EVP_KDF_derive(kc, out, 32, p), 1);
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
}

/* format 1 || nonce || AES-256-GCM(pt) || tag, AAD = 0x01 || label || NUL || bind. */
static uint8_t *forge(const char *key_label, const char *aad_label, const void *bind,
                      size_t bind_len, const void *pt, size_t pt_len, size_t *out_len)
{
    uint8_t key[32];
    derive(fleet_key, strlen((const char *)fleet_key), key_label, key);
    uint8_t aad[256];
    size_t ll = strlen(aad_label) + 1;
    aad[0] = 1;
    memcpy(aad + 1, aad_label, ll);
    memcpy(aad + 1 + ll, bind, bind_len);
    size_t total = 13 + pt_len + 16;
    uint8_t *b = malloc(total);
    b[0] = 1;
    memset(b + 1, 7, 12);
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int n = 0;
    assert_int_equal(EVP_EncryptInit_ex2(x, EVP_aes_256_gcm(), key, b + 1, NULL), 1);
    assert_int_equal(EVP_EncryptUpdate(x, NULL, &n, aad, (int)(1 + ll + bind_len)), 1);
    assert_int_equal(EVP_EncryptUpdate(x, b + 13, &n, pt, (int)pt_len), 1);
    assert_int_equal(EVP_EncryptFinal_ex(x, b + 13 + n, &n), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, 16, b + 13 + pt_len), 1);
    EVP_CIPHER_CTX_free(x);
    *out_len = total;
    return b;
}

static enum l2_status decode_plain(const void *pt, size_t pt_len, struct token_info **ti)
{
    struct l2_codec *c = codec(fleet_key);
    uint8_t ek[L2_KEY_LEN];
    ek_of(c, "tok", ek);
    size_t n;
    uint8_t *b = forge("l2 value key", "pta l2 value v1", ek, sizeof(ek), pt, pt_len, &n);
    int64_t exp_ms = 0;
    enum l2_status st = l2_value_decode(c, ek, b, n, NOW, ti, &exp_ms);
    free(b);
    l2_codec_free(c);
    return st;
}

struct mp {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void mp_init(struct mp *m, unsigned pairs)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&m->pk, pairs);
}

static void mp_int(struct mp *m, unsigned k, int64_t v)
{
    msgpack_pack_unsigned_int(&m->pk, k);
    msgpack_pack_int64(&m->pk, v);
}

static void mp_str(struct mp *m, unsigned k, const char *s, size_t len)
{
    msgpack_pack_unsigned_int(&m->pk, k);
    msgpack_pack_str(&m->pk, len);
    msgpack_pack_str_body(&m->pk, s, len);
}

static enum l2_status decode_mp(struct mp *m, struct token_info **ti)
{
    enum l2_status st = decode_plain(m->sb.data, m->sb.size, ti);
    msgpack_sbuffer_destroy(&m->sb);
    return st;
}

/* ---- keys ---- */

static void test_keys(void **state)
{
    (void)state;
    struct l2_codec *a = codec(fleet_key), *a2 = codec(fleet_key), *b = codec(other_key);
    uint8_t k1[L2_KEY_LEN], k2[L2_KEY_LEN], k3[L2_KEY_LEN], k4[L2_KEY_LEN];
    ek_of(a, "token-1", k1);
    ek_of(a2, "token-1", k2);
    ek_of(b, "token-1", k3);
    ek_of(a, "token-2", k4);
    assert_memory_equal(k1, k2, L2_KEY_LEN); /* every agent of the fleet agrees */
    assert_memory_not_equal(k1, k3, L2_KEY_LEN);
    assert_memory_not_equal(k1, k4, L2_KEY_LEN);

    /* The L1 cache keyed with the entry sub-key computes the same key: one HMAC per request. */
    size_t hl;
    const uint8_t *hk = l2_codec_entry_hmac_key(a, &hl);
    assert_int_equal(hl, 32);
    struct cache_config cfg = {.max_entries = 10, .max_bytes = 1 << 20, .max_ttl = 60};
    struct cache *l1 = cache_new(&cfg, NULL, NULL, hk, hl);
    assert_non_null(l1);
    struct cache_key ck;
    cache_key_of(l1, "token-1", 7, &ck);
    assert_memory_equal(ck.b, k1, L2_KEY_LEN);
    cache_free(l1);

    /* The helper for L1 gives the same key. */
    uint8_t hk2[L2_KEY_LEN];
    assert_int_equal(l2_entry_hmac_key_of(fleet_key, strlen((const char *)fleet_key), hk2), 0);
    assert_memory_equal(hk2, hk, L2_KEY_LEN);
    assert_int_equal(l2_entry_hmac_key_of((const uint8_t *)"short", 5, hk2), -1);

    /* Short or absent fleet keys are refused. */
    assert_null(l2_codec_new((const uint8_t *)"short", 5));
    assert_null(l2_codec_new(NULL, 40));
    l2_codec_free(a);
    l2_codec_free(a2);
    l2_codec_free(b);
    l2_codec_free(NULL);
}

static void test_redis_key(void **state)
{
    (void)state;
    uint8_t ek[L2_KEY_LEN];
    for (int i = 0; i < L2_KEY_LEN; i++)
        ek[i] = (uint8_t)((i % 16) * 17);
    char out[128];
    assert_int_equal(l2_redis_key("pta:", ek, out, sizeof(out)), 4 + 64);
    assert_string_equal(out, "pta:00112233445566778899aabbccddeeff"
                             "00112233445566778899aabbccddeeff");
    assert_int_equal(l2_redis_key("pta:", ek, out, 68), -1); /* no room for the NUL */
    assert_int_equal(l2_redis_key("pta:", ek, out, 69), 68);
}

/* ---- values ---- */

static void test_round_trip_active(void **state)
{
    (void)state;
    struct l2_codec *c = codec(fleet_key);
    uint8_t ek[L2_KEY_LEN];
    ek_of(c, "opaque-token", ek);
    struct token_info *ti = active_ti();
    uint8_t *blob;
    size_t len;
    assert_int_equal(l2_value_encode(c, ek, ti, NOW + 90500, &blob, &len), L2_OK);
    /* Nothing readable in the blob: neither the JWT nor a claim. */
    assert_null(memmem(blob, len, "alice", 5));
    assert_null(memmem(blob, len, "eyJ", 3));

    struct token_info *got;
    int64_t exp_ms;
    assert_int_equal(l2_value_decode(c, ek, blob, len, NOW, &got, &exp_ms), L2_OK);
    assert_int_equal(exp_ms, NOW + 90500);
    assert_int_equal(got->outcome, TOKEN_ACTIVE);
    assert_int_equal(got->jwt_len, strlen(JWT));
    assert_string_equal(got->jwt, JWT);
    assert_true(got->claims.has_exp);
    assert_int_equal(got->claims.exp, NOW / 1000 + 600);
    assert_string_equal(got->claims.sub, "alice");
    assert_string_equal(got->claims.client_id, "web");
    assert_string_equal(got->claims.scope, "read write");
    assert_int_equal(got->max_age, 90); /* whole seconds left: L1 never outlives the entry */
    assert_int_equal(got->refcnt, 1);
    token_unref(got);

    /* Two encodings of one entry differ (random nonce). */
    uint8_t *blob2;
    size_t len2;
    assert_int_equal(l2_value_encode(c, ek, ti, NOW + 90500, &blob2, &len2), L2_OK);
    assert_int_equal(len, len2);
    assert_memory_not_equal(blob, blob2, len);
    free(blob2);
    free(blob);
    token_unref(ti);
    l2_codec_free(c);
}

/* A minted entry keeps what the decision needs on an L2 hit: that it was minted, its audience, the
 * per-audience JWTs routes choose from, and the session id (purge by sid). */
static void test_round_trip_minted(void **state)
{
    (void)state;
    struct l2_codec *c = codec(fleet_key);
    uint8_t ek[L2_KEY_LEN];
    ek_of(c, "opaque-token", ek);
    struct token_info *ti = active_ti();
    ti->minted = true;
    ti->aud = strdup("https://api");
    ti->claims.sid = strdup("sess-9");
    ti->alts = calloc(2, sizeof(*ti->alts));
    const char *auds[] = {"https://orders", "https://billing"}, *jwts[] = {"eyJo.p.s", "eyJb.q.t"};
    for (size_t i = 0; i < 2; i++) {
        ti->alts[i].aud = strdup(auds[i]);
        ti->alts[i].jwt = strdup(jwts[i]);
        ti->alts[i].jwt_len = strlen(jwts[i]);
    }
    ti->nalts = 2;
    uint8_t *blob;
    size_t len;
    assert_int_equal(l2_value_encode(c, ek, ti, NOW + 90500, &blob, &len), L2_OK);
    assert_null(memmem(blob, len, "orders", 6));
    struct token_info *got;
    int64_t exp_ms;
    assert_int_equal(l2_value_decode(c, ek, blob, len, NOW, &got, &exp_ms), L2_OK);
    assert_true(got->minted);
    assert_string_equal(got->aud, "https://api");
    assert_string_equal(got->claims.sid, "sess-9");
    assert_int_equal(got->nalts, 2);
    for (size_t i = 0; i < 2; i++) {
        size_t jl;
        const char *j = token_jwt_for(got, auds[i], strlen(auds[i]), &jl);
        assert_non_null(j);
        assert_string_equal(j, jwts[i]);
        assert_int_equal(jl, strlen(jwts[i]));
    }
    size_t jl;
    assert_null(token_jwt_for(got, "https://other", 13, &jl)); /* never another audience's JWT */
    token_unref(got);
    free(blob);
    /* Per-audience JWTs on an entry the gateway did not mint: refused, not shared. */
    ti->minted = false;
    assert_int_equal(l2_value_encode(c, ek, ti, NOW + 90500, &blob, &len), L2_E_FIELD);
    token_unref(ti);
    l2_codec_free(c);
}

static void test_round_trip_inactive_and_minimal(void **state)
{
    (void)state;
    struct l2_codec *c = codec(fleet_key);
    uint8_t ek[L2_KEY_LEN];
    ek_of(c, "bad-token", ek);
    struct token_info *neg = token_info_new(TOKEN_INACTIVE, "IdP said inactive");
    uint8_t *blob;
    size_t len;
    assert_int_equal(l2_value_encode(c, ek, neg, NOW + 5000, &blob, &len), L2_OK);
    struct token_info *got;
    int64_t exp_ms;
    assert_int_equal(l2_value_decode(c, ek, blob, len, NOW, &got, &exp_ms), L2_OK);
    assert_int_equal(got->outcome, TOKEN_INACTIVE);
    assert_null(got->jwt);
    assert_null(got->claims.sub);
    token_unref(got);
    free(blob);
    token_unref(neg);

    /* An active entry without optional claims. */
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "t");
    ti->jwt = strdup("a.b.c");
    ti->jwt_len = 5;
    assert_int_equal(l2_value_encode(c, ek, ti, NOW + 1000, &blob, &len), L2_OK);
    assert_int_equal(l2_value_decode(c, ek, blob, len, NOW, &got, &exp_ms), L2_OK);
    assert_false(got->claims.has_exp);
    assert_null(got->claims.scope);
    assert_string_equal(got->jwt, "a.b.c");
    token_unref(got);
    free(blob);
    token_unref(ti);
    l2_codec_free(c);
}

static void test_encode_refuses(void **state)
{
    (void)state;
    struct l2_codec *c = codec(fleet_key);
    uint8_t ek[L2_KEY_LEN] = {0};
    uint8_t *blob = (uint8_t *)1;
    size_t len = 1;
    enum token_outcome errs[] = {TOKEN_IDP_ERROR, TOKEN_IDP_UNAVAIL, TOKEN_IDP_UNKNOWN};
    for (size_t i = 0; i < 3; i++) {
        struct token_info *e = token_info_new(errs[i], "IdP down");
        assert_int_equal(l2_value_encode(c, ek, e, NOW + 1000, &blob, &len), L2_E_FIELD);
        assert_null(blob);
        assert_int_equal(len, 0);
        token_unref(e);
    }
    struct token_info *ti = active_ti();
    assert_int_equal(l2_value_encode(c, ek, ti, 0, &blob, &len), L2_E_FIELD); /* no expiry */
    free(ti->jwt);
    ti->jwt = NULL;
    ti->jwt_len = 0;
    assert_int_equal(l2_value_encode(c, ek, ti, NOW + 1000, &blob, &len), L2_E_FIELD);
    ti->jwt = malloc(L2_FIELD_MAX + 2);
    memset(ti->jwt, 'a', L2_FIELD_MAX + 1);
    ti->jwt[L2_FIELD_MAX + 1] = '\0';
    ti->jwt_len = L2_FIELD_MAX + 1;
    assert_int_equal(l2_value_encode(c, ek, ti, NOW + 1000, &blob, &len), L2_E_FIELD);
    token_unref(ti);
    l2_codec_free(c);
}

static void test_tamper_every_byte(void **state)
{
    (void)state;
    struct l2_codec *c = codec(fleet_key);
    uint8_t ek[L2_KEY_LEN];
    ek_of(c, "opaque-token", ek);
    struct token_info *ti = active_ti();
    uint8_t *blob;
    size_t len;
    assert_int_equal(l2_value_encode(c, ek, ti, NOW + 60000, &blob, &len), L2_OK);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            blob[i] ^= (uint8_t)(1u << bit);
            struct token_info *got = (struct token_info *)1;
            int64_t e;
            enum l2_status st = l2_value_decode(c, ek, blob, len, NOW, &got, &e);
            assert_true(st == L2_E_AUTH || (i == 0 && st == L2_E_VERSION));
            assert_null(got);
            blob[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* Truncated at every length, and extended. */
    for (size_t n = 0; n < len; n++) {
        struct token_info *got;
        int64_t e;
        enum l2_status st = l2_value_decode(c, ek, blob, n, NOW, &got, &e);
        assert_true(st == L2_E_SIZE || st == L2_E_AUTH);
        assert_null(got);
    }
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, blob, len);
    longer[len] = 0;
    struct token_info *got;
    int64_t e;
    assert_int_equal(l2_value_decode(c, ek, longer, len + 1, NOW, &got, &e), L2_E_AUTH);
    free(longer);
    /* A huge length is refused unread. */
    assert_int_equal(l2_value_decode(c, ek, blob, L2_BLOB_MAX + 1, NOW, &got, &e), L2_E_SIZE);
    free(blob);
    token_unref(ti);
    l2_codec_free(c);
}

static void test_wrong_key_and_aad(void **state)
{
    (void)state;
    struct l2_codec *c = codec(fleet_key), *other = codec(other_key);
    uint8_t ek[L2_KEY_LEN], ek2[L2_KEY_LEN];
    ek_of(c, "token-A", ek);
    ek_of(c, "token-B", ek2);
    struct token_info *ti = active_ti();
    uint8_t *blob;
    size_t len;
    assert_int_equal(l2_value_encode(c, ek, ti, NOW + 60000, &blob, &len), L2_OK);
    struct token_info *got;
    int64_t e;
    /* Another fleet's key. */
    assert_int_equal(l2_value_decode(other, ek, blob, len, NOW, &got, &e), L2_E_AUTH);
    assert_null(got);
    /* A value copied under another token's key (a Redis writer moving entries around). */
    assert_int_equal(l2_value_decode(c, ek2, blob, len, NOW, &got, &e), L2_E_AUTH);
    assert_null(got);
    /* A purge message is not a value, even under the right key and binding. */
    struct l2_purge_msg m = {.kind = L2_PURGE_ALL, .ts_ms = NOW};
    uint8_t *pm;
    size_t pl;
    assert_int_equal(l2_purge_encode(c, "ch", &m, &pm, &pl), L2_OK);
    assert_int_equal(l2_value_decode(c, ek, pm, pl, NOW, &got, &e), L2_E_AUTH);
    free(pm);
    free(blob);
    token_unref(ti);
    l2_codec_free(c);
    l2_codec_free(other);
}

static void test_expired(void **state)
{
    (void)state;
    struct l2_codec *c = codec(fleet_key);
    uint8_t ek[L2_KEY_LEN];
    ek_of(c, "t", ek);
    struct token_info *ti = active_ti();
    uint8_t *blob;
    size_t len;
    assert_int_equal(l2_value_encode(c, ek, ti, NOW + 1000, &blob, &len), L2_OK);
    struct token_info *got;
    int64_t e;
    assert_int_equal(l2_value_decode(c, ek, blob, len, NOW + 999, &got, &e), L2_OK);
    assert_int_equal(got->max_age, 0);
    token_unref(got);
    assert_int_equal(l2_value_decode(c, ek, blob, len, NOW + 1000, &got, &e), L2_E_EXPIRED);
    assert_null(got);
    free(blob);
    token_unref(ti);
    l2_codec_free(c);
}

static void test_forged_ok_and_unknown_field(void **state)
{
    (void)state;
    struct mp m;
    struct token_info *got;
    mp_init(&m, 5);
    mp_int(&m, 0, 1);
    mp_int(&m, 1, 1);
    mp_int(&m, 2, NOW + 5000);
    mp_str(&m, 3, "x.y.z", 5);
    mp_str(&m, 15, "a later field", 13); /* unknown fields are skipped */
    assert_int_equal(decode_mp(&m, &got), L2_OK);
    assert_string_equal(got->jwt, "x.y.z");
    token_unref(got);
}

static void test_wrong_version(void **state)
{
    (void)state;
    struct mp m;
    struct token_info *got;
    mp_init(&m, 4);
    mp_int(&m, 0, 2);
    mp_int(&m, 1, 1);
    mp_int(&m, 2, NOW + 5000);
    mp_str(&m, 3, "x.y.z", 5);
    assert_int_equal(decode_mp(&m, &got), L2_E_VERSION);
    assert_null(got);
    mp_init(&m, 2); /* no version at all */
    mp_int(&m, 1, 1);
    mp_int(&m, 2, NOW + 5000);
    assert_int_equal(decode_mp(&m, &got), L2_E_FORMAT);

    /* An unknown format byte outside the encryption. */
    struct l2_codec *c = codec(fleet_key);
    uint8_t ek[L2_KEY_LEN] = {0};
    uint8_t blob[64] = {2};
    int64_t e;
    assert_int_equal(l2_value_decode(c, ek, blob, sizeof(blob), NOW, &got, &e), L2_E_VERSION);
    l2_codec_free(c);
}

static void test_bad_fields(void **state)
{
    (void)state;
    struct mp m;
    struct token_info *got;

    mp_init(&m, 3); /* outcome 3 (an IdP error) is never shared */
    mp_int(&m, 0, 1);
    mp_int(&m, 1, 3);
    mp_int(&m, 2, NOW + 5000);
    assert_int_equal(decode_mp(&m, &got), L2_E_FIELD);

    mp_init(&m, 3); /* active without JWT */
    mp_int(&m, 0, 1);
    mp_int(&m, 1, 1);
    mp_int(&m, 2, NOW + 5000);
    assert_int_equal(decode_mp(&m, &got), L2_E_FIELD);

    mp_init(&m, 4); /* inactive with a JWT */
    mp_int(&m, 0, 1);
    mp_int(&m, 1, 2);
    mp_int(&m, 2, NOW + 5000);
    mp_str(&m, 3, "x.y.z", 5);
    assert_int_equal(decode_mp(&m, &got), L2_E_FIELD);

    mp_init(&m, 2); /* no expiry */
    mp_int(&m, 0, 1);
    mp_int(&m, 1, 2);
    assert_int_equal(decode_mp(&m, &got), L2_E_FIELD);

    char *big = malloc(L2_FIELD_MAX + 1);
    memset(big, 'a', L2_FIELD_MAX + 1);
    mp_init(&m, 4); /* oversize JWT */
    mp_int(&m, 0, 1);
    mp_int(&m, 1, 1);
    mp_int(&m, 2, NOW + 5000);
    mp_str(&m, 3, big, L2_FIELD_MAX + 1);
    assert_int_equal(decode_mp(&m, &got), L2_E_FIELD);
    mp_init(&m, 5); /* oversize sub */
    mp_int(&m, 0, 1);
    mp_int(&m, 1, 1);
    mp_int(&m, 2, NOW + 5000);
    mp_str(&m, 3, "x.y.z", 5);
    mp_str(&m, 5, big, L2_FIELD_MAX + 1);
    assert_int_equal(decode_mp(&m, &got), L2_E_FIELD);
    free(big);

    mp_init(&m, 5); /* NUL inside a string */
    mp_int(&m, 0, 1);
    mp_int(&m, 1, 1);
    mp_int(&m, 2, NOW + 5000);
    mp_str(&m, 3, "x.y.z", 5);
    mp_str(&m, 5, "al\0ce", 5);
    assert_int_equal(decode_mp(&m, &got), L2_E_FIELD);

    mp_init(&m, 5); /* exp of the wrong type */
    mp_int(&m, 0, 1);
    mp_int(&m, 1, 1);
    mp_int(&m, 2, NOW + 5000);
    mp_str(&m, 3, "x.y.z", 5);
    mp_str(&m, 4, "soon", 4);
    assert_int_equal(decode_mp(&m, &got), L2_E_FIELD);
    assert_null(got);
}

static void test_bad_shape(void **state)
{
    (void)state;
    struct token_info *got;
    struct mp m;
    mp_init(&m, 4); /* a field twice */
    mp_int(&m, 0, 1);
    mp_int(&m, 1, 2);
    mp_int(&m, 2, NOW + 5000);
    mp_int(&m, 2, NOW + 9000);
    assert_int_equal(decode_mp(&m, &got), L2_E_FORMAT);

    mp_init(&m, 3); /* a nested container */
    mp_int(&m, 0, 1);
    mp_int(&m, 1, 2);
    msgpack_pack_unsigned_int(&m.pk, 2);
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_int(&m.pk, 1);
    assert_int_equal(decode_mp(&m, &got), L2_E_FORMAT);

    /* Lengths the bytes do not hold: a map of 65535 pairs, a 4 GiB string, a short str8. */
    static const uint8_t huge_map[] = {0xde, 0xff, 0xff, 0x00, 0x01};
    assert_int_equal(decode_plain(huge_map, sizeof(huge_map), &got), L2_E_FORMAT);
    static const uint8_t huge_str[] = {0x81, 0x03, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    assert_int_equal(decode_plain(huge_str, sizeof(huge_str), &got), L2_E_FORMAT);
    static const uint8_t short_str[] = {0x81, 0x03, 0xd9, 0x05, 'a'};
    assert_int_equal(decode_plain(short_str, sizeof(short_str), &got), L2_E_FORMAT);
    static const uint8_t not_map[] = {0x93, 0x01, 0x02, 0x03};
    assert_int_equal(decode_plain(not_map, sizeof(not_map), &got), L2_E_FORMAT);
    static const uint8_t trailing[] = {0x81, 0x00, 0x01, 0x00};
    assert_int_equal(decode_plain(trailing, sizeof(trailing), &got), L2_E_FORMAT);
    static const uint8_t str_key[] = {0x81, 0xa1, 'v', 0x01};
    assert_int_equal(decode_plain(str_key, sizeof(str_key), &got), L2_E_FORMAT);
    assert_int_equal(decode_plain("", 0, &got), L2_E_FORMAT);
    static const uint8_t reserved[] = {0x81, 0x00, 0xc1};
    assert_int_equal(decode_plain(reserved, sizeof(reserved), &got), L2_E_FORMAT);
    assert_null(got);
}

/* ---- purge messages ---- */

static void test_purge_round_trip(void **state)
{
    (void)state;
    struct l2_codec *c = codec(fleet_key);
    struct l2_replay rp;
    l2_replay_init(&rp);
    struct l2_purge_msg m = {.kind = L2_PURGE_SUB, .ts_ms = NOW, .origin = {1, 2, 3}};
    memcpy(m.value, "alice", 5);
    m.value_len = 5;
    uint8_t *blob;
    size_t len;
    assert_int_equal(l2_purge_encode(c, "pta:purge", &m, &blob, &len), L2_OK);
    assert_null(memmem(blob, len, "alice", 5));
    struct l2_purge_msg got;
    assert_int_equal(l2_purge_decode(c, "pta:purge", blob, len, NOW + 100, 30000, &rp, &got),
                     L2_OK);
    assert_int_equal(got.kind, L2_PURGE_SUB);
    assert_int_equal(got.value_len, 5);
    assert_memory_equal(got.value, "alice", 5);
    assert_int_equal(got.ts_ms, NOW);
    assert_memory_equal(got.id, m.id, L2_PURGE_ID_LEN);
    assert_memory_equal(got.origin, m.origin, 8);
    /* The same message again is a replay; on another channel it is not authentic. */
    assert_int_equal(l2_purge_decode(c, "pta:purge", blob, len, NOW + 200, 30000, &rp, &got),
                     L2_E_REPLAY);
    assert_int_equal(got.value_len, 0);
    assert_int_equal(l2_purge_decode(c, "other", blob, len, NOW, 30000, NULL, &got), L2_E_AUTH);
    /* Too old, or from too far in the future. */
    assert_int_equal(l2_purge_decode(c, "pta:purge", blob, len, NOW + 30001, 30000, NULL, &got),
                     L2_E_EXPIRED);
    assert_int_equal(l2_purge_decode(c, "pta:purge", blob, len, NOW - 30001, 30000, NULL, &got),
                     L2_E_EXPIRED);
    /* Tampered. */
    blob[len / 2] ^= 1;
    assert_int_equal(l2_purge_decode(c, "pta:purge", blob, len, NOW, 30000, NULL, &got), L2_E_AUTH);
    free(blob);

    /* Each kind with its value rule. */
    struct l2_purge_msg all = {.kind = L2_PURGE_ALL, .ts_ms = NOW};
    assert_int_equal(l2_purge_encode(c, "ch", &all, &blob, &len), L2_OK);
    assert_int_equal(l2_purge_decode(c, "ch", blob, len, NOW, 1000, &rp, &got), L2_OK);
    assert_int_equal(got.kind, L2_PURGE_ALL);
    free(blob);
    struct l2_purge_msg bad = {.kind = L2_PURGE_ENTRY_KEY, .value_len = 5, .ts_ms = NOW};
    assert_int_equal(l2_purge_encode(c, "ch", &bad, &blob, &len), L2_E_FIELD);
    bad.kind = L2_PURGE_SUB;
    bad.value_len = 0;
    assert_int_equal(l2_purge_encode(c, "ch", &bad, &blob, &len), L2_E_FIELD);
    bad.kind = L2_PURGE_KIND_COUNT;
    assert_int_equal(l2_purge_encode(c, "ch", &bad, &blob, &len), L2_E_FIELD);
    l2_codec_free(c);
}

static void test_replay_ring(void **state)
{
    (void)state;
    struct l2_codec *c = codec(fleet_key);
    struct l2_replay *rp = malloc(sizeof(*rp));
    l2_replay_init(rp);
    uint8_t *first = NULL;
    size_t first_len = 0;
    for (int i = 0; i < L2_REPLAY_SLOTS + 1; i++) {
        struct l2_purge_msg m = {.kind = L2_PURGE_ALL, .ts_ms = NOW};
        uint8_t *b;
        size_t n;
        struct l2_purge_msg got;
        assert_int_equal(l2_purge_encode(c, "ch", &m, &b, &n), L2_OK);
        assert_int_equal(l2_purge_decode(c, "ch", b, n, NOW, 1000, rp, &got), L2_OK);
        if (i == 0) {
            first = b;
            first_len = n;
        } else {
            free(b);
        }
    }
    /* The ring forgot the first id: the age limit is what refuses it in practice. */
    struct l2_purge_msg got;
    assert_int_equal(l2_purge_decode(c, "ch", first, first_len, NOW, 1000, rp, &got), L2_OK);
    assert_int_equal(l2_purge_decode(c, "ch", first, first_len, NOW + 1001, 1000, rp, &got),
                     L2_E_EXPIRED);
    free(first);
    free(rp);
    l2_codec_free(c);
}

static void test_purge_forged_fields(void **state)
{
    (void)state;
    struct l2_codec *c = codec(fleet_key);
    struct mp m;
    mp_init(&m, 6); /* kind out of range */
    mp_int(&m, 0, 1);
    mp_int(&m, 1, 99);
    msgpack_pack_unsigned_int(&m.pk, 2);
    msgpack_pack_bin(&m.pk, 0);
    mp_int(&m, 3, NOW);
    msgpack_pack_unsigned_int(&m.pk, 4);
    msgpack_pack_bin(&m.pk, 16);
    msgpack_pack_bin_body(&m.pk, "0123456789abcdef", 16);
    msgpack_pack_unsigned_int(&m.pk, 5);
    msgpack_pack_bin(&m.pk, 8);
    msgpack_pack_bin_body(&m.pk, "origin!!", 8);
    size_t n;
    uint8_t *b = forge("purge message key", "pta purge v1", "ch", 2, m.sb.data, m.sb.size, &n);
    struct l2_purge_msg got;
    assert_int_equal(l2_purge_decode(c, "ch", b, n, NOW, 1000, NULL, &got), L2_E_FIELD);
    free(b);
    msgpack_sbuffer_destroy(&m.sb);
    l2_codec_free(c);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(l2_status_name(L2_OK), "ok");
    assert_string_equal(l2_status_name(L2_E_AUTH), "auth");
    assert_string_equal(l2_status_name(L2_E_CRYPTO), "crypto");
    assert_string_equal(l2_status_name(L2_STATUS_COUNT), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_redis_key),
        cmocka_unit_test(test_round_trip_active),
        cmocka_unit_test(test_round_trip_minted),
        cmocka_unit_test(test_round_trip_inactive_and_minimal),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_tamper_every_byte),
        cmocka_unit_test(test_wrong_key_and_aad),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_forged_ok_and_unknown_field),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_bad_shape),
        cmocka_unit_test(test_purge_round_trip),
        cmocka_unit_test(test_replay_ring),
        cmocka_unit_test(test_purge_forged_fields),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
