/* Unit tests for config.c: defaults, every kind of value, the config file, the command line,
 * the client secret's sources, the cross-checks, and the example contrib/agent.conf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "version.h"

/* Builds argv (with a program name and the NULL terminator) and its argc from a literal list. */
#define ARGS(...)                                                                                  \
    (char *[])                                                                                     \
    {                                                                                              \
        "phantom-token-agent", __VA_ARGS__, NULL                                                   \
    }
#define ARGC(...) ((int)(sizeof((char *[]){"phantom-token-agent", __VA_ARGS__}) / sizeof(char *)))
#define PARSE(c, action, err, ...)                                                                 \
    config_parse_args(c, ARGC(__VA_ARGS__), ARGS(__VA_ARGS__), action, err, sizeof(err))

static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int group_setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    log_init(LOG_LVL_ERROR, false); /* the permission and plain-http warnings are expected */
    return 0;
}

static int group_teardown(void **state)
{
    return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Each test gets fresh defaults and an environment without any secret. */
static int setup(void **state)
{
    static struct config c;
    unsetenv("PHANTOM_CLIENT_SECRET");
    unsetenv("CREDENTIALS_DIRECTORY");
    config_defaults(&c);
    *state = &c;
    return 0;
}

static int teardown(void **state)
{
    config_free(*state);
    return 0;
}

/* Writes content to tmpdir/name with the given mode; the path goes to out. */
static void write_file(const char *name, const char *content, mode_t mode, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", tmpdir, name);
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    assert_int_equal(chmod(out, mode), 0);
}

/* Runs fn with stdout redirected to a file and returns what it printed (malloc'd). */
static char *capture_stdout(void (*fn)(void *), void *arg)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/stdout", tmpdir);
    fflush(stdout);
    int saved = dup(1);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 1);
    fn(arg);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    off_t size = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, (size_t)size, 0), size);
    close(fd);
    return buf;
}

static void set_ok(struct config *c, const char *key, const char *value)
{
    char err[CONFIG_ERR_LEN] = "";
    if (config_set(c, key, value, err, sizeof(err)) != 0)
        fail_msg("%s = '%s' rejected: %s", key, value, err);
}

static void set_bad(struct config *c, const char *key, const char *value, const char *expect)
{
    char err[CONFIG_ERR_LEN] = "";
    if (config_set(c, key, value, err, sizeof(err)) != -1)
        fail_msg("%s = '%s' accepted", key, value);
    if (expect && !strstr(err, expect))
        fail_msg("%s = '%s': '%s' does not contain '%s'", key, value, err, expect);
}

/* ---- defaults and values ----------------------------------------------------------------------
 */

static void test_defaults(void **state)
{
    struct config *c = *state;
    assert_string_equal(c->listen, "127.0.0.1:12345");
    assert_int_equal(c->max_frame_size, 16380);
    assert_int_equal(c->idle_timeout_ms, 120000);
    assert_int_equal(c->max_concurrent_introspections, 64);
    assert_int_equal(c->log_level, LOG_LVL_INFO);
    assert_false(c->syslog);
    assert_false(c->access_log);
    assert_null(c->introspection_url);
    assert_string_equal(c->accept, "application/jwt");
    assert_null(c->client_id);
    assert_null(c->client_secret_file);
    assert_null(c->client_secret);
    assert_int_equal(c->client_auth, CLIENT_AUTH_BASIC);
    assert_false(c->token_type_hint);
    assert_null(c->ca_file);
    assert_null(c->client_cert);
    assert_null(c->client_key);
    assert_false(c->tls_insecure_skip_verify);
    assert_int_equal(c->introspection_timeout_ms, 2000);
    assert_int_equal(c->connect_timeout_ms, 1000);
    assert_int_equal(c->max_concurrent_introspections, 64);
    assert_int_equal(c->max_response_size, 65536);
    assert_int_equal(c->cache.max_ttl, 300);
    assert_int_equal(c->cache.negative_ttl, 5);
    assert_int_equal(c->cache.exp_skew, 5);
    assert_int_equal(c->cache.max_entries, 100000);
    assert_int_equal(c->cache.max_bytes, 256u << 20);
    assert_false(c->cache.honour_no_store);
    assert_null(c->http_listen);
    assert_int_equal(c->drain_timeout_ms, 5000);
}

