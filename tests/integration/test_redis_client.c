/* redis_client against a real redis-server that the test starts on a free loopback port (ready
 * when it answers PING): GET/SET PX/PTTL, SELECT, AUTH with an ACL user, a command timeout while
 * the server is paused (CLIENT PAUSE) with the late reply dropped, the in-flight cap, cancel,
 * free with commands pending, the server killed (errors, state down) and restarted (reconnect,
 * re-subscribe), pub/sub. Exits 77 (ctest: skipped) when redis-server is not installed. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "redis_client.h"
#include "redis_server.h"

static struct server srv, srv_auth;

struct result {
    bool called;
    int calls;
    enum rc_result r;
    char str[256];
    size_t len;
    long long integer;
    uint64_t late_at_call; /* the client's late-reply count when the callback ran */
    const struct redis_client *rc;
};

static bool is_called(void *arg)
{
    return ((struct result *)arg)->called;
}

static void on_result(void *ud, const struct rc_reply *r)
{
    struct result *res = ud;
    res->called = true;
    res->calls++;
    res->r = r->result;
    res->len = r->len < sizeof(res->str) ? r->len : sizeof(res->str);
    if (r->str)
        memcpy(res->str, r->str, res->len);
    res->integer = r->integer;
    if (res->rc) {
        struct rc_stats st;
        redis_client_get_stats(res->rc, &st);
        res->late_at_call = st.late;
    }
}

struct states {
    int up, down, sub_up, sub_down;
};

static void on_state(void *ud, bool subscriber, bool up)
{
    struct states *s = ud;
    if (subscriber)
        up ? s->sub_up++ : s->sub_down++;
    else
        up ? s->up++ : s->down++;
}

static const struct redis_client_ops state_ops = {.state = on_state};

struct wait_n {
    const int *v;
    int n;
};

static bool reached(void *arg)
{
    struct wait_n *w = arg;
    return *w->v >= w->n;
}

static void wait_count(const int *v, int n)
{
    struct wait_n w = {v, n};
    run_until(reached, &w, 20);
}

static struct redis_client *client(const struct server *s, struct states *st,
                                   struct redis_client_settings *set)
{
    struct redis_client_settings d;
    if (!set) {
        redis_client_settings_default(&d);
        set = &d;
    }
    set->url.port = s->port;
    set->backoff_min_ms = 20;
    set->backoff_max_ms = 200;
    char err[256];
    struct redis_client *rc = redis_client_new(loop, set, &state_ops, st, err, sizeof(err));
    if (!rc)
        fail_msg("redis_client_new: %s", err);
    return rc;
}

static void sync_cmd(struct redis_client *rc, struct result *res, int argc, const char **argv,
                     const size_t *len)
{
    memset(res, 0, sizeof(*res));
    assert_non_null(redis_command(rc, argc, argv, len, 5000, on_result, res));
    run_until(is_called, res, 20);
}

/* ---- tests ---- */

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(rc_backoff_next(0, 100, 5000), 100);
    assert_int_equal(rc_backoff_next(100, 100, 5000), 200);
    assert_int_equal(rc_backoff_next(2000, 100, 5000), 4000);
    assert_int_equal(rc_backoff_next(4000, 100, 5000), 5000);
    assert_int_equal(rc_backoff_next(5000, 100, 5000), 5000);
    assert_int_equal(rc_backoff_next(UINT32_MAX, 100, 5000), 5000);
    assert_int_equal(rc_backoff_next(50, 100, 10), 100); /* max below min: min wins */
}

