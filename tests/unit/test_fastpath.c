/* Unit tests of fastpath.c: admission, the shared key file, the map key against digits a real
 * HAProxy computed, command-line validation (nothing injectable) and the table of live entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../agent/fastpath.h"

static const char JWT[] = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln-_";
static const int64_t NOW = 1800000000;
static const struct fp_limits LIM = {.ttl = 30, .skew = 5, .max_jwt = 8192, .max_auth = 4096};

static struct fp_candidate good(void)
{
    return (struct fp_candidate){.status = 200,
                                 .jwt = JWT,
                                 .jwt_len = strlen(JWT),
                                 .auth_count = 1,
                                 .auth = "Bearer opaque-1",
                                 .auth_len = strlen("Bearer opaque-1"),
                                 .scopes = "admin",
                                 .scopes_len = 5,
                                 .token_exp = NOW + 3600};
}

/* ---- admission ---- */

static void admit_positive_with_ttl(void **state)
{
    (void)state;
    struct fp_candidate c = good();
    int64_t exp = 0;
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_OK);
    assert_int_equal(exp, NOW + 30);
}

static void admit_lifetime_bounded_by_token_and_cache(void **state)
{
    (void)state;
    struct fp_candidate c = good();
    int64_t exp = 0;
    c.token_exp = NOW + 20; /* 20 - skew 5 < ttl 30 */
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_OK);
    assert_int_equal(exp, NOW + 15);
    c.not_after = NOW + 7; /* the agent's own cache entry ends first */
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_OK);
    assert_int_equal(exp, NOW + 7);
    c.token_exp = 0; /* no exp from the IdP: ttl and not_after only */
    c.not_after = 0;
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_OK);
    assert_int_equal(exp, NOW + 30);
    c.token_exp = NOW + 5; /* exp - skew == now: nothing left */
    exp = 42;
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_SHORT_LIFETIME);
    assert_int_equal(exp, 42);
    c.token_exp = NOW - 100;
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_SHORT_LIFETIME);
    c.token_exp = NOW + 3600;
    c.not_after = NOW; /* the cache entry is ending now */
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_SHORT_LIFETIME);
}

static void admit_refuses_negative_and_errors(void **state)
{
    (void)state;
    int64_t exp;
    static const int statuses[] = {400, 401, 403, 500, 502, 503, 0, 201};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        struct fp_candidate c = good();
        c.status = statuses[i];
        assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_NOT_200);
    }
    struct fp_candidate c = good();
    c.jwt = NULL;
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_NO_JWT);
    c = good();
    c.jwt_len = 0;
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_NO_JWT);
}

static void admit_refuses_two_authorization_headers(void **state)
{
    (void)state;
    int64_t exp;
    struct fp_candidate c = good();
    c.auth_count = 2;
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_MULTI_AUTH);
    c.auth_count = 0;
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_MULTI_AUTH);
}

static void admit_refuses_bytes_that_could_inject_or_collide(void **state)
{
    (void)state;
    int64_t exp;
    static const char *bad_jwts[] = {"a.b c", "a.b;add map x", "a.b\nshow",
                                     "a\\.b", "a.b:c",         "a+b/c="};
    for (size_t i = 0; i < sizeof(bad_jwts) / sizeof(bad_jwts[0]); i++) {
        struct fp_candidate c = good();
        c.jwt = bad_jwts[i];
        c.jwt_len = strlen(bad_jwts[i]);
        assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_BAD_JWT);
    }
    struct fp_candidate c = good();
    struct fp_limits small = LIM;
    small.max_jwt = c.jwt_len - 1;
    assert_int_equal(fp_admit(&c, &small, NOW, &exp), FP_BAD_JWT);

    static const char *bad_auth[] = {"Bearer a|b", "Bearer a\tb", "Bearer \x7f", "Bearer \xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad_auth) / sizeof(bad_auth[0]); i++) {
        c = good();
        c.auth = bad_auth[i];
        c.auth_len = strlen(bad_auth[i]);
        assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_BAD_AUTH);
    }
    c = good();
    c.auth_len = 0;
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_BAD_AUTH);
    c = good();
    small = LIM;
    small.max_auth = c.auth_len - 1;
    assert_int_equal(fp_admit(&c, &small, NOW, &exp), FP_BAD_AUTH);
    /* a NUL inside the range is a control byte too */
    c = good();
    c.auth = "Bearer a\0b";
    c.auth_len = 10;
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_BAD_AUTH);

    c = good();
    c.scopes = "admin|read";
    c.scopes_len = strlen(c.scopes);
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_BAD_SCOPES);
    c.scopes = NULL; /* unset: the unscoped route */
    c.scopes_len = 0;
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_OK);
    c.audience = "orders|x";
    c.audience_len = strlen(c.audience);
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_BAD_AUDIENCE);
    c.audience = "orders";
    c.audience_len = 6;
    assert_int_equal(fp_admit(&c, &LIM, NOW, &exp), FP_OK);
    assert_string_equal(fp_refusal_name(FP_BAD_SCOPES), "bad-scopes");
}