static void test_durations(void **state)
{
    struct config *c = *state;
    set_ok(c, "introspection-timeout", "500ms");
    assert_int_equal(c->introspection_timeout_ms, 500);
    set_ok(c, "introspection-timeout", "2s");
    assert_int_equal(c->introspection_timeout_ms, 2000);
    set_ok(c, "introspection-timeout", "5m");
    assert_int_equal(c->introspection_timeout_ms, 300000);
    set_ok(c, "idle-timeout", "7");
    assert_int_equal(c->idle_timeout_ms, 7000);
    set_ok(c, "idle-timeout", "0");
    assert_int_equal(c->idle_timeout_ms, 0);
    set_ok(c, "idle-timeout", "1h");
    assert_int_equal(c->idle_timeout_ms, 3600000);
    /* seconds fields take ms only in whole seconds */
    set_ok(c, "cache-max-ttl", "2000ms");
    assert_int_equal(c->cache.max_ttl, 2);
    set_ok(c, "cache-negative-ttl", "0");
    assert_int_equal(c->cache.negative_ttl, 0);
    set_ok(c, "cache-exp-skew", "1m");
    assert_int_equal(c->cache.exp_skew, 60);

    set_bad(c, "cache-max-ttl", "1500ms", "whole number of seconds");
    set_bad(c, "introspection-timeout", "-1s", "expected a duration");
    set_bad(c, "introspection-timeout", "", "expected a duration");
    set_bad(c, "introspection-timeout", " 2s", "expected a duration");
    set_bad(c, "introspection-timeout", "2s ", "expected a duration");
    set_bad(c, "introspection-timeout", "1.5s", "expected a duration");
    set_bad(c, "introspection-timeout", "2 s", "expected a duration");
    set_bad(c, "introspection-timeout", "0", "must be between 1ms and 5m");
    set_bad(c, "introspection-timeout", "301s", "must be between 1ms and 5m");
    set_bad(c, "idle-timeout", "99999999999999999999999", "must be between");
    set_bad(c, "idle-timeout", "18446744073709551615h", "must be between");
    assert_int_equal(c->introspection_timeout_ms, 300000); /* failures change nothing */
}

static void test_duration_message(void **state)
{
    char err[CONFIG_ERR_LEN];
    assert_int_equal(config_set(*state, "cache-max-ttl", "12x", err, sizeof(err)), -1);
    assert_string_equal(err, "bad value for cache-max-ttl: '12x' (expected a duration like 300s)");
}

static void test_sizes(void **state)
{
    struct config *c = *state;
    set_ok(c, "max-response-size", "64k");
    assert_int_equal(c->max_response_size, 65536);
    set_ok(c, "max-response-size", "16m");
    assert_int_equal(c->max_response_size, 16u << 20);
    set_ok(c, "max-response-size", "2048");
    assert_int_equal(c->max_response_size, 2048);
    set_ok(c, "cache-max-bytes", "2G");
    assert_int_equal(c->cache.max_bytes, 2ull << 30);
    set_ok(c, "max-frame-size", "1m");
    assert_int_equal(c->max_frame_size, 1 << 20);

    set_bad(c, "max-response-size", "16q", "expected a size");
    set_bad(c, "max-response-size", "-1k", "expected a size");
    set_bad(c, "max-response-size", "k", "expected a size");
    set_bad(c, "max-response-size", "1023", "must be between 1k and 16m");
    set_bad(c, "max-response-size", "17m", "must be between 1k and 16m");
    set_bad(c, "max-response-size", "99999999999999999999k", "must be between");
    set_bad(c, "max-frame-size", "255", "must be between 256 and 1m");
    set_bad(c, "max-frame-size", "1048577", "must be between");
}

static void test_integers(void **state)
{
    struct config *c = *state;
    set_ok(c, "max-concurrent-introspections", "8");
    assert_int_equal(c->max_concurrent_introspections, 8);
    set_ok(c, "max-concurrent-introspections", "10000");
    assert_int_equal(c->max_concurrent_introspections, 10000);
    set_ok(c, "cache-max-entries", "1");
    assert_int_equal(c->cache.max_entries, 1);

    set_bad(c, "max-concurrent-introspections", "0", "must be between 1 and 10000");
    set_bad(c, "max-concurrent-introspections", "+3", "expected a whole number");
    set_bad(c, "max-concurrent-introspections", "0x10", "expected a whole number");
    set_bad(c, "max-concurrent-introspections", "4k", "expected a whole number");
    set_bad(c, "max-concurrent-introspections", "4294967297", "must be between");
    set_bad(c, "cache-max-entries", "0", "must be between 1 and");
    set_bad(c, "max-concurrent-introspections", "10001", "must be between 1 and 10000");
}

static void test_booleans(void **state)
{
    struct config *c = *state;
    static const char *const yes[] = {"yes", "true", "on", "1", "YES", "True"};
    static const char *const no[] = {"no", "false", "off", "0", "NO", "Off"};
    for (size_t i = 0; i < 6; i++) {
        set_ok(c, "syslog", yes[i]);
        assert_true(c->syslog);
        set_ok(c, "syslog", no[i]);
        assert_false(c->syslog);
    }
    set_bad(c, "syslog", "maybe", "expected yes/no");
    set_bad(c, "access-log", "", "expected yes/no");
    set_bad(c, "access-log", "2", "expected yes/no");
}

static void test_keywords(void **state)
{
    struct config *c = *state;
    set_ok(c, "log-level", "debug");
    assert_int_equal(c->log_level, LOG_LVL_DEBUG);
    set_ok(c, "log-level", "error");
    assert_int_equal(c->log_level, LOG_LVL_ERROR);
    set_bad(c, "log-level", "verbose", "expected error, warn, info or debug");
    set_ok(c, "client-auth", "post");
    assert_int_equal(c->client_auth, CLIENT_AUTH_POST);
    set_ok(c, "client-auth", "none");
    assert_int_equal(c->client_auth, CLIENT_AUTH_NONE);
    set_ok(c, "client-auth", "basic");
    assert_int_equal(c->client_auth, CLIENT_AUTH_BASIC);
    set_bad(c, "client-auth", "jwt", "expected basic, post or none");
}

