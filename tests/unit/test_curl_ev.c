/* Tests of curl_ev.c: the header helpers (pure), and the GET fetcher on a real libev loop against
 * a one-connection-at-a-time HTTP server thread on 127.0.0.1: status, headers and body; a body
 * past the bound; a refused connection; a timeout; curl_ev_free() aborting a running fetch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "curl_ev.h"
#include "log.h"

/* ---- header helpers ------------------------------------------------------------------------ */

static void test_headers(void **state)
{
    const char *line = "Content-Type:  application/jwk-set+json \r\n";
    size_t at = curl_ev_header_is(line, strlen(line), "content-type");
    assert_int_equal(at, strlen("Content-Type:"));
    assert_int_equal(curl_ev_header_is(line, strlen(line), "content-typ"), 0);
    assert_int_equal(curl_ev_header_is("ETag", 4, "etag"), 0);
    char v[32];
    curl_ev_header_value(v, sizeof(v), line + at, strlen(line) - at, "invalid");
    assert_string_equal(v, "application/jwk-set+json");
    curl_ev_header_value(v, 8, line + at, strlen(line) - at, "no");
    assert_string_equal(v, "no"); /* too long: replaced, never truncated */
}

/* ---- a scripted HTTP server ----------------------------------------------------------------- */

static struct {
    int lfd, port;
    pthread_t thread;
    const char *answer; /* raw bytes to send after reading the request; NULL: never answer */
    int stop_pipe[2];
} srv;

static void *serve(void *arg)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = srv.lfd, .events = POLLIN},
                              {.fd = srv.stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 || p[1].revents)
            return NULL;
        int fd = accept(srv.lfd, NULL, NULL);
        if (fd < 0)
            continue;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), 0); /* the GET fits one read */
        if (n > 0 && srv.answer)
            send(fd, srv.answer, strlen(srv.answer), MSG_NOSIGNAL);
        if (!srv.answer) { /* hold the connection until told to stop */
            struct pollfd q = {.fd = srv.stop_pipe[0], .events = POLLIN};
            poll(&q, 1, 5000);
        }
        close(fd);
    }
}

static int group_setup(void **state)
{
    log_init(LOG_LVL_ERROR, false);
    srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    if (bind(srv.lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(srv.lfd, 8) < 0 ||
        getsockname(srv.lfd, (struct sockaddr *)&sin, &len) < 0 || pipe(srv.stop_pipe) < 0)
        return -1;
    srv.port = ntohs(sin.sin_port);
    return pthread_create(&srv.thread, NULL, serve, NULL);
}

static int group_teardown(void **state)
{
    if (write(srv.stop_pipe[1], "x", 1) != 1)
        return -1;
    pthread_join(srv.thread, NULL);
    close(srv.lfd);
    close(srv.stop_pipe[0]);
    close(srv.stop_pipe[1]);
    return 0;
}

/* ---- fetching ---------------------------------------------------------------------------------
 */

struct got {
    int calls;
    struct curl_fetch_result r;
    char body[256], content_type[64], cache_control[64], etag[64];
};

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "(null)");
}

static void on_fetched(void *ud, const struct curl_fetch_result *r)
{
    struct got *g = ud;
    g->calls++;
    g->r = *r;
    copy(g->body, sizeof(g->body), r->body);
    copy(g->content_type, sizeof(g->content_type), r->content_type);
    copy(g->cache_control, sizeof(g->cache_control), r->cache_control);
    copy(g->etag, sizeof(g->etag), r->etag);
    g->r.body = g->r.content_type = g->r.cache_control = g->r.etag = g->r.error = NULL;
}

static void fetch(const char *path, size_t max_body, long timeout_ms, struct got *g)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct curl_ev *c = curl_ev_new(loop, 4);
    assert_non_null(c);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", srv.port, path);
    memset(g, 0, sizeof(*g));
    assert_int_equal(curl_fetch_get(c, url, NULL, timeout_ms, max_body, on_fetched, g), 0);
    assert_int_equal(g->calls, 0); /* never from inside */
    assert_int_equal(curl_ev_running(c), 1);
    ev_run(loop, 0); /* returns once curl has nothing left to watch */
    assert_int_equal(curl_ev_running(c), 0);
    curl_ev_free(c);
    ev_loop_destroy(loop);
}

