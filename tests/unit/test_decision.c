/* decide() and decision_put_actions(): every rule, and the actions read back with the spop reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "decision.h"

#define NOW 1767225000
#define JWT "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"

/* ---- helpers ---- */

static struct token_info *make_token(enum token_outcome o, const char *scope, int64_t exp)
{
    struct token_info *ti = token_info_new(o, "test");
    assert_non_null(ti);
    if (o != TOKEN_ACTIVE)
        return ti;
    ti->jwt = strdup(JWT);
    ti->jwt_len = strlen(JWT);
    ti->claims.sub = strdup("alice");
    ti->claims.client_id = strdup("web-client");
    ti->claims.scope = scope ? strdup(scope) : NULL;
    ti->claims.exp = exp;
    ti->claims.has_exp = exp != 0;
    return ti;
}

static struct decision_input input(enum bearer_result b, const struct token_info *ti,
                                   const char *required)
{
    struct decision_input in = {
        .bearer = b,
        .auth_count = b == BEARER_MISSING ? 0 : 1,
        .ti = ti,
        .required_scopes = required,
        .required_scopes_len = required ? strlen(required) : 0,
        .now = NOW,
    };
    return in;
}

static void run(const struct decision_input *in, struct decision *d)
{
    assert_int_equal(decide(in, d), 0);
}

static void assert_opt_str(const char *got, const char *want)
{
    if (want)
        assert_string_equal(got, want);
    else
        assert_null(got);
}

static void expect_www(const struct decision *d, const char *want)
{
    assert_opt_str(d->www_authenticate, want);
}

/* Decides an active token with the given scope against a requirement; returns the status. */
static int scope_status(const char *token_scope, const char *required)
{
    struct token_info *ti = make_token(TOKEN_ACTIVE, token_scope, NOW + 60);
    struct decision_input in = input(BEARER_OK, ti, required);
    struct decision d;
    run(&in, &d);
    int status = d.status;
    decision_clear(&d);
    token_unref(ti);
    return status;
}

/* ---- credentials ---- */

static void test_missing_and_other_scheme(void **state)
{
    struct decision d;
    enum bearer_result rs[] = {BEARER_MISSING, BEARER_NOT_BEARER};
    for (size_t i = 0; i < 2; i++) {
        struct decision_input in = input(rs[i], NULL, "read");
        run(&in, &d);
        assert_int_equal(d.status, 401);
        assert_null(d.error);
        expect_www(&d, "Bearer realm=\"api\"");
        assert_null(d.jwt);
        assert_null(d.sub);
        decision_clear(&d);
    }
}

static void test_malformed(void **state)
{
    struct decision_input in = input(BEARER_MALFORMED, NULL, NULL);
    struct decision d;
    run(&in, &d);
    assert_int_equal(d.status, 400);
    assert_string_equal(d.error, "invalid_request");
    expect_www(&d, "Bearer realm=\"api\", error=\"invalid_request\", "
                   "error_description=\"Malformed Authorization header\"");
    decision_clear(&d);
}

static void test_multiple_authorization_headers(void **state)
{
    /* Even with a valid token: two headers are ambiguous, whichever one the agent looked at. */
    struct token_info *ti = make_token(TOKEN_ACTIVE, "read", NOW + 60);
    struct decision_input in = input(BEARER_OK, ti, NULL);
    in.auth_count = 2;
    struct decision d;
    run(&in, &d);
    assert_int_equal(d.status, 400);
    assert_string_equal(d.error, "invalid_request");
    assert_non_null(strstr(d.www_authenticate, "error=\"invalid_request\""));
    assert_null(d.jwt);
    decision_clear(&d);

    in = input(BEARER_MISSING, NULL, NULL);
    in.auth_count = 5;
    run(&in, &d);
    assert_int_equal(d.status, 400);
    decision_clear(&d);
    token_unref(ti);
}

/* ---- token outcomes ---- */

