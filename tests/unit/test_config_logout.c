/* The back-channel logout options: parsed from the table, cross-checked by config_finalize(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

static int finalize(const char *const *kv, char *err)
{
    struct config c;
    config_defaults(&c);
    for (size_t i = 0; kv[i]; i += 2)
        if (config_set(&c, kv[i], kv[i + 1], err, CONFIG_ERR_LEN) != 0)
            fail_msg("%s", err);
    int r = config_finalize(&c, err, CONFIG_ERR_LEN);
    config_free(&c);
    return r;
}

#define BASE "introspection-url", "http://127.0.0.1:1/i", "client-id", "gateway"

static void test_logout_options(void **state)
{
    char err[CONFIG_ERR_LEN];
    setenv("PHANTOM_CLIENT_SECRET", "secret", 1);
    const char *ok[] = {BASE,
                        "backchannel-logout-issuer",
                        "https://idp.example",
                        "backchannel-logout-jwks-url",
                        "https://idp.example/jwks",
                        NULL};
    assert_int_equal(finalize(ok, err), 0);
    const char *loopback[] = {BASE,
                              "backchannel-logout-issuer",
                              "http://127.0.0.1:8080",
                              "backchannel-logout-jwks-url",
                              "http://127.0.0.1:8080/jwks",
                              NULL};
    assert_int_equal(finalize(loopback, err), 0);
    const char *alone[] = {BASE, "backchannel-logout-issuer", "https://idp.example", NULL};
    assert_int_equal(finalize(alone, err), -1);
    assert_non_null(strstr(err, "go together"));
    const char *keys_alone[] = {BASE, "backchannel-logout-jwks-url", "https://idp/jwks", NULL};
    assert_int_equal(finalize(keys_alone, err), -1);
    const char *plain[] = {BASE,
                           "backchannel-logout-issuer",
                           "https://idp.example",
                           "backchannel-logout-jwks-url",
                           "http://idp.example/jwks",
                           NULL};
    assert_int_equal(finalize(plain, err), -1);
    assert_non_null(strstr(err, "https://"));
    const char *none[] = {BASE, NULL};
    assert_int_equal(finalize(none, err), 0);
    unsetenv("PHANTOM_CLIENT_SECRET");
}

static void test_logout_client_id(void **state)
{
    char err[CONFIG_ERR_LEN];
    struct config c;
    config_defaults(&c);
    assert_null(c.logout_issuer);
    assert_null(c.logout_client_id);
    assert_int_equal(config_set(&c, "backchannel-logout-client-id", "rp-1", err, sizeof(err)), 0);
    assert_string_equal(c.logout_client_id, "rp-1");
    assert_true(config_option_restart_only("backchannel-logout-issuer"));
    config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logout_options),
        cmocka_unit_test(test_logout_client_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
