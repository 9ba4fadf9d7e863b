/* fastpath_writer.c against a real HAProxy: what it publishes is what HAProxy's map holds (keys
 * computed as haproxy.cfg computes them), refusals, one write for a decision already live, purge
 * by token (every route) and of everything, eviction at the bound, deletion at expiry, and the
 * re-fill of a restarted HAProxy. Skipped with a message when no haproxy binary is found. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../agent/clock.h"
#include "../../agent/fastpath_writer.h"
#include "haproxy_fixture.h"

static const char SECRET[] = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

struct fixture {
    struct hp hp;
    struct ev_loop *loop;
    struct fastpath_writer *w;
    char want[8][FP_KEY_HEX + 1]; /* the keys the map must hold, exactly */
    size_t nwant;
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    if (hp_prepare(&f.hp) < 0) {
        fprintf(stderr, "SKIP test_fastpath_writer: no haproxy binary (set PTA_HAPROXY)\n");
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
    fpw_free(f->w);
    hp_cleanup(&f->hp);
    ev_loop_destroy(f->loop);
    return 0;
}

static bool ready(void *ud)
{
    struct fixture *f = ud;
    struct hcli_stats st;
    hcli_get_stats(fpw_socket(f->w, 0), &st);
    return st.ready && st.in_flight == 0 && st.queued == 0;
}

/* The map holds exactly f->want (and the writer has nothing left to send). */
static bool map_is_wanted(void *ud)
{
    struct fixture *f = ud;
    if (!ready(f))
        return false;
    char out[65536], cmd[160];
    snprintf(cmd, sizeof(cmd), "show map %s\n", f->hp.map);
    if (hp_oneshot(f->hp.sock, cmd, out, sizeof(out)) < 0)
        return false;
    size_t lines = 0;
    for (const char *p = out; (p = strstr(p, "0x")); p++)
        lines++;
    if (lines != f->nwant)
        return false;
    for (size_t i = 0; i < f->nwant; i++)
        if (!strstr(out, f->want[i]))
            return false;
    return true;
}

static void expect_map(struct fixture *f, const char *what)
{
    if (hp_run_until(f->loop, map_is_wanted, f) < 0)
        fail_msg("HAProxy's map never became: %s", what);
}

static void key_of(const char *auth, const char *scopes, char out[FP_KEY_HEX + 1])
{
    assert_int_equal(fp_map_key(SECRET, strlen(SECRET), auth, strlen(auth), scopes,
                                scopes ? strlen(scopes) : 0, NULL, 0, out),
                     0);
}

static const struct fp_limits LIM = {.ttl = 30, .skew = 5, .max_jwt = 8192, .max_auth = 8192};

static void publish(struct fixture *f, const char *auth, const char *scopes, int status,
                    int64_t exp_in, unsigned token)
{
    uint8_t id[FP_TOKEN_ID_LEN] = {0};
    memcpy(id, &token, sizeof(token));
    struct fp_candidate c = {.status = status,
                             .jwt = "h.p.s",
                             .jwt_len = 5,
                             .auth_count = 1,
                             .auth = auth,
                             .auth_len = strlen(auth),
                             .scopes = scopes,
                             .scopes_len = scopes ? strlen(scopes) : 0,
                             .token_exp = clock_seconds() + exp_in};
    fpw_publish(f->w, &c, &LIM, id, clock_seconds());
}

static void want(struct fixture *f, size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    f->nwant = n;
    for (size_t i = 0; i < n; i++) {
        const char *auth = va_arg(ap, const char *);
        const char *scopes = va_arg(ap, const char *);
        key_of(auth, scopes, f->want[i]);
    }
    va_end(ap);
}

