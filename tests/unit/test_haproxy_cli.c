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

struct fixture {
    char dir[64], sock[96], map[96], cfg[96], master_sock[96];
    const char *haproxy;
    pid_t master;
    struct ev_loop *loop;
    /* what the client reported */
    int ready_calls, stale_calls;
    long last_pid;
    bool last_resync;
    struct hcli *cli;
    const char *stale_line; /* queued from on_stale */
};

static const char *haproxy_path(void)
{
    const char *p = getenv("PTA_HAPROXY");
    if (p && *p)
        return access(p, X_OK) == 0 ? p : NULL;
    return access("/usr/sbin/haproxy", X_OK) == 0 ? "/usr/sbin/haproxy" : NULL;
}

static void write_cfg(struct fixture *f)
{
    FILE *fp = fopen(f->map, "w");
    assert_non_null(fp);
    fclose(fp);
    fp = fopen(f->cfg, "w");
    assert_non_null(fp);
    fprintf(fp,
            "global\n"
            "    stats socket %s mode 600 level admin\n"
            "defaults\n"
            "    mode http\n"
            "    timeout connect 5s\n"
            "    timeout client 30s\n"
            "    timeout server 30s\n"
            "frontend f\n"
            "    bind unix@%s/fe.sock\n"
            "    http-request return status 200 content-type text/plain lf-string "
            "\"%%[req.hdr(x-k),map(%s)]\"\n",
            f->sock, f->dir, f->map);
    fclose(fp);
}

static void start_haproxy(struct fixture *f)
{
    unlink(f->sock);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execl(f->haproxy, f->haproxy, "-W", "-db", "-S", f->master_sock, "-f", f->cfg,
              (char *)NULL);
        _exit(127);
    }
    f->master = pid;
}

static void stop_haproxy(struct fixture *f)
{
    if (f->master <= 0)
        return;
    kill(f->master, SIGTERM);
    int st;
    waitpid(f->master, &st, 0);
    f->master = 0;
}

/* A blocking one-shot command, for checking what HAProxy holds. */
static int cli_oneshot(const struct fixture *f, const char *cmd, char *out, size_t cap)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", f->sock);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (write(fd, cmd, strlen(cmd)) < 0) {
        close(fd);
        return -1;
    }
    shutdown(fd, SHUT_WR); /* the master CLI waits for more otherwise */
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd, out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fd);
    return 0;
}

