/* haproxy_cli.c against a real HAProxy (started here, master-worker, stats socket in a temporary
 * directory): a session, map writes and their answers, a refused command, a reload noticed by the
 * process check, a restart, the bounded queue. Skipped with a message when no haproxy binary is
 * found (PTA_HAPROXY, else /usr/sbin/haproxy). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <fcntl.h>

#include "../../agent/fastpath.h"
#include "../../agent/haproxy_cli.h"
#include "haproxy_fixture.h"

struct fixture {
    struct hp hp;
    struct ev_loop *loop;
    /* what the client reported */
    int ready_calls, stale_calls;
    long last_pid;
    bool last_resync;
    struct hcli *cli;
    const char *stale_line; /* queued from on_stale */
};

static bool call_cond(void *ud);
static bool (*cur_cond)(struct fixture *f);

static void run_until(struct fixture *f, bool (*cond)(struct fixture *f), const char *what)
{
    cur_cond = cond;
    if (hp_run_until(f->loop, call_cond, f) < 0)
        fail_msg("timed out waiting for %s", what);
}

static bool call_cond(void *ud)
{
    return cur_cond(ud);
}

static int cli_oneshot(const struct fixture *f, const char *cmd, char *out, size_t cap)
{
    return hp_oneshot(f->hp.sock, cmd, out, cap);
}

static void wait_master_ready(const struct fixture *f)
{
    if (hp_wait_master(&f->hp) < 0)
        fail_msg("the master CLI never answered");
}

static void on_ready(void *ud, struct hcli *c, long pid, bool resync)
{
    (void)c;
    struct fixture *f = ud;
    f->ready_calls++;
    f->last_pid = pid;
    f->last_resync = resync;
}

static void on_stale(void *ud, struct hcli *c)
{
    struct fixture *f = ud;
    f->stale_calls++;
    if (f->stale_line)
        hcli_send(c, f->stale_line, strlen(f->stale_line));
}

static const struct hcli_ops OPS = {.on_ready = on_ready, .on_stale = on_stale};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    if (hp_prepare(&f.hp) < 0) {
        fprintf(stderr, "SKIP test_haproxy_cli: no haproxy binary (set PTA_HAPROXY)\n");
        *state = NULL;
        return 0;
    }
    f.loop = ev_loop_new(EVFLAG_AUTO);
    hp_start(&f.hp);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (!f)
        return 0;
    hcli_free(f->cli);
    f->cli = NULL;
    hp_cleanup(&f->hp);
    ev_loop_destroy(f->loop);
    return 0;
}

static bool is_ready(struct fixture *f)
{
    struct hcli_stats st;
    hcli_get_stats(f->cli, &st);
    return st.ready && f->ready_calls > 0;
}

static uint64_t want_answered;
static bool all_answered(struct fixture *f)
{
    struct hcli_stats st;
    hcli_get_stats(f->cli, &st);
    return st.answered >= want_answered && st.in_flight == 0;
}

static int ready_calls_wanted;
static bool ready_again(struct fixture *f)
{
    struct hcli_stats st;
    hcli_get_stats(f->cli, &st);
    return f->ready_calls >= ready_calls_wanted && st.ready;
}

static long old_pid;
static bool ready_new_pid(struct fixture *f)
{
    struct hcli_stats st;
    hcli_get_stats(f->cli, &st);
    return st.ready && f->last_pid != old_pid;
}

static bool is_down(struct fixture *f)
{
    struct hcli_stats st;
    hcli_get_stats(f->cli, &st);
    return !st.ready;
}

static void put_line(struct fixture *f, bool replace, unsigned n, const char *jwt)
{
    char key[FP_KEY_HEX + 1], line[FP_CMD_MAX];
    snprintf(key, sizeof(key), "%032X", n);
    long len = fp_cmd_put(line, sizeof(line), replace, "", f->hp.map, key, 1900000000, FP_VALUE_JWT,
                          jwt, strlen(jwt));
    assert_true(len > 0);
    assert_int_equal(hcli_send(f->cli, line, (size_t)len), 0);
}

