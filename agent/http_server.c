/* The HTTP server on libmicrohttpd. Each MHD thread decides what it can alone (route, method,
 * authentication, body size: http_router.c), collects the body, then queues the request for the
 * loop thread and waits for the answer, bounded. */
#include "http_server.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "addr.h"
#include "list.h"
#include "log.h"
#include "secret_file.h"

#define LOOP_WAIT_S 2 /* a loop that cannot answer within this is reported as unhealthy */
#define MHD_CONNECTIONS 64u
#define MHD_PER_IP 4u /* one client address cannot take every slot (TCP only) */
#define MHD_IDLE_S 10u
/* A whole request (headers and body) must arrive within this after the connection opened or the
 * previous answer: MHD 0.9.75's timeout restarts on every byte, so a client sending a header
 * line every few seconds would otherwise hold its slot for ever. */
#define REQUEST_DEADLINE_S 5

struct http_server;

/* One MHD daemon and where its requests come from. */
struct endpoint {
    struct http_server *srv;
    struct MHD_Daemon *mhd;
    enum http_origin origin;
};

struct http_server {
    struct http_router routes; /* frozen: read by the MHD threads without a lock */
    struct ev_loop *loop;
    ev_async wake;
    struct endpoint tcp, admin;
    int port;
    char *unix_path; /* the admin socket, unlinked on stop */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct list jobs; /* requests waiting for the loop thread */
    bool stopping;
    pthread_mutex_t token_lock;
    char *admin_token;
    pthread_mutex_t conns_lock; /* MHD threads add and remove, the loop's sweep reads */
    struct list conns;          /* struct http_conn of every open connection */
    ev_timer sweep;
};

/* One open connection, for the request deadline. Removed (under conns_lock) before MHD closes
 * its fd, so the sweep never shuts down an fd that was reused. */
struct http_conn {
    struct list node;
    int fd;
    double since;   /* monotonic seconds: connection opened or last answer sent */
    bool answering; /* the request is complete: no deadline until it is answered */
};

/* A request handed to the loop thread; lives on the MHD thread's stack. */
struct job {
    struct list node;
    const struct http_route *route;
    struct http_request req;
    struct http_response resp;
    bool done;
};

/* Per-request state across MHD's calls of on_request. */
struct req_ctx {
    const struct http_route *route;
    char *body;
    size_t len, cap;
    bool too_large;
};

/* ---- the hop to the loop thread ------------------------------------------------------------ */

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    struct http_server *s = w->data;
    pthread_mutex_lock(&s->lock);
    while (!list_empty(&s->jobs)) {
        struct job *j = list_entry(s->jobs.next, struct job, node);
        list_del(&j->node);
        j->route->fn(j->route->ud, &j->req, &j->resp);
        j->done = true;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* MHD thread: queue j and wait for the loop, bounded. False when the loop did not answer. */
static bool run_on_loop(struct http_server *s, struct job *j)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += LOOP_WAIT_S;
    pthread_mutex_lock(&s->lock);
    list_insert(s->jobs.prev, &j->node); /* FIFO: at the tail */
    ev_async_send(s->loop, &s->wake);
    while (!j->done && !s->stopping)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &deadline) == ETIMEDOUT)
            break;
    list_del(&j->node); /* still queued after a timeout: the loop must not see it any more */
    bool done = j->done;
    pthread_mutex_unlock(&s->lock);
    return done;
}

/* ---- MHD side ------------------------------------------------------------------------------ */

static enum MHD_Result send_response(struct MHD_Connection *conn, struct http_response *resp)
{
    struct MHD_Response *r =
        resp->body
            ? MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE)
            : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        http_response_free(resp);
        return MHD_NO;
    }
    resp->body = NULL; /* MHD owns it now */
    if (resp->content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    if (resp->allow[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, resp->allow);
    if (resp->www_authenticate)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, resp->www_authenticate);
    if (resp->cache_control)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, resp->cache_control);
    enum MHD_Result ret = MHD_queue_response(conn, resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* The MHD thread of this connection is blocked in on_request while a handler runs, so its
 * connection's values stay valid and unchanged meanwhile. */
static const char *query_arg(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->server_ctx, MHD_GET_ARGUMENT_KIND, name);
}

