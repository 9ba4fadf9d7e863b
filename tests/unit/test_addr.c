/* Unit tests for addr.c: the one grammar of listening addresses, and name resolution as the agent
 * binds (localhost resolves; the same call serves --check-config and the listeners). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <string.h>

#include "addr.h"

static void parse_ok(const char *s, unsigned allow, struct addr *a)
{
    const char *why = addr_parse(s, allow, a);
    if (why)
        fail_msg("'%s': %s", s, why);
}

static void parse_bad(const char *s, unsigned allow, const char *needle)
{
    struct addr a;
    const char *why = addr_parse(s, allow, &a);
    if (!why)
        fail_msg("'%s' accepted", s);
    if (!strstr(why, needle))
        fail_msg("'%s': '%s' lacks '%s'", s, why, needle);
}

#define ANY (ADDR_ALLOW_TCP | ADDR_ALLOW_UNIX)

static void test_forms(void **state)
{
    struct addr a;
    parse_ok("127.0.0.1:12345", ANY, &a);
    assert_int_equal(a.kind, ADDR_TCP);
    assert_string_equal(a.host, "127.0.0.1");
    assert_string_equal(a.port, "12345");
    parse_ok("[::1]:80", ANY, &a);
    assert_string_equal(a.host, "::1");
    assert_string_equal(a.port, "80");
    parse_ok("[fe80::1%eth0]:80", ADDR_ALLOW_TCP, &a);
    assert_string_equal(a.host, "fe80::1%eth0");
    parse_ok("localhost:65535", ANY, &a);
    assert_string_equal(a.host, "localhost");
    parse_ok("unix:/run/pta.sock", ANY, &a);
    assert_int_equal(a.kind, ADDR_UNIX);
    assert_string_equal(a.path, "/run/pta.sock");
    parse_ok("unix:/run/admin.sock", ADDR_ALLOW_UNIX, &a);
    parse_ok("127.0.0.1:0", ADDR_ALLOW_TCP | ADDR_ALLOW_PORT0, &a); /* programs and tests only */
    assert_string_equal(a.port, "0");
}

static void test_errors(void **state)
{
    parse_bad("", ANY, "must not be empty");
    parse_bad("localhost", ANY, "expected host:port");
    parse_bad(":12345", ANY, "expected host:port");
    parse_bad("1.2.3.4:0", ANY, "port must be");
    parse_bad("1.2.3.4:65536", ANY, "port must be");
    parse_bad("1.2.3.4:123456", ANY, "port must be");
    parse_bad("1.2.3.4:http", ANY, "port must be");
    parse_bad("1.2.3.4:", ANY, "port must be");
    parse_bad("::1:12345", ANY, "needs brackets");
    parse_bad("[::1]", ANY, "expected [ipv6]:port");
    parse_bad("[]:1", ANY, "expected [ipv6]:port");
    parse_bad("a b:1", ANY, "without spaces");
    parse_bad("unix:", ANY, "absolute");
    parse_bad("unix:run/x.sock", ANY, "absolute");
    /* TCP only: unix: is read as a host named "unix" (the historical message) */
    parse_bad("unix:/run/m.sock", ADDR_ALLOW_TCP, "port must be");
    parse_bad("127.0.0.1:9", ADDR_ALLOW_UNIX, "expected unix:/absolute/path");
    char longpath[200] = "unix:/";
    memset(longpath + 6, 'x', 150);
    parse_bad(longpath, ANY, "too long");
    char longhost[300];
    memset(longhost, 'h', 280);
    strcpy(longhost + 280, ":1");
    parse_bad(longhost, ANY, "too long");
}

static void test_resolve(void **state)
{
    struct addr a;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    char err[256];
    parse_ok("127.0.0.1:4242", ANY, &a);
    assert_int_equal(addr_resolve(&a, &ss, &len, err, sizeof(err)), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 4242);

    parse_ok("[::1]:4243", ANY, &a);
    assert_int_equal(addr_resolve(&a, &ss, &len, err, sizeof(err)), 0);
    assert_int_equal(ss.ss_family, AF_INET6);

    /* names are resolved (decided once for listen, http-listen and --check-config alike) */
    parse_ok("localhost:4244", ANY, &a);
    assert_int_equal(addr_resolve(&a, &ss, &len, err, sizeof(err)), 0);
    assert_true(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);

    /* (no test of an unknown name: it would ask the network's DNS) */
    parse_ok("unix:/x", ANY, &a);
    assert_int_equal(addr_resolve(&a, &ss, &len, err, sizeof(err)), -1);
}

static void test_check(void **state)
{
    char err[256];
    assert_int_equal(addr_check("localhost:1", ADDR_ALLOW_TCP, err, sizeof(err)), 0);
    assert_int_equal(addr_check("unix:/x", ANY, err, sizeof(err)), 0);
    assert_int_equal(addr_check("localhost", ANY, err, sizeof(err)), -1);
    assert_string_equal(err, "expected host:port");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
