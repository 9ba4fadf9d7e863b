/* Test helpers for the C tests that need a real redis-server: start one on a free loopback port
 * (ready when it answers PING, never after a fixed sleep), kill it, talk to it synchronously on
 * the side, and run the libev loop until a condition holds. Included by one test file each: the
 * definitions are static. */
#ifndef PTA_TEST_REDIS_SERVER_H
#define PTA_TEST_REDIS_SERVER_H

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <hiredis/hiredis.h>

#define SKIP 77

static const char *redis_bin;

/* Finds redis-server (PTA_REDIS_SERVER or /usr/bin/redis-server); false when absent, so that the
 * test can exit with SKIP and say why. */
static inline bool redis_server_found(void)
{
    redis_bin = getenv("PTA_REDIS_SERVER");
    if (!redis_bin)
        redis_bin = "/usr/bin/redis-server";
    if (access(redis_bin, X_OK) == 0)
        return true;
    printf("SKIP: %s not found (install redis-server: contrib/install-deps.sh test)\n", redis_bin);
    return false;
}
static char workdir[] = "/tmp/pta-redis-test-XXXXXX";

struct server {
    pid_t pid;
    int port;
    char conf[128];
};

static struct ev_loop *loop;

/* ---- servers ---- */

static inline int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) < 0)
        abort();
    close(fd);
    return ntohs(a.sin_port);
}

static inline void server_start(struct server *s)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", s->port);
    s->pid = fork();
    if (s->pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (s->conf[0])
            execl(redis_bin, redis_bin, s->conf, "--port", port, "--bind", "127.0.0.1", "--save",
                  "", "--appendonly", "no", "--dir", workdir, (char *)NULL);
        else
            execl(redis_bin, redis_bin, "--port", port, "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", workdir, (char *)NULL);
        _exit(127);
    }
    assert_true(s->pid > 0);
    /* Ready when it answers anything to PING (NOAUTH counts: it is serving). */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
        redisReply *r = c && !c->err ? redisCommand(c, "PING") : NULL;
        bool ok = r != NULL;
        if (r)
            freeReplyObject(r);
        if (c)
            redisFree(c);
        if (ok)
            return;
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid)
            fail_msg("redis-server exited before answering PING");
        struct timespec now, nap = {0, 10 * 1000 * 1000};
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 15)
            fail_msg("redis-server did not answer PING within 15 s");
        nanosleep(&nap, NULL); /* between polls of the condition, not instead of one */
    }
}

static inline void server_kill(struct server *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

/* A synchronous side channel for checks and for pausing the server. */
static inline redisReply *side(const struct server *s, const char *fmt, ...)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    return r;
}

static inline void pause_server(const struct server *s, int ms)
{
    redisReply *r = side(s, "CLIENT PAUSE %d ALL", ms);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
}

/* ---- loop helpers ---- */

typedef bool (*cond_fn)(void *arg);

static inline void on_guard(struct ev_loop *l, ev_timer *w, int revents)
{
    *(bool *)w->data = true;
}

/* Runs the loop until cond holds; fails after max_s (a generous bound, never a timing claim). */
static inline void run_until(cond_fn cond, void *arg, double max_s)
{
    bool expired = false;
    ev_timer guard;
    ev_timer_init(&guard, on_guard, max_s, 0.);
    guard.data = &expired;
    ev_timer_start(loop, &guard);
    while (!cond(arg) && !expired)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &guard);
    if (!cond(arg))
        fail_msg("condition not reached within %.0f s", max_s);
}

#endif
