/* cache-redis-url parsing. Strict: every character is accounted for, so a typo is an error at
 * --check-config rather than a connection to somewhere unexpected. */
#include "redis_url.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Reads 1..max decimal digits at *p into *v (at most hi). Returns false on no digit or overflow. */
static bool read_num(const char **p, int hi, int *v)
{
    const char *s = *p;
    long n = 0;
    if (*s < '0' || *s > '9')
        return false;
    while (*s >= '0' && *s <= '9') {
        n = n * 10 + (*s++ - '0');
        if (n > hi)
            return false;
    }
    *p = s;
    *v = (int)n;
    return true;
}

static bool user_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("._-~", c);
}

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

static bool v6_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
           c == '.';
}

/* [user@] at *p. */
static int parse_user(const char **p, struct redis_url *u, char *err, size_t errlen)
{
    const char *at = strchr(*p, '@');
    const char *slash = strchr(*p, '/');
    if (!at || (slash && slash < at))
        return 0;
    size_t n = (size_t)(at - *p);
    if (memchr(*p, ':', n))
        return fail(err, errlen,
                    "cache-redis-url must not hold a password: put it in "
                    "cache-redis-password-file");
    if (n == 0 || n > REDIS_URL_USER_MAX)
        return fail(err, errlen, "cache-redis-url: bad user name length");
    for (size_t i = 0; i < n; i++)
        if (!user_char((*p)[i]))
            return fail(err, errlen, "cache-redis-url: bad character in the user name");
    memcpy(u->user, *p, n);
    u->user[n] = '\0';
    *p = at + 1;
    return 0;
}

static int parse_host(const char **p, struct redis_url *u, char *err, size_t errlen)
{
    const char *s = *p;
    size_t n = 0;
    if (*s == '[') {
        s++;
        while (v6_char(s[n]))
            n++;
        if (s[n] != ']' || n == 0)
            return fail(err, errlen, "cache-redis-url: bad IPv6 address (expected [addr])");
        *p = s + n + 1;
    } else {
        while (host_char(s[n]))
            n++;
        if (n == 0)
            return fail(err, errlen, "cache-redis-url: missing host");
        *p = s + n;
    }
    if (n > REDIS_URL_HOST_MAX)
        return fail(err, errlen, "cache-redis-url: host name too long");
    memcpy(u->host, s, n);
    u->host[n] = '\0';
    return 0;
}

static int parse_tcp(const char *p, struct redis_url *u, char *err, size_t errlen)
{
    if (parse_user(&p, u, err, errlen) < 0 || parse_host(&p, u, err, errlen) < 0)
        return -1;
    if (*p == ':') {
        p++;
        if (!read_num(&p, 65535, &u->port) || u->port == 0)
            return fail(err, errlen, "cache-redis-url: bad port (1-65535)");
    }
    if (*p == '/' && p[1] != '\0') {
        p++;
        if (!read_num(&p, REDIS_URL_DB_MAX, &u->db))
            return fail(err, errlen, "cache-redis-url: bad database number after '/'");
    } else if (*p == '/') {
        p++;
    }
    if (*p)
        return fail(err, errlen, "cache-redis-url: unexpected text after the %s",
                    u->db ? "database number" : "address");
    return 0;
}

static int parse_unix(const char *p, struct redis_url *u, char *err, size_t errlen)
{
    if (strncmp(p, "//", 2) == 0)
        p += 2; /* unix:///path */
    if (*p != '/')
        return fail(err, errlen, "cache-redis-url: unix: needs an absolute socket path");
    size_t n = strcspn(p, "?");
    if (n > REDIS_URL_PATH_MAX)
        return fail(err, errlen, "cache-redis-url: socket path too long");
    memcpy(u->host, p, n);
    u->host[n] = '\0';
    p += n;
    if (*p == '?') {
        p++;
        if (strncmp(p, "db=", 3) != 0)
            return fail(err, errlen, "cache-redis-url: the only unix: parameter is ?db=N");
        p += 3;
        if (!read_num(&p, REDIS_URL_DB_MAX, &u->db) || *p)
            return fail(err, errlen, "cache-redis-url: bad database number in ?db=");
    }
    u->unix_socket = true;
    u->port = 0;
    return 0;
}

int redis_url_parse(const char *s, struct redis_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    u->port = REDIS_URL_DEFAULT_PORT;
    if (!s || !*s)
        return fail(err, errlen, "cache-redis-url is empty");
    if (strncmp(s, "redis://", 8) == 0)
        return parse_tcp(s + 8, u, err, errlen);
    if (strncmp(s, "unix:", 5) == 0)
        return parse_unix(s + 5, u, err, errlen);
    if (strncmp(s, "rediss://", 9) == 0)
        return fail(err, errlen,
                    "cache-redis-url: rediss:// (TLS) is not supported: the hiredis of Debian 12 "
                    "(0.14) has no TLS; reach Redis over loopback, a private network or a TLS "
                    "tunnel (e.g. stunnel) with redis://");
    return fail(err, errlen, "cache-redis-url must start with redis:// or unix:");
}

void redis_url_describe(const struct redis_url *u, char *out, size_t cap)
{
    if (u->unix_socket)
        snprintf(out, cap, "unix:%s?db=%d", u->host, u->db);
    else if (strchr(u->host, ':'))
        snprintf(out, cap, "[%s]:%d/%d", u->host, u->port, u->db);
    else
        snprintf(out, cap, "%s:%d/%d", u->host, u->port, u->db);
}
