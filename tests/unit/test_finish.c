/* Classification with settings (kept claims, inactive statuses, sid) and the finishing stage: the
 * mode matrix over what real IdPs answer, RFC 9701 -> minted, failures fail closed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "finish.h"
#include "idp_response.h"
#include "jose_fixture.h"
#include "jwt_fixture.h"

#define NOW INT64_C(1800000000)

static struct keyring *keys;
static struct minter minter;
static char *idp_jwt;     /* an access-token JWT as the IdP would return it */
static char *intro_jwt;   /* an RFC 9701 answer, active */
static char *intro_inact; /* an RFC 9701 answer, inactive */

static const char AT_PAYLOAD[] = "{\"iss\":\"https://idp\",\"sub\":\"alice\",\"client_id\":\"c1\","
                                 "\"scope\":\"read\",\"exp\":1800000200,\"sid\":\"sess-1\"}";

static int setup(void **state)
{
    (void)state;
    struct jws_key *k[] = {fx_key("EC", 256)};
    char err[128];
    keys = keyring_from_keys(k, 1, err, sizeof(err));
    assert_non_null(keys);
    minter.settings.issuer = "https://gw";
    minter.settings.audience = "api";
    minter.settings.max_lifetime = 300;
    minter.keys = keys;
    idp_jwt = make_jwt("{\"alg\":\"RS256\",\"typ\":\"at+jwt\"}", AT_PAYLOAD, "sig");
    intro_jwt = make_jwt("{\"alg\":\"RS256\",\"typ\":\"token-introspection+jwt\"}",
                         "{\"iss\":\"https://idp\",\"aud\":\"gateway\",\"iat\":1799999999,"
                         "\"token_introspection\":{\"active\":true,\"client_id\":\"svc\","
                         "\"scope\":\"read write\",\"exp\":1800000100,\"sid\":\"s9\"}}",
                         "sig");
    intro_inact =
        make_jwt("{\"alg\":\"RS256\"}",
                 "{\"iss\":\"https://idp\",\"token_introspection\":{\"active\":false}}", "sig");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    keyring_unref(keys);
    free(idp_jwt);
    free(intro_jwt);
    free(intro_inact);
    return 0;
}

static struct token_info *classify(long status, const char *ct, const char *body, bool keep)
{
    struct idp_answer a = {.http_status = status,
                           .content_type = ct,
                           .body = body,
                           .body_len = body ? strlen(body) : 0};
    struct idp_settings s = {.keep_claims = keep};
    struct token_info *ti = idp_classify_with(&a, &s);
    assert_non_null(ti);
    return ti;
}

static const char PLAIN[] = "{\"active\":true,\"sub\":\"bob\",\"client_id\":\"c2\","
                            "\"scope\":\"read\",\"exp\":1800000050,\"sid\":\"sid-7\"}";

/* ---- classification ---- */

static void test_old_mapping_unchanged(void **state)
{
    (void)state;
    struct idp_answer a = {.http_status = 200,
                           .content_type = "application/json",
                           .body = PLAIN,
                           .body_len = strlen(PLAIN)};
    struct token_info *ti = idp_classify(&a);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    assert_string_equal(ti->reason, "IdP said active but returned no JWT");
    token_unref(ti);
    ti = classify(200, "application/json", PLAIN, false);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    token_unref(ti);
    /* 400 stays "unexpected status" without the setting. */
    a.http_status = 400;
    ti = idp_classify(&a);
    assert_int_equal(ti->outcome, TOKEN_IDP_UNKNOWN);
    token_unref(ti);
}

static void test_plain_json_kept(void **state)
{
    (void)state;
    struct token_info *ti = classify(200, "application/json", PLAIN, true);
    assert_int_equal(ti->outcome, TOKEN_ACTIVE);
    assert_int_equal(ti->kind, IDP_KIND_CLAIMS);
    assert_null(ti->jwt);
    assert_string_equal(ti->claims.sub, "bob");
    assert_string_equal(ti->claims.sid, "sid-7");
    assert_int_equal(ti->claims.exp, 1800000050);
    assert_non_null(ti->introspection);
    assert_true(json_is_true(json_object_get(ti->introspection, "active")));
    assert_true(ti->introspection_size > strlen(PLAIN));
    assert_true(token_info_size(ti) > sizeof(*ti) + ti->introspection_size);
    token_unref(ti);
    /* Claims of the wrong type: an IdP error, as in a JWT. */
    ti = classify(200, "application/json", "{\"active\":true,\"client_id\":\"c\",\"exp\":\"x\"}",
                  true);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    token_unref(ti);
    ti = classify(200, "application/json", "{\"active\":true,\"client_id\":\"c\",\"sid\":3}", true);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    token_unref(ti);
}

