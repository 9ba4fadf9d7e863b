/* revoke.c's handlers with a fake cache behind revoke_ops: answers, counters, what reaches the
 * purge, the wiped body, and back-channel logout with a logout token signed here (Ed25519). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "revoke.h"
#include "jwt_fixture.h"
#include "jws_sign_fixture.h"

#define ISS "https://idp.example"
#define CLIENT "gateway"
#define NOW INT64_C(1800000000)

/* ---- the fake cache ---- */

struct fake {
    int purges;
    struct purge_selector last[4]; /* value strings copied */
    char values[4][64];
    int key_calls;
    size_t answer;
};

static struct fake fk;

static void fake_key(void *ud, const char *token, size_t len, uint8_t out[PURGE_KEY_LEN])
{
    fk.key_calls++;
    memset(out, 0x5a, PURGE_KEY_LEN);
    out[0] = (uint8_t)len;
}

static size_t fake_purge(void *ud, const struct purge_selector *sel)
{
    if (fk.purges < 4) {
        fk.last[fk.purges] = *sel;
        snprintf(fk.values[fk.purges], sizeof(fk.values[0]), "%s", sel->value ? sel->value : "");
        fk.last[fk.purges].value = NULL;
    }
    fk.purges++;
    return fk.answer;
}

static size_t fake_list(void *ud, const struct purge_selector *sel, size_t max, purge_entry_fn fn,
                        void *ctx)
{
    struct purge_entry e = {.token_hash = "0123456789ab",
                            .expires_at = NOW + 60,
                            .outcome = "active",
                            .sub = sel->value,
                            .client_id = "web"};
    for (size_t i = 0; i < 3 && i < max; i++)
        fn(ctx, &e);
    return 3;
}

static const struct revoke_ops ops = {
    .token_key = fake_key, .purge = fake_purge, .list = fake_list};

static int64_t now_s = NOW;
static int64_t fake_clock(void *ud)
{
    return *(int64_t *)ud;
}

static EVP_PKEY *ed;

static struct revoke *new_revoke(bool logout)
{
    struct revoke_config cfg = {0};
    char err[256];
    if (logout) {
        cfg.issuer = ISS;
        cfg.client_id = CLIENT;
        cfg.jwks_url = "https://idp.example/jwks"; /* not fetched: no loop */
        cfg.clock = fake_clock;
        cfg.clock_ud = &now_s;
    }
    memset(&fk, 0, sizeof(fk));
    fk.answer = 2;
    struct revoke *rv = revoke_new(NULL, &cfg, &ops, NULL, err, sizeof(err));
    assert_non_null(rv);
    return rv;
}

/* ---- requests ---- */

struct args {
    const char *name[4], *value[4];
};

static const char *get_arg(const struct http_request *req, const char *name)
{
    const struct args *a = req->server_ctx;
    for (int i = 0; a && i < 4 && a->name[i]; i++)
        if (strcmp(a->name[i], name) == 0)
            return a->value[i];
    return NULL;
}

static json_t *call(http_handler_fn fn, struct revoke *rv, const char *method,
                    const char *content_type, const char *body, struct args *a, unsigned *status,
                    struct http_response *keep)
{
    char *copy = body ? strdup(body) : NULL;
    struct http_request req = {.method = method,
                               .path = "/x",
                               .content_type = content_type,
                               .body = copy,
                               .body_len = body ? strlen(body) : 0,
                               .arg = get_arg,
                               .server_ctx = a};
    struct http_response resp = {.status = 200};
    fn(rv, &req, &resp);
    *status = resp.status;
    json_t *doc = resp.body ? json_loadb(resp.body, resp.body_len, 0, NULL) : NULL;
    if (keep) {
        *keep = resp;
        resp.body = NULL;
    }
    http_response_free(&resp);
    if (copy && body && strstr(body, "\"token\"")) {
        for (size_t i = 0; i < strlen(body); i++) /* the raw token never stays in the buffer */
            assert_int_equal(copy[i], 0);
    }
    free(copy);
    return doc;
}

static json_t *purge(struct revoke *rv, const char *body, unsigned *status)
{
    return call(revoke_serve_purge, rv, "POST", "application/json", body, NULL, status, NULL);
}