/* ---- the shared key ---- */

static const char SECRET[] = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

static void secret_file_forms(void **state)
{
    (void)state;
    char out[FP_SECRET_MAX + 1], err[160];
    const char *ok[] = {
        "fastpath-key MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
        "# shared with haproxy\n\nfastpath-key\t MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "fastpath-key MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n# end\n"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        memset(out, 0, sizeof(out));
        assert_int_equal(fp_secret_parse(ok[i], strlen(ok[i]), out, err, sizeof(err)), 0);
        assert_string_equal(out, SECRET);
    }
    const char *bad[] = {"",
                         "# nothing\n",
                         "fastpath-key short\n",
                         "other-key MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
                         "fastpath-key MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY= \n",
                         "fastpath-key MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\r\n",
                         " fastpath-key MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
                         "fastpath-key MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\nfastpath-key "
                         "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
                         "fastpath-key MDEyMzQ1Njc4OWFiY2RlZj|xMjM0NTY3ODlhYmNkZWY=\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(fp_secret_parse(bad[i], strlen(bad[i]), out, err, sizeof(err)), -1);
        assert_true(strlen(err) > 0);
    }
    static const char with_nul[] = "fastpath-key MDEyMzQ1Njc4OWFiY2Rl\0ZjAxMjM0NTY3ODlhYmNkZWY=\n";
    assert_int_equal(fp_secret_parse(with_nul, sizeof(with_nul) - 1, out, err, sizeof(err)), -1);
}

/* ---- the map key, against HAProxy ---- */

/* Captured from HAProxy 2.6.12 and 3.4.0 (identical) with contrib/fastpath-proto/key-fixture.cfg,
 * whose key file holds SECRET: the cfg's converter chain over these requests. */
static void map_key_matches_haproxy(void **state)
{
    (void)state;
    char key[FP_KEY_HEX + 1];
    const char *auth = "Bearer abc.DEF-123_~+/=";
    size_t n = strlen(auth), sl = strlen(SECRET);
    assert_int_equal(fp_map_key(SECRET, sl, auth, n, "admin read", 10, NULL, 0, key), 0);
    assert_string_equal(key, "A82E1660DA809CB537FCB2B2366C549D");
    /* txn.phantom_scopes unset (the unscoped route): HAProxy's concat appends nothing */
    assert_int_equal(fp_map_key(SECRET, sl, auth, n, NULL, 0, NULL, 0, key), 0);
    assert_string_equal(key, "E10C6E000F986418A1704B080198C1B1");
    /* HAProxy trims the header's outer whitespace; the agent receives the trimmed value */
    assert_int_equal(fp_map_key(SECRET, sl, "bearer  tok", 11, "", 0, "", 0, key), 0);
    assert_string_equal(key, "0AC20231BCC0218FA27F941D8F5C1721");
    /* a route that picks a minted JWT's audience (txn.phantom_audience) */
    assert_int_equal(fp_map_key(SECRET, sl, auth, n, "admin read", 10, "orders", 6, key), 0);
    assert_string_equal(key, "A1EEE9DAE138A44B80CA3BB64DD086AF");
}