static void test_listen(void **state)
{
    struct config *c = *state;
    static const char *const good[] = {"0.0.0.0:1", "[::1]:12345", "localhost:65535",
                                       "unix:/run/pta.sock", "[fe80::1%eth0]:80"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        set_ok(c, "listen", good[i]);
        assert_string_equal(c->listen, good[i]);
    }
    set_bad(c, "listen", "localhost", "expected host:port");
    set_bad(c, "listen", ":12345", "expected host:port");
    set_bad(c, "listen", "1.2.3.4:0", "port must be");
    set_bad(c, "listen", "1.2.3.4:65536", "port must be");
    set_bad(c, "listen", "1.2.3.4:http", "port must be");
    set_bad(c, "listen", "::1:12345", "needs brackets");
    set_bad(c, "listen", "[::1]", "expected [ipv6]:port");
    set_bad(c, "listen", "[]:1", "expected [ipv6]:port");
    set_bad(c, "listen", "unix:", "absolute");
    set_bad(c, "listen", "unix:run/x.sock", "absolute");
    set_bad(c, "listen", "", "must not be empty");
    set_bad(c, "listen", "a b:1", "without spaces");
    char longpath[200] = "unix:/";
    memset(longpath + 6, 'x', 150);
    set_bad(c, "listen", longpath, "too long");
    assert_string_equal(c->listen, "[fe80::1%eth0]:80");

    set_ok(c, "metrics-listen", "127.0.0.1:9100");
    assert_string_equal(c->http_listen, "127.0.0.1:9100");
    set_ok(c, "metrics-listen", "off");
    assert_null(c->http_listen);
    set_bad(c, "metrics-listen", "unix:/run/m.sock", "port must be");
}

static void test_url_and_strings(void **state)
{
    struct config *c = *state;
    set_ok(c, "introspection-url", "https://idp.example.com/oauth/introspect");
    set_ok(c, "introspection-url", "HTTP://127.0.0.1:8443/i#x");
    assert_string_equal(c->introspection_url, "HTTP://127.0.0.1:8443/i#x");
    set_bad(c, "introspection-url", "ftp://idp/x", "http:// or https://");
    set_bad(c, "introspection-url", "idp.example.com/x", "http:// or https://");
    set_bad(c, "introspection-url", "https://", "with a host");
    set_bad(c, "introspection-url", "https://idp/a b", "spaces");
    set_bad(c, "introspection-url", "https://idp/\r\nX-Evil: 1", "control characters");
    set_bad(c, "accept", "application/jwt\r\nX-Evil: 1", "control characters");
    set_bad(c, "accept", "", "must not be empty");

    /* optional settings are unset by an empty value */
    set_ok(c, "client-id", "agent");
    assert_string_equal(c->client_id, "agent");
    set_ok(c, "client-id", "");
    assert_null(c->client_id);
    set_ok(c, "introspection-url", "");
    assert_null(c->introspection_url);
}

static void test_unknown_and_secret_keys(void **state)
{
    char err[CONFIG_ERR_LEN];
    assert_int_equal(config_set(*state, "foo", "1", err, sizeof(err)), -1);
    assert_string_equal(err, "unknown option 'foo'");
    set_bad(*state, "client-secret", "hunter2", "client-secret-file");
    set_bad(*state, "config", "/x", "only valid on the command line");
    assert_true(config_option_is_flag("syslog"));
    assert_false(config_option_is_flag("listen"));
    assert_false(config_option_is_flag("nope"));
}

/* ---- the config file --------------------------------------------------------------------------
 */