static bool admin_enabled(struct http_server *s)
{
    pthread_mutex_lock(&s->token_lock);
    bool on = s->admin_token != NULL;
    pthread_mutex_unlock(&s->token_lock);
    return on;
}

static int authorize(struct http_server *s, const struct http_route *route, enum http_origin origin,
                     const char *authorization, struct http_response *resp)
{
    pthread_mutex_lock(&s->token_lock);
    int rc = http_router_authorize(route, origin, authorization, s->admin_token, resp);
    pthread_mutex_unlock(&s->token_lock);
    return rc;
}

static unsigned long long declared_length(struct MHD_Connection *conn)
{
    const char *v = header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    return errno || *end || end == v ? ~0ULL : n;
}

/* First call of a request: everything that needs no body. NULL with resp set to the refusal. */
static struct req_ctx *begin(struct endpoint *ep, struct MHD_Connection *conn, const char *url,
                             const char *method, struct http_response *resp)
{
    struct http_server *s = ep->srv;
    const struct http_route *route =
        http_router_match(&s->routes, method, url, ep->origin, admin_enabled(s), resp);
    if (!route ||
        authorize(s, route, ep->origin, header(conn, MHD_HTTP_HEADER_AUTHORIZATION), resp) < 0 ||
        http_router_check_body(route, declared_length(conn), resp) < 0)
        return NULL;
    struct req_ctx *rc = calloc(1, sizeof(*rc));
    if (!rc) {
        http_response_error(resp, 503, "out of memory");
        return NULL;
    }
    rc->route = route;
    return rc;
}

/* Appends a piece of the body, or marks the request too large (the rest is discarded). */
static void take_body(struct req_ctx *rc, const char *data, size_t n)
{
    if (rc->too_large || n > rc->route->max_body - rc->len) {
        rc->too_large = true;
        return;
    }
    if (rc->len + n + 1 > rc->cap) {
        size_t cap = rc->len + n + 1 > 2 * rc->cap ? rc->len + n + 1 : 2 * rc->cap;
        char *p = realloc(rc->body, cap);
        if (!p) {
            rc->too_large = true; /* answered 413: the server cannot take it either */
            return;
        }
        rc->body = p;
        rc->cap = cap;
    }
    memcpy(rc->body + rc->len, data, n);
    rc->len += n;
    rc->body[rc->len] = '\0';
}

static void conn_mark(struct http_server *s, struct MHD_Connection *conn, bool answering);