static void test_active(void **state)
{
    struct token_info *ti = make_token(TOKEN_ACTIVE, "openid read", NOW + 60);
    struct decision_input in = input(BEARER_OK, ti, NULL);
    in.cache = "hit";
    struct decision d;
    run(&in, &d);
    assert_int_equal(d.status, 200);
    assert_null(d.error);
    assert_null(d.www_authenticate);
    assert_ptr_equal(d.jwt, ti->jwt); /* borrowed, not copied */
    assert_int_equal(d.jwt_len, strlen(JWT));
    assert_ptr_equal(d.sub, ti->claims.sub);
    assert_ptr_equal(d.client_id, ti->claims.client_id);
    assert_ptr_equal(d.scope, ti->claims.scope);
    assert_string_equal(d.cache, "hit");
    decision_clear(&d);
    token_unref(ti);
}

static void test_active_without_exp(void **state)
{
    struct token_info *ti = make_token(TOKEN_ACTIVE, "read", 0);
    assert_false(ti->claims.has_exp);
    struct decision_input in = input(BEARER_OK, ti, "read");
    struct decision d;
    run(&in, &d);
    assert_int_equal(d.status, 200);
    decision_clear(&d);
    token_unref(ti);
}

static void test_expired_cached_token(void **state)
{
    static const char *want = "Bearer realm=\"api\", error=\"invalid_token\", "
                              "error_description=\"The access token is invalid or has expired\"";
    int64_t exps[] = {NOW, NOW - 1, 1};
    for (size_t i = 0; i < 3; i++) {
        struct token_info *ti = make_token(TOKEN_ACTIVE, "read", exps[i]);
        struct decision_input in = input(BEARER_OK, ti, "read");
        in.cache = "hit"; /* whatever the cache said */
        struct decision d;
        run(&in, &d);
        assert_int_equal(d.status, 401);
        assert_string_equal(d.error, "invalid_token");
        expect_www(&d, want);
        assert_null(d.jwt);
        assert_string_equal(d.sub, "alice"); /* identity kept for the access log */
        decision_clear(&d);
        token_unref(ti);
    }
    assert_int_equal(scope_status("read", NULL), 200); /* exp NOW + 60 */
}

static void test_inactive(void **state)
{
    struct token_info *ti = make_token(TOKEN_INACTIVE, NULL, 0);
    struct decision_input in = input(BEARER_OK, ti, "read");
    in.cache = "negative";
    struct decision d;
    run(&in, &d);
    assert_int_equal(d.status, 401);
    assert_string_equal(d.error, "invalid_token");
    expect_www(&d, "Bearer realm=\"api\", error=\"invalid_token\", "
                   "error_description=\"The access token is invalid or has expired\"");
    assert_null(d.jwt);
    assert_null(d.sub);
    assert_string_equal(d.cache, "negative");
    decision_clear(&d);
    token_unref(ti);
}

static void test_idp_failures(void **state)
{
    static const struct {
        enum token_outcome o;
        int status;
    } rows[] = {
        {TOKEN_IDP_ERROR, 502},
        {TOKEN_IDP_UNAVAIL, 503},
        {TOKEN_IDP_UNKNOWN, 500},
        {(enum token_outcome)7, 500}, /* a value no enum member has */
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct token_info *ti = make_token(TOKEN_IDP_ERROR, NULL, 0);
        ti->outcome = rows[i].o;
        struct decision_input in = input(BEARER_OK, ti, "read");
        struct decision d;
        run(&in, &d);
        assert_int_equal(d.status, rows[i].status);
        assert_string_equal(d.error, "server_error");
        assert_null(d.www_authenticate);
        assert_null(d.jwt);
        decision_clear(&d);
        token_unref(ti);
    }
}

static void test_ok_without_token_info(void **state)
{
    struct decision_input in = input(BEARER_OK, NULL, NULL);
    struct decision d;
    run(&in, &d);
    assert_int_equal(d.status, 500);
    assert_string_equal(d.error, "server_error");
    decision_clear(&d);
}

/* ---- scopes ---- */

