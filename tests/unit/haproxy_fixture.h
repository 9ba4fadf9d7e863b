/* A real HAProxy for the C tests of the runtime API client and the fast-path writer: master-worker,
 * a stats socket (level admin) and a master CLI in a temporary directory, one empty map file.
 * Header-only (static inline functions), included by test_haproxy_cli.c and test_fastpath_writer.c.
 */
#ifndef PTA_TEST_HAPROXY_FIXTURE_H
#define PTA_TEST_HAPROXY_FIXTURE_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

struct hp {
    char dir[64], sock[96], map[96], cfg[96], master_sock[96];
    const char *haproxy;
    pid_t master;
};

/* PTA_HAPROXY, else /usr/sbin/haproxy; NULL when neither is there (the test skips). */
static inline const char *hp_binary(void)
{
    const char *p = getenv("PTA_HAPROXY");
    if (p && *p)
        return access(p, X_OK) == 0 ? p : NULL;
    return access("/usr/sbin/haproxy", X_OK) == 0 ? "/usr/sbin/haproxy" : NULL;
}

/* Fills h and writes the cfg and the empty map. Returns -1 when there is no haproxy binary. */
static inline int hp_prepare(struct hp *h)
{
    memset(h, 0, sizeof(*h));
    h->haproxy = hp_binary();
    if (!h->haproxy)
        return -1;
    snprintf(h->dir, sizeof(h->dir), "/tmp/pta-hcli.XXXXXX");
    if (!mkdtemp(h->dir))
        return -1;
    snprintf(h->sock, sizeof(h->sock), "%s/stats.sock", h->dir);
    snprintf(h->map, sizeof(h->map), "%s/fastpath.map", h->dir);
    snprintf(h->cfg, sizeof(h->cfg), "%s/haproxy.cfg", h->dir);
    snprintf(h->master_sock, sizeof(h->master_sock), "%s/master.sock", h->dir);
    FILE *fp = fopen(h->map, "w");
    if (!fp)
        return -1;
    fclose(fp);
    if (!(fp = fopen(h->cfg, "w")))
        return -1;
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
            h->sock, h->dir, h->map);
    fclose(fp);
    return 0;
}

static inline void hp_start(struct hp *h)
{
    unlink(h->sock);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execl(h->haproxy, h->haproxy, "-W", "-db", "-S", h->master_sock, "-f", h->cfg,
              (char *)NULL);
        _exit(127);
    }
    h->master = pid > 0 ? pid : 0;
}

static inline void hp_stop(struct hp *h)
{
    if (h->master <= 0)
        return;
    kill(h->master, SIGTERM);
    int st;
    waitpid(h->master, &st, 0);
    h->master = 0;
}

static inline void hp_cleanup(struct hp *h)
{
    hp_stop(h);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
    if (h->dir[0] && system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", h->dir);
}

/* A blocking one-shot command on a socket path, for checking what HAProxy holds. */
static inline int hp_oneshot(const char *path, const char *cmd, char *out, size_t cap)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
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
static inline int hp_wait_master(const struct hp *h)
{
    char out[4096];
    for (int i = 0; i < 2000; i++) {
        if (hp_oneshot(h->master_sock, "show proc\n", out, sizeof(out)) == 0 &&
            strstr(out, "worker"))
            return 0;
        usleep(10000);
    }
    return -1;
}

static inline double hp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs loop until cond(ud) holds or 20 s pass (a loaded box is slow). Returns 0 or -1. */
static inline int hp_run_until(struct ev_loop *loop, bool (*cond)(void *ud), void *ud)
{
    double end = hp_now() + 20.;
    while (!cond(ud)) {
        if (hp_now() > end)
            return -1;
        ev_run(loop, EVRUN_ONCE);
    }
    return 0;
}

#endif