static enum MHD_Result finish(struct endpoint *ep, struct MHD_Connection *conn, struct req_ctx *rc,
                              const char *url, const char *method)
{
    struct job j = {.route = rc->route, .resp = {.status = MHD_HTTP_OK}};
    list_init(&j.node);
    if (rc->too_large) {
        http_router_check_body(rc->route, ~0ULL, &j.resp);
        return send_response(conn, &j.resp);
    }
    conn_mark(ep->srv, conn, true);
    j.req = (struct http_request){
        .method = method,
        .path = url,
        .content_type = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE),
        .body = rc->body,
        .body_len = rc->len,
        .origin = ep->origin,
        .arg = query_arg,
        .server_ctx = conn,
    };
    if (!run_on_loop(ep->srv, &j)) {
        http_response_free(&j.resp);
        http_response_error(&j.resp, MHD_HTTP_SERVICE_UNAVAILABLE, "event loop not answering");
    }
    return send_response(conn, &j.resp);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **ctx)
{
    struct endpoint *ep = cls;
    struct req_ctx *rc = *ctx;
    if (!rc) {
        struct http_response resp = {0};
        if (!(rc = begin(ep, conn, url, method, &resp)))
            return send_response(conn, &resp);
        *ctx = rc;
        return MHD_YES; /* MHD calls again with the body, then once with none left */
    }
    if (*upload_data_size) {
        take_body(rc, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    return finish(ep, conn, rc, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **ctx,
                         enum MHD_RequestTerminationCode toe)
{
    conn_mark(((struct endpoint *)cls)->srv, conn, false); /* the next request's deadline */
    struct req_ctx *rc = *ctx;
    if (!rc)
        return;
    free(rc->body);
    free(rc);
    *ctx = NULL;
}

/* ---- request deadline ---------------------------------------------------------------------- */

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct http_conn *conn_slot(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

/* The request is complete (answering) or answered (a new deadline for the next one). */
static void conn_mark(struct http_server *s, struct MHD_Connection *conn, bool answering)
{
    struct http_conn *hc = conn_slot(conn);
    if (!hc)
        return;
    pthread_mutex_lock(&s->conns_lock);
    hc->answering = answering;
    hc->since = monotonic_s();
    pthread_mutex_unlock(&s->conns_lock);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = ((struct endpoint *)cls)->srv;
    struct http_conn *hc = *socket_ctx;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (!hc)
            return;
        pthread_mutex_lock(&s->conns_lock);
        list_del(&hc->node);
        pthread_mutex_unlock(&s->conns_lock);
        free(hc);
        *socket_ctx = NULL;
        return;
    }
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!i || !(hc = calloc(1, sizeof(*hc))))
        return; /* no deadline for it: the idle timeout still bounds a silent one */
    hc->fd = i->connect_fd;
    hc->since = monotonic_s();
    pthread_mutex_lock(&s->conns_lock);
    list_insert(&s->conns, &hc->node);
    pthread_mutex_unlock(&s->conns_lock);
    *socket_ctx = hc;
}

/* On the loop, every second: a connection past its deadline is shut down (MHD then sees the
 * end of input and closes it from its own thread). */
static void on_sweep(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct http_server *s = w->data;
    double now = monotonic_s();
    pthread_mutex_lock(&s->conns_lock);
    for (struct list *n = s->conns.next; n != &s->conns; n = n->next) {
        struct http_conn *hc = list_entry(n, struct http_conn, node);
        if (hc->answering || now - hc->since < REQUEST_DEADLINE_S)
            continue;
        shutdown(hc->fd, SHUT_RDWR);
        hc->since = now; /* once is enough; again only if MHD has not closed it by then */
    }
    pthread_mutex_unlock(&s->conns_lock);
}

/* ---- listeners ----------------------------------------------------------------------------- */

/* MHD's own messages (a bind that failed, a client that went away) go to the agent's log, with
 * its timestamps and sink, never straight to stderr. */
__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char raw[512], line[512];
    int n = vsnprintf(raw, sizeof(raw), fmt, ap);
    if (n < 0)
        return;
    size_t len = strlen(raw);
    while (len && (raw[len - 1] == '\n' || raw[len - 1] == '\r'))
        len--;
    log_printable(raw, len, line, sizeof(line));
    log_error("http: %s", line);
}

static struct MHD_Daemon *start_mhd(struct endpoint *ep, unsigned flags, unsigned per_ip,
                                    enum MHD_OPTION where, const void *what)
{
    return MHD_start_daemon(
        flags | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, ep,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, /* first, or MHD complains on stderr */
        where, what, MHD_OPTION_NOTIFY_COMPLETED, on_completed, ep, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, ep, MHD_OPTION_CONNECTION_LIMIT, MHD_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, MHD_OPTION_CONNECTION_TIMEOUT, MHD_IDLE_S,
        MHD_OPTION_END);
}

static int start_tcp(struct http_server *s, const char *listen, char *err, size_t errlen)
{
    struct addr a;
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why = addr_parse(listen, ADDR_ALLOW_TCP | ADDR_ALLOW_PORT0, &a);
    if (why) {
        snprintf(err, errlen, "bad http-listen address '%s' (%s)", listen, why);
        return -1;
    }
    if (addr_resolve(&a, &ss, &len, err, errlen) < 0)
        return -1;
    s->tcp = (struct endpoint){.srv = s, .origin = HTTP_ORIGIN_TCP};
    unsigned flags = ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0;
    s->tcp.mhd = start_mhd(&s->tcp, flags, MHD_PER_IP, MHD_OPTION_SOCK_ADDR, &ss);
    if (!s->tcp.mhd) {
        snprintf(err, errlen, "cannot listen on %s: %s", listen, strerror(errno));
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->tcp.mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    return 0;
}

/* A unix socket only the agent's user can connect to: created under umask 0177, so that there is
 * no moment when it is open to others. */
static int unix_listen_fd(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "admin-listen: %s", strerror(errno));
        return -1;
    }
    if (addr_unix_prepare(path, err, errlen) < 0) {
        close(fd);
        return -1;
    }
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (rc < 0 || listen(fd, 16) < 0) {
        snprintf(err, errlen, "admin-listen %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int start_admin(struct http_server *s, const char *admin_listen, char *err, size_t errlen)
{
    struct addr a;
    const char *why = addr_parse(admin_listen, ADDR_ALLOW_UNIX, &a);
    if (why) {
        snprintf(err, errlen, "bad admin-listen address '%s' (%s)", admin_listen, why);
        return -1;
    }
    int fd = unix_listen_fd(a.path, err, errlen);
    if (fd < 0)
        return -1;
    s->unix_path = strdup(a.path);
    s->admin = (struct endpoint){.srv = s, .origin = HTTP_ORIGIN_ADMIN_SOCKET};
    s->admin.mhd = start_mhd(&s->admin, 0, 0, MHD_OPTION_LISTEN_SOCKET, (void *)(intptr_t)fd);
    if (!s->admin.mhd || !s->unix_path) {
        snprintf(err, errlen, "cannot serve admin-listen %s", a.path);
        if (!s->admin.mhd)
            close(fd);
        return -1;
    }
    return 0;
}

struct http_server *http_server_start(struct ev_loop *loop, const struct http_router *routes,
                                      const char *listen, const char *admin_listen, char *err,
                                      size_t errlen)
{
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->routes = *routes;
    s->loop = loop;
    list_init(&s->jobs);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->token_lock, NULL);
    pthread_mutex_init(&s->conns_lock, NULL);
    list_init(&s->conns);
    pthread_cond_init(&s->cond, NULL);
    ev_timer_init(&s->sweep, on_sweep, 1.0, 1.0);
    s->sweep.data = s;
    ev_timer_start(loop, &s->sweep);
    ev_unref(loop);
    ev_async_init(&s->wake, on_wake);
    s->wake.data = s;
    ev_async_start(loop, &s->wake);
    ev_unref(loop); /* the endpoint alone must not keep a draining agent alive */
    if ((listen && start_tcp(s, listen, err, errlen) < 0) ||
        (admin_listen && start_admin(s, admin_listen, err, errlen) < 0)) {
        http_server_stop(s);
        return NULL;
    }
    return s;
}

int http_server_set_admin_token(struct http_server *s, const char *token)
{
    char *copy = token ? strdup(token) : NULL;
    if (token && !copy)
        return -1;
    pthread_mutex_lock(&s->token_lock);
    char *old = s->admin_token;
    s->admin_token = copy;
    pthread_mutex_unlock(&s->token_lock);
    secret_free(&old);
    return 0;
}

void http_server_stop(struct http_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true; /* release requests waiting on a loop that no longer runs */
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (s->tcp.mhd)
        MHD_stop_daemon(s->tcp.mhd);
    if (s->admin.mhd)
        MHD_stop_daemon(s->admin.mhd); /* closes the listening socket it was given, too */
    if (s->unix_path)
        unlink(s->unix_path);
    free(s->unix_path);
    ev_ref(s->loop);
    ev_async_stop(s->loop, &s->wake);
    ev_ref(s->loop);
    ev_timer_stop(s->loop, &s->sweep);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->token_lock);
    pthread_mutex_destroy(&s->conns_lock);
    secret_free(&s->admin_token);
    free(s);
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}
