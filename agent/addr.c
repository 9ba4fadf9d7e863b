/* Listening addresses: one grammar for every option that takes one, and one way to resolve it. */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

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

/* Lexically: "//" and "/./" collapse, a trailing "/" goes, so that two spellings of one socket
 * compare equal ("..": left as written, it may cross a symlink). out has room for in. */
static void normalise_path(const char *in, char *out)
{
    size_t n = 0;
    for (const char *p = in; *p;) {
        if (p[0] == '/' && (p[1] == '/' || (p[1] == '.' && (p[2] == '/' || !p[2])))) {
            p += p[1] == '/' ? 1 : 2;
            continue;
        }
        out[n++] = *p++;
    }
    if (n > 1 && out[n - 1] == '/')
        n--;
    out[n ? n : 1] = '\0';
    if (!n)
        out[0] = '/';
}

static const char *parse_unix(const char *path, struct addr *out)
{
    if (path[0] != '/')
        return "expected unix:/absolute/path";
    if (strlen(path) >= sizeof(out->path))
        return "the unix socket path is too long";
    out->kind = ADDR_UNIX;
    normalise_path(path, out->path);
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

static bool is_wildcard(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_ANY);
    return a->ss_family == AF_INET6 &&
           IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

static unsigned short port_of(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)a)->sin_port);
    return a->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)a)->sin6_port) : 0;
}

static bool same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* [::] is dual-stack on Linux by default: it takes the port on IPv4 too. */
static bool covers(const struct sockaddr_storage *wild, const struct sockaddr_storage *other)
{
    return is_wildcard(wild) && (wild->ss_family == AF_INET6 || other->ss_family == AF_INET);
}

bool addr_tcp_overlap(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    unsigned short pa = port_of(a);
    if (pa == 0 || pa != port_of(b))
        return false;
    return same_host(a, b) || covers(a, b) || covers(b, a);
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

static int unix_fail(char *err, size_t errlen, const char *path, const char *why)
{
    snprintf(err, errlen, "unix socket %s %s", path, why);
    return -1;
}

int addr_unix_prepare(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : unix_fail(err, errlen, path, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return unix_fail(err, errlen, path, "exists and is not a socket: refusing to replace it");
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return unix_fail(err, errlen, path, strerror(errno));
    int rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    int e = errno;
    close(fd);
    if (rc == 0 || e != ECONNREFUSED) /* someone listens on it (maybe this very agent) */
        return unix_fail(err, errlen, path, "is in use by a listening socket");
    if (unlink(path) < 0 && errno != ENOENT)
        return unix_fail(err, errlen, path, strerror(errno));
    return 0;
}