static void test_scope_requirements(void **state)
{
    assert_int_equal(scope_status("read write", NULL), 200);
    assert_int_equal(scope_status("read write", ""), 200);
    assert_int_equal(scope_status("read write", "   "), 200);
    assert_int_equal(scope_status(NULL, NULL), 200);
    assert_int_equal(scope_status(NULL, ""), 200);
    assert_int_equal(scope_status("read write", "read"), 200);
    assert_int_equal(scope_status("read write", "write read"), 200);
    assert_int_equal(scope_status("read write", "  read   write "), 200);
    assert_int_equal(scope_status("read write", "read\twrite"), 200);
    assert_int_equal(scope_status("read write", "read read"), 200);
    assert_int_equal(scope_status("a b c d e", "e a c"), 200);
    assert_int_equal(scope_status("urn:x:read https://api/write", "https://api/write"), 200);

    assert_int_equal(scope_status("read write", "admin"), 403);
    assert_int_equal(scope_status("read write", "read admin"), 403);
    assert_int_equal(scope_status(NULL, "read"), 403);
    assert_int_equal(scope_status("read", "Read"), 403);   /* case-sensitive */
    assert_int_equal(scope_status("reader", "read"), 403); /* whole words only */
    assert_int_equal(scope_status("read", "rea"), 403);
    assert_int_equal(scope_status("xread", "read"), 403);
    assert_int_equal(scope_status("read:all", "read"), 403);
}

static void test_insufficient_scope_challenge(void **state)
{
    struct token_info *ti = make_token(TOKEN_ACTIVE, "read", NOW + 60);
    struct decision_input in = input(BEARER_OK, ti, " read   write ");
    struct decision d;
    run(&in, &d);
    assert_int_equal(d.status, 403);
    assert_string_equal(d.error, "insufficient_scope");
    expect_www(&d, "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"The "
                   "request requires higher privileges than provided by the access token\", "
                   "scope=\"read write\"");
    assert_null(d.jwt);
    assert_string_equal(d.sub, "alice");
    decision_clear(&d);
    token_unref(ti);
}

static void test_scope_check_runs_on_every_request(void **state)
{
    /* One cached token, several routes: each request is judged on its own route's requirement,
     * whatever an earlier request for the same token got. */
    struct token_info *ti = make_token(TOKEN_ACTIVE, "read", NOW + 60);
    const char *routes[] = {"read", "admin", NULL, "admin", "read"};
    const char *caches[] = {"miss", "hit", "hit", "coalesced", "hit"};
    int want[] = {200, 403, 200, 403, 200};
    for (size_t i = 0; i < 5; i++) {
        struct decision_input in = input(BEARER_OK, ti, routes[i]);
        in.cache = caches[i];
        struct decision d;
        run(&in, &d);
        assert_int_equal(d.status, want[i]);
        assert_string_equal(d.cache, caches[i]);
        decision_clear(&d);
    }
    token_unref(ti);
}

static void test_required_scopes_not_nul_terminated(void **state)
{
    struct token_info *ti = make_token(TOKEN_ACTIVE, "read", NOW + 60);
    static const char frame[] = "readadmin"; /* "read" followed by the frame's next bytes */
    struct decision_input in = input(BEARER_OK, ti, NULL);
    in.required_scopes = frame;
    in.required_scopes_len = 4;
    struct decision d;
    run(&in, &d);
    assert_int_equal(d.status, 200);
    decision_clear(&d);
    token_unref(ti);
}

