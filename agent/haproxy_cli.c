/* HAProxy runtime API client (see haproxy_cli.h).
 *
 * The session: connect, send "prompt" and "show info" (its Pid identifies the process), then
 * command lines, at most `window` unanswered. In interactive mode every line is answered by its
 * output followed by a prompt line ("\n> ", or "\nmaster> " style on the master CLI); map commands
 * print nothing on success. Measured (HAProxy CPU per "add map" of a 900-byte entry): interactive
 * 10-26 us, one connection per command 104-130 us, so one long session it is.
 *
 * The process check: HAProxy keeps an open CLI session to an old worker alive after a reload,
 * so every probe_interval a fresh connection asks "show info"; a Pid different from the session's
 * means a reload: on_stale(), then the session closes after its last answers and reconnects. */
#include "haproxy_cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "list.h"
#include "log.h"

#define RBUF_MAX 65536 /* the longest answer we accept ("show info" is ~1.6 KB) */
#define BACKOFF_MIN 0.1
#define WINDOW_MAX 256

enum kind { K_PROMPT, K_INFO, K_CMD, K_KEEPALIVE };

enum state { S_DOWN, S_CONNECTING, S_HANDSHAKE, S_READY, S_CLOSING };

struct line {
    struct list link;
    size_t len;
    char data[];
};

struct probe {
    int fd;
    ev_io io;
    bool connected, sent;
    char buf[4096];
    size_t len;
};

struct hcli {
    struct ev_loop *loop;
    struct hcli_settings s;
    char *address, *route;
    struct hcli_ops ops;
    void *ud;
    struct sockaddr_storage sa;
    socklen_t salen;

    enum state state;
    int fd;
    ev_io rio, wio;
    ev_timer conn_timer; /* reconnect backoff, or connect / answer timeout */
    ev_timer probe_timer;
    double backoff;

    struct list queue; /* struct line, not sent yet */
    size_t nqueued;
    char *out; /* bytes being written */
    size_t out_len, out_off, out_cap;
    enum kind kinds[WINDOW_MAX + 4]; /* what each unanswered line was, oldest first */
    size_t k_head, k_count;
    char rbuf[RBUF_MAX];
    size_t rlen;

    bool need_resync; /* something may have been lost since HAProxy last matched our view */
    bool stale_seen;
    long pid;
    int version; /* of the session's process: major * 100 + minor, 0 when unknown */
    struct probe probe;
    char last_error[128]; /* logged once until it changes */
    bool logged_down;
    struct hcli_stats st;
};

/* ---- helpers ---- */

static void log_state(struct hcli *c, bool down, const char *what, const char *detail)
{
    if (down && c->logged_down)
        return;
    c->logged_down = down;
    if (down)
        log_warn("haproxy-cli %s: %s%s%s", c->address, what, detail ? ": " : "",
                 detail ? detail : "");
    else
        log_info("haproxy-cli %s: %s%s%s", c->address, what, detail ? " " : "",
                 detail ? detail : "");
}

static void log_answer_error(struct hcli *c, const char *text, size_t len)
{
    char printable[sizeof(c->last_error)];
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        len--;
    size_t n = len < sizeof(printable) - 1 ? len : sizeof(printable) - 1;
    log_printable(text, n, printable, sizeof(printable));
    if (strcmp(printable, c->last_error) == 0)
        return;
    snprintf(c->last_error, sizeof(c->last_error), "%s", printable);
    log_warn("haproxy-cli %s: HAProxy refused a command: %s", c->address, printable);
}

static int parse_address(struct hcli *c, const char *a, char *err, size_t errlen)
{
    memset(&c->sa, 0, sizeof(c->sa));
    if (strncmp(a, "unix:", 5) == 0 || a[0] == '/') {
        const char *path = a[0] == '/' ? a : a + 5;
        struct sockaddr_un *sun = (struct sockaddr_un *)&c->sa;
        if (!*path || strlen(path) >= sizeof(sun->sun_path)) {
            snprintf(err, errlen, "bad unix socket path '%s'", path);
            return -1;
        }
        sun->sun_family = AF_UNIX;
        strcpy(sun->sun_path, path);
        c->salen = sizeof(*sun);
        return 0;
    }
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a || (size_t)(colon - a) >= sizeof(host)) {
        snprintf(err, errlen, "bad runtime API address '%s' (unix:/path or ip:port)", a);
        return -1;
    }
    memcpy(host, a, (size_t)(colon - a));
    host[colon - a] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535) {
        snprintf(err, errlen, "bad port in '%s'", a);
        return -1;
    }
    struct sockaddr_in *in4 = (struct sockaddr_in *)&c->sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&c->sa;
    size_t hl = strlen(host);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) != 1)
            goto bad;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        c->salen = sizeof(*in6);
        return 0;
    }
    if (inet_pton(AF_INET, host, &in4->sin_addr) != 1)
        goto bad;
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    c->salen = sizeof(*in4);
    return 0;
