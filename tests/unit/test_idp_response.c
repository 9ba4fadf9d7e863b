/* idp_classify() and idp_parse_cache_control(), with answers shaped like the ones Curity and
 * Keycloak send (JWTs are built here from JSON). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "idp_response.h"
#include "jwt_fixture.h"

/* ---- helpers ---- */

static const char *HDR = "{\"kid\":\"-1325479574\",\"x5t\":\"UVbYDeq1Y9nKqQ\",\"alg\":\"RS256\"}";
static const char *SIG = "a fake RS256 signature; real ones are 256 bytes";

/* A JWT with the given payload; free() the result. */
static char *jwt_of(const char *payload)
{
    return make_jwt(HDR, payload, SIG);
}

static const char *CURITY_PAYLOAD =
    "{\"jti\":\"a4c7e9d2-5d77-4a8e-a3a4-5e6bbd5f6bd1\",\"delegationId\":\"8c12b3b4-10ab\","
    "\"exp\":1767225600,\"nbf\":1767222000,\"scope\":\"openid read\","
    "\"iss\":\"https://idsvr.example.com/oauth/v2/oauth-anonymous\",\"sub\":\"alice\","
    "\"aud\":\"api.example.com\",\"iat\":1767222000,\"purpose\":\"access_token\","
    "\"client_id\":\"web-client\"}";

static struct token_info *classify(long status, const char *ct, const char *cc, const char *body)
{
    struct idp_answer a = {
        .http_status = status,
        .content_type = ct,
        .cache_control = cc,
        .body = body,
        .body_len = body ? strlen(body) : 0,
    };
    struct token_info *ti = idp_classify(&a);
    assert_non_null(ti);
    assert_non_null(ti->reason);
    assert_int_equal(ti->refcnt, 1);
    return ti;
}

/* Classifies and checks the outcome, and that only an active answer carries a JWT or claims. */
static void expect_outcome(long status, const char *ct, const char *body, enum token_outcome want)
{
    struct token_info *ti = classify(status, ct, NULL, body);
    if (ti->outcome != want)
        fail_msg("status %ld, type %s: outcome %d (%s), want %d", status, ct ? ct : "(null)",
                 ti->outcome, ti->reason, want);
    if (want != TOKEN_ACTIVE) {
        assert_null(ti->jwt);
        assert_null(ti->claims.sub);
        assert_null(ti->claims.scope);
    }
    token_unref(ti);
}

/* ---- status rows ---- */

static void test_status_rows(void **state)
{
    static const struct {
        long status;
        enum token_outcome want;
    } rows[] = {
        {0, TOKEN_IDP_ERROR},     {204, TOKEN_INACTIVE},    {400, TOKEN_IDP_UNKNOWN},
        {401, TOKEN_IDP_ERROR},   {403, TOKEN_IDP_ERROR},   {404, TOKEN_IDP_ERROR},
        {500, TOKEN_IDP_ERROR},   {502, TOKEN_IDP_ERROR},   {503, TOKEN_IDP_UNAVAIL},
        {504, TOKEN_IDP_ERROR},   {599, TOKEN_IDP_ERROR},   {302, TOKEN_IDP_UNKNOWN},
        {418, TOKEN_IDP_UNKNOWN}, {201, TOKEN_IDP_UNKNOWN}, {100, TOKEN_IDP_UNKNOWN},
        {405, TOKEN_IDP_UNKNOWN}, {600, TOKEN_IDP_UNKNOWN}, {-1, TOKEN_IDP_UNKNOWN},
    };
    char *jwt = jwt_of(CURITY_PAYLOAD);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        /* The body is a valid JWT: only a 200 may turn it into an active token. */
        expect_outcome(rows[i].status, "application/jwt", jwt, rows[i].want);
        expect_outcome(rows[i].status, "text/html", "<html>error</html>", rows[i].want);
        expect_outcome(rows[i].status, NULL, NULL, rows[i].want);
    }
    free(jwt);
}