static void test_bad_required_scopes(void **state)
{
    char *big = malloc(DECISION_MAX_SCOPES + 2);
    assert_non_null(big);
    memset(big, 'a', DECISION_MAX_SCOPES + 1);
    big[DECISION_MAX_SCOPES + 1] = '\0';
    assert_int_equal(scope_status("read", big), 500);
    big[DECISION_MAX_SCOPES] = '\0';
    assert_int_equal(scope_status("read", big), 403); /* at the limit: judged normally */
    free(big);

    /* A requirement HAProxy sent as a non-string (a misconfigured message) is no pass. */
    struct token_info *any = make_token(TOKEN_ACTIVE, "read admin", NOW + 60);
    struct decision_input unreadable = input(BEARER_OK, any, NULL);
    unreadable.scopes_invalid = true;
    struct decision no_pass;
    run(&unreadable, &no_pass);
    assert_int_equal(no_pass.status, 500);
    assert_null(no_pass.jwt);
    decision_clear(&no_pass);
    token_unref(any);

    assert_int_equal(scope_status("read", "read \"admin\""), 500);
    assert_int_equal(scope_status("read", "read\\"), 500);
    assert_int_equal(scope_status("read", "read\r\nX: y"), 500);
    assert_int_equal(scope_status("read", "caf\xc3\xa9"), 500);

    /* A 500 for a bad requirement carries no challenge. */
    struct token_info *ti = make_token(TOKEN_ACTIVE, "read", NOW + 60);
    struct decision_input in = input(BEARER_OK, ti, "a\"b");
    struct decision d;
    run(&in, &d);
    assert_string_equal(d.error, "server_error");
    assert_null(d.www_authenticate);
    assert_null(d.jwt);
    decision_clear(&d);
    token_unref(ti);
}

/* ---- realm ---- */

static char *www_with_realm(const char *realm, size_t len)
{
    struct decision_input in = input(BEARER_MISSING, NULL, NULL);
    in.realm = realm;
    in.realm_len = len;
    struct decision d;
    run(&in, &d);
    char *s = strdup(d.www_authenticate);
    decision_clear(&d);
    return s;
}

static void expect_realm(const char *realm, const char *want_www)
{
    char *s = www_with_realm(realm, realm ? strlen(realm) : 0);
    assert_string_equal(s, want_www);
    free(s);
}

static void test_realm(void **state)
{
    expect_realm(NULL, "Bearer realm=\"api\"");
    expect_realm("", "Bearer realm=\"api\"");
    expect_realm("orders", "Bearer realm=\"orders\"");
    expect_realm("my api", "Bearer realm=\"my api\"");
    expect_realm("a\"b", "Bearer realm=\"a\\\"b\"");
    expect_realm("a\\b", "Bearer realm=\"a\\\\b\"");
    expect_realm("\"", "Bearer realm=\"\\\"\"");
    expect_realm("x\", error=\"none", "Bearer realm=\"x\\\", error=\\\"none\"");
    expect_realm("a\r\nSet-Cookie: x", "Bearer realm=\"api\"");
    expect_realm("a\tb", "Bearer realm=\"api\"");
    expect_realm("caf\xc3\xa9", "Bearer realm=\"api\"");
    expect_realm("a\x7f", "Bearer realm=\"api\"");

    char *s = www_with_realm("a\0b", 3);
    assert_string_equal(s, "Bearer realm=\"api\"");
    free(s);
    s = www_with_realm("ordersXYZ", 6); /* a range of the frame, not a C string */
    assert_string_equal(s, "Bearer realm=\"orders\"");
    free(s);
}

static void test_realm_length(void **state)
{
    char realm[DECISION_MAX_REALM + 2];
    memset(realm, '"', sizeof(realm));
    /* At the limit and all escaped: twice as long inside the header, still whole. */
    char *s = www_with_realm(realm, DECISION_MAX_REALM);
    assert_int_equal(strlen(s), strlen("Bearer realm=\"\"") + 2 * DECISION_MAX_REALM);
    free(s);
    s = www_with_realm(realm, DECISION_MAX_REALM + 1);
    assert_string_equal(s, "Bearer realm=\"api\"");
    free(s);
}

static void test_realm_in_every_challenge(void **state)
{
    struct token_info *ti = make_token(TOKEN_ACTIVE, "read", NOW + 60);
    struct decision_input in = input(BEARER_OK, ti, "admin");
    in.realm = "shop";
    in.realm_len = 4;
    struct decision d;
    run(&in, &d);
    assert_int_equal(d.status, 403);
    assert_true(strncmp(d.www_authenticate, "Bearer realm=\"shop\", ", 21) == 0);
    decision_clear(&d);

    in.bearer = BEARER_MALFORMED;
    run(&in, &d);
    assert_true(strncmp(d.www_authenticate, "Bearer realm=\"shop\", ", 21) == 0);
    decision_clear(&d);
    token_unref(ti);
}

/* ---- actions ---- */

