/* Unit tests for http_router.c: matching (404, 405 with Allow, HEAD for GET), admin routes absent
 * without a token and alone on the admin socket, bearer authentication, body limits, the JSON
 * error answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "http_router.h"

static int calls;

static void handler(void *ud, const struct http_request *req, struct http_response *resp)
{
    calls++;
}

static struct http_router router;

static int setup(void **state)
{
    const struct http_route routes[] = {
        {.method = "GET", .path = "/metrics", .fn = handler},
        {.method = "GET", .path = "/admin/cache", .auth = HTTP_AUTH_ADMIN, .fn = handler},
        {.method = "POST",
         .path = "/admin/purge",
         .auth = HTTP_AUTH_ADMIN,
         .max_body = 100,
         .fn = handler},
        {.method = "DELETE", .path = "/admin/cache", .auth = HTTP_AUTH_ADMIN, .fn = handler},
    };
    http_router_init(&router);
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        assert_int_equal(http_router_add(&router, &routes[i]), 0);
    return 0;
}

static const struct http_route *match(const char *method, const char *path, enum http_origin origin,
                                      bool admin, struct http_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    return http_router_match(&router, method, path, origin, admin, resp);
}

static void test_add(void **state)
{
    struct http_route dup = {.method = "GET", .path = "/metrics", .fn = handler};
    assert_int_equal(http_router_add(&router, &dup), -1);
    struct http_route other = {.method = "POST", .path = "/metrics", .fn = handler};
    assert_int_equal(http_router_add(&router, &other), 0);
    struct http_route nofn = {.method = "GET", .path = "/x"};
    assert_int_equal(http_router_add(&router, &nofn), -1);
    for (size_t i = router.n; i < HTTP_ROUTES_MAX; i++) {
        struct http_route r = {.method = "GET", .path = "/fill", .fn = handler};
        r.method = i % 2 ? "GET" : "PUT";
        static char paths[HTTP_ROUTES_MAX][16];
        snprintf(paths[i], sizeof(paths[i]), "/fill%zu", i);
        r.path = paths[i];
        assert_int_equal(http_router_add(&router, &r), 0);
    }
    struct http_route full = {.method = "GET", .path = "/full", .fn = handler};
    assert_int_equal(http_router_add(&router, &full), -1);
}

static void test_match(void **state)
{
    struct http_response resp;
    const struct http_route *r = match("GET", "/metrics", HTTP_ORIGIN_TCP, false, &resp);
    assert_non_null(r);
    assert_string_equal(r->path, "/metrics");
    assert_null(resp.body);
    assert_non_null(match("HEAD", "/metrics", HTTP_ORIGIN_TCP, false, &resp));

    assert_null(match("GET", "/nope", HTTP_ORIGIN_TCP, true, &resp));
    assert_int_equal(resp.status, 404);
    assert_string_equal(resp.content_type, "application/json");
    assert_string_equal(resp.body, "{\"error\":\"not found\"}\n");
    assert_int_equal(resp.body_len, strlen(resp.body));
    http_response_free(&resp);

    assert_null(match("GET", "/metrics/", HTTP_ORIGIN_TCP, true, &resp)); /* exact paths */
    assert_int_equal(resp.status, 404);
    http_response_free(&resp);

    assert_null(match("POST", "/metrics", HTTP_ORIGIN_TCP, false, &resp));
    assert_int_equal(resp.status, 405);
    assert_string_equal(resp.allow, "GET, HEAD");
    assert_string_equal(resp.body, "{\"error\":\"method not allowed\"}\n");
    http_response_free(&resp);

    assert_null(match("PUT", "/admin/cache", HTTP_ORIGIN_TCP, true, &resp));
    assert_int_equal(resp.status, 405);
    assert_string_equal(resp.allow, "GET, HEAD, DELETE");
    http_response_free(&resp);
}

static void test_admin_visibility(void **state)
{
    struct http_response resp;
    /* no admin token configured: the admin routes do not exist on TCP, whatever the method */
    assert_null(match("GET", "/admin/cache", HTTP_ORIGIN_TCP, false, &resp));
    assert_int_equal(resp.status, 404);
    http_response_free(&resp);
    assert_null(match("PUT", "/admin/purge", HTTP_ORIGIN_TCP, false, &resp));
    assert_int_equal(resp.status, 404);
    http_response_free(&resp);
    assert_non_null(match("POST", "/admin/purge", HTTP_ORIGIN_TCP, true, &resp));

    /* the admin socket: admin routes, token or not, and nothing else */
    assert_non_null(match("POST", "/admin/purge", HTTP_ORIGIN_ADMIN_SOCKET, false, &resp));
    assert_null(match("GET", "/metrics", HTTP_ORIGIN_ADMIN_SOCKET, true, &resp));
    assert_int_equal(resp.status, 404);
    http_response_free(&resp);
}

