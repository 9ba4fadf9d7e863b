/* Metrics endpoint on libmicrohttpd, handing each scrape to the event loop that owns the data. */
#include "metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "addr.h"
#include "log.h"

#define SCRAPE_WAIT_S 2 /* a loop that cannot answer within this is reported as unhealthy */

struct metrics_http {
    struct MHD_Daemon *mhd;
    struct ev_loop *loop;
    ev_async wake;
    metrics_http_fn fn;
    void *ud;
    int port;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    const char *path; /* the request being served, set by the MHD thread */
    char *body;
    unsigned status;
    bool asked, answered, stopping;
};

/* Loop thread: render what the MHD thread asked for. */
static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    struct metrics_http *m = w->data;
    pthread_mutex_lock(&m->lock);
    if (m->asked && !m->answered) {
        m->status = MHD_HTTP_OK;
        m->body = m->fn(m->ud, m->path, &m->status);
        m->answered = true;
        pthread_cond_broadcast(&m->cond);
    }
    pthread_mutex_unlock(&m->lock);
}

/* MHD thread: ask the loop and wait, bounded. Returns the body, NULL for 404, or sets *stuck. */
static char *ask_loop(struct metrics_http *m, const char *path, bool *stuck, unsigned *status)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += SCRAPE_WAIT_S;
    pthread_mutex_lock(&m->lock);
    m->path = path;
    m->body = NULL;
    m->asked = true;
    m->answered = false;
    ev_async_send(m->loop, &m->wake);
    while (!m->answered && !m->stopping)
        if (pthread_cond_timedwait(&m->cond, &m->lock, &deadline) == ETIMEDOUT)
            break;
    char *body = m->body;
    *stuck = !m->answered;
    *status = m->status;
    m->asked = false;
    m->body = NULL;
    pthread_mutex_unlock(&m->lock);
    return body;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, char *body,
                             const char *type)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **ctx)
{
    struct metrics_http *m = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, strdup("method not allowed\n"),
                     "text/plain");
    bool stuck;
    unsigned status;
    char *body = ask_loop(m, url, &stuck, &status);
    if (stuck)
        return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, strdup("event loop not answering\n"),
                     "text/plain");
    if (!body)
        return reply(conn, MHD_HTTP_NOT_FOUND, strdup("not found\n"), "text/plain");
    const char *type = strcmp(url, "/metrics") == 0 ? "text/plain; version=0.0.4; charset=utf-8"
                                                    : "text/plain; charset=utf-8";
    return reply(conn, status, body, type);
}

static int parse_addr(const char *addr, struct sockaddr_storage *ss, char *err, size_t errlen)
{
    struct addr a;
    socklen_t len;
    const char *why = addr_parse(addr, ADDR_ALLOW_TCP, &a);
    if (why) {
        snprintf(err, errlen, "bad http-listen address '%s' (%s)", addr, why);
        return -1;
    }
    return addr_resolve(&a, ss, &len, err, errlen);
}

struct metrics_http *metrics_http_start(struct ev_loop *loop, const char *addr, metrics_http_fn fn,
                                        void *ud, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (parse_addr(addr, &ss, err, errlen) < 0)
        return NULL;
    struct metrics_http *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->loop = loop;
    m->fn = fn;
    m->ud = ud;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    ev_async_init(&m->wake, on_wake);
    m->wake.data = m;
    ev_async_start(loop, &m->wake);
    ev_unref(loop); /* the endpoint alone must not keep a draining agent alive */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    m->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR,
                              (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, 16u,
                              MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!m->mhd) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
        metrics_http_stop(m);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info ? info->port : 0;
    return m;
}

void metrics_http_stop(struct metrics_http *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->stopping = true; /* release a scrape waiting on a loop that no longer runs */
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (m->mhd)
        MHD_stop_daemon(m->mhd);
    ev_ref(m->loop);
    ev_async_stop(m->loop, &m->wake);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

int metrics_http_port(const struct metrics_http *m)
{
    return m->port;
}