static void test_kinds_and_sid(void **state)
{
    (void)state;
    struct token_info *ti = classify(200, "application/jwt", idp_jwt, true);
    assert_int_equal(ti->kind, IDP_KIND_JWT);
    assert_string_equal(ti->jwt, idp_jwt);
    assert_string_equal(ti->claims.sid, "sess-1");
    assert_string_equal(json_string_value(json_object_get(ti->introspection, "sub")), "alice");
    token_unref(ti);

    char body[2048];
    snprintf(body, sizeof(body), "{\"active\":true,\"client_id\":\"kc\",\"jwt\":\"%s\"}", idp_jwt);
    ti = classify(200, "application/json", body, true);
    assert_int_equal(ti->kind, IDP_KIND_JWT);
    /* The claims are the JWT's, not the JSON members': kept the same way. */
    assert_string_equal(json_string_value(json_object_get(ti->introspection, "client_id")), "c1");
    assert_string_equal(ti->claims.client_id, "c1");
    token_unref(ti);

    ti = classify(200, "application/token-introspection+jwt", intro_jwt, true);
    assert_int_equal(ti->outcome, TOKEN_ACTIVE);
    assert_int_equal(ti->kind, IDP_KIND_INTROSPECTION);
    assert_string_equal(ti->claims.client_id, "svc");
    assert_string_equal(ti->claims.sid, "s9");
    assert_string_equal(json_string_value(json_object_get(ti->introspection, "scope")),
                        "read write");
    token_unref(ti);

    ti = classify(200, "application/token-introspection+jwt", intro_inact, true);
    assert_int_equal(ti->outcome, TOKEN_INACTIVE);
    assert_null(ti->introspection);
    token_unref(ti);

    /* Without keep_claims nothing is kept. */
    ti = classify(200, "application/jwt", idp_jwt, false);
    assert_null(ti->introspection);
    assert_int_equal(ti->introspection_size, 0);
    token_unref(ti);
}

static void test_inactive_statuses(void **state)
{
    (void)state;
    struct idp_status_set set;
    char err[128];
    assert_int_equal(idp_parse_statuses("400, 404 422", &set, err, sizeof(err)), 0);
    assert_true(idp_status_in(&set, 400));
    assert_true(idp_status_in(&set, 404));
    assert_true(idp_status_in(&set, 422));
    assert_false(idp_status_in(&set, 401));
    assert_false(idp_status_in(&set, 499));
    assert_false(idp_status_in(NULL, 400));
    assert_int_equal(idp_parse_statuses("499", &set, err, sizeof(err)), 0);
    assert_true(idp_status_in(&set, 499));
    assert_int_equal(idp_parse_statuses("none", &set, err, sizeof(err)), 0);
    assert_false(idp_status_in(&set, 400));
    assert_int_equal(idp_parse_statuses("", &set, err, sizeof(err)), 0);
    static const char *const bad[] = {"500", "200",   "399",  "40",   "4000",
                                      "abc", "400,x", "-400", "0400", NULL};
    for (size_t i = 0; bad[i]; i++)
        if (idp_parse_statuses(bad[i], &set, err, sizeof(err)) != -1)
            fail_msg("'%s' accepted", bad[i]);

    /* In classification: only the listed statuses, with or without a body. */
    assert_int_equal(idp_parse_statuses("400", &set, err, sizeof(err)), 0);
    struct idp_settings s = {.inactive = &set};
    struct idp_answer a = {.http_status = 400, .cache_control = "max-age=30"};
    struct token_info *ti = idp_classify_with(&a, &s);
    assert_int_equal(ti->outcome, TOKEN_INACTIVE);
    assert_int_equal(ti->max_age, 30);
    assert_int_equal(token_outcome_status(ti->outcome), 401);
    token_unref(ti);
    a.http_status = 401;
    ti = idp_classify_with(&a, &s);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    token_unref(ti);
    a.http_status = 503;
    ti = idp_classify_with(&a, &s);
    assert_int_equal(ti->outcome, TOKEN_IDP_UNAVAIL);
    token_unref(ti);
}

