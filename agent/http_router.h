/* The route table of the agent's HTTP server: method + path -> handler, with a body limit and an
 * authentication rule per route, and the decisions that come before a handler runs (404, 405 with
 * Allow, 401 with WWW-Authenticate, 413). Pure: no sockets, no threads. Used by http_server.c;
 * routes are registered by main.c (/metrics, /healthz, /admin/...) and later by the JWKS and the
 * admin API. */
#ifndef PTA_HTTP_ROUTER_H
#define PTA_HTTP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

enum http_auth {
    HTTP_AUTH_NONE,  /* public: /metrics, /healthz, the JWKS */
    HTTP_AUTH_ADMIN, /* a bearer admin token, or the admin unix socket; absent (404) otherwise */
};

/* Where a request came in: the admin socket's permissions already authenticate its peers. */
enum http_origin { HTTP_ORIGIN_TCP, HTTP_ORIGIN_ADMIN_SOCKET };

struct http_request {
    const char *method, *path;
    const char *content_type; /* NULL when absent */
    const char *body;         /* NUL-terminated copy, NULL when there is none */
    size_t body_len;
    enum http_origin origin;
    /* A query argument ("?sub=alice") by name, NULL when absent. */
    const char *(*arg)(const struct http_request *req, const char *name);
    void *server_ctx; /* for arg() */
};

/* Filled by a handler (or by the router for its own errors). body is malloc'd and owned by the
 * response; the header values are static strings or NULL. */
struct http_response {
    unsigned status;
    const char *content_type;
    char *body;
    size_t body_len;
    const char *cache_control;
    const char *www_authenticate;
    char allow[48]; /* "GET, HEAD" for a 405 */
};

/* Runs on the event-loop thread. Sets resp (status 200 and an empty body are preset); a handler
 * that cannot allocate its body sets status 500 or leaves body NULL. */
typedef void (*http_handler_fn)(void *ud, const struct http_request *req,
                                struct http_response *resp);

struct http_route {
    const char *method; /* "GET" also answers HEAD */
    const char *path;   /* exact match */
    enum http_auth auth;
    size_t max_body; /* largest request body accepted; 0: none (a body is 413) */
    http_handler_fn fn;
    void *ud;
};

#define HTTP_ROUTES_MAX 32

struct http_router {
    struct http_route routes[HTTP_ROUTES_MAX];
    size_t n;
};

void http_router_init(struct http_router *r);
/* Copies route (its strings must outlive the router). -1 when full or when method + path is
 * already there. */
int http_router_add(struct http_router *r, const struct http_route *route);

/* The route for method and path, or NULL with resp set to the error: 404 for an unknown path (and
 * for admin routes when admin_enabled is false and the request did not come through the admin
 * socket; only admin routes exist on the admin socket), 405 with Allow when the path exists with
 * other methods. */
const struct http_route *http_router_match(const struct http_router *r, const char *method,
                                           const char *path, enum http_origin origin,
                                           bool admin_enabled, struct http_response *resp);

/* Checks a route's authentication: 0, or -1 with resp set to 401 and WWW-Authenticate. token is
 * the admin token (NULL: none configured), authorization the request's header (NULL: absent).
 * The comparison takes the same time wherever the two differ. */
int http_router_authorize(const struct http_route *route, enum http_origin origin,
                          const char *authorization, const char *token, struct http_response *resp);

/* 413 unless declared_len (Content-Length, or what has arrived so far) fits the route. */
int http_router_check_body(const struct http_route *route, unsigned long long len,
                           struct http_response *resp);

/* Helpers for handlers and the router's own errors. Each frees what resp held. */
void http_response_text(struct http_response *resp, unsigned status, const char *type,
                        char *body); /* takes body (malloc'd) */
void http_response_json(struct http_response *resp, unsigned status, const char *json); /* copies */
void http_response_error(struct http_response *resp, unsigned status, const char *message);
void http_response_free(struct http_response *resp);

#endif
