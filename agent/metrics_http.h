/* The --metrics-listen HTTP endpoint: GET /metrics (Prometheus text) and GET /healthz.
 * libmicrohttpd serves it from its own thread; the body is produced on the event-loop thread that
 * owns the counters (ev_async there, a condition variable back), so the hot path needs no atomics
 * and no locks. Used by main.c. */
#ifndef PTA_METRICS_HTTP_H
#define PTA_METRICS_HTTP_H

#include <stddef.h>

#include <ev.h>

/* Runs on the loop thread. Returns a malloc'd body for path and sets *status (200 unless told
 * otherwise), or NULL for 404. */
typedef char *(*metrics_http_fn)(void *ud, const char *path, unsigned *status);

struct metrics_http *metrics_http_start(struct ev_loop *loop, const char *addr, metrics_http_fn fn,
                                        void *ud, char *err, size_t errlen);
void metrics_http_stop(struct metrics_http *m);
int metrics_http_port(const struct metrics_http *m);

#endif
