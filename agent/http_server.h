/* The agent's HTTP server: every route of an http_router (metrics, health, JWKS, admin API) on the
 * http-listen address, and the admin routes alone on an optional unix socket (admin-listen).
 * libmicrohttpd serves each listener from its own thread; handlers run on the event-loop thread
 * that owns the data (ev_async there, a condition variable back), so the hot path needs no locks.
 * Used by main.c. */
#ifndef PTA_HTTP_SERVER_H
#define PTA_HTTP_SERVER_H

#include <stddef.h>

#include <ev.h>

#include "http_router.h"

/* listen: "host:port" (port 0: any, see http_server_port()) or NULL; admin_listen: "unix:/path" or
 * NULL (the socket is created mode 0600, replacing a stale one). The routes are copied: the table
 * is frozen once serving. Returns NULL with err filled. */
struct http_server *http_server_start(struct ev_loop *loop, const struct http_router *routes,
                                      const char *listen, const char *admin_listen, char *err,
                                      size_t errlen);
/* The bearer token admin routes need on http-listen (copied; NULL: admin routes are absent
 * there). Any thread; takes effect for the next request. */
int http_server_set_admin_token(struct http_server *s, const char *token);
void http_server_stop(struct http_server *s);
/* The bound TCP port of http-listen (useful with port 0), 0 without one. */
int http_server_port(const struct http_server *s);

#endif
