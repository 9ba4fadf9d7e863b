/* Unit tests for the shared-cache (Redis) options: what --check-config accepts and refuses
 * (URL forms, the fleet key and its file mode, the password file, the timeout against
 * introspection-timeout, an unresolvable host) and that every one of them is restart-only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

static char tmpdir[64];
static char key_path[128], short_key[128], open_key[128], pw_path[128];

static void write_file(const char *name, const char *content, mode_t mode, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", tmpdir, name);
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    assert_int_equal(chmod(out, mode), 0);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int group_setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config_l2.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    log_init(LOG_LVL_ERROR, false);
    write_file("fleet.key", "k3y-0f-the-fleet-k3y-0f-the-fleet-k3y-0f\n", 0600, key_path,
               sizeof(key_path));
    write_file("short.key", "too-short\n", 0600, short_key, sizeof(short_key));
    write_file("open.key", "k3y-0f-the-fleet-k3y-0f-the-fleet-k3y-0f\n", 0644, open_key,
               sizeof(open_key));
    write_file("redis.pw", "redis-s3cret\n", 0640, pw_path, sizeof(pw_path));
    return 0;
}

static int group_teardown(void **state)
{
    return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int setup(void **state)
{
    static struct config c;
    config_defaults(&c);
    *state = &c;
    char err[CONFIG_ERR_LEN];
    assert_int_equal(config_set(&c, "introspection-url", "http://127.0.0.1:1/i", err, sizeof(err)),
                     0);
    assert_int_equal(config_set(&c, "client-auth", "none", err, sizeof(err)), 0);
    return 0;
}

static int teardown(void **state)
{
    config_free(*state);
    return 0;
}

static void set(struct config *c, const char *k, const char *v)
{
    char err[CONFIG_ERR_LEN];
    if (config_set(c, k, v, err, sizeof(err)) != 0)
        fail_msg("%s = %s: %s", k, v, err);
}

static void refused(struct config *c, const char *why)
{
    char err[CONFIG_ERR_LEN] = "";
    assert_int_equal(config_finalize(c, err, sizeof(err)), -1);
    if (!strstr(err, why))
        fail_msg("'%s' lacks '%s'", err, why);
}

static void test_off_by_default(void **state)
{
    struct config *c = *state;
    char err[CONFIG_ERR_LEN];
    assert_null(c->cache_redis_url);
    assert_string_equal(c->cache_redis_prefix, "pta:");
    assert_int_equal(c->cache_redis_timeout_ms, 100);
    assert_int_equal(config_finalize(c, err, sizeof(err)), 0);
    assert_null(c->fleet_key);
}

static void test_valid(void **state)
{
    struct config *c = *state;
    set(c, "cache-redis-url", "redis://agent@127.0.0.1:6380/2");
    set(c, "fleet-key-file", key_path);
    set(c, "cache-redis-password-file", pw_path);
    set(c, "cache-redis-prefix", "fleet-a:");
    set(c, "cache-redis-timeout", "250ms");
    char err[CONFIG_ERR_LEN];
    if (config_finalize(c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_string_equal(c->redis.host, "127.0.0.1");
    assert_int_equal(c->redis.port, 6380);
    assert_int_equal(c->redis.db, 2);
    assert_string_equal(c->redis.user, "agent");
    assert_string_equal(c->cache_redis_password, "redis-s3cret");
    assert_int_equal(c->fleet_key_len, 40);
    assert_memory_equal(c->fleet_key, "k3y-0f-the-fleet", 16);
    assert_int_equal(c->cache_redis_timeout_ms, 250);
}

static void test_refusals(void **state)
{
    struct config *c = *state;
    set(c, "cache-redis-url", "redis://127.0.0.1");
    refused(c, "needs fleet-key-file");
    set(c, "fleet-key-file", short_key);
    refused(c, "too short");
    set(c, "fleet-key-file", open_key);
    refused(c, "other users");
    set(c, "fleet-key-file", key_path);
    set(c, "cache-redis-url", "rediss://127.0.0.1");
    refused(c, "TLS");
    set(c, "cache-redis-url", "redis://user:pw@127.0.0.1");
    refused(c, "cache-redis-password-file");
    set(c, "cache-redis-url", "redis://no-such-host.invalid");
    refused(c, "cannot resolve");
    set(c, "cache-redis-url", "redis://127.0.0.1");
    set(c, "cache-redis-timeout", "2s"); /* the introspection-timeout default */
    refused(c, "shorter than introspection-timeout");
    set(c, "cache-redis-timeout", "100ms");
    set(c, "cache-redis-password-file", "/nonexistent/pw");
    refused(c, "/nonexistent/pw");
    char err[CONFIG_ERR_LEN];
    assert_int_equal(config_set(c, "cache-redis-timeout", "11s", err, sizeof(err)), -1);
}

static void test_restart_only(void **state)
{
    static const char *const names[] = {"cache-redis-url", "fleet-key-file", "cache-redis-prefix",
                                        "cache-redis-password-file", "cache-redis-timeout"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_true(config_option_restart_only(names[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_off_by_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_only, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