static void test_get_set(void **state)
{
    (void)state;
    struct states st = {0};
    struct redis_client *rc = client(&srv, &st, NULL);
    wait_count(&st.up, 1);
    assert_true(redis_client_up(rc));

    static const char val[] = "bin\0ary\xff value";
    struct result res = {0};
    assert_non_null(redis_set_px(rc, "k1", 2, val, sizeof(val), 5000, on_result, &res));
    run_until(is_called, &res, 20);
    assert_int_equal(res.r, RC_OK);
    assert_memory_equal(res.str, "OK", 2);

    memset(&res, 0, sizeof(res));
    assert_non_null(redis_get(rc, "k1", 2, on_result, &res));
    run_until(is_called, &res, 20);
    assert_int_equal(res.r, RC_OK);
    assert_int_equal(res.len, sizeof(val));
    assert_memory_equal(res.str, val, sizeof(val));

    memset(&res, 0, sizeof(res));
    assert_non_null(redis_get(rc, "nope", 4, on_result, &res));
    run_until(is_called, &res, 20);
    assert_int_equal(res.r, RC_NIL);

    const char *pttl[] = {"PTTL", "k1"};
    size_t pl[] = {4, 2};
    sync_cmd(rc, &res, 2, pttl, pl);
    assert_int_equal(res.r, RC_OK);
    assert_true(res.integer > 0 && res.integer <= 5000);

    const char *incr[] = {"INCR", "k1"};
    sync_cmd(rc, &res, 2, incr, pl);
    assert_int_equal(res.r, RC_ERROR);
    assert_non_null(strstr(res.str, "ERR"));

    assert_null(redis_set_px(rc, "k1", 2, "v", 1, 0, on_result, &res)); /* PX 0 refused */

    memset(&res, 0, sizeof(res));
    assert_non_null(redis_del(rc, "nope", 4, on_result, &res));
    run_until(is_called, &res, 20);
    assert_int_equal(res.r, RC_OK);
    assert_int_equal(res.integer, 0); /* nothing to delete */

    struct rc_stats s;
    redis_client_get_stats(rc, &s);
    assert_int_equal(s.hits, 1);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.errors, 1);
    assert_int_equal(s.commands, 6);
    assert_int_equal(s.latency_count, 6);
    assert_int_equal(s.connects, 1);
    assert_int_equal(s.inflight, 0);
    uint64_t sum = 0;
    for (int i = 0; i <= RC_LATENCY_BUCKETS; i++)
        sum += s.latency_le[i];
    assert_int_equal(sum, 6);
    redis_client_free(rc);
}

static void test_select_db(void **state)
{
    (void)state;
    struct states st = {0};
    struct redis_client_settings set;
    redis_client_settings_default(&set);
    set.url.db = 3;
    struct redis_client *rc = client(&srv, &st, &set);
    struct result res = {0};
    /* Accepted while connecting: it goes out after SELECT. */
    assert_non_null(redis_set_px(rc, "in-db3", 6, "x", 1, 60000, on_result, &res));
    run_until(is_called, &res, 20);
    assert_int_equal(res.r, RC_OK);
    assert_int_equal(st.up, 1);
    redisReply *r = side(&srv, "GET in-db3");
    assert_int_equal(r->type, REDIS_REPLY_NIL); /* not in db 0 */
    freeReplyObject(r);
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
    freeReplyObject(redisCommand(c, "SELECT 3"));
    r = redisCommand(c, "GET in-db3");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    redisFree(c);
    redis_client_free(rc);
}

static void test_auth(void **state)
{
    (void)state;
    struct states st = {0};
    struct redis_client_settings set;
    redis_client_settings_default(&set);
    strcpy(set.url.user, "agent");
    set.password = "s3cret";
    struct redis_client *rc = client(&srv_auth, &st, &set);
    wait_count(&st.up, 1);
    struct result res = {0};
    assert_non_null(redis_get(rc, "x", 1, on_result, &res));
    run_until(is_called, &res, 20);
    assert_int_equal(res.r, RC_NIL);
    redis_client_free(rc);

    /* A wrong password: the handshake fails, the client never counts as up, and a command sent
     * meanwhile gets an error, not a value. */
    struct states st2 = {0};
    set.password = "wrong";
    rc = client(&srv_auth, &st2, &set);
    memset(&res, 0, sizeof(res));
    assert_non_null(redis_get(rc, "x", 1, on_result, &res));
    run_until(is_called, &res, 20);
    assert_true(res.r == RC_ERROR || res.r == RC_DOWN);
    assert_int_equal(st2.up, 0);
    assert_false(redis_client_up(rc));
    redis_client_free(rc);
}