static void test_file_syntax(void **state)
{
    struct config *c = *state;
    char path[PATH_MAX], err[CONFIG_ERR_LEN] = "";
    write_file("syntax.conf",
               "# a comment\n"
               "\n"
               "   \t\n"
               "  listen = [::1]:4000   # trailing comment\n"
               "max-concurrent-introspections 4\n"
               "log-level=debug\n"
               "syslog\n"
               "access-log = on\r\n"
               "introspection-url = https://idp/x#frag\n"
               "accept = \"application/jwt # not a comment\"   # a comment\n"
               "client-id \"my client\"\n"
               "\tcache-max-ttl\t=\t60s\t\n"
               "metrics-listen = 127.0.0.1:9100\n"
               "metrics-listen =\n",
               0600, path, sizeof(path));
    if (config_load_file(c, path, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_string_equal(c->listen, "[::1]:4000");
    assert_int_equal(c->max_concurrent_introspections, 4);
    assert_int_equal(c->log_level, LOG_LVL_DEBUG);
    assert_true(c->syslog);
    assert_true(c->access_log);
    assert_string_equal(c->introspection_url, "https://idp/x#frag");
    assert_string_equal(c->accept, "application/jwt # not a comment");
    assert_string_equal(c->client_id, "my client");
    assert_int_equal(c->cache.max_ttl, 60);
    assert_null(c->http_listen);
}

/* Loads content and expects exactly the message expect (with "PATH" standing for the file). */
static void load_fails(struct config *c, const char *content, const char *expect)
{
    char path[PATH_MAX], err[CONFIG_ERR_LEN] = "", want[CONFIG_ERR_LEN + PATH_MAX];
    write_file("bad.conf", content, 0600, path, sizeof(path));
    assert_int_equal(config_load_file(c, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s%s", path, expect);
    assert_string_equal(err, want);
}

static void test_file_errors(void **state)
{
    struct config *c = *state;
    load_fails(c, "# x\nmax-concurrent-introspections = 2\n\nfoo = bar\n",
               ":4: unknown option 'foo'");
    load_fails(c, "max-concurrent-introspections = 2\ncache-max-ttl = 12x\n",
               ":2: bad value for cache-max-ttl: '12x' (expected a duration like 300s)");
    load_fails(c, "accept = \"abc\n", ":1: unterminated quoted value");
    load_fails(c, "accept = \"abc\" def\n", ":1: unexpected text after the quoted value");
    load_fails(c, "\nlisten\n", ":2: missing value for 'listen'");
    load_fails(c, "listen = # nothing\n", ":1: bad value for listen: '' (must not be empty)");
    load_fails(c, "client-secret = hunter2\n",
               ":1: there is no option 'client-secret': the client secret is never accepted on "
               "the command line or in the config file; use client-secret-file, the "
               "PHANTOM_CLIENT_SECRET environment variable or a systemd credential named "
               "client-secret");
    load_fails(c, "check-config\n", ":1: 'check-config' is only valid on the command line");
    load_fails(c, "syslog = \n",
               ":1: bad value for syslog: '' (expected yes/no, true/false, "
               "on/off or 1/0)");

    char err[CONFIG_ERR_LEN];
    assert_int_equal(config_load_file(c, "/nonexistent/pta.conf", err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/pta.conf: No such file or directory");
    assert_int_equal(c->max_concurrent_introspections, 2); /* lines before an error did apply */
}

/* ---- the command line -------------------------------------------------------------------------
 */

static void test_cli_overrides_file(void **state)
{
    struct config *c = *state;
    char path[PATH_MAX], err[CONFIG_ERR_LEN] = "";
    enum config_action action;
    write_file("cli.conf",
               "max-concurrent-introspections = 2\nsyslog = yes\nclient-id = from-file\n"
               "log-level = warn\n",
               0600, path, sizeof(path));
    /* --config comes last, yet the file is read first and the options override it */
    int rc = PARSE(c, &action, err, "--max-concurrent-introspections", "4", "--no-syslog",
                   "--client-id=cli", "--access-log", "--config", path);
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(action, CONFIG_RUN);
    assert_int_equal(c->max_concurrent_introspections, 4);
    assert_false(c->syslog);
    assert_true(c->access_log);
    assert_string_equal(c->client_id, "cli");
    assert_int_equal(c->log_level, LOG_LVL_WARN); /* from the file, not overridden */
}

static void test_cli_flags(void **state)
{
    struct config *c = *state;
    char err[CONFIG_ERR_LEN] = "";
    enum config_action action;
    assert_int_equal(PARSE(c, &action, err, "--syslog", "--token-type-hint=yes",
                           "--cache-honour-no-store=off", "--tls-insecure-skip-verify"),
                     0);
    assert_true(c->syslog);
    assert_true(c->token_type_hint);
    assert_false(c->cache.honour_no_store);
    assert_true(c->tls_insecure_skip_verify);
    assert_int_equal(PARSE(c, &action, err, "--syslog=no", "--no-tls-insecure-skip-verify"), 0);
    assert_false(c->syslog);
    assert_false(c->tls_insecure_skip_verify);
    assert_int_equal(PARSE(c, &action, err, "--syslog=maybe"), -1);
    assert_string_equal(err, "bad value for syslog: 'maybe' (expected yes/no, true/false, on/off "
                             "or 1/0)");
}

static void test_cli_check_config(void **state)
{
    char err[CONFIG_ERR_LEN] = "";
    enum config_action action = CONFIG_RUN;
    assert_int_equal(
        PARSE(*state, &action, err, "--check-config", "--max-concurrent-introspections=3"), 0);
    assert_int_equal(action, CONFIG_CHECK);
    assert_int_equal(((struct config *)*state)->max_concurrent_introspections, 3);
}

static void test_cli_errors(void **state)
{
    struct config *c = *state;
    char err[CONFIG_ERR_LEN] = "";
    enum config_action action;
    assert_int_equal(PARSE(c, &action, err, "--bogus=1"), -1);
    assert_string_equal(err, "unknown option '--bogus'");
    assert_int_equal(PARSE(c, &action, err, "-x"), -1);
    assert_string_equal(err, "unknown option '-x'");
    /* prefixes are refused, so the secret can never land in client-secret-file nor in err */
    assert_int_equal(PARSE(c, &action, err, "--thread", "4"), -1);
    assert_string_equal(err, "unknown option '--thread'");
    assert_int_equal(PARSE(c, &action, err, "--client-secret=hunter2"), -1);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "never accepted on the command line"));
    assert_null(c->client_secret_file);
    assert_int_equal(PARSE(c, &action, err, "--max-concurrent-introspections"), -1);
    assert_string_equal(err, "option '--max-concurrent-introspections' needs a value");
    assert_int_equal(PARSE(c, &action, err, "--no-syslog=yes"), -1);
    assert_string_equal(err, "option '--no-syslog' does not take a value");
    assert_int_equal(PARSE(c, &action, err, "--max-concurrent-introspections", "2", "stray"), -1);
    assert_string_equal(err, "unexpected argument 'stray'");
    assert_int_equal(PARSE(c, &action, err, "--max-concurrent-introspections=20000"), -1);
    assert_string_equal(
        err, "bad value for max-concurrent-introspections: '20000' (must be between 1 and "
             "10000)");
    assert_int_equal(PARSE(c, &action, err, "--config", "/nonexistent/x.conf"), -1);
    assert_string_equal(err, "/nonexistent/x.conf: No such file or directory");
}

static void test_cli_twice(void **state)
{
    struct config *c = *state;
    char err[CONFIG_ERR_LEN] = "";
    enum config_action action;
    assert_int_equal(
        PARSE(c, &action, err, "--max-concurrent-introspections", "5", "--listen=[::1]:1"), 0);
    assert_int_equal(c->max_concurrent_introspections, 5);
    /* getopt's state is reset: the second call sees its first option */
    assert_int_equal(PARSE(c, &action, err, "--max-concurrent-introspections", "6"), 0);
    assert_int_equal(c->max_concurrent_introspections, 6);
    assert_string_equal(c->listen, "[::1]:1");
    assert_int_equal(PARSE(c, &action, err, "--bogus"), -1);
    assert_int_equal(PARSE(c, &action, err, "--max-concurrent-introspections=7"), 0);
    assert_int_equal(c->max_concurrent_introspections, 7);
}

static void run_help(void *arg)
{
    enum config_action action = CONFIG_RUN;
    char err[CONFIG_ERR_LEN];
    /* --help wins over an unknown option and a missing config file */
    assert_int_equal(PARSE(arg, &action, err, "--bogus", "--config=/nonexistent", "-h"), 0);
    assert_int_equal(action, CONFIG_EXIT_OK);
}

static void test_cli_help(void **state)
{
    char *out = capture_stdout(run_help, *state);
    for (size_t i = 0; config_option_name(i); i++) {
        char opt[80];
        snprintf(opt, sizeof(opt), "  --%s", config_option_name(i));
        if (!strstr(out, opt))
            fail_msg("--help lacks %s", opt);
    }
    assert_non_null(strstr(out, "--no-syslog"));
    assert_non_null(strstr(out, "(default: 127.0.0.1:12345)"));
    assert_non_null(strstr(out, "(default: 5s; 0..1h)"));
    assert_non_null(strstr(out, "There is no client-secret option"));
    assert_non_null(strstr(out, "--check-config"));
    free(out);
}

static void run_version(void *arg)
{
    enum config_action action = CONFIG_RUN;
    char err[CONFIG_ERR_LEN];
    assert_int_equal(PARSE(arg, &action, err, "--version"), 0);
    assert_int_equal(action, CONFIG_EXIT_OK);
}

static void test_cli_version(void **state)
{
    char *out = capture_stdout(run_version, *state);
    assert_true(strncmp(out, "phantom-token-agent " PTA_VERSION "\n", 21 + strlen(PTA_VERSION)) ==
                0);
    assert_non_null(strstr(out, "libcurl: libcurl/"));
    assert_non_null(strstr(out, "libev: 4."));
    assert_non_null(strstr(out, "jansson: "));
    assert_non_null(strstr(out, "OpenSSL: OpenSSL "));
    free(out);
}

/* ---- the secret and the cross-checks ----------------------------------------------------------
 */

static void finalize_ok(struct config *c)
{
    char err[CONFIG_ERR_LEN] = "";
    if (config_finalize(c, err, sizeof(err)) != 0)
        fail_msg("finalize: %s", err);
}

static void finalize_fails(struct config *c, const char *expect)
{
    char err[CONFIG_ERR_LEN] = "";
    assert_int_equal(config_finalize(c, err, sizeof(err)), -1);
    if (!strstr(err, expect))
        fail_msg("'%s' does not contain '%s'", err, expect);
}

static void with_introspection(struct config *c)
{
    set_ok(c, "introspection-url", "https://idp.example.com/introspect");
    set_ok(c, "client-id", "agent");
}

static void test_secret_file(void **state)
{
    struct config *c = *state;
    char path[PATH_MAX];
    with_introspection(c);
    write_file("secret", "s3cret\n", 0640, path, sizeof(path));
    set_ok(c, "client-secret-file", path);
    setenv("PHANTOM_CLIENT_SECRET", "from-env", 1); /* the file wins */
    finalize_ok(c);
    assert_string_equal(c->client_secret, "s3cret");

    write_file("secret", "crlf\r\n", 0600, path, sizeof(path));
    finalize_ok(c); /* a reload re-reads the file */
    assert_string_equal(c->client_secret, "crlf");
    write_file("secret", "two\n\n", 0600, path, sizeof(path));
    finalize_fails(c, "more than one line");
    write_file("secret", "world-readable", 0644, path, sizeof(path));
    finalize_ok(c); /* a warning only */
    assert_string_equal(c->client_secret, "world-readable");
    write_file("secret", "\n", 0600, path, sizeof(path));
    finalize_fails(c, "is empty");
    set_ok(c, "client-secret-file", "/nonexistent/secret");
    finalize_fails(c, "cannot read client secret file '/nonexistent/secret'");
    set_ok(c, "client-secret-file", tmpdir);
    finalize_fails(c, "is not a regular file");
}

static void test_secret_env(void **state)
{
    struct config *c = *state;
    with_introspection(c);
    setenv("PHANTOM_CLIENT_SECRET", "env-secret", 1);
    finalize_ok(c);
    assert_string_equal(c->client_secret, "env-secret");
    setenv("PHANTOM_CLIENT_SECRET", "", 1);
    finalize_fails(c, "PHANTOM_CLIENT_SECRET is set but empty");
    assert_null(c->client_secret);
}

static void test_secret_credentials(void **state)
{
    struct config *c = *state;
    char dir[PATH_MAX], path[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/creds", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_file("creds/client-secret", "cred-secret\n", 0400, path, sizeof(path));
    with_introspection(c);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    finalize_ok(c);
    assert_string_equal(c->client_secret, "cred-secret");

    /* the environment comes before the credential */
    setenv("PHANTOM_CLIENT_SECRET", "env-secret", 1);
    finalize_ok(c);
    assert_string_equal(c->client_secret, "env-secret");

    /* a credentials directory without our credential: no secret */
    unsetenv("PHANTOM_CLIENT_SECRET");
    setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
    finalize_fails(c, "client-auth basic needs a client secret");
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

static void test_cross_checks(void **state)
{
    struct config *c = *state;
    char path[PATH_MAX];
    finalize_ok(c); /* no introspection-url: nothing is needed */

    set_ok(c, "introspection-url", "https://idp/introspect");
    finalize_fails(c, "client-auth basic needs client-id");
    set_ok(c, "client-id", "agent");
    finalize_fails(c, "client-auth basic needs a client secret");
    set_ok(c, "client-auth", "post");
    finalize_fails(c, "client-auth post needs a client secret");
    set_ok(c, "client-auth", "none");
    set_ok(c, "client-id", "");
    finalize_ok(c);

    write_file("cert.pem", "x", 0600, path, sizeof(path));
    set_ok(c, "client-cert", path);
    finalize_fails(c, "client-cert and client-key must be set together");
    set_ok(c, "client-key", path);
    finalize_ok(c);
    set_ok(c, "client-key", "/nonexistent/key.pem");
    finalize_fails(c, "cannot read client-key '/nonexistent/key.pem'");
    set_ok(c, "client-key", path);
    set_ok(c, "ca-file", "/nonexistent/ca.pem");
    finalize_fails(c, "cannot read ca-file '/nonexistent/ca.pem'");
    set_ok(c, "ca-file", path);
    finalize_ok(c);

    set_ok(c, "metrics-listen", "127.0.0.1:12345");
    finalize_fails(c, "cannot be the same address");
}

static void test_config_introspect(void **state)
{
    struct config *c = *state;
    struct introspect_config ic;
    with_introspection(c);
    setenv("PHANTOM_CLIENT_SECRET", "pw", 1);
    set_ok(c, "token-type-hint", "yes");
    set_ok(c, "max-response-size", "1m");
    finalize_ok(c);
    config_introspect(c, &ic);
    assert_ptr_equal(ic.url, c->introspection_url);
    assert_string_equal(ic.accept, "application/jwt");
    assert_string_equal(ic.client_id, "agent");
    assert_string_equal(ic.client_secret, "pw");
    assert_int_equal(ic.auth, CLIENT_AUTH_BASIC);
    assert_true(ic.token_type_hint);
    assert_false(ic.insecure_skip_verify);
    assert_null(ic.ca_file);
    assert_int_equal(ic.timeout_ms, 2000);
    assert_int_equal(ic.connect_timeout_ms, 1000);
    assert_int_equal(ic.max_concurrent, 64);
    assert_int_equal(ic.max_response, 1 << 20);
}

static void test_free_twice(void **state)
{
    struct config *c = *state;
    setenv("PHANTOM_CLIENT_SECRET", "pw", 1);
    finalize_ok(c);
    config_free(c);
    assert_null(c->listen);
    assert_null(c->client_secret);
    config_free(c); /* harmless; teardown frees once more */
}

/* ---- contrib/agent.conf -----------------------------------------------------------------------
 */

/* The source tree: $PTA_SOURCE_DIR, else three levels up from this file. */
static void example_conf_path(char *out, size_t len)
{
    const char *src = getenv("PTA_SOURCE_DIR");
    if (src) {
        snprintf(out, len, "%s/contrib/agent.conf", src);
        return;
    }
    const char *suffix = "tests/unit/test_config.c";
    size_t n = strlen(__FILE__) - strlen(suffix);
    snprintf(out, len, "%.*scontrib/agent.conf", (int)n, __FILE__);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = calloc(1, 1 << 16);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    assert_true(n > 0 && n < (1 << 16) - 1);
    fclose(f);
    return buf;
}

static void test_example_conf_loads(void **state)
{
    char path[PATH_MAX], err[CONFIG_ERR_LEN] = "";
    example_conf_path(path, sizeof(path));
    if (config_load_file(*state, path, err, sizeof(err)) != 0)
        fail_msg("%s", err);
}

/* Every option is in the file as "#key = value", and with every such line uncommented the file
 * still loads and changes no default: the example documents the defaults truthfully. */
static void test_example_conf_complete(void **state)
{
    struct config *c = *state, d;
    char path[PATH_MAX], out[PATH_MAX], err[CONFIG_ERR_LEN] = "";
    example_conf_path(path, sizeof(path));
    char *text = slurp(path);
    for (size_t i = 0; config_option_name(i); i++) {
        char line[96];
        snprintf(line, sizeof(line), "\n#%s = ", config_option_name(i));
        if (!strstr(text, line))
            fail_msg("contrib/agent.conf lacks '#%s = ...'", config_option_name(i));
    }
    /* uncomment "#key = value" lines (prose comments start with "# ") */
    for (char *p = text; (p = strstr(p, "\n#")); p++)
        if (p[2] >= 'a' && p[2] <= 'z')
            p[1] = ' ';
    write_file("example.conf", text, 0600, out, sizeof(out));
    free(text);
    if (config_load_file(c, out, err, sizeof(err)) != 0)
        fail_msg("uncommented example: %s", err);

    config_defaults(&d);
    assert_string_equal(c->listen, d.listen);
    assert_int_equal(c->max_frame_size, d.max_frame_size);
    assert_int_equal(c->idle_timeout_ms, d.idle_timeout_ms);

    assert_int_equal(c->log_level, d.log_level);
    assert_int_equal(c->syslog, d.syslog);
    assert_int_equal(c->access_log, d.access_log);
    assert_string_equal(c->accept, d.accept);
    assert_int_equal(c->client_auth, d.client_auth);
    assert_int_equal(c->token_type_hint, d.token_type_hint);
    assert_int_equal(c->tls_insecure_skip_verify, d.tls_insecure_skip_verify);
    assert_int_equal(c->introspection_timeout_ms, d.introspection_timeout_ms);
    assert_int_equal(c->connect_timeout_ms, d.connect_timeout_ms);
    assert_int_equal(c->max_concurrent_introspections, d.max_concurrent_introspections);
    assert_int_equal(c->max_response_size, d.max_response_size);
    assert_int_equal(c->cache.max_ttl, d.cache.max_ttl);
    assert_int_equal(c->cache.negative_ttl, d.cache.negative_ttl);
    assert_int_equal(c->cache.exp_skew, d.cache.exp_skew);
    assert_int_equal(c->cache.max_entries, d.cache.max_entries);
    assert_int_equal(c->cache.max_bytes, d.cache.max_bytes);
    assert_int_equal(c->cache.honour_no_store, d.cache.honour_no_store);
    assert_int_equal(c->drain_timeout_ms, d.drain_timeout_ms);
    config_free(&d);
}

/* The reload rule: restart-only options keep the running value, live ones take the new one. */
static void test_reload_rules(void **state)
{
    struct config *running = *state, next;
    config_defaults(&next);
    set_ok(running, "http-listen", "127.0.0.1:9100");
    set_ok(&next, "listen", "127.0.0.1:2222");
    set_ok(&next, "max-frame-size", "1024");
    set_ok(&next, "syslog", "yes");
    set_ok(&next, "metrics-listen", "off");
    set_ok(&next, "admin-listen", "unix:/run/pta-admin.sock");
    set_ok(&next, "access-log", "yes");
    set_ok(&next, "cache-max-ttl", "60s");
    assert_int_equal(config_keep_restart_only(&next, running), 5);
    assert_string_equal(next.listen, running->listen);
    assert_int_equal(next.max_frame_size, 16380);
    assert_false(next.syslog);
    assert_string_equal(next.http_listen, "127.0.0.1:9100");
    assert_ptr_not_equal(next.http_listen, running->http_listen); /* a copy, owned by next */
    assert_null(next.admin_listen);
    assert_true(next.access_log);
    assert_int_equal(next.cache.max_ttl, 60);
    assert_int_equal(config_keep_restart_only(&next, running), 0); /* nothing left to keep */
    config_free(&next);

    /* on reload the ignored value is put back first: it can no longer refuse the reload */
    char err[CONFIG_ERR_LEN] = "";
    config_defaults(&next);
    set_ok(&next, "listen", "nosuchhost.invalid:1");
    assert_int_equal(config_finalize(&next, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "nosuchhost.invalid"));
    assert_int_equal(config_keep_restart_only(&next, running), 2); /* listen, http-listen */
    assert_int_equal(config_finalize_reload(&next, err, sizeof(err)), 0);
    assert_string_equal(next.listen, running->listen);
    config_free(&next);

    assert_true(config_option_restart_only("max-frame-size"));
    assert_true(config_option_restart_only("metrics-listen"));
    assert_true(config_option_restart_only("listen"));
    assert_false(config_option_restart_only("admin-token-file")); /* re-read on SIGHUP */
    assert_false(config_option_restart_only("log-level"));
}

static void test_http_listen_alias(void **state)
{
    struct config *c = *state;
    char err[CONFIG_ERR_LEN] = "";
    enum config_action action;
    assert_int_equal(PARSE(c, &action, err, "--metrics-listen=127.0.0.1:1"), 0);
    assert_string_equal(c->http_listen, "127.0.0.1:1");
    assert_int_equal(PARSE(c, &action, err, "--http-listen", "127.0.0.1:2"), 0);
    assert_string_equal(c->http_listen, "127.0.0.1:2");
    assert_int_equal(PARSE(c, &action, err, "--metrics-listen=localhost"), -1);
    assert_non_null(strstr(err, "bad value for http-listen: 'localhost' (expected host:port)"));
    set_ok(c, "metrics-listen", "localhost:9100"); /* a name: resolved by finalize, as at start */
    finalize_ok(c);
    set_ok(c, "http-listen", "localhost:12345");
    set_ok(c, "listen", "127.0.0.1:12345");
    finalize_fails(c, "listen and http-listen cannot be the same address");
    set_ok(c, "http-listen", "0.0.0.0:12345"); /* the wildcard takes 127.0.0.1's port too */
    finalize_fails(c, "listen and http-listen cannot be the same address");
    set_ok(c, "http-listen", "0.0.0.0:12346");
    finalize_ok(c);
}

static void test_admin_options(void **state)
{
    struct config *c = *state;
    char path[PATH_MAX];
    set_ok(c, "admin-listen", "unix:/run/pta-admin.sock");
    assert_string_equal(c->admin_listen, "unix:/run/pta-admin.sock");
    set_bad(c, "admin-listen", "127.0.0.1:1", "expected unix:/absolute/path");
    set_ok(c, "admin-listen", "off");
    assert_null(c->admin_listen);
    /* two spellings of one socket path collide (the admin socket took over SPOP's) */
    set_ok(c, "listen", "unix:/tmp/pta/spop.sock");
    set_ok(c, "admin-listen", "unix:/tmp/pta//spop.sock");
    finalize_fails(c, "listen and admin-listen cannot be the same address");
    set_ok(c, "admin-listen", "off");
    set_ok(c, "listen", "127.0.0.1:12345");

    write_file("admin-token", "adm1n-t0ken\n", 0640, path, sizeof(path));
    set_ok(c, "admin-token-file", path);
    finalize_ok(c);
    assert_string_equal(c->admin_token, "adm1n-t0ken");
    write_file("admin-token", "adm1n-t0ken\n", 0644, path, sizeof(path));
    finalize_fails(c, "admin token file");
    assert_null(c->admin_token); /* failed closed: no stale token kept */
    /* on reload the same file switches the admin API off instead of refusing the reload */
    char err[CONFIG_ERR_LEN] = "";
    write_file("admin-token", "adm1n-t0ken\n", 0640, path, sizeof(path));
    finalize_ok(c);
    assert_non_null(c->admin_token);
    write_file("admin-token", "adm1n-t0ken\n", 0644, path, sizeof(path));
    assert_int_equal(config_finalize_reload(c, err, sizeof(err)), 0);
    assert_null(c->admin_token);
    set_ok(c, "admin-token-file", "");
    finalize_ok(c);
    assert_null(c->admin_token);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_durations),
        T(test_duration_message),
        T(test_sizes),
        T(test_integers),
        T(test_booleans),
        T(test_keywords),
        T(test_listen),
        T(test_url_and_strings),
        T(test_unknown_and_secret_keys),
        T(test_file_syntax),
        T(test_file_errors),
        T(test_cli_overrides_file),
        T(test_cli_flags),
        T(test_cli_check_config),
        T(test_cli_errors),
        T(test_cli_twice),
        T(test_cli_help),
        T(test_cli_version),
        T(test_secret_file),
        T(test_secret_env),
        T(test_secret_credentials),
        T(test_cross_checks),
        T(test_config_introspect),
        T(test_free_twice),
        T(test_example_conf_loads),
        T(test_example_conf_complete),
        T(test_reload_rules),
        T(test_http_listen_alias),
        T(test_admin_options),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