static void test_purge_selectors(void **state)
{
    struct revoke *rv = new_revoke(false);
    unsigned st;
    json_t *doc = purge(rv, "{\"sub\":\"alice\"}", &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_integer_value(json_object_get(doc, "purged")), 2);
    json_decref(doc);
    assert_int_equal(fk.purges, 1);
    assert_int_equal(fk.last[0].kind, PURGE_SUB);
    assert_string_equal(fk.values[0], "alice");

    doc = purge(rv, "{\"token\":\"opaque-1234\"}", &st);
    assert_int_equal(st, 200);
    json_decref(doc);
    assert_int_equal(fk.key_calls, 1);
    assert_int_equal(fk.last[1].kind, PURGE_TOKEN);
    assert_int_equal(fk.last[1].key[0], 11); /* the key the cache's function derived */

    doc = purge(rv, "{\"all\":true}", &st);
    json_decref(doc);
    assert_int_equal(fk.last[2].kind, PURGE_ALL);

    struct revoke_stats s;
    revoke_get_stats(rv, &s);
    assert_int_equal(s.purges[PURGE_SUB], 1);
    assert_int_equal(s.purges[PURGE_TOKEN], 1);
    assert_int_equal(s.purges[PURGE_ALL], 1);
    assert_int_equal(s.purged_entries, 6);
    revoke_free(rv);
}

static void test_purge_refused(void **state)
{
    struct revoke *rv = new_revoke(false);
    const char *bad[] = {NULL,
                         "",
                         "{}",
                         "{\"sub\":1}",
                         "{\"all\":false}",
                         "{\"token\":\"\"}",
                         "{\"sub\":\"a\",\"sid\":\"b\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned st;
        json_t *doc = purge(rv, bad[i], &st);
        assert_int_equal(st, 400);
        assert_string_equal(json_string_value(json_object_get(doc, "error")), "invalid_request");
        assert_non_null(json_string_value(json_object_get(doc, "error_description")));
        json_decref(doc);
    }
    assert_int_equal(fk.purges, 0);
    struct revoke_stats s;
    revoke_get_stats(rv, &s);
    assert_int_equal(s.purge_refused, 7);
    revoke_free(rv);
}

static void test_list(void **state)
{
    struct revoke *rv = new_revoke(false);
    unsigned st;
    struct args a = {{"sub"}, {"alice"}};
    json_t *doc = call(revoke_serve_cache, rv, "GET", NULL, NULL, &a, &st, NULL);
    assert_int_equal(st, 200);
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), 3);
    assert_false(json_is_true(json_object_get(doc, "truncated")));
    json_t *e = json_array_get(json_object_get(doc, "entries"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "token_hash")), "0123456789ab");
    assert_string_equal(json_string_value(json_object_get(e, "sub")), "alice");
    assert_int_equal(json_integer_value(json_object_get(e, "expires_at")), NOW + 60);
    assert_null(json_object_get(e, "sid"));
    json_decref(doc);

    struct args none = {{NULL}, {NULL}}, two = {{"sub", "sid"}, {"a", "b"}},
                badhash = {{"token_hash"}, {"xyz"}};
    struct args *bad[] = {&none, &two, &badhash};
    for (int i = 0; i < 3; i++) {
        doc = call(revoke_serve_cache, rv, "GET", NULL, NULL, bad[i], &st, NULL);
        assert_int_equal(st, 400);
        json_decref(doc);
    }
    revoke_free(rv);
}

/* ---- back-channel logout ---- */

static struct jwks *keys_of(EVP_PKEY *k)
{
    char doc[4200];
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", fx_jwk(k, "ed-1", "EdDSA", ""));
    struct jwks *s = jwks_parse(doc, strlen(doc), NULL);
    assert_non_null(s);
    return s;
}

static char *logout_body(const char *jti, const char *aud)
{
    char payload[512];
    snprintf(payload, sizeof(payload),
             "{\"iss\":\"%s\",\"aud\":\"%s\",\"iat\":%lld,\"jti\":\"%s\",\"sub\":\"alice\","
             "\"sid\":\"s-1\",\"events\":{\"%s\":{}}}",
             ISS, aud, (long long)NOW, jti, LOGOUT_EVENT);
    char *t = fx_sign(ed, "EdDSA", "{\"alg\":\"EdDSA\",\"kid\":\"ed-1\",\"typ\":\"logout+jwt\"}",
                      payload);
    char *body = malloc(strlen(t) + 16);
    sprintf(body, "logout_token=%s", t);
    free(t);
    return body;
}