static void test_status_maps_to_http(void **state)
{
    /* What the client finally gets for each IdP status (with token_outcome_status). */
    static const struct {
        long idp;
        int client;
    } rows[] = {{204, 401}, {400, 500}, {401, 502}, {403, 502}, {404, 502}, {500, 502},
                {502, 502}, {503, 503}, {504, 502}, {302, 500}, {418, 500}, {0, 502}};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct token_info *ti = classify(rows[i].idp, NULL, NULL, NULL);
        assert_int_equal(token_outcome_status(ti->outcome), rows[i].client);
        token_unref(ti);
    }
}

/* ---- 200 application/jwt (Curity) ---- */

static void test_curity_jwt(void **state)
{
    char *jwt = jwt_of(CURITY_PAYLOAD);
    char body[2048];
    snprintf(body, sizeof(body), "%s\n", jwt); /* a trailing newline, as some servers send */
    struct token_info *ti = classify(200, "application/jwt", "max-age=300", body);
    assert_int_equal(ti->outcome, TOKEN_ACTIVE);
    assert_string_equal(ti->jwt, jwt);
    assert_int_equal(ti->jwt_len, strlen(jwt));
    assert_true(ti->claims.has_exp);
    assert_int_equal(ti->claims.exp, 1767225600);
    assert_string_equal(ti->claims.sub, "alice");
    assert_string_equal(ti->claims.client_id, "web-client");
    assert_string_equal(ti->claims.scope, "openid read");
    assert_int_equal(ti->max_age, 300);
    assert_false(ti->no_store);
    assert_null(strstr(ti->reason, "eyJ")); /* never token data in the reason */
    token_unref(ti);
    free(jwt);
}

static void test_jwt_content_types(void **state)
{
    static const char *types[] = {
        "application/jwt",
        "APPLICATION/JWT",
        "Application/Jwt",
        "application/jwt; charset=utf-8",
        "application/jwt;charset=UTF-8",
        " application/jwt ; q=1",
        "application/at+jwt",
    };
    char *jwt = jwt_of(CURITY_PAYLOAD);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        expect_outcome(200, types[i], jwt, TOKEN_ACTIVE);

    static const char *not_jwt[] = {
        NULL,
        "",
        "text/plain",
        "text/html",
        "application/jwtx",
        "application",
        "application/",
        "jwt",
        "text/jwt",
        "application/octet-stream",
        "application/x-jwt-bearer",
    };
    for (size_t i = 0; i < sizeof(not_jwt) / sizeof(not_jwt[0]); i++)
        expect_outcome(200, not_jwt[i], jwt, TOKEN_IDP_ERROR);
    free(jwt);
}

static void test_jwt_whitespace_trimmed(void **state)
{
    char *jwt = jwt_of(CURITY_PAYLOAD);
    char body[2048];
    snprintf(body, sizeof(body), " \r\n\t%s\r\n \n", jwt);
    struct token_info *ti = classify(200, "application/jwt", NULL, body);
    assert_int_equal(ti->outcome, TOKEN_ACTIVE);
    assert_string_equal(ti->jwt, jwt);
    token_unref(ti);

    /* Whitespace inside the JWT is not trimmed away. */
    snprintf(body, sizeof(body), "%.20s %s", jwt, jwt + 20);
    expect_outcome(200, "application/jwt", body, TOKEN_IDP_ERROR);
    free(jwt);
}