bad:
    snprintf(err, errlen, "'%s' is not a numeric address (names are not resolved)", host);
    return -1;
}

static int open_socket(const struct hcli *c)
{
    int fd = socket(c->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)&c->sa, c->salen) < 0 && errno != EINPROGRESS &&
        errno != EAGAIN) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void drop_queue(struct hcli *c)
{
    while (!list_empty(&c->queue)) {
        struct line *l = list_entry(c->queue.next, struct line, link);
        list_del(&l->link);
        free(l);
    }
    c->st.dropped += c->nqueued;
    c->nqueued = 0;
}

/* ---- the session ---- */

static void schedule(struct hcli *c, double after)
{
    ev_timer_stop(c->loop, &c->conn_timer);
    ev_timer_set(&c->conn_timer, after, 0.);
    ev_timer_start(c->loop, &c->conn_timer);
}

static void session_close(struct hcli *c, const char *why, bool immediate)
{
    if (c->fd >= 0) {
        ev_io_stop(c->loop, &c->rio);
        ev_io_stop(c->loop, &c->wio);
        close(c->fd);
        c->fd = -1;
    }
    if (c->k_count > 0 || c->out_len > c->out_off)
        c->need_resync = true;
    c->k_count = c->k_head = 0;
    c->out_len = c->out_off = 0;
    c->rlen = 0;
    bool was_ready = c->state == S_READY || c->state == S_CLOSING;
    c->state = S_DOWN;
    c->st.ready = false;
    if (was_ready || !immediate)
        log_state(c, !immediate, immediate ? "session ended" : "session lost", why);
    double after = immediate ? 0. : c->backoff;
    if (!immediate)
        c->backoff = c->backoff * 2 > c->s.backoff_max ? c->s.backoff_max : c->backoff * 2;
    schedule(c, after);
}

static void push_kind(struct hcli *c, enum kind k)
{
    c->kinds[(c->k_head + c->k_count) % (WINDOW_MAX + 4)] = k;
    c->k_count++;
}

static int out_append(struct hcli *c, const char *data, size_t len)
{
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p)
            return -1;
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

/* Moves queued lines into the output while the window allows. */
static void fill_window(struct hcli *c)
{
    if (c->state != S_READY)
        return;
    while (!list_empty(&c->queue) && c->k_count < c->s.window) {
        struct line *l = list_entry(c->queue.next, struct line, link);
        if (out_append(c, l->data, l->len) < 0)
            return; /* retried on the next answer */
        list_del(&l->link);
        c->nqueued--;
        free(l);
        push_kind(c, K_CMD);
        c->st.sent++;
    }
    if (c->out_len > c->out_off)
        ev_io_start(c->loop, &c->wio);
    if (c->k_count > 0)
        schedule(c, c->s.timeout); /* the answer timeout */
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hcli *c = w->data;
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            session_close(c, strerror(errno), false);
            return;
        }
        c->out_off += (size_t)n;
    }
    ev_io_stop(c->loop, &c->wio);
}

/* The "Pid: N" line of "show info", complete (ended by a newline), or -1. */
static long parse_pid(const char *text, size_t len)
{
    static const char tag[] = "\nPid: ";
    for (size_t i = 0; i + sizeof(tag) - 1 < len; i++) {
        if (memcmp(text + i, tag, sizeof(tag) - 1) != 0)
            continue;
        long pid = 0;
        size_t j = i + sizeof(tag) - 1;
        for (; j < len && text[j] >= '0' && text[j] <= '9'; j++) {
            pid = pid * 10 + (text[j] - '0');
            if (pid > 0x7fffffffL)
                return -1;
        }
        return (pid > 0 && j < len && text[j] == '\n') ? pid : -1;
    }
    return -1;
}