static int authorize(const char *route_path, enum http_origin origin, const char *header,
                     const char *token, struct http_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    const struct http_route *r = NULL;
    for (size_t i = 0; i < router.n; i++)
        if (strcmp(router.routes[i].path, route_path) == 0)
            r = &router.routes[i];
    assert_non_null(r);
    return http_router_authorize(r, origin, header, token, resp);
}

static void test_authorize(void **state)
{
    struct http_response resp;
    const char *tok = "s3cret-admin-token";
    assert_int_equal(authorize("/metrics", HTTP_ORIGIN_TCP, NULL, tok, &resp), 0);
    assert_int_equal(authorize("/metrics", HTTP_ORIGIN_TCP, NULL, NULL, &resp), 0);

    assert_int_equal(
        authorize("/admin/purge", HTTP_ORIGIN_TCP, "Bearer s3cret-admin-token", tok, &resp), 0);
    assert_int_equal(
        authorize("/admin/purge", HTTP_ORIGIN_TCP, "bearer s3cret-admin-token", tok, &resp),
        0); /* the scheme is case-insensitive (RFC 7235) */
    assert_int_equal(authorize("/admin/purge", HTTP_ORIGIN_ADMIN_SOCKET, NULL, NULL, &resp), 0);

    static const char *const bad[] = {"Bearer s3cret-admin-toke", "Bearer s3cret-admin-token2",
                                      "Bearer S3CRET-ADMIN-TOKEN", "Bearer  s3cret-admin-token",
                                      "Basic czNjcmV0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(authorize("/admin/purge", HTTP_ORIGIN_TCP, bad[i], tok, &resp), -1);
        assert_int_equal(resp.status, 401);
        assert_non_null(strstr(resp.www_authenticate, "Bearer realm="));
        http_response_free(&resp);
    }
    assert_int_equal(authorize("/admin/purge", HTTP_ORIGIN_TCP, "Bearer x", tok, &resp), -1);
    assert_string_equal(resp.www_authenticate,
                        "Bearer realm=\"phantom-token-agent admin\", error=\"invalid_token\"");
    assert_string_equal(resp.body, "{\"error\":\"invalid admin token\"}\n");
    http_response_free(&resp);
    assert_int_equal(authorize("/admin/purge", HTTP_ORIGIN_TCP, NULL, tok, &resp), -1);
    assert_string_equal(resp.www_authenticate, "Bearer realm=\"phantom-token-agent admin\"");
    assert_string_equal(resp.body, "{\"error\":\"admin token required\"}\n");
    http_response_free(&resp);
    assert_int_equal(authorize("/admin/purge", HTTP_ORIGIN_TCP, "Bearer ", tok, &resp), -1);
    http_response_free(&resp);
    /* no token configured: nothing authenticates on TCP (the route is absent there anyway) */
    assert_int_equal(authorize("/admin/purge", HTTP_ORIGIN_TCP, "Bearer ", NULL, &resp), -1);
    http_response_free(&resp);
    assert_int_equal(authorize("/admin/purge", HTTP_ORIGIN_TCP, "Bearer x", NULL, &resp), -1);
    http_response_free(&resp);
}

static void test_body_limit(void **state)
{
    struct http_response resp = {0};
    const struct http_route *purge = match("POST", "/admin/purge", HTTP_ORIGIN_TCP, true, &resp);
    const struct http_route *metrics = match("GET", "/metrics", HTTP_ORIGIN_TCP, true, &resp);
    assert_int_equal(http_router_check_body(purge, 100, &resp), 0);
    assert_int_equal(http_router_check_body(purge, 101, &resp), -1);
    assert_int_equal(resp.status, 413);
    assert_string_equal(resp.body, "{\"error\":\"request body too large\"}\n");
    http_response_free(&resp);
    assert_int_equal(http_router_check_body(metrics, 0, &resp), 0);
    assert_int_equal(http_router_check_body(metrics, 1, &resp), -1);
    http_response_free(&resp);
}

static void test_response_helpers(void **state)
{
    struct http_response resp = {0};
    http_response_json(&resp, 200, "{\"purged\":3}");
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "{\"purged\":3}\n");
    http_response_text(&resp, 503, "text/plain", NULL); /* a handler out of memory */
    assert_int_equal(resp.status, 500);
    assert_null(resp.body);
    http_response_free(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_match, setup),
        cmocka_unit_test_setup(test_admin_visibility, setup),
        cmocka_unit_test_setup(test_authorize, setup),
        cmocka_unit_test_setup(test_body_limit, setup),
        cmocka_unit_test_setup(test_response_helpers, setup),
        cmocka_unit_test_setup(test_add, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