static void test_fetch_ok(void **state)
{
    srv.answer = "HTTP/1.1 200 OK\r\nContent-Type: application/jwk-set+json\r\n"
                 "Cache-Control: max-age=300\r\nETag: \"v1\"\r\nContent-Length: 11\r\n"
                 "Connection: close\r\n\r\n{\"keys\":[]}";
    struct got g;
    fetch("/jwks", 1024, 5000, &g);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.r.rc, CURLE_OK);
    assert_int_equal(g.r.status, 200);
    assert_false(g.r.too_large);
    assert_int_equal(g.r.body_len, 11);
    assert_string_equal(g.body, "{\"keys\":[]}");
    assert_string_equal(g.content_type, "application/jwk-set+json");
    assert_string_equal(g.cache_control, "max-age=300");
    assert_string_equal(g.etag, "\"v1\"");

    srv.answer = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    fetch("/nope", 1024, 5000, &g);
    assert_int_equal(g.r.rc, CURLE_OK);
    assert_int_equal(g.r.status, 404);
    assert_string_equal(g.body, "(null)");
    assert_string_equal(g.content_type, "(null)");
}

static void test_fetch_too_large(void **state)
{
    srv.answer = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789abcdef";
    struct got g;
    fetch("/big", 8, 5000, &g); /* no Content-Length: stopped while reading */
    assert_int_equal(g.calls, 1);
    assert_true(g.r.too_large);
    assert_int_not_equal(g.r.rc, CURLE_OK);
    assert_int_equal(g.r.status, 0);

    srv.answer = "HTTP/1.1 200 OK\r\nContent-Length: 16\r\nConnection: close\r\n\r\n"
                 "0123456789abcdef";
    fetch("/big", 8, 5000, &g); /* declared too large: refused before reading */
    assert_int_not_equal(g.r.rc, CURLE_OK);
}

static void test_fetch_timeout(void **state)
{
    srv.answer = NULL; /* the server never answers */
    struct got g;
    fetch("/slow", 1024, 200, &g);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.r.rc, CURLE_OPERATION_TIMEDOUT);
}

static void test_fetch_refused(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    bind(fd, (struct sockaddr *)&sin, sizeof(sin));
    getsockname(fd, (struct sockaddr *)&sin, &len);
    close(fd); /* nobody listens there now */
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct curl_ev *c = curl_ev_new(loop, 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(sin.sin_port));
    struct got g = {0};
    assert_int_equal(curl_fetch_get(c, url, NULL, 2000, 64, on_fetched, &g), 0);
    ev_run(loop, 0);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.r.rc, CURLE_COULDNT_CONNECT);
    assert_int_equal(curl_fetch_get(c, "ftp://127.0.0.1/", NULL, 100, 64, on_fetched, &g), 0);
    ev_run(loop, 0);
    assert_int_equal(g.r.rc, CURLE_UNSUPPORTED_PROTOCOL); /* http and https only */
    curl_ev_free(c);
    ev_loop_destroy(loop);
}

static void test_free_aborts(void **state)
{
    srv.answer = NULL;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct curl_ev *c = curl_ev_new(loop, 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/held", srv.port);
    struct got g = {0};
    assert_int_equal(curl_fetch_get(c, url, NULL, 5000, 64, on_fetched, &g), 0);
    ev_run(loop, EVRUN_NOWAIT);
    curl_ev_free(c); /* the callback hears about it, nothing leaks */
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.r.rc, CURLE_ABORTED_BY_CALLBACK);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers),         cmocka_unit_test(test_fetch_ok),
        cmocka_unit_test(test_fetch_too_large), cmocka_unit_test(test_fetch_timeout),
        cmocka_unit_test(test_fetch_refused),   cmocka_unit_test(test_free_aborts),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