/* The master handles SIGUSR2 once it is in its loop, which is when its CLI answers. */
static void wait_master_ready(const struct fixture *f)
{
    char out[4096];
    struct fixture m = *f;
    snprintf(m.sock, sizeof(m.sock), "%s", f->master_sock);
    for (int i = 0; i < 2000; i++) {
        if (cli_oneshot(&m, "show proc\n", out, sizeof(out)) == 0 && strstr(out, "worker"))
            return;
        usleep(10000);
    }
    fail_msg("the master CLI never answered");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs the loop until cond(f) holds; fails after a generous deadline (a loaded box is slow). */
static void run_until(struct fixture *f, bool (*cond)(struct fixture *f), const char *what)
{
    double end = now_s() + 20.;
    while (!cond(f)) {
        if (now_s() > end)
            fail_msg("timed out waiting for %s", what);
        ev_run(f->loop, EVRUN_ONCE);
    }
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
    f.haproxy = haproxy_path();
    if (!f.haproxy) {
        fprintf(stderr, "SKIP test_haproxy_cli: no haproxy binary (set PTA_HAPROXY)\n");
        *state = NULL;
        return 0;
    }
    snprintf(f.dir, sizeof(f.dir), "/tmp/pta-hcli.XXXXXX");
    assert_non_null(mkdtemp(f.dir));
    snprintf(f.sock, sizeof(f.sock), "%s/stats.sock", f.dir);
    snprintf(f.map, sizeof(f.map), "%s/fastpath.map", f.dir);
    snprintf(f.cfg, sizeof(f.cfg), "%s/haproxy.cfg", f.dir);
    snprintf(f.master_sock, sizeof(f.master_sock), "%s/master.sock", f.dir);
    write_cfg(&f);
    f.loop = ev_loop_new(EVFLAG_AUTO);
    start_haproxy(&f);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (!f)
        return 0;
    hcli_free(f->cli);
    stop_haproxy(f);
    ev_loop_destroy(f->loop);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    return system(cmd) == 0 ? 0 : -1;
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
    long len =
        fp_cmd_put(line, sizeof(line), replace, "", f->map, key, 1900000000, jwt, strlen(jwt));
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
    struct hcli_settings s = {.address = f->sock, .probe_interval = 0.2, .timeout = 5.};
    f->cli = hcli_new(f->loop, &s, &OPS, f, err, sizeof(err));
    assert_non_null(f->cli);
    run_until(f, is_ready, "the first session");
    assert_int_equal(f->ready_calls, 1);
    assert_true(f->last_resync);
    long first_pid = f->last_pid;
    assert_true(first_pid > 0);
    assert_true(first_pid != f->master); /* the worker, not the master */

    /* writes: three entries, one replaced, one deleted, one refused (unknown map) */
    for (unsigned i = 0; i < 3; i++)
        put_line(f, false, i, "a.b.c");
    put_line(f, true, 1, "x.y.z");
    char line[FP_CMD_MAX], key[FP_KEY_HEX + 1];
    snprintf(key, sizeof(key), "%032X", 2u);
    long len = fp_cmd_del(line, sizeof(line), "", f->map, key);
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
    snprintf(cmd, sizeof(cmd), "show map %s\n", f->map);
    assert_int_equal(cli_oneshot(f, cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "00000000000000000000000000000000 1900000000:a.b.c"));
    assert_non_null(strstr(out, "00000000000000000000000000000001 1900000000:x.y.z"));
    assert_null(strstr(out, "00000000000000000000000000000002"));

    /* malformed lines are refused before any queueing */
    assert_int_equal(hcli_send(f->cli, "show info", 9), -1);
    assert_int_equal(hcli_send(f->cli, "a\nb\n", 4), -1);

    /* a reload: the open session still reaches the old worker; the process check notices */
    char clear[256];
    long cl = fp_cmd_clear(clear, sizeof(clear), "", f->map);
    assert_true(cl > 0);
    f->stale_line = clear;
    wait_master_ready(f);
    kill(f->master, SIGUSR2);
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
    stop_haproxy(f);
    run_until(f, is_down, "the session to end");
    hcli_free(f->cli);
    s.max_queue = 3;
    f->cli = hcli_new(f->loop, &s, &OPS, f, err, sizeof(err));
    assert_non_null(f->cli);
    int before = f->ready_calls;
    for (unsigned i = 0; i < 3; i++)
        put_line(f, false, 10 + i, "q.q.q");
    len = fp_cmd_del(line, sizeof(line), "", f->map, key);
    assert_int_equal(hcli_send(f->cli, line, (size_t)len), -1);
    hcli_get_stats(f->cli, &st);
    assert_int_equal(st.dropped, 3);
    assert_int_equal(st.queued, 0);

    /* and it comes back: a new session, a re-sync */
    start_haproxy(f);
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
        .address = f->master_sock, .route = "@1", .probe_interval = 0.2, .timeout = 5.};
    f->cli = hcli_new(f->loop, &s, &OPS, f, err, sizeof(err));
    assert_non_null(f->cli);
    run_until(f, is_ready, "the first session");
    long first_pid = f->last_pid;
    assert_true(first_pid > 0 && first_pid != f->master);
    char key[FP_KEY_HEX + 1], line[FP_CMD_MAX];
    snprintf(key, sizeof(key), "%032X", 5u);
    long len = fp_cmd_put(line, sizeof(line), false, "@1", f->map, key, 1900000000, "m.a.p", 5);
    assert_int_equal(hcli_send(f->cli, line, (size_t)len), 0);
    want_answered = 1;
    run_until(f, all_answered, "the routed answer");
    struct hcli_stats st;
    hcli_get_stats(f->cli, &st);
    assert_int_equal(st.errors, 0);
    char out[8192], cmd[256];
    snprintf(cmd, sizeof(cmd), "show map %s\n", f->map);
    assert_int_equal(cli_oneshot(f, cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "00000000000000000000000000000005 1900000000:m.a.p"));

    /* 3.x's master re-executes itself and drops its CLI sessions; until the new worker is up "@1"
     * may still lead to the old one: wait for the session whose Pid changed. */
    wait_master_ready(f);
    kill(f->master, SIGUSR2);
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
