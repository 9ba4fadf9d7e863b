/* Parsing of the cache-redis-url option: redis://[user@]host[:port][/db] (IPv6 in brackets) and
 * unix:/path/to/socket[?db=N]. Pure. Used by the configuration checks and redis_client.c. */
#ifndef PTA_REDIS_URL_H
#define PTA_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

#define REDIS_URL_DEFAULT_PORT 6379
#define REDIS_URL_HOST_MAX 255
#define REDIS_URL_PATH_MAX 107 /* sun_path holds 108 bytes with the NUL */
#define REDIS_URL_USER_MAX 128
#define REDIS_URL_DB_MAX 1000000

struct redis_url {
    bool unix_socket;
    char host[REDIS_URL_HOST_MAX + 1]; /* name or IP literal without brackets; unix: the path */
    int port;                          /* tcp only */
    int db;                            /* 0 unless given */
    char user[REDIS_URL_USER_MAX + 1]; /* ACL user for AUTH, "" for the default user */
};

/* Returns 0, or -1 with a message in err (the URL is never echoed: it might hold a password).
 * A password in the URL is refused (it belongs in cache-redis-password-file); rediss:// is
 * refused when the hiredis the agent is built with has no TLS support (Debian 12's 0.14). */
int redis_url_parse(const char *s, struct redis_url *u, char *err, size_t errlen);

/* "host:port/db" or "unix:path?db=N" for logs (no user). */
void redis_url_describe(const struct redis_url *u, char *out, size_t cap);

#endif