static void writer_against_haproxy(void **state)
{
    struct fixture *f = *state;
    if (!f) {
        skip();
        return;
    }
    char err[200], sockets[128];
    snprintf(sockets, sizeof(sockets), "unix:%s", f->hp.sock);
    struct fpw_settings s = {
        .sockets = sockets, .map = f->hp.map, .secret = SECRET, .max_entries = 3};
    f->w = fpw_new(f->loop, &s, err, sizeof(err));
    assert_non_null(f->w);
    want(f, 0);
    expect_map(f, "empty after the first session's clear");

    /* token 1 on two routes, token 2 on one; a 401 and two headers are never published */
    publish(f, "Bearer t1", NULL, 200, 3600, 1);
    publish(f, "Bearer t1", "admin", 200, 3600, 1);
    publish(f, "Bearer t2", NULL, 200, 3600, 2);
    publish(f, "Bearer t3", NULL, 401, 3600, 3);
    want(f, 3, "Bearer t1", NULL, "Bearer t1", "admin", "Bearer t2", NULL);
    expect_map(f, "t1 on two routes and t2");
    struct fpw_stats st;
    fpw_get_stats(f->w, &st);
    assert_int_equal(st.published, 3);
    assert_int_equal(st.refused, 1);
    struct hcli_stats hs;
    hcli_get_stats(fpw_socket(f->w, 0), &hs);
    uint64_t sent = hs.sent;
    publish(f, "Bearer t2", NULL, 200, 3600, 2); /* a second miss of the same token */
    fpw_get_stats(f->w, &st);
    assert_int_equal(st.unchanged, 1);
    hcli_get_stats(fpw_socket(f->w, 0), &hs);
    assert_int_equal(hs.sent, sent);
    assert_int_equal(hs.errors, 0);

    /* purge by token: every route of it */
    uint8_t id[FP_TOKEN_ID_LEN] = {1};
    assert_int_equal(fpw_purge_token(f->w, id), 2);
    want(f, 1, "Bearer t2", NULL);
    expect_map(f, "t2 alone after purging t1");

    /* eviction at 3 entries: the one that expires first goes */
    publish(f, "Bearer t4", NULL, 200, 20, 4); /* lives 15 s */
    publish(f, "Bearer t5", NULL, 200, 15, 5); /* lives 10 s: the first to expire */
    publish(f, "Bearer t6", NULL, 200, 3600, 6);
    want(f, 3, "Bearer t2", NULL, "Bearer t4", NULL, "Bearer t6", NULL);
    expect_map(f, "t5 evicted");

    /* a restarted HAProxy starts with an empty map: the writer re-fills it */
    hp_stop(&f->hp);
    hp_start(&f->hp);
    expect_map(f, "the restarted HAProxy re-filled");
    fpw_get_stats(f->w, &st);
    assert_true(st.refills >= 2);

    assert_int_equal(fpw_purge_all(f->w), 3);
    want(f, 0);
    expect_map(f, "empty after purging all");

    /* expiry: exp in 7 s minus the 5 s skew: gone from HAProxy within seconds, by the agent */
    publish(f, "Bearer t7", NULL, 200, 7, 7);
    want(f, 0);
    expect_map(f, "t7 deleted at its expiry");
    fpw_get_stats(f->w, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.published, 7);
}

static void bad_settings(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char err[200];
    static const struct fpw_settings bad[] = {
        {.sockets = NULL, .map = "/m", .secret = SECRET},
        {.sockets = "unix:/x", .map = "/m m", .secret = SECRET},
        {.sockets = "unix:/x", .map = "/m", .secret = "short"},
        {.sockets = "unix:/x,,unix:/y", .map = "/m", .secret = SECRET},
        {.sockets = "localhost:1", .map = "/m", .secret = SECRET},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_null(fpw_new(loop, &bad[i], err, sizeof(err)));
        assert_true(strlen(err) > 0);
    }
    struct fpw_settings ok = {.sockets =
                                  "unix:/nonexistent/a.sock, master:unix:/nonexistent/m.sock",
                              .map = "/m",
                              .secret = SECRET};
    struct fastpath_writer *w = fpw_new(loop, &ok, err, sizeof(err));
    assert_non_null(w);
    assert_int_equal(fpw_nsockets(w), 2);
    assert_string_equal(hcli_route(fpw_socket(w, 1)), "@1");
    assert_string_equal(hcli_address(fpw_socket(w, 1)), "unix:/nonexistent/m.sock");
    fpw_free(w);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(writer_against_haproxy, setup, teardown),
        cmocka_unit_test(bad_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
