/* The SPOP listening socket (TCP over IPv4/IPv6, or a unix socket) and its accept loop on a libev
 * loop. Each accepted socket goes to the callback given at creation; the listener knows nothing of
 * what becomes of it. Used by agent.c. */
#ifndef PTA_LISTENER_H
#define PTA_LISTENER_H

#include <stddef.h>

#include <ev.h>

struct listener;

/* Gets an accepted socket (non-blocking, close-on-exec, TCP_NODELAY on TCP) and owns it from then
 * on; peer is "host:port", "[v6]:port" or "unix", only valid during the call. */
typedef void (*listener_accept_fn)(void *ud, int fd, const char *peer);

/* Parses "host:port", "[v6]:port" or "unix:/path" and binds it. Returns NULL with err filled. */
struct listener *listener_new(struct ev_loop *loop, const char *addr, listener_accept_fn on_accept,
                              void *ud, char *err, size_t errlen);
void listener_stop(struct listener *l);
void listener_free(struct listener *l);
/* The bound TCP port (useful with port 0), or 0 for a unix socket. */
int listener_port(const struct listener *l);

#endif
