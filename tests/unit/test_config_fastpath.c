/* The fastpath-* options: defaults, ranges, the cross-checks of config_finalize() (socket without
 * map or key, a bad map name) and the key file read as HAProxy reads it (mode, format). */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../agent/config.h"

static char tmpdir[64];

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/pta-cfp.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *content, mode_t mode, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", tmpdir, name);
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    assert_int_equal(chmod(out, mode), 0);
}

static const char KEY_LINE[] =
    "# shared\nfastpath-key MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n";

static void set(struct config *c, const char *k, const char *v)
{
    char err[CONFIG_ERR_LEN];
    if (config_set(c, k, v, err, sizeof(err)) != 0)
        fail_msg("%s", err);
}

static void defaults_and_ranges(void **state)
{
    (void)state;
    struct config c;
    char err[CONFIG_ERR_LEN];
    config_defaults(&c);
    assert_null(c.fastpath_sockets);
    assert_int_equal(c.fastpath_ttl, 10);
    assert_int_equal(c.fastpath_max_entries, 10000);
    assert_int_equal(config_finalize(&c, err, sizeof(err)), 0); /* off: nothing required */
    assert_int_equal(config_set(&c, "fastpath-ttl", "0", err, sizeof(err)), -1);
    assert_int_equal(config_set(&c, "fastpath-ttl", "301s", err, sizeof(err)), -1);
    set(&c, "fastpath-ttl", "2m");
    assert_int_equal(c.fastpath_ttl, 120);
    assert_int_equal(config_set(&c, "fastpath-max-entries", "0", err, sizeof(err)), -1);
    config_free(&c);
}

static void finalize_cross_checks(void **state)
{
    (void)state;
    char key[PATH_MAX], err[CONFIG_ERR_LEN];
    write_file("key.map", KEY_LINE, 0600, key, sizeof(key));
    struct config c;

    config_defaults(&c);
    set(&c, "fastpath-socket", "unix:/run/haproxy/admin.sock");
    assert_int_equal(config_finalize(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "fastpath-map"));
    set(&c, "fastpath-map", "/etc/haproxy/fast path.map");
    assert_int_equal(config_finalize(&c, err, sizeof(err)), -1);
    set(&c, "fastpath-map", "/etc/haproxy/fastpath.map");
    assert_int_equal(config_finalize(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "fastpath-key-file"));
    set(&c, "fastpath-key-file", key);
    if (config_finalize(&c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_string_equal(c.fastpath_key, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
    config_free(&c);
}

static void key_file_is_checked(void **state)
{
    (void)state;
    char path[PATH_MAX], err[CONFIG_ERR_LEN];
    struct config c;
    static const struct {
        const char *content;
        mode_t mode;
        const char *why;
    } bad[] = {
        {KEY_LINE, 0644, "readable by others"},
        {"fastpath-key short\n", 0600, "base64"},
        {"fastpath-key MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY= trailing\n", 0600, "base64"},
        {"# nothing\n", 0600, "no"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "bad%zu.map", i);
        write_file(name, bad[i].content, bad[i].mode, path, sizeof(path));
        config_defaults(&c);
        set(&c, "fastpath-socket", "unix:/run/haproxy/admin.sock");
        set(&c, "fastpath-map", "/etc/haproxy/fastpath.map");
        set(&c, "fastpath-key-file", path);
        err[0] = '\0';
        assert_int_equal(config_finalize(&c, err, sizeof(err)), -1);
        if (!strstr(err, bad[i].why) && !strstr(err, "mode"))
            fail_msg("case %zu: unexpected message: %s", i, err);
        assert_null(c.fastpath_key);
        config_free(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_and_ranges),
        cmocka_unit_test(finalize_cross_checks),
        cmocka_unit_test(key_file_is_checked),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