static void session_writes_reload_restart(void **state)
{
    struct fixture *f = *state;
    if (!f) {
        skip();
        return;
    }
    char err[160];
    struct hcli_settings s = {.address = f->hp.sock, .probe_interval = 0.2, .timeout = 5.};
    f->cli = hcli_new(f->loop, &s, &OPS, f, err, sizeof(err));
    assert_non_null(f->cli);
    run_until(f, is_ready, "the first session");
    assert_int_equal(f->ready_calls, 1);
    assert_true(f->last_resync);
    long first_pid = f->last_pid;
    assert_true(first_pid > 0);
    assert_true(first_pid != f->hp.master); /* the worker, not the master */
    /* the version read from "show info" is the one "show version" prints (the value format) */
    char ver[256];
    int major = 0, minor = 0;
    assert_int_equal(cli_oneshot(f, "show version\n", ver, sizeof(ver)), 0);
    assert_int_equal(sscanf(ver, "%d.%d", &major, &minor), 2);
    assert_true(major >= 2);
    assert_int_equal(hcli_version(f->cli), major * 100 + minor);

    /* writes: three entries, one replaced, one deleted, one refused (unknown map) */
    for (unsigned i = 0; i < 3; i++)
        put_line(f, false, i, "a.b.c");
    put_line(f, true, 1, "x.y.z");
    char line[FP_CMD_MAX], key[FP_KEY_HEX + 1];
    snprintf(key, sizeof(key), "%032X", 2u);
    long len = fp_cmd_del(line, sizeof(line), "", f->hp.map, key);
    assert_int_equal(hcli_send(f->cli, line, (size_t)len), 0);
    len = fp_cmd_del(line, sizeof(line), "", "/no/such.map", key);
    assert_int_equal(hcli_send(f->cli, line, (size_t)len), 0);
    want_answered = 6;
    run_until(f, all_answered, "six answers");
    struct hcli_stats st;
    hcli_get_stats(f->cli, &st);
    assert_int_equal(st.sent, 6);
    assert_int_equal(st.errors, 1);

    char out[8192], cmd[256];
    snprintf(cmd, sizeof(cmd), "show map %s\n", f->hp.map);
    assert_int_equal(cli_oneshot(f, cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "00000000000000000000000000000000 1900000000:a.b.c"));
    assert_non_null(strstr(out, "00000000000000000000000000000001 1900000000:x.y.z"));
    assert_null(strstr(out, "00000000000000000000000000000002"));

    /* malformed lines are refused before any queueing */
    assert_int_equal(hcli_send(f->cli, "show info", 9), -1);
    assert_int_equal(hcli_send(f->cli, "a\nb\n", 4), -1);

    /* a reload: the open session still reaches the old worker; the process check notices */
    char clear[256];
    long cl = fp_cmd_clear(clear, sizeof(clear), "", f->hp.map);
    assert_true(cl > 0);
    f->stale_line = clear;
    wait_master_ready(f);
    kill(f->hp.master, SIGUSR2);
    ready_calls_wanted = 2;
    run_until(f, ready_again, "a session to the reloaded process");
    assert_int_equal(f->stale_calls, 1);
    assert_true(f->last_resync);
    assert_true(f->last_pid != first_pid);
    long second_pid = f->last_pid;
    put_line(f, false, 7, "n.e.w");
    hcli_get_stats(f->cli, &st);
    want_answered = st.answered + 1;
    run_until(f, all_answered, "an answer from the new process");
    assert_int_equal(cli_oneshot(f, cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "00000000000000000000000000000007 1900000000:n.e.w"));

    /* HAProxy stops: the session is lost, lines queue up to the bound, then all are dropped */
    f->stale_line = NULL;
    hp_stop(&f->hp);
    run_until(f, is_down, "the session to end");
    hcli_free(f->cli);
    s.max_queue = 3;
    f->cli = hcli_new(f->loop, &s, &OPS, f, err, sizeof(err));
    assert_non_null(f->cli);
    int before = f->ready_calls;
    for (unsigned i = 0; i < 3; i++)
        put_line(f, false, 10 + i, "q.q.q");
    len = fp_cmd_del(line, sizeof(line), "", f->hp.map, key);
    assert_int_equal(hcli_send(f->cli, line, (size_t)len), -1);
    hcli_get_stats(f->cli, &st);
    assert_int_equal(st.dropped, 3);
    assert_int_equal(st.queued, 0);

    /* and it comes back: a new session, a re-sync */
    hp_start(&f->hp);
    ready_calls_wanted = before + 1;
    run_until(f, ready_again, "a session after the restart");
    assert_true(f->last_resync);
    assert_true(f->last_pid != second_pid);
}

