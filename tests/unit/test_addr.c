/* Unit tests for addr.c: the one grammar of listening addresses, and name resolution as the agent
 * binds (localhost resolves; the same call serves --check-config and the listeners). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

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

/* Two spellings of one socket parse to one path, so the config can see that they collide. */
static void test_unix_normalised(void **state)
{
    struct addr a;
    static const char *const same[] = {"unix:/a//spop.sock", "unix:/a/./spop.sock",
                                       "unix://a/spop.sock", "unix:/a/spop.sock"};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        parse_ok(same[i], ANY, &a);
        assert_string_equal(a.path, "/a/spop.sock");
    }
    parse_ok("unix:/a/.hidden/", ANY, &a);
    assert_string_equal(a.path, "/a/.hidden");
    parse_ok("unix:/a/../b", ANY, &a); /* ".." may cross a symlink: kept */
    assert_string_equal(a.path, "/a/../b");
}

static int listening_socket(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(sun.sun_path));
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(fd, 1), 0);
    return fd;
}

/* Only a stale socket is removed: a regular file at the path is refused and left alone (it was
 * deleted before), a socket something listens on is refused, an absent path is fine. */
static void test_unix_prepare(void **state)
{
    char dir[] = "/tmp/pta-addr-XXXXXX", path[256], err[256] = "";
    struct stat st;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    assert_int_equal(addr_unix_prepare(path, err, sizeof(err)), 0);

    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(addr_unix_prepare(path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is not a socket"));
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(unlink(path), 0);

    fd = listening_socket(path);
    assert_int_equal(addr_unix_prepare(path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "in use"));
    assert_int_equal(lstat(path, &st), 0);
    close(fd); /* the file stays: now a stale socket */
    assert_int_equal(addr_unix_prepare(path, err, sizeof(err)), 0);
    assert_int_equal(lstat(path, &st), -1);
    assert_int_equal(errno, ENOENT);
    rmdir(dir);
}

static struct sockaddr_storage resolved(const char *s)
{
    struct addr a;
    struct sockaddr_storage ss;
    socklen_t len;
    char err[256];
    parse_ok(s, ADDR_ALLOW_TCP, &a);
    if (addr_resolve(&a, &ss, &len, err, sizeof(err)) < 0)
        fail_msg("%s: %s", s, err);
    return ss;
}

static bool overlap(const char *a, const char *b)
{
    struct sockaddr_storage x = resolved(a), y = resolved(b);
    return addr_tcp_overlap(&x, &y);
}

/* A wildcard takes the port on the addresses it covers: the start would fail with EADDRINUSE,
 * so --check-config must say so. */
static void test_tcp_overlap(void **state)
{
    assert_true(overlap("127.0.0.1:9000", "127.0.0.1:9000"));
    assert_true(overlap("0.0.0.0:9000", "127.0.0.1:9000"));
    assert_true(overlap("127.0.0.1:9000", "0.0.0.0:9000"));
    assert_true(overlap("[::]:9000", "127.0.0.1:9000"));
    assert_true(overlap("[::]:9000", "[::1]:9000"));
    assert_true(overlap("0.0.0.0:9000", "[::]:9000"));
    assert_false(overlap("0.0.0.0:9000", "127.0.0.1:9001"));
    assert_false(overlap("127.0.0.1:9000", "127.0.0.2:9000"));
    assert_false(overlap("0.0.0.0:9000", "[::1]:9000")); /* an IPv4 wildcard leaves IPv6 alone */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),           cmocka_unit_test(test_errors),
        cmocka_unit_test(test_resolve),         cmocka_unit_test(test_check),
        cmocka_unit_test(test_unix_normalised), cmocka_unit_test(test_unix_prepare),
        cmocka_unit_test(test_tcp_overlap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