static void map_key_separates_routes_and_keys(void **state)
{
    (void)state;
    char a[FP_KEY_HEX + 1], b[FP_KEY_HEX + 1];
    const char *auth = "Bearer t";
    size_t sl = strlen(SECRET);
    assert_int_equal(fp_map_key(SECRET, sl, auth, 8, "admin", 5, NULL, 0, a), 0);
    assert_int_equal(fp_map_key(SECRET, sl, auth, 8, NULL, 0, NULL, 0, b), 0);
    assert_string_not_equal(a, b);
    /* the same scopes, another audience: another JWT, another entry */
    assert_int_equal(fp_map_key(SECRET, sl, auth, 8, "admin", 5, "orders", 6, b), 0);
    assert_string_not_equal(a, b);
    /* scopes and audience cannot trade places */
    assert_int_equal(fp_map_key(SECRET, sl, auth, 8, "", 0, "admin", 5, b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(fp_map_key("A"
                                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
                                sl + 1, auth, 8, "admin", 5, NULL, 0, b),
                     0);
    assert_string_not_equal(a, b);
}

/* ---- command lines ---- */

static const char KEY[] = "E1E20D875228E28365ECB48B8A02D184";

static void cmd_lines(void **state)
{
    (void)state;
    char buf[FP_CMD_MAX];
    long n = fp_cmd_put(buf, sizeof(buf), false, "", "/run/haproxy/fastpath.map", KEY, NOW + 30,
                        FP_VALUE_JWT, JWT, strlen(JWT));
    char want[512];
    snprintf(want, sizeof(want), "add map /run/haproxy/fastpath.map %s 1800000030:%s\n", KEY, JWT);
    assert_string_equal(buf, want);
    assert_int_equal(n, (long)strlen(want));

    n = fp_cmd_put(buf, sizeof(buf), true, "@1", "virt@fastpath", KEY, 1000000001, FP_VALUE_JWT,
                   JWT, strlen(JWT));
    snprintf(want, sizeof(want), "@1 set map virt@fastpath %s 1000000001:%s\n", KEY, JWT);
    assert_string_equal(buf, want);
    assert_int_equal(n, (long)strlen(want));

    assert_true(fp_cmd_del(buf, sizeof(buf), "@!4242", "#3", KEY) > 0);
    snprintf(want, sizeof(want), "@!4242 del map #3 %s\n", KEY);
    assert_string_equal(buf, want);
    assert_true(fp_cmd_clear(buf, sizeof(buf), "", "/m.map") > 0);
    assert_string_equal(buf, "clear map /m.map\n");
}

/* 3.4+ values: a 41-character head (a filler record sized so that the width stays fixed, then the
 * Authorization record's name and length varint, always %XX) and the JWT as it is. */
static void cmd_lines_hdrs_bin(void **state)
{
    (void)state;
    assert_int_equal(fp_value_format_for(0), FP_VALUE_JWT);
    assert_int_equal(fp_value_format_for(206), FP_VALUE_JWT);
    assert_int_equal(fp_value_format_for(303), FP_VALUE_JWT);
    assert_int_equal(fp_value_format_for(304), FP_VALUE_HDRS_BIN);
    assert_int_equal(fp_value_format_for(400), FP_VALUE_HDRS_BIN);

    char buf[FP_CMD_MAX], want[FP_CMD_MAX];
    /* "Bearer a.b.c" = 12: a one-byte varint, so a 7-byte filler */
    long n = fp_cmd_put(buf, sizeof(buf), false, "", "/m", KEY, NOW, FP_VALUE_HDRS_BIN, "a.b.c", 5);
    snprintf(want, sizeof(want),
             "add map /m %s 1800000000:%%07xxxxxxx%%00%%0DAuthorization%%0CBearer%%20a.b.c\n", KEY);
    assert_string_equal(buf, want);
    assert_int_equal(n, (long)strlen(want));

    /* "Bearer " + 853 bytes = 860: 0xF0 | (860 & 15) = 0xFC, then (860 - 240) >> 4 = 38 ('&',
     * escaped all the same); two varint bytes, a 4-byte filler */
    static char jwt[4000];
    memset(jwt, 'x', sizeof(jwt));
    n = fp_cmd_put(buf, sizeof(buf), true, "", "/m", KEY, NOW, FP_VALUE_HDRS_BIN, jwt, 853);
    assert_true(n > 0);
    const char *v = strchr(buf, ':') + 1;
    assert_memory_equal(v, "%04xxxx%00%0DAuthorization%FC%26Bearer%20", FP_HDRS_BIN_HEAD);
    assert_int_equal(strlen(v), FP_HDRS_BIN_HEAD + 853 + 1);
    /* 3000: 0xF8, then 2760 >> 4 = 172 -> 0xAC (continued), then (172 - 128) >> 7 = 0 */
    n = fp_cmd_put(buf, sizeof(buf), false, "", "/m", KEY, NOW, FP_VALUE_HDRS_BIN, jwt, 2993);
    assert_true(n > 0);
    v = strchr(buf, ':') + 1;
    assert_memory_equal(v, "%01x%00%0DAuthorization%F8%AC%00Bearer%20", FP_HDRS_BIN_HEAD);
    /* too small a buffer: nothing half-written */
    char tiny[64];
    assert_int_equal(
        fp_cmd_put(tiny, sizeof(tiny), false, "", "/m", KEY, NOW, FP_VALUE_HDRS_BIN, jwt, 40), -1);
    assert_string_equal(tiny, "");
    /* the JWT's own checks still apply */
    assert_int_equal(
        fp_cmd_put(buf, sizeof(buf), false, "", "/m", KEY, NOW, FP_VALUE_HDRS_BIN, "a%b", 3), -1);
}

static void cmd_lines_refuse_injection(void **state)
{
    (void)state;
    char buf[FP_CMD_MAX];
    static const char *bad_maps[] = {
        "",      "/a b", "/a;show info", "/a\nshow", "/a\\ b", "@1", "/a\tb",
        "/a\"b", "/a'b", "/a\r",         "/a$(x)",   "/a%20",  NULL};
    for (size_t i = 0; bad_maps[i]; i++) {
        assert_int_equal(
            fp_cmd_put(buf, sizeof(buf), false, "", bad_maps[i], KEY, NOW, FP_VALUE_JWT, JWT, 5),
            -1);
        assert_int_equal(fp_cmd_del(buf, sizeof(buf), "", bad_maps[i], KEY), -1);
        assert_int_equal(fp_cmd_clear(buf, sizeof(buf), "", bad_maps[i]), -1);
        assert_int_equal(buf[0], '\0');
    }
    assert_false(fp_map_name_valid(NULL));
    char longname[FP_MAP_NAME_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_false(fp_map_name_valid(longname));
    longname[FP_MAP_NAME_MAX] = '\0';
    assert_true(fp_map_name_valid(longname));

    static const char *bad_keys[] = {
        "e1e20d875228e28365ecb48b8a02d184", "E1E20D87", "E1E20D875228E28365ECB48B8A02D1845",
        "E1E20D875228E28365ECB48B8A02D1 4", "E1E20D875228E28365ECB48B8A02D1;4"};
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        assert_int_equal(
            fp_cmd_put(buf, sizeof(buf), false, "", "/m", bad_keys[i], NOW, FP_VALUE_JWT, JWT, 5),
            -1);
        assert_int_equal(fp_cmd_del(buf, sizeof(buf), "", "/m", bad_keys[i]), -1);
    }
    static const char *bad_routes[] = {"1", "@", "@!", "@x", "@1 show", "@1;", "@!12a", NULL};
    for (size_t i = 0; bad_routes[i]; i++) {
        assert_false(fp_route_valid(bad_routes[i]));
        assert_int_equal(fp_cmd_del(buf, sizeof(buf), bad_routes[i], "/m", KEY), -1);
    }
    assert_true(fp_route_valid("@!1234567"));
    assert_int_equal(
        fp_cmd_put(buf, sizeof(buf), false, "", "/m", KEY, NOW, FP_VALUE_JWT, "a b", 3), -1);
    assert_int_equal(
        fp_cmd_put(buf, sizeof(buf), false, "", "/m", KEY, NOW, FP_VALUE_JWT, "a;b", 3), -1);
    assert_int_equal(
        fp_cmd_put(buf, sizeof(buf), false, "", "/m", KEY, NOW, FP_VALUE_JWT, "a\nb", 3), -1);
    assert_int_equal(
        fp_cmd_put(buf, sizeof(buf), false, "", "/m", KEY, 999999999, FP_VALUE_JWT, JWT, 5), -1);
    assert_int_equal(
        fp_cmd_put(buf, sizeof(buf), false, "", "/m", KEY, 10000000000LL, FP_VALUE_JWT, JWT, 5),
        -1);
    /* a buffer too small never holds a truncated command */
    char tiny[40];
    assert_int_equal(
        fp_cmd_put(tiny, sizeof(tiny), false, "", "/m", KEY, NOW, FP_VALUE_JWT, JWT, strlen(JWT)),
        -1);
    assert_int_equal(tiny[0], '\0');
}

/* ---- the table ---- */

struct removed_log {
    char keys[16][FP_KEY_HEX + 1];
    size_t n;
};

static void on_removed(void *ud, const struct fp_entry *e)
{
    struct removed_log *l = ud;
    if (l->n < 16)
        memcpy(l->keys[l->n], e->key, FP_KEY_HEX + 1);
    l->n++;
}

static void key_n(char out[FP_KEY_HEX + 1], unsigned n)
{
    snprintf(out, FP_KEY_HEX + 1, "%032X", n);
}

static void tok_n(uint8_t id[FP_TOKEN_ID_LEN], unsigned n)
{
    memset(id, 0, FP_TOKEN_ID_LEN);
    memcpy(id, &n, sizeof(n));
}

static void table_put_get_unchanged_replaced(void **state)
{
    (void)state;
    struct fp_table *t = fp_table_new(4);
    assert_non_null(t);
    char k[FP_KEY_HEX + 1];
    uint8_t tok[FP_TOKEN_ID_LEN];
    key_n(k, 1);
    tok_n(tok, 1);
    assert_int_equal(fp_table_put(t, k, tok, NOW + 30, JWT, strlen(JWT), NULL, NULL), FP_PUT_NEW);
    const struct fp_entry *e = fp_table_get(t, k);
    assert_non_null(e);
    assert_int_equal(e->expires, NOW + 30);
    assert_memory_equal(e->jwt, JWT, strlen(JWT));
    /* the same decision a moment later (a concurrent miss): nothing to send */
    assert_int_equal(fp_table_put(t, k, tok, NOW + 31, JWT, strlen(JWT), NULL, NULL),
                     FP_PUT_UNCHANGED);
    assert_int_equal(fp_table_put(t, k, tok, NOW + 40, JWT, strlen(JWT), NULL, NULL),
                     FP_PUT_REPLACED);
    assert_int_equal(fp_table_put(t, k, tok, NOW + 40, "x.y.z", 5, NULL, NULL), FP_PUT_REPLACED);
    e = fp_table_get(t, k);
    assert_int_equal(e->jwt_len, 5);
    assert_int_equal(fp_table_count(t), 1);
    key_n(k, 2);
    assert_null(fp_table_get(t, k));
    fp_table_free(t);
}

static void table_evicts_earliest_expiry_when_full(void **state)
{
    (void)state;
    struct fp_table *t = fp_table_new(3);
    char k[FP_KEY_HEX + 1];
    uint8_t tok[FP_TOKEN_ID_LEN];
    static const int64_t exps[] = {50, 10, 30};
    for (unsigned i = 0; i < 3; i++) {
        key_n(k, i);
        tok_n(tok, i);
        assert_int_equal(fp_table_put(t, k, tok, NOW + exps[i], JWT, 5, NULL, NULL), FP_PUT_NEW);
    }
    assert_int_equal(fp_table_next_expiry(t), NOW + 10);
    struct removed_log log = {0};
    key_n(k, 9);
    assert_int_equal(fp_table_put(t, k, tok, NOW + 60, JWT, 5, on_removed, &log), FP_PUT_NEW);
    assert_int_equal(log.n, 1);
    key_n(k, 1);
    assert_string_equal(log.keys[0], k); /* the one expiring at +10 */
    assert_null(fp_table_get(t, k));
    assert_int_equal(fp_table_count(t), 3);
    assert_int_equal(fp_table_next_expiry(t), NOW + 30);
    fp_table_free(t);
}

static void table_expire_in_order(void **state)
{
    (void)state;
    struct fp_table *t = fp_table_new(100);
    char k[FP_KEY_HEX + 1];
    uint8_t tok[FP_TOKEN_ID_LEN];
    tok_n(tok, 7);
    for (unsigned i = 0; i < 100; i++) {
        key_n(k, i);
        /* a scrambled order, to exercise the heap */
        assert_int_equal(
            fp_table_put(t, k, tok, NOW + (int64_t)((i * 37) % 100) + 1, JWT, 5, NULL, NULL),
            FP_PUT_NEW);
    }
    struct removed_log log = {0};
    assert_int_equal(fp_table_expire(t, NOW, on_removed, &log), 0);
    assert_int_equal(fp_table_expire(t, NOW + 10, on_removed, &log), 10);
    assert_int_equal(log.n, 10);
    assert_int_equal(fp_table_count(t), 90);
    assert_int_equal(fp_table_next_expiry(t), NOW + 11);
    /* a refresh moves an entry later in the heap */
    key_n(k, 0); /* (0 * 37) % 100 + 1 = 1: already gone */
    assert_null(fp_table_get(t, k));
    key_n(k, 3); /* 3 * 37 % 100 + 1 = 12 */
    assert_int_equal(fp_table_get(t, k)->expires, NOW + 12);
    assert_int_equal(fp_table_put(t, k, tok, NOW + 500, JWT, 5, NULL, NULL), FP_PUT_REPLACED);
    assert_int_equal(fp_table_expire(t, NOW + 100, on_removed, &log), 89);
    assert_int_equal(fp_table_count(t), 1);
    assert_int_equal(fp_table_next_expiry(t), NOW + 500);
    fp_table_free(t);
}

static void count_entry(void *ud, const struct fp_entry *e)
{
    (void)e;
    (*(size_t *)ud)++;
}

static void table_purge_by_token_and_all(void **state)
{
    (void)state;
    struct fp_table *t = fp_table_new(64);
    char k[FP_KEY_HEX + 1];
    uint8_t tok[FP_TOKEN_ID_LEN];
    /* token 1 published for three routes, token 2 for two */
    for (unsigned i = 0; i < 5; i++) {
        key_n(k, i);
        tok_n(tok, i < 3 ? 1 : 2);
        assert_int_equal(fp_table_put(t, k, tok, NOW + 30, JWT, 5, NULL, NULL), FP_PUT_NEW);
    }
    struct removed_log log = {0};
    tok_n(tok, 1);
    assert_int_equal(fp_table_purge_token(t, tok, on_removed, &log), 3);
    assert_int_equal(log.n, 3);
    assert_int_equal(fp_table_purge_token(t, tok, on_removed, &log), 0);
    tok_n(tok, 3);
    assert_int_equal(fp_table_purge_token(t, tok, on_removed, &log), 0);
    size_t seen = 0;
    fp_table_foreach(t, count_entry, &seen);
    assert_int_equal(seen, 2);
    assert_int_equal(fp_table_purge_all(t, on_removed, &log), 2);
    assert_int_equal(log.n, 5);
    assert_int_equal(fp_table_count(t), 0);
    assert_int_equal(fp_table_next_expiry(t), 0);
    fp_table_free(t);
}

static void table_token_change_moves_index(void **state)
{
    (void)state;
    struct fp_table *t = fp_table_new(8);
    char k[FP_KEY_HEX + 1];
    uint8_t a[FP_TOKEN_ID_LEN], b[FP_TOKEN_ID_LEN];
    key_n(k, 1);
    tok_n(a, 1);
    tok_n(b, 2);
    assert_int_equal(fp_table_put(t, k, a, NOW + 30, JWT, 5, NULL, NULL), FP_PUT_NEW);
    assert_int_equal(fp_table_put(t, k, b, NOW + 30, JWT, 5, NULL, NULL), FP_PUT_REPLACED);
    assert_int_equal(fp_table_purge_token(t, a, NULL, NULL), 0);
    assert_int_equal(fp_table_purge_token(t, b, NULL, NULL), 1);
    fp_table_free(t);
}

static void table_bad_arguments(void **state)
{
    (void)state;
    assert_null(fp_table_new(0));
    struct fp_table *t = fp_table_new(1);
    uint8_t tok[FP_TOKEN_ID_LEN] = {0};
    assert_int_equal(fp_table_put(t, "nothex", tok, NOW, JWT, 5, NULL, NULL), FP_PUT_NOMEM);
    assert_int_equal(fp_table_count(t), 0);
    fp_table_free(t);
    fp_table_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(admit_positive_with_ttl),
        cmocka_unit_test(admit_lifetime_bounded_by_token_and_cache),
        cmocka_unit_test(admit_refuses_negative_and_errors),
        cmocka_unit_test(admit_refuses_two_authorization_headers),
        cmocka_unit_test(admit_refuses_bytes_that_could_inject_or_collide),
        cmocka_unit_test(secret_file_forms),
        cmocka_unit_test(map_key_matches_haproxy),
        cmocka_unit_test(map_key_separates_routes_and_keys),
        cmocka_unit_test(cmd_lines),
        cmocka_unit_test(cmd_lines_hdrs_bin),
        cmocka_unit_test(cmd_lines_refuse_injection),
        cmocka_unit_test(table_put_get_unchanged_replaced),
        cmocka_unit_test(table_evicts_earliest_expiry_when_full),
        cmocka_unit_test(table_expire_in_order),
        cmocka_unit_test(table_purge_by_token_and_all),
        cmocka_unit_test(table_token_change_moves_index),
        cmocka_unit_test(table_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