struct action {
    char name[32];
    struct spop_value v;
};

/* Reads back the set-var actions written at buf[0, len); returns how many. */
static size_t read_actions(const uint8_t *buf, size_t len, struct action *out, size_t max)
{
    struct spop_reader r = {.p = buf, .end = buf + len};
    size_t n = 0;
    while (r.p < r.end) {
        assert_true(n < max);
        assert_true(r.end - r.p >= 3);
        assert_int_equal(r.p[0], SPOP_ACT_SET_VAR);
        assert_int_equal(r.p[1], 3);
        assert_int_equal(r.p[2], SPOP_SCOPE_TXN);
        r.p += 3;
        struct spop_str name;
        assert_int_equal(spop_str_decode(&r, &name), 0);
        assert_true(name.len < sizeof(out[n].name));
        memcpy(out[n].name, name.ptr, name.len);
        out[n].name[name.len] = '\0';
        assert_int_equal(spop_value_decode(&r, &out[n].v), 0);
        n++;
    }
    return n;
}

static size_t write_and_read(const struct decision *d, struct action *acts, size_t max)
{
    static uint8_t buf[4096];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    decision_put_actions(&w, d);
    assert_false(w.overflow);
    return read_actions(buf, w.len, acts, max);
}

static const struct action *find(const struct action *a, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i].name, name) == 0)
            return &a[i];
    return NULL;
}

static void expect_str_var(const struct action *a, size_t n, const char *name, const char *want)
{
    const struct action *x = find(a, n, name);
    if (!want) {
        if (x)
            fail_msg("variable %s set but should not be", name);
        return;
    }
    if (!x)
        fail_msg("variable %s missing", name);
    assert_int_equal(x->v.type, SPOP_DATA_STR);
    assert_int_equal(x->v.u.s.len, strlen(want));
    assert_memory_equal(x->v.u.s.ptr, want, strlen(want));
}

static void expect_status_var(const struct action *a, size_t n, int want)
{
    const struct action *x = find(a, n, VAR_STATUS);
    assert_non_null(x);
    assert_true(x->v.type == SPOP_DATA_INT32 || x->v.type == SPOP_DATA_INT64 ||
                x->v.type == SPOP_DATA_UINT32 || x->v.type == SPOP_DATA_UINT64);
    if (x->v.type == SPOP_DATA_UINT32 || x->v.type == SPOP_DATA_UINT64)
        assert_int_equal(x->v.u.u, want);
    else
        assert_int_equal(x->v.u.i, want);
}

static void test_actions_200(void **state)
{
    struct token_info *ti = make_token(TOKEN_ACTIVE, "openid read", NOW + 60);
    struct decision_input in = input(BEARER_OK, ti, "read");
    in.cache = "miss";
    struct decision d;
    run(&in, &d);
    struct action a[16];
    size_t n = write_and_read(&d, a, 16);
    assert_int_equal(n, 6);
    assert_string_equal(a[0].name, VAR_STATUS); /* status first */
    expect_status_var(a, n, 200);
    expect_str_var(a, n, VAR_JWT, JWT);
    expect_str_var(a, n, VAR_SUB, "alice");
    expect_str_var(a, n, VAR_CLIENT_ID, "web-client");
    expect_str_var(a, n, VAR_SCOPE, "openid read");
    expect_str_var(a, n, VAR_CACHE, "miss");
    expect_str_var(a, n, VAR_ERROR, NULL);
    expect_str_var(a, n, VAR_WWW_AUTH, NULL);
    decision_clear(&d);
    token_unref(ti);
}

static void test_actions_403(void **state)
{
    struct token_info *ti = make_token(TOKEN_ACTIVE, "openid", NOW + 60);
    struct decision_input in = input(BEARER_OK, ti, "read");
    in.cache = "hit";
    struct decision d;
    run(&in, &d);
    struct action a[16];
    size_t n = write_and_read(&d, a, 16);
    expect_status_var(a, n, 403);
    expect_str_var(a, n, VAR_ERROR, "insufficient_scope");
    expect_str_var(a, n, VAR_WWW_AUTH, d.www_authenticate);
    expect_str_var(a, n, VAR_JWT, NULL); /* never a JWT on a denial */
    expect_str_var(a, n, VAR_SUB, "alice");
    expect_str_var(a, n, VAR_CACHE, "hit");
    decision_clear(&d);
    token_unref(ti);
}