/* ---- finishing ---- */

enum want { FORWARD, MINTED, ERROR502 };

static void check_finish(const char *ct, const char *body, enum jwt_source mode, enum want want)
{
    struct token_info *ti = classify(200, ct, body, jwt_source_needs_claims(mode));
    char *orig = ti->jwt ? strdup(ti->jwt) : NULL;
    struct token_info *fin = finish(ti, mode, &minter, NULL, NOW);
    assert_non_null(fin);
    switch (want) {
    case FORWARD:
        assert_int_equal(fin->outcome, TOKEN_ACTIVE);
        assert_false(fin->minted);
        assert_non_null(orig);
        assert_string_equal(fin->jwt, orig);
        break;
    case MINTED: {
        assert_int_equal(fin->outcome, TOKEN_ACTIVE);
        assert_true(fin->minted);
        json_t *h, *p;
        fx_verify_jws(fin->jwt, keyring_signer(keys)->jwk, &h, &p);
        assert_string_equal(json_string_value(json_object_get(h, "typ")), "at+jwt");
        assert_string_equal(json_string_value(json_object_get(p, "iss")), "https://gw");
        assert_string_equal(json_string_value(json_object_get(p, "aud")), "api");
        /* The entry's exp is the minted JWT's, so the cache never outlives it. */
        assert_true(fin->claims.has_exp);
        assert_int_equal(fin->claims.exp, json_integer_value(json_object_get(p, "exp")));
        assert_string_equal(fin->claims.client_id,
                            json_string_value(json_object_get(p, "client_id")));
        assert_null(fin->introspection); /* dropped: keep_introspection is off */
        json_decref(h);
        json_decref(p);
        break;
    }
    case ERROR502:
        assert_int_equal(fin->outcome, TOKEN_IDP_ERROR);
        assert_null(fin->jwt);
        break;
    }
    free(orig);
    token_unref(fin);
}

static void test_mode_matrix(void **state)
{
    (void)state;
    char kc[2048];
    snprintf(kc, sizeof(kc), "{\"active\":true,\"client_id\":\"kc\",\"jwt\":\"%s\"}", idp_jwt);
    char curity[2048];
    snprintf(curity, sizeof(curity), "{\"active\":true,\"phantom_token\":\"%s\"}", idp_jwt);
    static const char J[] = "application/json", JWT[] = "application/jwt",
                      I[] = "application/token-introspection+jwt";
    struct {
        const char *ct, *body;
        enum want idp, autom, mint;
    } rows[] = {
        {JWT, idp_jwt, FORWARD, FORWARD, MINTED}, {J, kc, FORWARD, FORWARD, MINTED},
        {J, curity, FORWARD, FORWARD, MINTED},    {J, PLAIN, ERROR502, MINTED, MINTED},
        {I, intro_jwt, FORWARD, MINTED, MINTED},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        check_finish(rows[i].ct, rows[i].body, JWT_SOURCE_IDP, rows[i].idp);
        check_finish(rows[i].ct, rows[i].body, JWT_SOURCE_AUTO, rows[i].autom);
        check_finish(rows[i].ct, rows[i].body, JWT_SOURCE_MINT, rows[i].mint);
    }
}

/* RFC 9701 in auto mode: the API gets an access token, not the introspection answer. */
static void test_rfc9701_minted(void **state)
{
    (void)state;
    struct token_info *ti = classify(200, "application/token-introspection+jwt", intro_jwt, true);
    ti = finish(ti, JWT_SOURCE_AUTO, &minter, "orders", NOW);
    assert_true(ti->minted);
    assert_int_equal(ti->kind, IDP_KIND_INTROSPECTION);
    json_t *h, *p;
    fx_verify_jws(ti->jwt, keyring_signer(keys)->jwk, &h, &p);
    assert_string_equal(json_string_value(json_object_get(p, "sub")), "svc");
    assert_string_equal(json_string_value(json_object_get(p, "client_id")), "svc");
    assert_string_equal(json_string_value(json_object_get(p, "scope")), "read write");
    assert_string_equal(json_string_value(json_object_get(p, "aud")), "orders");
    assert_int_equal(json_integer_value(json_object_get(p, "exp")), 1800000100);
    assert_null(json_object_get(p, "token_introspection"));
    assert_string_equal(ti->claims.sid, "s9");
    assert_string_equal(ti->claims.scope, "read write");
    json_decref(h);
    json_decref(p);
    token_unref(ti);
}

