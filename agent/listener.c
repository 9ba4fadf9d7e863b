/* Listening socket and accept loop. Accepted sockets are non-blocking with TCP_NODELAY: an ACK is
 * one small frame and must not wait for Nagle. */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "addr.h"
#include "log.h"

struct listener {
    struct ev_loop *loop;
    listener_accept_fn on_accept;
    void *ud;
    int fd;
    int port;
    bool is_unix;
    ev_io io;
    ev_timer retry; /* resumes accepting after running out of descriptors */
    char *unix_path;
};

#define ACCEPT_PAUSE 0.1 /* seconds */

static int bind_unix(struct listener *l, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "unix socket path too long");
        return -1;
    }
    strcpy(sun.sun_path, path);
    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0)
        goto fail;
    if (addr_unix_prepare(path, err, errlen) < 0)
        return -1;
    if (bind(l->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
        goto fail;
    l->is_unix = true;
    l->unix_path = strdup(path);
    return 0;
fail:
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
}

static int bind_tcp(struct listener *l, const struct addr *a, char *err, size_t errlen)
{
    struct sockaddr_storage res;
    socklen_t res_len;
    if (addr_resolve(a, &res, &res_len, err, errlen) < 0)
        return -1;
    l->fd = socket(res.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (l->fd >= 0)
        setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&res, res_len) < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) == 0)
        l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(out, len, "%s:%d", host, ntohs(s4->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(out, len, "[%s]:%d", host, ntohs(s6->sin6_port));
    } else {
        snprintf(out, len, "unix");
    }
}

/* Out of descriptors (or memory): the pending connection stays in the backlog and the socket
 * stays readable, so retrying at once would spin and flood the log. Wait, then try again. */
static void pause_accepting(struct listener *l, int err)
{
    log_warn("accept failed: %s; pausing new SPOP connections for %.0f ms", strerror(err),
             ACCEPT_PAUSE * 1000);
    ev_io_stop(l->loop, &l->io);
    ev_timer_set(&l->retry, ACCEPT_PAUSE, 0.);
    ev_timer_start(l->loop, &l->retry);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct listener *l = w->data;
    if (l->fd >= 0)
        ev_io_start(loop, &l->io);
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct listener *l = w->data;
    for (int i = 0; i < 64; i++) { /* bounded, so one busy listener cannot starve the loop */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                pause_accepting(l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                     errno != ECONNABORTED)
                log_warn("accept failed: %s", strerror(errno));
            return;
        }
        int one = 1;
        if (!l->is_unix)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char peer[64];
        peer_name(&ss, peer, sizeof(peer));
        l->on_accept(l->ud, fd, peer);
    }
}

struct listener *listener_new(struct ev_loop *loop, const char *addr, listener_accept_fn accept_fn,
                              void *ud, char *err, size_t errlen)
{
    struct listener *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->loop = loop;
    l->on_accept = accept_fn;
    l->ud = ud;
    l->fd = -1;
    struct addr parsed;
    const char *why =
        addr_parse(addr, ADDR_ALLOW_TCP | ADDR_ALLOW_UNIX | ADDR_ALLOW_PORT0, &parsed);
    int rc = why                        ? -1
             : parsed.kind == ADDR_UNIX ? bind_unix(l, parsed.path, err, errlen)
                                        : bind_tcp(l, &parsed, err, errlen);
    if (why)
        snprintf(err, errlen, "%s", why);
    if (rc == 0 && listen(l->fd, SOMAXCONN) < 0) {
        snprintf(err, errlen, "listen: %s", strerror(errno));
        rc = -1;
    }
    if (rc < 0) {
        listener_free(l);
        return NULL;
    }
    ev_io_init(&l->io, on_readable, l->fd, EV_READ);
    ev_init(&l->retry, on_retry);
    l->io.data = l->retry.data = l;
    ev_io_start(loop, &l->io);
    return l;
}

void listener_stop(struct listener *l)
{
    if (!l || l->fd < 0)
        return;
    ev_io_stop(l->loop, &l->io);
    ev_timer_stop(l->loop, &l->retry);
    close(l->fd);
    l->fd = -1;
    if (l->unix_path)
        unlink(l->unix_path);
}

void listener_free(struct listener *l)
{
    if (!l)
        return;
    listener_stop(l);
    free(l->unix_path);
    free(l);
}

int listener_port(const struct listener *l)
{
    return l->port;
}
