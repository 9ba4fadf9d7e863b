/* Tests of http_server.c over real loopback sockets, with test-only routes: handlers run on the
 * loop thread and see the body and the query; 413 for a declared or a chunked body beyond the
 * route's limit; 404/405/401 before any handler runs; admin routes appear with a token and alone on
 * the admin unix socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "http_server.h"
#include "log.h"

static struct ev_loop *loop;
static ev_async stop_w;
static pthread_t loop_thread, handler_thread;
static struct http_server *srv;
static int port;
static char sock_path[64];

/* ---- test routes ---------------------------------------------------------------------------- */

static void echo(void *ud, const struct http_request *req, struct http_response *resp)
{
    handler_thread = pthread_self();
    const char *x = req->arg(req, "x");
    char *out = malloc(64 + req->body_len);
    snprintf(out, 64 + req->body_len, "%s %s x=%s type=%s body=%s", req->method, req->path,
             x ? x : "-", req->content_type ? req->content_type : "-", req->body ? req->body : "-");
    http_response_text(resp, 200, "text/plain", out);
}

static void admin(void *ud, const struct http_request *req, struct http_response *resp)
{
    http_response_json(resp, 200,
                       req->origin == HTTP_ORIGIN_ADMIN_SOCKET ? "{\"via\":\"socket\"}"
                                                               : "{\"via\":\"tcp\"}");
    resp->cache_control = "no-store";
}

/* ---- the loop in its own thread -------------------------------------------------------------- */

static void on_stop(struct ev_loop *l, ev_async *w, int revents)
{
    ev_break(l, EVBREAK_ALL);
}

static void *run_loop(void *arg)
{
    ev_run(loop, 0);
    return NULL;
}

static int setup(void **state)
{
    log_init(LOG_LVL_ERROR, false);
    loop = ev_loop_new(EVFLAG_AUTO);
    ev_async_init(&stop_w, on_stop);
    ev_async_start(loop, &stop_w);
    struct http_router r;
    http_router_init(&r);
    struct http_route routes[] = {
        {.method = "GET", .path = "/echo", .fn = echo},
        {.method = "POST", .path = "/echo", .max_body = 16, .fn = echo},
        {.method = "GET", .path = "/admin/x", .auth = HTTP_AUTH_ADMIN, .fn = admin},
    };
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(http_router_add(&r, &routes[i]), 0);
    char listen[32], admin_listen[96], err[256];
    snprintf(listen, sizeof(listen), "127.0.0.1:0");
    snprintf(sock_path, sizeof(sock_path), "/tmp/test_http_server.%d.sock", (int)getpid());
    snprintf(admin_listen, sizeof(admin_listen), "unix:%s", sock_path);
    srv = http_server_start(loop, &r, listen, admin_listen, err, sizeof(err));
    if (!srv)
        fail_msg("%s", err);
    port = http_server_port(srv);
    assert_int_not_equal(port, 0);
    assert_int_equal(pthread_create(&loop_thread, NULL, run_loop, NULL), 0);
    return 0;
}

static int teardown(void **state)
{
    ev_async_send(loop, &stop_w);
    pthread_join(loop_thread, NULL);
    http_server_stop(srv);
    ev_async_stop(loop, &stop_w);
    ev_loop_destroy(loop);
    return access(sock_path, F_OK) == 0 ? -1 : 0; /* the socket file is removed */
}

/* ---- a raw HTTP/1.1 client ------------------------------------------------------------------- */

struct reply {
    int status;
    char head[8200];
    char body[8200];
};

static void exchange(int fd, const char *request, size_t len, struct reply *out)
{
    assert_true(fd >= 0);
    assert_int_equal(send(fd, request, len, MSG_NOSIGNAL), (ssize_t)len);
    char buf[8192];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(buf) - 1 && (r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0)) > 0)
        n += (size_t)r;
    close(fd);
    buf[n] = '\0';
    memset(out, 0, sizeof(*out));
    assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &out->status), 1);
    char *sep = strstr(buf, "\r\n\r\n");
    assert_non_null(sep);
    *sep = '\0';
    snprintf(out->head, sizeof(out->head), "%s\r\n", buf);
    snprintf(out->body, sizeof(out->body), "%s", sep + 4);
}

static void http_tcp(const char *request, struct reply *out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    exchange(fd, request, strlen(request), out);
}

static void http_unix(const char *request, struct reply *out)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    exchange(fd, request, strlen(request), out);
}