static void test_finish_fails_closed(void **state)
{
    (void)state;
    /* No key: 502, never the IdP's answer. */
    struct minter none = minter;
    none.keys = NULL;
    struct token_info *ti = classify(200, "application/token-introspection+jwt", intro_jwt, true);
    ti = finish(ti, JWT_SOURCE_AUTO, &none, NULL, NOW);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    assert_null(ti->jwt);
    token_unref(ti);
    ti = classify(200, "application/json", PLAIN, true);
    ti = finish(ti, JWT_SOURCE_AUTO, NULL, NULL, NOW);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    token_unref(ti);
    /* Claims not kept (classified without keep_claims) but minting asked: 502. */
    ti = classify(200, "application/jwt", idp_jwt, false);
    ti = finish(ti, JWT_SOURCE_MINT, &minter, NULL, NOW);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    token_unref(ti);
    /* No audience anywhere: 502 with the reason. */
    struct minter noaud = minter;
    noaud.settings.audience = NULL;
    ti = classify(200, "application/json", PLAIN, true);
    ti = finish(ti, JWT_SOURCE_AUTO, &noaud, NULL, NOW);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    assert_non_null(strstr(ti->reason, "audience"));
    token_unref(ti);
}

static void test_finish_expired_and_passthrough(void **state)
{
    (void)state;
    /* Active per the IdP, but its exp has passed by now: inactive, with the IdP's cache hints. */
    struct idp_answer a = {
        .http_status = 200,
        .content_type = "application/json",
        .cache_control = "max-age=7",
        .body = "{\"active\":true,\"client_id\":\"c\",\"exp\":1700000000}",
    };
    a.body_len = strlen(a.body);
    struct idp_settings s = {.keep_claims = true};
    struct token_info *ti = finish(idp_classify_with(&a, &s), JWT_SOURCE_AUTO, &minter, NULL, NOW);
    assert_int_equal(ti->outcome, TOKEN_INACTIVE);
    assert_int_equal(ti->max_age, 7);
    token_unref(ti);
    /* Non-active entries pass through untouched (same pointer). */
    struct token_info *in = classify(200, "application/json", "{\"active\":false}", true);
    assert_ptr_equal(finish(in, JWT_SOURCE_MINT, &minter, NULL, NOW), in);
    token_unref(in);
    assert_null(finish(NULL, JWT_SOURCE_AUTO, &minter, NULL, NOW));
}

static void test_keep_introspection_and_bounds(void **state)
{
    (void)state;
    struct minter keep = minter;
    keep.keep_introspection = true;
    keep.settings.max_lifetime = 10;
    struct token_info *ti = classify(200, "application/json", PLAIN, true);
    ti = finish(ti, JWT_SOURCE_AUTO, &keep, NULL, NOW);
    assert_true(ti->minted);
    assert_non_null(ti->introspection);
    assert_int_equal(ti->claims.exp, NOW + 10); /* bounded below the token's own 1800000050 */
    assert_string_equal(ti->claims.sid, "sid-7");
    token_unref(ti);
}

static void test_check_config(void **state)
{
    (void)state;
    char msg[256] = "";
    struct mint_settings s = minter.settings;
    assert_int_equal(finish_check(JWT_SOURCE_AUTO, &s, true, msg, sizeof(msg)), 0);
    assert_int_equal(finish_check(JWT_SOURCE_MINT, &s, true, msg, sizeof(msg)), 0);
    struct mint_settings none = {.max_lifetime = 300};
    assert_int_equal(finish_check(JWT_SOURCE_IDP, &none, false, msg, sizeof(msg)), 0);
    assert_int_equal(finish_check(JWT_SOURCE_AUTO, &none, false, msg, sizeof(msg)), 1);
    assert_non_null(strstr(msg, "signing-key-file jwt-issuer jwt-audience"));
    assert_non_null(strstr(msg, "502"));
    assert_int_equal(finish_check(JWT_SOURCE_MINT, &none, true, msg, sizeof(msg)), -1);
    assert_string_equal(msg, "jwt-source mint needs: jwt-issuer jwt-audience");
}