static void test_large_jwt(void **state)
{
    char payload[8000];
    int o = snprintf(payload, sizeof(payload),
                     "{\"sub\":\"big\",\"exp\":2000000000,"
                     "\"scope\":\"read\",\"groups\":[");
    for (int i = 0; i < 400; i++)
        o +=
            snprintf(payload + o, sizeof(payload) - (size_t)o, "%s\"group-%04d\"", i ? "," : "", i);
    snprintf(payload + o, sizeof(payload) - (size_t)o, "]}");
    char *jwt = jwt_of(payload);
    assert_true(strlen(jwt) > 6144);
    struct token_info *ti = classify(200, "application/jwt", NULL, jwt);
    assert_int_equal(ti->outcome, TOKEN_ACTIVE);
    assert_int_equal(ti->jwt_len, strlen(jwt));
    assert_string_equal(ti->claims.scope, "read");
    token_unref(ti);
    free(jwt);
}

static void test_malformed_jwt_in_200(void **state)
{
    char *jwt = jwt_of(CURITY_PAYLOAD);
    char body[2048];

    expect_outcome(200, "application/jwt", "", TOKEN_IDP_ERROR);
    expect_outcome(200, "application/jwt", NULL, TOKEN_IDP_ERROR);
    expect_outcome(200, "application/jwt", "not-a-jwt", TOKEN_IDP_ERROR);
    expect_outcome(200, "application/jwt", "a.b", TOKEN_IDP_ERROR);
    expect_outcome(200, "application/jwt", "eyJhbGciOiJub25lIn0.e30.", TOKEN_IDP_ERROR);
    snprintf(body, sizeof(body), "%s.extra", jwt);
    expect_outcome(200, "application/jwt", body, TOKEN_IDP_ERROR);
    snprintf(body, sizeof(body), "%s", jwt);
    body[5] = '!';
    expect_outcome(200, "application/jwt", body, TOKEN_IDP_ERROR);
    free(jwt);

    jwt = jwt_of("[\"not\",\"an\",\"object\"]");
    expect_outcome(200, "application/jwt", jwt, TOKEN_IDP_ERROR);
    free(jwt);
    jwt = jwt_of("{\"exp\":\"tomorrow\"}");
    struct token_info *ti = classify(200, "application/jwt", NULL, jwt);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    assert_non_null(strstr(ti->reason, "exp")); /* the reason says what was wrong */
    token_unref(ti);
    free(jwt);
}

static void test_html_error_page_in_200(void **state)
{
    static const char *html =
        "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
        "<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body>\n"
        "</html>\n";
    expect_outcome(200, "text/html", html, TOKEN_IDP_ERROR);
    expect_outcome(200, "text/html; charset=utf-8", html, TOKEN_IDP_ERROR);
    /* A proxy that labels its error page with the type the agent asked for. */
    expect_outcome(200, "application/jwt", html, TOKEN_IDP_ERROR);
    expect_outcome(200, "application/json", html, TOKEN_IDP_ERROR);
}

static void test_embedded_nul_in_body(void **state)
{
    char *jwt = jwt_of(CURITY_PAYLOAD);
    size_t n = strlen(jwt);
    jwt[n / 2] = '\0';
    struct idp_answer a = {
        .http_status = 200, .content_type = "application/jwt", .body = jwt, .body_len = n};
    struct token_info *ti = idp_classify(&a);
    assert_int_equal(ti->outcome, TOKEN_IDP_ERROR);
    token_unref(ti);
    free(jwt);
}

/* ---- 200 JSON (Keycloak, Curity JSON form) ---- */

