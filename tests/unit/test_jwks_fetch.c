/* The pure parts of jwks_fetch.c: which URLs may serve keys, and the refresh period. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "jwks_fetch.h"

static void test_url_allowed(void **state)
{
    assert_true(jwks_url_allowed("https://idp.example/jwks"));
    assert_true(jwks_url_allowed("HTTPS://idp.example:8443/.well-known/jwks.json"));
    assert_true(jwks_url_allowed("http://127.0.0.1:8080/jwks"));
    assert_true(jwks_url_allowed("http://127.1.2.3/jwks"));
    assert_true(jwks_url_allowed("http://localhost:9/jwks"));
    assert_true(jwks_url_allowed("http://[::1]:9/jwks"));
    /* Keys over plain HTTP from anywhere else could be swapped by anyone on the path. */
    assert_false(jwks_url_allowed("http://idp.example/jwks"));
    assert_false(jwks_url_allowed("http://10.0.0.1/jwks"));
    assert_false(jwks_url_allowed("http://127.0.0.1.evil.example/jwks"));
    assert_false(jwks_url_allowed("http://localhost.evil.example/jwks"));
    assert_false(jwks_url_allowed("http://[::2]/jwks"));
    /* No credentials in the URL, no other schemes, no empty host. */
    assert_false(jwks_url_allowed("https://user:pw@idp.example/jwks"));
    assert_false(jwks_url_allowed("http://x@127.0.0.1/jwks"));
    assert_false(jwks_url_allowed("file:///etc/jwks.json"));
    assert_false(jwks_url_allowed("ftp://idp/jwks"));
    assert_false(jwks_url_allowed("https://"));
    assert_false(jwks_url_allowed(""));
    assert_false(jwks_url_allowed(NULL));
}

static void test_refresh_period(void **state)
{
    assert_int_equal(jwks_refresh_period(NULL, 60, 3600), 3600);
    assert_int_equal(jwks_refresh_period("public, max-age=600", 60, 3600), 600);
    assert_int_equal(jwks_refresh_period(" Max-Age=5", 60, 3600), 60);
    assert_int_equal(jwks_refresh_period("max-age=999999999999", 60, 3600), 3600);
    assert_int_equal(jwks_refresh_period("max-age=", 60, 3600), 3600);
    assert_int_equal(jwks_refresh_period("no-store", 60, 3600), 60);
    assert_int_equal(jwks_refresh_period("no-cache, max-age=900", 60, 3600), 60);
    assert_int_equal(jwks_refresh_period("private", 60, 3600), 3600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_allowed),
        cmocka_unit_test(test_refresh_period),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