static unsigned logout(struct revoke *rv, const char *ct, const char *body,
                       struct http_response *resp)
{
    unsigned st;
    json_t *doc = call(revoke_serve_logout, rv, "POST", ct, body, NULL, &st, resp);
    if (st == 400)
        assert_string_equal(json_string_value(json_object_get(doc, "error")), "invalid_request");
    json_decref(doc);
    return st;
}

static const char *FORM = "application/x-www-form-urlencoded";

static void test_logout(void **state)
{
    ed = fx_keygen(JWK_ED25519);
    struct revoke *rv = new_revoke(true);
    assert_true(revoke_logout_enabled(rv));
    struct http_response resp;
    char *body = logout_body("j-1", CLIENT);

    /* No keys yet: refused, counted as an unknown key. */
    assert_int_equal(logout(rv, FORM, body, &resp), 400);
    assert_string_equal(resp.cache_control, "no-store");
    http_response_free(&resp);
    assert_int_equal(fk.purges, 0);

    revoke_set_keys(rv, keys_of(ed));
    assert_int_equal(logout(rv, "text/plain", body, &resp), 400);
    http_response_free(&resp);
    assert_int_equal(logout(rv, FORM, body, &resp), 200);
    assert_string_equal(resp.cache_control, "no-store");
    http_response_free(&resp);
    /* sid and sub both purged. */
    assert_int_equal(fk.purges, 2);
    assert_int_equal(fk.last[0].kind, PURGE_SID);
    assert_string_equal(fk.values[0], "s-1");
    assert_int_equal(fk.last[1].kind, PURGE_SUB);
    assert_string_equal(fk.values[1], "alice");

    /* Replay, wrong aud, a token from another key: refused, nothing purged. */
    assert_int_equal(logout(rv, FORM, body, &resp), 400);
    http_response_free(&resp);
    free(body);
    body = logout_body("j-2", "someone-else");
    assert_int_equal(logout(rv, "application/x-www-form-urlencoded; charset=UTF-8", body, &resp),
                     400);
    http_response_free(&resp);
    free(body);
    EVP_PKEY *other = ed;
    ed = fx_keygen(JWK_ED25519);
    body = logout_body("j-3", CLIENT);
    assert_int_equal(logout(rv, FORM, body, &resp), 400);
    http_response_free(&resp);
    free(body);
    assert_int_equal(fk.purges, 2);

    struct revoke_stats s;
    revoke_get_stats(rv, &s);
    assert_int_equal(s.logouts, 1);
    assert_int_equal(s.logout_unknown_key, 1);
    assert_int_equal(s.logout_refused, 5);
    char *m = revoke_metrics_text(rv);
    assert_non_null(strstr(m, "phantom_purges_total{selector=\"sid\"} 1\n"));
    assert_non_null(strstr(m, "phantom_backchannel_logouts_total{result=\"ok\"} 1\n"));
    free(m);
    revoke_free(rv);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(other);
}

static void test_routes(void **state)
{
    struct http_router r;
    struct revoke *off = new_revoke(false), *on = new_revoke(true);
    http_router_init(&r);
    assert_int_equal(revoke_add_routes(off, &r), 0);
    assert_int_equal(r.n, 2);
    http_router_init(&r);
    assert_int_equal(revoke_add_routes(on, &r), 0);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.routes[2].path, "/backchannel-logout");
    assert_int_equal(r.routes[2].auth, HTTP_AUTH_NONE);
    assert_int_equal(r.routes[0].auth, HTTP_AUTH_ADMIN);
    assert_int_equal(r.routes[1].auth, HTTP_AUTH_ADMIN);
    assert_false(revoke_logout_enabled(off));
    revoke_free(off);
    revoke_free(on);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_purge_selectors),
        cmocka_unit_test(test_purge_refused),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_logout),
        cmocka_unit_test(test_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