/* The "Version: X.Y..." line of "show info" as X * 100 + Y, or 0 when absent or unreadable. */
static int parse_version(const char *text, size_t len)
{
    static const char tag[] = "\nVersion: ";
    for (size_t i = 0; i + sizeof(tag) - 1 < len; i++) {
        if (memcmp(text + i, tag, sizeof(tag) - 1) != 0)
            continue;
        int part[2] = {0, 0};
        size_t j = i + sizeof(tag) - 1;
        for (int k = 0; k < 2; k++, j++) {
            size_t start = j;
            for (; j < len && text[j] >= '0' && text[j] <= '9' && part[k] < 1000; j++)
                part[k] = part[k] * 10 + (text[j] - '0');
            if (j == start || part[k] >= 100 || j >= len || (k == 0 && text[j] != '.'))
                return 0;
        }
        return part[0] * 100 + part[1];
    }
    return 0;
}

/* A map command's answer: nothing, or "Key not found." (a del of what HAProxy no longer had). */
static bool answer_ok(const char *text, size_t len)
{
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        len--;
    while (len > 0 && (*text == '\n' || *text == ' ')) {
        text++;
        len--;
    }
    static const char not_found[] = "Key not found.";
    return len == 0 || (len == sizeof(not_found) - 1 && memcmp(text, not_found, len) == 0);
}

static void session_ready(struct hcli *c, long pid, int version)
{
    bool resync = c->need_resync || pid != c->pid;
    c->pid = pid;
    c->version = version;
    c->state = S_READY;
    c->st.ready = true;
    c->st.sessions++;
    c->backoff = BACKOFF_MIN;
    c->stale_seen = false;
    char detail[64];
    snprintf(detail, sizeof(detail), "(HAProxy %d.%d, pid %ld)", version / 100, version % 100, pid);
    log_state(c, false, "session ready", detail);
    if (resync) {
        drop_queue(c);
        c->need_resync = false;
        c->st.resyncs++;
    }
    if (c->ops.on_ready)
        c->ops.on_ready(c->ud, c, pid, resync);
    fill_window(c);
}

/* One complete answer (the text before its prompt line). Returns -1 when the session closed. */
static int on_answer(struct hcli *c, const char *text, size_t len)
{
    if (c->k_count == 0) {
        session_close(c, "an answer nobody asked for", false);
        return -1;
    }
    enum kind k = c->kinds[c->k_head];
    c->k_head = (c->k_head + 1) % (WINDOW_MAX + 4);
    c->k_count--;
    if (k == K_INFO) {
        long pid = parse_pid(text, len);
        if (pid < 0) {
            session_close(c, "no Pid in \"show info\" (not an HAProxy runtime API?)", false);
            return -1;
        }
        session_ready(c, pid, parse_version(text, len));
    } else if (k == K_CMD) {
        c->st.answered++;
        if (answer_ok(text, len)) {
            c->last_error[0] = '\0';
        } else {
            c->st.errors++;
            log_answer_error(c, text, len);
        }
    }
    if (c->state == S_CLOSING && c->k_count == 0) {
        session_close(c, "HAProxy was reloaded", true);
        return -1;
    }
    if (c->k_count == 0)
        ev_timer_stop(c->loop, &c->conn_timer);
    else
        schedule(c, c->s.timeout);
    fill_window(c);
    return 0;
}

/* The end of an answer: "\n" + a prompt word ([A-Za-z0-9@!_.-]*, e.g. "master") + "> ". Our
 * commands never print a line that starts like that. The master CLI answers "prompt" itself with
 * a bare "master> " (no newline): first says the buffer starts a session. Returns the prompt's
 * length at p, or 0. */
static size_t prompt_at(const char *p, size_t avail, bool first)
{
    size_t skip = (avail > 0 && p[0] == '\n') ? 1 : 0;
    if (!skip && !first)
        return 0;
    for (size_t i = skip; i + 1 < avail && i < 40; i++) {
        char ch = p[i];
        if (ch == '>' && p[i + 1] == ' ')
            return i + 2;
        bool word = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                    (ch >= '0' && ch <= '9') || ch == '@' || ch == '!' || ch == '_' || ch == '.' ||
                    ch == '-';
        if (!word)
            return 0;
    }
    return 0;
}

static void parse_answers(struct hcli *c)
{
    size_t start = 0;
    for (size_t i = 0; i < c->rlen;) {
        bool first = i == 0 && c->k_count > 0 && c->kinds[c->k_head] == K_PROMPT;
        size_t pl = prompt_at(c->rbuf + i, c->rlen - i, first);
        if (!pl) {
            i++;
            continue;
        }
        if (on_answer(c, c->rbuf + start, i - start) < 0)
            return;
        i += pl;
        start = i;
    }
    memmove(c->rbuf, c->rbuf + start, c->rlen - start);
    c->rlen -= start;
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hcli *c = w->data;
    for (;;) {
        if (c->rlen == sizeof(c->rbuf)) {
            session_close(c, "an answer too long", false);
            return;
        }
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            session_close(c, n == 0 ? "closed by HAProxy" : strerror(errno), false);
            return;
        }
        c->rlen += (size_t)n;
        parse_answers(c);
        if (c->fd < 0) /* closed while answering */
            return;
    }
}