static bool late_seen(void *arg)
{
    struct rc_stats s;
    redis_client_get_stats(arg, &s);
    return s.late >= 1;
}

static void test_timeout_and_late_reply(void **state)
{
    (void)state;
    struct states st = {0};
    struct redis_client *rc = client(&srv, &st, NULL); /* 100 ms per command */
    wait_count(&st.up, 1);
    pause_server(&srv, 1500);
    struct result res = {.rc = rc};
    assert_non_null(redis_get(rc, "k1", 2, on_result, &res));
    run_until(is_called, &res, 20);
    assert_int_equal(res.r, RC_TIMEOUT);
    assert_int_equal(res.late_at_call, 0); /* heard before the server answered */
    struct rc_stats s;
    redis_client_get_stats(rc, &s);
    assert_int_equal(s.timeouts, 1);
    assert_int_equal(s.inflight, 1); /* the record waits for the late reply */

    /* The server wakes up: the late reply is dropped, the callback is not called again. */
    run_until(late_seen, rc, 20);
    assert_int_equal(res.calls, 1);
    redis_client_get_stats(rc, &s);
    assert_int_equal(s.inflight, 0);

    /* And the connection is still good. */
    memset(&res, 0, sizeof(res));
    assert_non_null(redis_get(rc, "nope", 4, on_result, &res));
    run_until(is_called, &res, 20);
    assert_int_equal(res.r, RC_NIL);
    redis_client_free(rc);
}

static bool none_inflight(void *arg)
{
    struct rc_stats s;
    redis_client_get_stats(arg, &s);
    return s.inflight == 0;
}

static void test_inflight_cap_and_cancel(void **state)
{
    (void)state;
    struct states st = {0};
    struct redis_client_settings set;
    redis_client_settings_default(&set);
    set.max_inflight = 2;
    set.command_timeout_ms = 50;
    struct redis_client *rc = client(&srv, &st, &set);
    wait_count(&st.up, 1);
    pause_server(&srv, 600);
    struct result a = {0}, b = {0}, c = {0};
    assert_non_null(redis_get(rc, "k", 1, on_result, &a));
    struct rc_cmd *cb = redis_get(rc, "k", 1, on_result, &b);
    assert_non_null(cb);
    assert_null(redis_get(rc, "k", 1, on_result, &c)); /* over the cap */
    redis_cancel(cb);
    run_until(is_called, &a, 20);
    assert_int_equal(a.r, RC_TIMEOUT);
    run_until(none_inflight, rc, 20);
    assert_false(b.called); /* cancelled: never called, even by the late reply */
    assert_false(c.called);
    struct rc_stats s;
    redis_client_get_stats(rc, &s);
    assert_int_equal(s.rejected, 1);
    assert_int_equal(s.timeouts, 1);
    assert_int_equal(s.late, 2);
    redis_client_free(rc);
}

static void test_free_with_pending(void **state)
{
    (void)state;
    struct states st = {0};
    struct redis_client_settings set;
    redis_client_settings_default(&set);
    set.command_timeout_ms = 5000;
    struct redis_client *rc = client(&srv, &st, &set);
    wait_count(&st.up, 1);
    pause_server(&srv, 300);
    struct result res = {0};
    assert_non_null(redis_get(rc, "k", 1, on_result, &res));
    redis_client_free(rc);
    assert_true(res.called);
    assert_int_equal(res.r, RC_DOWN);
}

struct sub {
    int messages;
    char last[64];
    size_t len;
};

static void on_message(void *ud, const char *data, size_t len)
{
    struct sub *s = ud;
    s->messages++;
    s->len = len < sizeof(s->last) ? len : sizeof(s->last);
    memcpy(s->last, data, s->len);
}

