/* The SPOP listening socket (TCP over IPv4/IPv6, or a unix socket) and its accept loop on a libev
 * loop. Each accepted socket becomes a conn. Used by main.c through agent.c. */
#ifndef PTA_LISTENER_H
#define PTA_LISTENER_H

#include <stddef.h>

#include <ev.h>

struct agent;

/* Parses "host:port", "[v6]:port" or "unix:/path" and binds it. Returns NULL with err filled. */
struct listener *listener_new(struct agent *a, const char *addr, char *err, size_t errlen);
void listener_stop(struct listener *l);
void listener_free(struct listener *l);
/* The bound TCP port (useful with port 0), or 0 for a unix socket. */
int listener_port(const struct listener *l);

#endif