static void start_handshake(struct hcli *c)
{
    char info[64];
    snprintf(info, sizeof(info), "%s%sshow info\n", c->route, *c->route ? " " : "");
    c->state = S_HANDSHAKE;
    if (out_append(c, "prompt\n", 7) < 0 || out_append(c, info, strlen(info)) < 0) {
        session_close(c, "out of memory", false);
        return;
    }
    push_kind(c, K_PROMPT);
    push_kind(c, K_INFO);
    ev_io_start(c->loop, &c->rio);
    ev_io_start(c->loop, &c->wio);
    schedule(c, c->s.timeout);
}

static void on_connect_writable(struct ev_loop *loop, ev_io *w, int revents);

static void session_open(struct hcli *c)
{
    c->fd = open_socket(c);
    if (c->fd < 0) {
        session_close(c, strerror(errno), false);
        return;
    }
    c->state = S_CONNECTING;
    ev_io_init(&c->rio, on_read, c->fd, EV_READ);
    ev_io_init(&c->wio, on_connect_writable, c->fd, EV_WRITE);
    c->rio.data = c->wio.data = c;
    ev_io_start(c->loop, &c->wio);
    schedule(c, c->s.timeout);
}

static void on_connect_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct hcli *c = w->data;
    int e = 0;
    socklen_t el = sizeof(e);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e) {
        session_close(c, strerror(e ? e : errno), false);
        return;
    }
    ev_io_stop(loop, &c->wio);
    ev_io_init(&c->wio, on_write, c->fd, EV_WRITE);
    c->wio.data = c;
    start_handshake(c);
}

static void on_conn_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hcli *c = w->data;
    switch (c->state) {
    case S_DOWN:
        session_open(c);
        return;
    case S_CONNECTING:
    case S_HANDSHAKE:
    case S_READY:
    case S_CLOSING:
        session_close(c, c->state == S_CONNECTING ? "connect timeout" : "no answer in time", false);
        return;
    }
}

/* ---- the process check ---- */

static void probe_stop(struct hcli *c)
{
    if (c->probe.fd < 0)
        return;
    ev_io_stop(c->loop, &c->probe.io);
    close(c->probe.fd);
    c->probe.fd = -1;
}

static void probe_result(struct hcli *c)
{
    long pid = parse_pid(c->probe.buf, c->probe.len);
    probe_stop(c);
    if (pid <= 0 || c->state != S_READY || pid == c->pid || c->stale_seen)
        return;
    /* A reload: the socket leads to a new process, the session still to the old one. */
    c->stale_seen = true;
    char detail[64];
    snprintf(detail, sizeof(detail), "(pid %ld -> %ld)", c->pid, pid);
    log_state(c, false, "HAProxy process changed", detail);
    c->need_resync = true;
    if (c->ops.on_stale)
        c->ops.on_stale(c->ud, c);
    /* Lines queued from now on wait for the new process (its re-sync drops them anyway). */
    c->state = S_CLOSING;
    if (c->k_count == 0)
        session_close(c, "HAProxy was reloaded", true);
}

static void on_probe_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hcli *c = w->data;
    struct probe *p = &c->probe;
    if (!p->sent) {
        int e = 0;
        socklen_t el = sizeof(e);
        char cmd[64];
        int n = snprintf(cmd, sizeof(cmd), "%s%sshow info\n", c->route, *c->route ? " " : "");
        if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e ||
            send(p->fd, cmd, (size_t)n, MSG_NOSIGNAL) != n) {
            probe_stop(c);
            return;
        }
        p->sent = true;
        shutdown(p->fd, SHUT_WR); /* the master CLI waits for more otherwise */
        ev_io_stop(c->loop, &p->io);
        ev_io_set(&p->io, p->fd, EV_READ);
        ev_io_start(c->loop, &p->io);
        return;
    }
    for (;;) {
        if (p->len == sizeof(p->buf)) {
            probe_result(c); /* the Pid line comes early: enough was read */
            return;
        }
        ssize_t n = recv(p->fd, p->buf + p->len, sizeof(p->buf) - p->len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            probe_result(c);
            return;
        }
        p->len += (size_t)n;
        if (parse_pid(p->buf, p->len) > 0) {
            probe_result(c); /* the Pid line is complete: no need to wait for the rest */
            return;
        }
    }
}