static void publish(struct redis_client *rc, const char *msg, size_t len, long long receivers)
{
    struct result res = {0};
    assert_non_null(redis_publish(rc, "purges", msg, len, on_result, &res));
    run_until(is_called, &res, 20);
    assert_int_equal(res.r, RC_OK);
    assert_int_equal(res.integer, receivers);
}

static void test_kill_restart_and_pubsub(void **state)
{
    (void)state;
    struct states st = {0};
    struct sub sub = {0};
    struct redis_client *rc = client(&srv, &st, NULL);
    assert_int_equal(redis_subscribe(rc, "purges", on_message, &sub), 0);
    assert_int_equal(redis_subscribe(rc, "again", on_message, &sub), -1);
    wait_count(&st.up, 1);
    wait_count(&st.sub_up, 1);
    publish(rc, "m\0one", 5, 1);
    wait_count(&sub.messages, 1);
    assert_int_equal(sub.len, 5);
    assert_memory_equal(sub.last, "m\0one", 5);

    server_kill(&srv);
    wait_count(&st.down, 1);
    wait_count(&st.sub_down, 1);
    assert_false(redis_client_up(rc));
    /* While it is down a command is refused at once or fails: never a value. */
    struct result res = {0};
    if (redis_get(rc, "k1", 2, on_result, &res)) {
        run_until(is_called, &res, 20);
        assert_true(res.r == RC_DOWN || res.r == RC_TIMEOUT);
    }

    server_start(&srv);
    wait_count(&st.up, 2);
    wait_count(&st.sub_up, 2);
    memset(&res, 0, sizeof(res));
    assert_non_null(redis_get(rc, "k1", 2, on_result, &res));
    run_until(is_called, &res, 20);
    assert_int_equal(res.r, RC_NIL); /* a fresh server: the old key is gone */
    publish(rc, "two", 3, 1);        /* re-subscribed after the restart */
    wait_count(&sub.messages, 2);
    assert_memory_equal(sub.last, "two", 3);
    struct rc_stats s;
    redis_client_get_stats(rc, &s);
    assert_int_equal(s.connects, 4); /* both connections, twice */
    assert_int_equal(s.disconnects, 2);
    assert_int_equal(s.messages, 2);
    assert_int_equal(st.up, 2);
    assert_int_equal(st.down, 1);
    redis_client_free(rc);
}

static void test_unreachable(void **state)
{
    (void)state;
    struct states st = {0};
    struct server nobody = {.port = free_port()};
    struct redis_client *rc = client(&nobody, &st, NULL);
    struct result res = {0};
    if (redis_get(rc, "k", 1, on_result, &res)) {
        run_until(is_called, &res, 20);
        assert_int_equal(res.r, RC_DOWN);
    }
    assert_int_equal(st.up, 0);
    redis_client_free(rc);

    char err[256];
    struct redis_client_settings set;
    redis_client_settings_default(&set);
    strcpy(set.url.host, "no-such-host.invalid");
    assert_null(redis_client_new(loop, &set, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "cache-redis-url: "));
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(workdir))
        return -1;
    loop = ev_default_loop(0);
    srv.port = free_port();
    server_start(&srv);
    /* An ACL user and no default user, to exercise AUTH user password. */
    struct server *a = &srv_auth;
    snprintf(a->conf, sizeof(a->conf), "%s/acl.conf", workdir);
    FILE *f = fopen(a->conf, "w");
    if (!f)
        return -1;
    fprintf(f, "user default off\nuser agent on >s3cret ~* &* +@all\n");
    fclose(f);
    a->port = free_port();
    server_start(a);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    server_kill(&srv);
    server_kill(&srv_auth);
    unlink(srv_auth.conf);
    rmdir(workdir);
    return 0;
}

int main(void)
{
    if (!redis_server_found())
        return SKIP;
    signal(SIGPIPE, SIG_IGN);
    log_init(LOG_LVL_WARN, false);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_get_set),
        cmocka_unit_test(test_select_db),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_timeout_and_late_reply),
        cmocka_unit_test(test_inflight_cap_and_cancel),
        cmocka_unit_test(test_free_with_pending),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_kill_restart_and_pubsub),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