static void test_keycloak_json(void **state)
{
    char *jwt = jwt_of("{\"exp\":1767225600,\"iat\":1767225300,\"jti\":\"onrtac:1\","
                       "\"iss\":\"http://kc:8080/realms/demo\",\"sub\":\"user-123\","
                       "\"typ\":\"Bearer\",\"azp\":\"api-gw\",\"scope\":\"email profile\","
                       "\"client_id\":\"api-gw\"}");
    char body[4096];
    /* The JSON members differ from the JWT's on purpose: claims come from the JWT payload. */
    snprintf(body, sizeof(body),
             "{\"exp\":1767225999,\"iat\":1767225300,\"jti\":\"onrtac:1\","
             "\"iss\":\"http://kc:8080/realms/demo\",\"aud\":\"account\",\"sub\":\"json-sub\","
             "\"typ\":\"Bearer\",\"azp\":\"api-gw\",\"session_state\":\"5c7e\","
             "\"scope\":\"admin\",\"sid\":\"5c7e\",\"client_id\":\"json-client\","
             "\"username\":\"bob\",\"token_type\":\"Bearer\",\"active\":true,\"jwt\":\"%s\"}",
             jwt);
    struct token_info *ti = classify(200, "application/json", "no-cache", body);
    assert_int_equal(ti->outcome, TOKEN_ACTIVE);
    assert_string_equal(ti->jwt, jwt);
    assert_int_equal(ti->claims.exp, 1767225600);
    assert_string_equal(ti->claims.sub, "user-123");
    assert_string_equal(ti->claims.client_id, "api-gw");
    assert_string_equal(ti->claims.scope, "email profile");
    assert_true(ti->no_store);
    token_unref(ti);
    free(jwt);
}

static void test_curity_json_phantom_token(void **state)
{
    char *jwt = jwt_of(CURITY_PAYLOAD);
    char body[4096];
    snprintf(body, sizeof(body),
             "{\"sub\":\"alice\",\"purpose\":\"access_token\",\"iss\":\"https://idsvr\","
             "\"active\":true,\"token_type\":\"bearer\",\"client_id\":\"web-client\","
             "\"aud\":\"api.example.com\",\"nbf\":1767222000,\"scope\":\"openid read\","
             "\"exp\":1767225600,\"iat\":1767222000,\"phantom_token\":\"%s\"}",
             jwt);
    struct token_info *ti = classify(200, "application/json; charset=utf-8", NULL, body);
    assert_int_equal(ti->outcome, TOKEN_ACTIVE);
    assert_string_equal(ti->jwt, jwt);
    assert_string_equal(ti->claims.sub, "alice");
    token_unref(ti);
    free(jwt);
}

/* RFC 9701: a signed introspection answer. Its top level carries no token claims, so it must never
 * be read (or forwarded) as if it were the access token's JWT. */
static void test_rfc9701_introspection_jwt(void **state)
{
    static const char *ct = "application/token-introspection+jwt";
    char *active = jwt_of("{\"iss\":\"https://as.example\",\"aud\":\"agent\",\"iat\":1767222000,"
                          "\"token_introspection\":{\"active\":true,\"sub\":\"alice\","
                          "\"client_id\":\"web\",\"scope\":\"openid  read\",\"exp\":1767225600}}");
    struct token_info *ti =
        classify(200, "Application/Token-Introspection+JWT; charset=utf-8", NULL, active);
    assert_int_equal(ti->outcome, TOKEN_ACTIVE);
    assert_string_equal(ti->jwt, active);
    assert_string_equal(ti->claims.sub, "alice");
    assert_string_equal(ti->claims.client_id, "web");
    assert_string_equal(ti->claims.scope, "openid read");
    assert_true(ti->claims.has_exp);
    assert_int_equal(ti->claims.exp, 1767225600);
    token_unref(ti);
    free(active);

    /* Inactive: a perfectly well-formed, signed JWT that says no. */
    char *inactive = jwt_of("{\"iss\":\"https://as.example\",\"token_introspection\":"
                            "{\"active\":false}}");
    expect_outcome(200, ct, inactive, TOKEN_INACTIVE);
    free(inactive);

    /* An access-token JWT under this content type, or a non-boolean active: unusable. */
    char *plain = jwt_of(CURITY_PAYLOAD);
    expect_outcome(200, ct, plain, TOKEN_IDP_ERROR);
    free(plain);
    char *bad = jwt_of("{\"token_introspection\":{\"active\":\"true\"}}");
    expect_outcome(200, ct, bad, TOKEN_IDP_ERROR);
    free(bad);
    bad = jwt_of("{\"token_introspection\":{\"active\":true,\"exp\":\"soon\"}}");
    expect_outcome(200, ct, bad, TOKEN_IDP_ERROR);
    free(bad);
}