/* A forwarded JWT does not keep the claims it was classified with. */
static void test_forward_drops_claims(void **state)
{
    (void)state;
    struct token_info *ti = classify(200, "application/jwt", idp_jwt, true);
    assert_non_null(ti->introspection);
    ti = finish(ti, JWT_SOURCE_AUTO, &minter, NULL, NOW);
    assert_false(ti->minted);
    assert_null(ti->introspection);
    assert_int_equal(ti->introspection_size, 0);
    token_unref(ti);
}

/* Extra audiences: one minted JWT each in the same entry, chosen by token_jwt_for(). */
static void test_extra_audiences(void **state)
{
    (void)state;
    static const char *const extra[] = {"orders", "billing", NULL};
    struct minter m = minter;
    m.extra_audiences = extra;
    struct token_info *ti = classify(200, "application/json", PLAIN, true);
    ti = finish(ti, JWT_SOURCE_AUTO, &m, NULL, NOW);
    assert_true(ti->minted);
    assert_int_equal(ti->nalts, 2);
    assert_string_equal(ti->aud, "api");
    const char *const want[] = {"api", "orders", "billing"};
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        const char *jwt = token_jwt_for(ti, want[i], strlen(want[i]), &len);
        assert_non_null(jwt);
        assert_int_equal(len, strlen(jwt));
        json_t *h, *p;
        fx_verify_jws(jwt, keyring_signer(keys)->jwk, &h, &p);
        assert_string_equal(json_string_value(json_object_get(p, "aud")), want[i]);
        json_decref(h);
        json_decref(p);
    }
    size_t len;
    assert_ptr_equal(token_jwt_for(ti, NULL, 0, &len), ti->jwt);
    assert_ptr_equal(token_jwt_for(ti, "", 0, &len), ti->jwt);
    assert_null(token_jwt_for(ti, "nowhere", 7, &len));
    assert_null(token_jwt_for(ti, "order", 5, &len)); /* a prefix is not the audience */
    assert_true(token_info_size(ti) > 3 * ti->jwt_len);

    /* A stale copy (stale-if-error) keeps the per-audience JWTs and the session id. */
    struct token_info *st = token_info_stale_copy(ti);
    assert_non_null(st);
    assert_true(st->stale);
    assert_true(st->minted);
    assert_string_equal(st->claims.sid, "sid-7");
    assert_string_equal(token_jwt_for(st, "orders", 6, &len), token_jwt_for(ti, "orders", 6, &len));
    assert_null(token_jwt_for(st, "nowhere", 7, &len));
    token_unref(st);
    token_unref(ti);

    /* The IdP's own JWT: the audience is not ours to pick; it is forwarded as it is. */
    ti = classify(200, "application/jwt", idp_jwt, true);
    ti = finish(ti, JWT_SOURCE_AUTO, &m, NULL, NOW);
    assert_ptr_equal(token_jwt_for(ti, "orders", 6, &len), ti->jwt);
    token_unref(ti);
}

static void test_jwt_source_names(void **state)
{
    (void)state;
    enum jwt_source m;
    assert_int_equal(jwt_source_parse("auto", &m), 0);
    assert_int_equal(m, JWT_SOURCE_AUTO);
    assert_int_equal(jwt_source_parse("idp", &m), 0);
    assert_int_equal(m, JWT_SOURCE_IDP);
    assert_int_equal(jwt_source_parse("mint", &m), 0);
    assert_int_equal(m, JWT_SOURCE_MINT);
    assert_int_equal(jwt_source_parse("Mint", &m), -1);
    assert_int_equal(jwt_source_parse(NULL, &m), -1);
    assert_string_equal(jwt_source_name(JWT_SOURCE_MINT), "mint");
    assert_false(jwt_source_needs_claims(JWT_SOURCE_IDP));
    assert_true(jwt_source_needs_claims(JWT_SOURCE_AUTO));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_old_mapping_unchanged),
        cmocka_unit_test(test_plain_json_kept),
        cmocka_unit_test(test_kinds_and_sid),
        cmocka_unit_test(test_inactive_statuses),
        cmocka_unit_test(test_mode_matrix),
        cmocka_unit_test(test_rfc9701_minted),
        cmocka_unit_test(test_finish_fails_closed),
        cmocka_unit_test(test_finish_expired_and_passthrough),
        cmocka_unit_test(test_keep_introspection_and_bounds),
        cmocka_unit_test(test_jwt_source_names),
        cmocka_unit_test(test_check_config),
        cmocka_unit_test(test_forward_drops_claims),
        cmocka_unit_test(test_extra_audiences),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
