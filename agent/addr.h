/* The one parser of listening addresses: host:port, [ipv6]:port and unix:/path, for listen,
 * http-listen, admin-listen and --check-config alike, so that what the check accepts is what
 * starts. Parsing is pure; addr_resolve() turns a parsed TCP address into a sockaddr. */
#ifndef PTA_ADDR_H
#define PTA_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/socket.h>

enum addr_kind { ADDR_TCP, ADDR_UNIX };

/* Which forms a caller accepts. */
#define ADDR_ALLOW_TCP 1u
#define ADDR_ALLOW_UNIX 2u
/* Port 0 (the kernel picks one): for programs and tests that bind and then ask for the port, never
 * for an option a user writes (the config refuses it). */
#define ADDR_ALLOW_PORT0 4u

#define ADDR_HOST_MAX 256
#define ADDR_PATH_MAX 108 /* sizeof(sockaddr_un.sun_path) */

struct addr {
    enum addr_kind kind;
    char host[ADDR_HOST_MAX]; /* TCP: a name or a numeric address, without brackets */
    char port[6];             /* TCP: 1..65535, digits only */
    char path[ADDR_PATH_MAX]; /* UNIX: absolute path, normalised ("//", "/./") */
};

/* Parses s into out. Returns NULL, or a reason a user can act on ("expected host:port", "the port
 * must be a number between 1 and 65535", ...); out is then unspecified. A host is required: the
 * wildcard must be written 0.0.0.0 or [::]. */
const char *addr_parse(const char *s, unsigned allow, struct addr *out);

/* Resolves a TCP address the way the agent binds it: getaddrinfo() with AI_PASSIVE, so names such
 * as "localhost" are looked up (first answer wins) and numeric addresses are taken as they are.
 * Returns 0, or -1 with the reason in err. */
int addr_resolve(const struct addr *a, struct sockaddr_storage *ss, socklen_t *len, char *err,
                 size_t errlen);

/* Before binding a unix socket at path: removes a stale socket left by a previous run, and only
 * that. Refuses (-1, err) a path that is not a socket (never deletes a regular file) or a socket
 * something listens on (two listeners of this agent given two spellings of one path). 0 when the
 * path is free. */
int addr_unix_prepare(const char *path, char *err, size_t errlen);

/* True when two resolved TCP addresses cannot both be bound: the same port and the same host, or
 * a wildcard (0.0.0.0 takes the port on every IPv4 address, [::] on every address). */
bool addr_tcp_overlap(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/* Parses and, for TCP, resolves: "will this address bind?" without binding. */
int addr_check(const char *s, unsigned allow, char *err, size_t errlen);

#endif