static void test_json_inactive(void **state)
{
    struct token_info *ti = classify(200, "application/json", "max-age=5", "{\"active\":false}");
    assert_int_equal(ti->outcome, TOKEN_INACTIVE);
    assert_int_equal(ti->max_age, 5);
    token_unref(ti);
    expect_outcome(200, "application/json", "{\"active\":false}\n", TOKEN_INACTIVE);
    expect_outcome(200, "APPLICATION/JSON;charset=UTF-8", " {\"active\" : false} ", TOKEN_INACTIVE);
    expect_outcome(200, "application/token-introspection+json", "{\"active\":false}",
                   TOKEN_INACTIVE);
    /* Inactive wins over a JWT that should not be there. */
    char *jwt = jwt_of(CURITY_PAYLOAD);
    char body[2048];
    snprintf(body, sizeof(body), "{\"active\":false,\"jwt\":\"%s\"}", jwt);
    expect_outcome(200, "application/json", body, TOKEN_INACTIVE);
    free(jwt);
}

static void test_json_unusable(void **state)
{
    static const char *bodies[] = {
        "{\"active\":true}",                           /* active without a JWT */
        "{\"active\":true,\"jwt\":null}",              /* */
        "{\"active\":true,\"jwt\":42}",                /* */
        "{\"active\":true,\"jwt\":\"\"}",              /* */
        "{\"active\":true,\"jwt\":\"not.a.jwt\"}",     /* */
        "{\"active\":true,\"phantom_token\":[\"x\"]}", /* */
        "{\"active\":\"true\"}",                       /* RFC 7662: a boolean */
        "{\"active\":1}",                              /* */
        "{}",                                          /* no active at all */
        "{\"error\":\"invalid_client\"}",              /* */
        "[{\"active\":false}]",                        /* not an object */
        "\"active\"",                                  /* */
        "",                                            /* empty */
        "{\"active\":false",                           /* truncated */
        "{\"active\":false,\"active\":true}",          /* duplicate member */
        "null",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
        expect_outcome(200, "application/json", bodies[i], TOKEN_IDP_ERROR);
    expect_outcome(200, "application/problem+json",
                   "{\"type\":\"about:blank\",\"title\":\"Unauthorized\",\"status\":401}",
                   TOKEN_IDP_ERROR);
}

static void test_json_jwt_member_preferred(void **state)
{
    /* Both members: "jwt" (the Keycloak name) is used. */
    char *jwt = jwt_of(CURITY_PAYLOAD);
    char body[4096];
    snprintf(body, sizeof(body), "{\"active\":true,\"jwt\":\"%s\",\"phantom_token\":\"bad\"}", jwt);
    expect_outcome(200, "application/json", body, TOKEN_ACTIVE);
    free(jwt);
}

/* ---- Cache-Control ---- */

static void expect_cc(const char *v, long max_age, int no_store)
{
    long m = 12345;
    int n = 12345;
    idp_parse_cache_control(v, &m, &n);
    if (m != max_age || n != no_store)
        fail_msg("\"%s\": max_age %ld no_store %d, want %ld %d", v ? v : "(null)", m, n, max_age,
                 no_store);
}

static void test_cache_control(void **state)
{
    expect_cc(NULL, -1, 0);
    expect_cc("", -1, 0);
    expect_cc("max-age=60", 60, 0);
    expect_cc("max-age=0", 0, 0);
    expect_cc("MAX-AGE=60", 60, 0);
    expect_cc("Max-Age = 60", 60, 0);
    expect_cc("max-age=\"60\"", 60, 0);
    expect_cc("no-store", -1, 1);
    expect_cc("No-Store", -1, 1);
    expect_cc("no-store, max-age=60", 60, 1);
    expect_cc("max-age=60,no-store", 60, 1);
    expect_cc("  ,, public ,max-age=120 , must-revalidate,", 120, 0);
    expect_cc("private, max-age=30", 30, 0);
    expect_cc("s-maxage=10", -1, 0);
    expect_cc("no-cache", -1, 1);
    expect_cc("no-cache=\"Set-Cookie\", max-age=60", 60, 0);  /* qualified: about fields only */
    expect_cc("no-cache=\"a, no-store\", max-age=60", 60, 0); /* a comma inside quotes */
    expect_cc("foo=\"max-age=1\", max-age=60", 60, 0);
}

static void test_cache_control_garbage(void **state)
{
    expect_cc("max-age=abc", 0, 0); /* invalid: stale */
    expect_cc("max-age=", 0, 0);
    expect_cc("max-age", 0, 0);
    expect_cc("max-age=-5", 0, 0);
    expect_cc("max-age=60s", 0, 0);
    expect_cc("max-age=6 0", 6, 0); /* the stray "0" is skipped up to the next comma */
    expect_cc("max-age=\"6,0\"", 0, 0);
    expect_cc("max-age=\"60", 60, 0); /* unterminated quote runs to the end */
    expect_cc("max-age=60, max-age=10", 10, 0);
    expect_cc("max-age=10, max-age=60", 10, 0);
    expect_cc("max-age=99999999999999999999999", 2147483648L, 0);
    expect_cc("max-ages=60", -1, 0);
    expect_cc("xmax-age=60", -1, 0);
    expect_cc("=60, no-store", -1, 1);
    expect_cc("\"\"\"", -1, 0);
    expect_cc("no-store=\"", -1, 1);
    expect_cc(";;;,,,===", -1, 0);
    expect_cc("max-age=\\60", 0, 0);
}

static void test_cache_control_on_every_outcome(void **state)
{
    struct token_info *ti = classify(204, NULL, "max-age=7, no-store", NULL);
    assert_int_equal(ti->outcome, TOKEN_INACTIVE);
    assert_int_equal(ti->max_age, 7);
    assert_true(ti->no_store);
    token_unref(ti);

    ti = classify(500, NULL, NULL, NULL);
    assert_int_equal(ti->max_age, -1);
    assert_false(ti->no_store);
    token_unref(ti);
}

static void test_reasons_are_static_and_distinct(void **state)
{
    struct token_info *a = classify(401, NULL, NULL, NULL);
    struct token_info *b = classify(0, NULL, NULL, NULL);
    struct token_info *c = classify(200, "text/html", NULL, "<html/>");
    assert_string_not_equal(a->reason, b->reason);
    assert_string_not_equal(b->reason, c->reason);
    assert_non_null(strstr(a->reason, "401"));
    token_unref(a);
    token_unref(b);
    token_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_rows),
        cmocka_unit_test(test_status_maps_to_http),
        cmocka_unit_test(test_curity_jwt),
        cmocka_unit_test(test_jwt_content_types),
        cmocka_unit_test(test_jwt_whitespace_trimmed),
        cmocka_unit_test(test_large_jwt),
        cmocka_unit_test(test_malformed_jwt_in_200),
        cmocka_unit_test(test_html_error_page_in_200),
        cmocka_unit_test(test_embedded_nul_in_body),
        cmocka_unit_test(test_keycloak_json),
        cmocka_unit_test(test_curity_json_phantom_token),
        cmocka_unit_test(test_rfc9701_introspection_jwt),
        cmocka_unit_test(test_json_inactive),
        cmocka_unit_test(test_json_unusable),
        cmocka_unit_test(test_json_jwt_member_preferred),
        cmocka_unit_test(test_cache_control),
        cmocka_unit_test(test_cache_control_garbage),
        cmocka_unit_test(test_cache_control_on_every_outcome),
        cmocka_unit_test(test_reasons_are_static_and_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