static void test_actions_401_missing(void **state)
{
    struct decision_input in = input(BEARER_MISSING, NULL, NULL);
    struct decision d;
    run(&in, &d);
    struct action a[16];
    size_t n = write_and_read(&d, a, 16);
    assert_int_equal(n, 2);
    expect_status_var(a, n, 401);
    expect_str_var(a, n, VAR_WWW_AUTH, "Bearer realm=\"api\"");
    expect_str_var(a, n, VAR_ERROR, NULL);
    decision_clear(&d);
}

static void test_actions_502(void **state)
{
    struct token_info *ti = make_token(TOKEN_IDP_ERROR, NULL, 0);
    struct decision_input in = input(BEARER_OK, ti, NULL);
    in.cache = "miss";
    struct decision d;
    run(&in, &d);
    struct action a[16];
    size_t n = write_and_read(&d, a, 16);
    assert_int_equal(n, 3);
    expect_status_var(a, n, 502);
    expect_str_var(a, n, VAR_ERROR, "server_error");
    expect_str_var(a, n, VAR_CACHE, "miss");
    expect_str_var(a, n, VAR_WWW_AUTH, NULL);
    decision_clear(&d);
    token_unref(ti);
}

static void test_actions_hand_built(void **state)
{
    /* agent.c builds fallback decisions by hand; a JWT left on a non-200 is still not sent. */
    struct decision d = {.status = 502, .error = "server_error", .jwt = JWT, .jwt_len = 5};
    struct action a[16];
    size_t n = write_and_read(&d, a, 16);
    assert_int_equal(n, 2);
    expect_str_var(a, n, VAR_JWT, NULL);

    struct decision bare = {.status = 500};
    n = write_and_read(&bare, a, 16);
    assert_int_equal(n, 1);
    expect_status_var(a, n, 500);
}

static void test_actions_overflow(void **state)
{
    struct token_info *ti = make_token(TOKEN_ACTIVE, "read", NOW + 60);
    struct decision_input in = input(BEARER_OK, ti, NULL);
    struct decision d;
    run(&in, &d);
    uint8_t small[16];
    struct spop_writer w;
    spop_writer_init(&w, small, sizeof(small));
    decision_put_actions(&w, &d);
    assert_true(w.overflow); /* the caller sees it and answers otherwise */
    decision_clear(&d);
    token_unref(ti);
}

static void test_clear_is_idempotent(void **state)
{
    struct decision_input in = input(BEARER_MALFORMED, NULL, NULL);
    struct decision d;
    run(&in, &d);
    decision_clear(&d);
    decision_clear(&d);
    assert_null(d.www_authenticate);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_and_other_scheme),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_multiple_authorization_headers),
        cmocka_unit_test(test_active),
        cmocka_unit_test(test_active_without_exp),
        cmocka_unit_test(test_expired_cached_token),
        cmocka_unit_test(test_inactive),
        cmocka_unit_test(test_idp_failures),
        cmocka_unit_test(test_ok_without_token_info),
        cmocka_unit_test(test_scope_requirements),
        cmocka_unit_test(test_insufficient_scope_challenge),
        cmocka_unit_test(test_scope_check_runs_on_every_request),
        cmocka_unit_test(test_required_scopes_not_nul_terminated),
        cmocka_unit_test(test_bad_required_scopes),
        cmocka_unit_test(test_realm),
        cmocka_unit_test(test_realm_length),
        cmocka_unit_test(test_realm_in_every_challenge),
        cmocka_unit_test(test_actions_200),
        cmocka_unit_test(test_actions_403),
        cmocka_unit_test(test_actions_401_missing),
        cmocka_unit_test(test_actions_502),
        cmocka_unit_test(test_actions_hand_built),
        cmocka_unit_test(test_actions_overflow),
        cmocka_unit_test(test_clear_is_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