#define HDRS "Host: t\r\nConnection: close\r\n"

static void assert_header(const struct reply *r, const char *line)
{
    if (!strcasestr(r->head, line))
        fail_msg("no '%s' in:\n%s", line, r->head);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_handlers_run_on_the_loop(void **state)
{
    struct reply r;
    http_tcp("GET /echo?x=42 HTTP/1.1\r\n" HDRS "\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "GET /echo x=42 type=- body=-");
    assert_header(&r, "Content-Type: text/plain\r\n");
    assert_true(pthread_equal(handler_thread, loop_thread));

    http_tcp("POST /echo HTTP/1.1\r\n" HDRS "Content-Type: application/json\r\n"
             "Content-Length: 16\r\n\r\n{\"sub\":\"alice\"}!",
             &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "POST /echo x=- type=application/json body={\"sub\":\"alice\"}!");

    http_tcp("POST /echo HTTP/1.1\r\n" HDRS "Transfer-Encoding: chunked\r\n\r\n"
             "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
             &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "POST /echo x=- type=- body=abcde");

    http_tcp("HEAD /echo HTTP/1.1\r\n" HDRS "\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "");
}

static void test_body_limits(void **state)
{
    struct reply r;
    http_tcp("POST /echo HTTP/1.1\r\n" HDRS "Content-Length: 17\r\n\r\n12345678901234567", &r);
    assert_int_equal(r.status, 413);
    assert_header(&r, "Content-Type: application/json\r\n");
    assert_string_equal(r.body, "{\"error\":\"request body too large\"}\n");

    http_tcp("POST /echo HTTP/1.1\r\n" HDRS "Transfer-Encoding: chunked\r\n\r\n"
             "a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
             &r);
    assert_int_equal(r.status, 413);

    http_tcp("GET /echo HTTP/1.1\r\n" HDRS "Content-Length: 1\r\n\r\nx", &r);
    assert_int_equal(r.status, 413); /* GET /echo takes no body */
}

static void test_errors_before_handlers(void **state)
{
    struct reply r;
    http_tcp("GET /nope HTTP/1.1\r\n" HDRS "\r\n", &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "{\"error\":\"not found\"}\n");
    http_tcp("DELETE /echo HTTP/1.1\r\n" HDRS "\r\n", &r);
    assert_int_equal(r.status, 405);
    assert_header(&r, "Allow: GET, HEAD, POST\r\n");
}

static void test_admin_routes(void **state)
{
    struct reply r;
    http_tcp("GET /admin/x HTTP/1.1\r\n" HDRS "\r\n", &r);
    assert_int_equal(r.status, 404); /* no token: the route does not exist on TCP */

    assert_int_equal(http_server_set_admin_token(srv, "t0ken"), 0);
    http_tcp("GET /admin/x HTTP/1.1\r\n" HDRS "\r\n", &r);
    assert_int_equal(r.status, 401);
    assert_header(&r, "WWW-Authenticate: Bearer realm=\"phantom-token-agent admin\"\r\n");
    http_tcp("GET /admin/x HTTP/1.1\r\n" HDRS "Authorization: Bearer t0ke\r\n\r\n", &r);
    assert_int_equal(r.status, 401);
    http_tcp("GET /admin/x HTTP/1.1\r\n" HDRS "Authorization: Bearer t0ken\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"via\":\"tcp\"}\n");
    assert_header(&r, "Cache-Control: no-store\r\n");

    /* a rotated token: the old one stops working at once */
    assert_int_equal(http_server_set_admin_token(srv, "n3w"), 0);
    http_tcp("GET /admin/x HTTP/1.1\r\n" HDRS "Authorization: Bearer t0ken\r\n\r\n", &r);
    assert_int_equal(r.status, 401);

    struct stat st;
    assert_int_equal(stat(sock_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    http_unix("GET /admin/x HTTP/1.1\r\n" HDRS "\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"via\":\"socket\"}\n");
    http_unix("GET /echo HTTP/1.1\r\n" HDRS "\r\n", &r);
    assert_int_equal(r.status, 404); /* only admin routes on the admin socket */
    assert_int_equal(http_server_set_admin_token(srv, NULL), 0);
    http_unix("GET /admin/x HTTP/1.1\r\n" HDRS "\r\n", &r);
    assert_int_equal(r.status, 200); /* the socket needs no token */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handlers_run_on_the_loop),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_errors_before_handlers),
        cmocka_unit_test(test_admin_routes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