/* The master CLI: every command routed to the current worker ("@1"); after a reload "@1" leads to
 * the new worker, whose Pid the process check sees. */
static void master_cli_route(void **state)
{
    struct fixture *f = *state;
    if (!f) {
        skip();
        return;
    }
    char err[160];
    struct hcli_settings s = {
        .address = f->hp.master_sock, .route = "@1", .probe_interval = 0.2, .timeout = 5.};
    f->cli = hcli_new(f->loop, &s, &OPS, f, err, sizeof(err));
    assert_non_null(f->cli);
    run_until(f, is_ready, "the first session");
    long first_pid = f->last_pid;
    assert_true(first_pid > 0 && first_pid != f->hp.master);
    char key[FP_KEY_HEX + 1], line[FP_CMD_MAX];
    snprintf(key, sizeof(key), "%032X", 5u);
    long len = fp_cmd_put(line, sizeof(line), false, "@1", f->hp.map, key, 1900000000, FP_VALUE_JWT,
                          "m.a.p", 5);
    assert_int_equal(hcli_send(f->cli, line, (size_t)len), 0);
    want_answered = 1;
    run_until(f, all_answered, "the routed answer");
    struct hcli_stats st;
    hcli_get_stats(f->cli, &st);
    assert_int_equal(st.errors, 0);
    char out[8192], cmd[256];
    snprintf(cmd, sizeof(cmd), "show map %s\n", f->hp.map);
    assert_int_equal(cli_oneshot(f, cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "00000000000000000000000000000005 1900000000:m.a.p"));

    /* 3.x's master re-executes itself and drops its CLI sessions; until the new worker is up "@1"
     * may still lead to the old one: wait for the session whose Pid changed. */
    wait_master_ready(f);
    kill(f->hp.master, SIGUSR2);
    old_pid = first_pid;
    run_until(f, ready_new_pid, "a session routed to the new worker");
    assert_true(f->last_resync);
    assert_true(f->last_pid != first_pid);
}

static void bad_addresses(void **state)
{
    (void)state;
    char err[160];
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static const char *bad[] = {"",        "unix:",  "localhost:9999", "127.0.0.1:0", "127.0.0.1:x",
                                "[::1:99", "1.2.3.4"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct hcli_settings s = {.address = bad[i]};
        err[0] = '\0';
        assert_null(hcli_new(loop, &s, &OPS, NULL, err, sizeof(err)));
        assert_true(strlen(err) > 0);
    }
    struct hcli_settings s = {.address = "/x.sock", .route = "@1;show"};
    assert_null(hcli_new(loop, &s, &OPS, NULL, err, sizeof(err)));
    s.route = "@!123";
    s.address = "[::1]:9999";
    struct hcli *c = hcli_new(loop, &s, &OPS, NULL, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(hcli_route(c), "@!123");
    assert_string_equal(hcli_address(c), "[::1]:9999");
    hcli_free(c);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(session_writes_reload_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(master_cli_route, setup, teardown),
        cmocka_unit_test(bad_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
