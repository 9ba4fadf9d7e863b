/* Unit tests for cache-redis-url parsing: every accepted form, and the refusals (password in the
 * URL, rediss://, bad ports, databases, hosts and trailing text). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "redis_url.h"

static struct redis_url ok(const char *s)
{
    struct redis_url u;
    char err[256] = "";
    int rc = redis_url_parse(s, &u, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s: %s", s, err);
    return u;
}

static void refused(const char *s, const char *why)
{
    struct redis_url u;
    char err[256] = "";
    assert_int_equal(redis_url_parse(s, &u, err, sizeof(err)), -1);
    if (!strstr(err, why))
        fail_msg("%s: '%s' lacks '%s'", s, err, why);
}

static void test_tcp_forms(void **state)
{
    (void)state;
    struct redis_url u = ok("redis://127.0.0.1");
    assert_false(u.unix_socket);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.user, "");
    u = ok("redis://cache.example.net:6380/3");
    assert_string_equal(u.host, "cache.example.net");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 3);
    u = ok("redis://agent_ro@localhost:7000/");
    assert_string_equal(u.user, "agent_ro");
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 0);
    u = ok("redis://[::1]:6379/15");
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.db, 15);
    u = ok("redis://u@[fe80::1]");
    assert_string_equal(u.user, "u");
    assert_string_equal(u.host, "fe80::1");
    char d[128];
    redis_url_describe(&u, d, sizeof(d));
    assert_string_equal(d, "[fe80::1]:6379/0");
    u = ok("redis://h:1/2");
    redis_url_describe(&u, d, sizeof(d));
    assert_string_equal(d, "h:1/2");
}

static void test_unix_forms(void **state)
{
    (void)state;
    struct redis_url u = ok("unix:/run/redis/redis.sock");
    assert_true(u.unix_socket);
    assert_string_equal(u.host, "/run/redis/redis.sock");
    assert_int_equal(u.db, 0);
    u = ok("unix:///tmp/r.sock?db=4");
    assert_string_equal(u.host, "/tmp/r.sock");
    assert_int_equal(u.db, 4);
    char d[128];
    redis_url_describe(&u, d, sizeof(d));
    assert_string_equal(d, "unix:/tmp/r.sock?db=4");
    refused("unix:relative.sock", "absolute");
    refused("unix:/tmp/r.sock?user=x", "?db=N");
    refused("unix:/tmp/r.sock?db=x", "database");
    char longpath[200] = "unix:/";
    memset(longpath + 6, 'a', 150);
    longpath[156] = '\0';
    refused(longpath, "too long");
}

static void test_refusals(void **state)
{
    (void)state;
    refused("redis://user:secret@localhost", "password");
    refused("redis://:secret@localhost", "password");
    refused("rediss://localhost:6380", "TLS");
    refused("http://localhost", "must start with");
    refused("", "empty");
    refused("redis://", "missing host");
    refused("redis://localhost:0", "port");
    refused("redis://localhost:65536", "port");
    refused("redis://localhost:abc", "port");
    refused("redis://localhost:6379/x", "database");
    refused("redis://localhost:6379/1000001", "database");
    refused("redis://localhost:6379/1/2", "unexpected text");
    refused("redis://localhost?db=1", "unexpected text");
    refused("redis://local host", "unexpected text");
    refused("redis://[::1", "IPv6");
    refused("redis://[]:1", "IPv6");
    refused("redis://b@d@host", "unexpected text");
    refused("redis://b!d@host", "bad character");
    refused("redis://@host", "user name");
    struct redis_url u;
    char err[8];
    assert_int_equal(redis_url_parse(NULL, &u, err, sizeof(err)), -1); /* truncated message */
    assert_int_equal(strlen(err), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_forms),
        cmocka_unit_test(test_unix_forms),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