static void on_probe_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hcli *c = w->data;
    probe_stop(c); /* a probe that did not finish in a whole interval is abandoned */
    if (c->state != S_READY)
        return;
    /* Keeps the session from HAProxy's "stats timeout" (10 s by default) while idle. */
    if (c->k_count == 0 && list_empty(&c->queue) && out_append(c, "show version\n", 13) == 0) {
        push_kind(c, K_KEEPALIVE);
        ev_io_start(c->loop, &c->wio);
    }
    c->probe.fd = open_socket(c);
    if (c->probe.fd < 0)
        return;
    c->probe.len = 0;
    c->probe.sent = false;
    ev_io_init(&c->probe.io, on_probe_io, c->probe.fd, EV_WRITE);
    c->probe.io.data = c;
    ev_io_start(c->loop, &c->probe.io);
}

/* ---- public ---- */

struct hcli *hcli_new(struct ev_loop *loop, const struct hcli_settings *s,
                      const struct hcli_ops *ops, void *ud, char *err, size_t errlen)
{
    const char *route = s->route ? s->route : "";
    if (!s->address || (*route && route[0] != '@') || strlen(route) > 20 ||
        strpbrk(route, " ;\\\n\r\t")) {
        snprintf(err, errlen, "bad runtime API address or route");
        return NULL;
    }
    struct hcli *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->loop = loop;
    c->s = *s;
    c->address = strdup(s->address);
    c->route = strdup(route);
    if (ops)
        c->ops = *ops;
    c->ud = ud;
    c->fd = -1;
    c->probe.fd = -1;
    if (!c->s.max_queue)
        c->s.max_queue = 4096;
    if (!c->s.window)
        c->s.window = 16;
    if (c->s.window > WINDOW_MAX)
        c->s.window = WINDOW_MAX;
    if (c->s.probe_interval <= 0)
        c->s.probe_interval = 1.;
    if (c->s.timeout <= 0)
        c->s.timeout = 2.;
    if (c->s.backoff_max <= 0)
        c->s.backoff_max = 5.;
    c->backoff = BACKOFF_MIN;
    c->need_resync = true;
    list_init(&c->queue);
    if (!c->address || !c->route || parse_address(c, s->address, err, errlen) < 0) {
        if (!c->address || !c->route)
            snprintf(err, errlen, "out of memory");
        hcli_free(c);
        return NULL;
    }
    c->s.address = c->address;
    c->s.route = c->route;
    ev_init(&c->conn_timer, on_conn_timer);
    c->conn_timer.data = c;
    ev_timer_init(&c->probe_timer, on_probe_timer, c->s.probe_interval, c->s.probe_interval);
    c->probe_timer.data = c;
    ev_timer_start(loop, &c->probe_timer);
    schedule(c, 0.);
    return c;
}

void hcli_free(struct hcli *c)
{
    if (!c)
        return;
    if (c->loop) {
        ev_timer_stop(c->loop, &c->conn_timer);
        ev_timer_stop(c->loop, &c->probe_timer);
        probe_stop(c);
        if (c->fd >= 0) {
            ev_io_stop(c->loop, &c->rio);
            ev_io_stop(c->loop, &c->wio);
            close(c->fd);
        }
    }
    if (c->queue.next)
        drop_queue(c);
    free(c->out);
    free(c->address);
    free(c->route);
    free(c);
}

int hcli_send(struct hcli *c, const char *line, size_t len)
{
    if (len == 0 || len > HCLI_LINE_MAX || line[len - 1] != '\n' || memchr(line, '\n', len - 1) ||
        memchr(line, '\0', len))
        return -1;
    if (c->nqueued >= c->s.max_queue) {
        drop_queue(c);
        c->need_resync = true;
        if (c->state == S_READY || c->state == S_CLOSING)
            session_close(c, "queue overflow", true);
        return -1;
    }
    struct line *l = malloc(sizeof(*l) + len);
    if (!l)
        return -1;
    l->len = len;
    memcpy(l->data, line, len);
    list_insert(c->queue.prev, &l->link); /* at the tail */
    c->nqueued++;
    fill_window(c);
    return 0;
}

void hcli_get_stats(const struct hcli *c, struct hcli_stats *out)
{
    *out = c->st;
    out->pid = c->pid;
    out->queued = c->nqueued;
    out->in_flight = c->k_count;
}

const char *hcli_address(const struct hcli *c)
{
    return c->address;
}

int hcli_version(const struct hcli *c)
{
    return c->version;
}

const char *hcli_route(const struct hcli *c)
{
    return c->route;
}
