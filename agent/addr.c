/* Listening addresses: one grammar for every option that takes one, and one way to resolve it. */
#include "addr.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>

static const char *parse_port(const char *s, unsigned allow, struct addr *out)
{
    static const char *const bad = "the port must be a number between 1 and 65535";
    size_t n = strlen(s);
    if (n == 0 || n > 5 || strspn(s, "0123456789") != n)
        return bad;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned)(s[i] - '0');
    if ((v < 1 && !(allow & ADDR_ALLOW_PORT0)) || v > 65535)
        return bad;
    memcpy(out->port, s, n + 1);
    return NULL;
}

static const char *parse_tcp(const char *s, unsigned allow, struct addr *out)
{
    const char *host, *port;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close == s + 1 || close[1] != ':')
            return "expected [ipv6]:port";
        host = s + 1;
        hlen = (size_t)(close - host);
        port = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s)
            return "expected host:port";
        if (memchr(s, ':', (size_t)(colon - s)))
            return "an IPv6 address needs brackets, like [::1]:12345";
        host = s;
        hlen = (size_t)(colon - s);
        port = colon + 1;
    }
    if (strpbrk(s, " \t"))
        return "expected host:port without spaces";
    if (hlen >= sizeof(out->host))
        return "the host name is too long";
    const char *why = parse_port(port, allow, out);
    if (why)
        return why;
    out->kind = ADDR_TCP;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    return NULL;
}

static const char *parse_unix(const char *path, struct addr *out)
{
    if (path[0] != '/')
        return "expected unix:/absolute/path";
    if (strlen(path) >= sizeof(out->path))
        return "the unix socket path is too long";
    out->kind = ADDR_UNIX;
    strcpy(out->path, path);
    return NULL;
}

const char *addr_parse(const char *s, unsigned allow, struct addr *out)
{
    memset(out, 0, sizeof(*out));
    if (!s || !*s)
        return "must not be empty";
    if (strncmp(s, "unix:", 5) == 0 && (allow & ADDR_ALLOW_UNIX))
        return parse_unix(s + 5, out);
    if (!(allow & ADDR_ALLOW_TCP))
        return "expected unix:/absolute/path";
    return parse_tcp(s, allow, out);
}

int addr_resolve(const struct addr *a, struct sockaddr_storage *ss, socklen_t *len, char *err,
                 size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = a->kind == ADDR_TCP ? getaddrinfo(a->host, a->port, &hints, &res) : EAI_FAMILY;
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", a->host, gai_strerror(rc));
        return -1;
    }
    if (res->ai_addrlen > sizeof(*ss)) {
        freeaddrinfo(res);
        snprintf(err, errlen, "cannot resolve '%s': address too long", a->host);
        return -1;
    }
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int addr_check(const char *s, unsigned allow, char *err, size_t errlen)
{
    struct addr a;
    const char *why = addr_parse(s, allow, &a);
    if (why) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (a.kind == ADDR_UNIX)
        return 0;
    struct sockaddr_storage ss;
    socklen_t len;
    return addr_resolve(&a, &ss, &len, err, errlen);
}
