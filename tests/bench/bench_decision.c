/* Micro-benchmark of the decision path on a cache hit, exactly as the daemon runs it: a NOTIFY
 * frame of the shape HAProxy 2.6 sends for the shipped spoe/phantom-token.conf (authorization STR,
 * auth_count INT64, scopes NULL or STR, realm STR) is fed to a real connection (conn_feed(): what
 * conn.c does with the bytes it read) of a real worker (agent_init_with() with the daemon's l1 and
 * finish stages, the connection from agent_adopt() after a real HELLO): frame reassembly, argument
 * lookup, bearer_parse, cache_key_of (HMAC-SHA-256), cache_lookup (hit), decide(),
 * decision_put_actions() and the frame end into the connection's output queue. Nothing is
 * re-implemented here, and no struct is filled by hand.
 *
 * Three loops:
 *   hit      no I/O: conn_commit() only queues the ACK (the daemon sends queued ACKs before its
 *            loop next waits); the queue is rewound after every decision. This is the figure the
 *            "decision path <= 2 us" target is about.
 *   scoped   the same for a route that requires a scope (scopes STR "read"): adds the scope check.
 *   send     with the real flush on a loopback TCP connection: conn_flush_dirty() after every
 *            NOTIFY (one NOTIFY per read, the worst case) and after every 16 (HAProxy packs many
 *            NOTIFYs into one read under load); the other end is drained outside the timed
 *            region.
 * Then the memory one cached entry takes (malloc'd bytes, measured with mallinfo2, over 10 000
 * entries built by idp_classify() from a realistic JWT answer, like introspect.c builds them).
 *
 * Usage: bench_decision [N [hit|all]]   N iterations per loop (default 1000000); "hit" runs only
 * the no-I/O loop and no memory measurement (what run-callgrind.sh uses). BENCH_JWT_SIZE sets the
 * JWT size (default 900). Not a test: never run by ctest. */
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "../unit/spop_peer.h"
#include "agent.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "idp_response.h"
#include "log.h"
#include "spop.h"
#include "stages.h"
#include "token.h"

#define MAX_FRAME 16380u
#define MEM_ENTRIES 10000

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void b64url(const uint8_t *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
    }
    out[o] = '\0';
}

/* A compact JWS like the identity server's: RS256 header, the usual claims, a 256-byte signature,
 * padded with a claim to about size bytes. Returns a malloc'd string. */
static char *make_jwt(size_t size)
{
    const char *hdr = "{\"alg\":\"RS256\",\"kid\":\"bench\",\"typ\":\"JWT\"}";
    char payload[8192];
    long exp = (long)(clock_ms(NULL) / 1000) + 3600;
    int n = snprintf(payload, sizeof(payload),
                     "{\"iss\":\"https://idp.example.test\",\"aud\":\"api.example.test\","
                     "\"sub\":\"bench-user\",\"client_id\":\"bench-client\",\"scope\":\"openid "
                     "read\",\"exp\":%ld,\"iat\":%ld,\"jti\":\"bench\"}",
                     exp, exp - 3600);
    /* sig 342 chars + header 56 + 2 dots; the payload grows by 4/3 of the padding. */
    size_t fixed = 342 + 56 + 2 + (size_t)n * 4 / 3 + 12;
    if (size > fixed) {
        size_t pad = (size - fixed) * 3 / 4;
        if (pad > sizeof(payload) - (size_t)n - 16)
            pad = sizeof(payload) - (size_t)n - 16;
        payload[n - 1] = '\0'; /* drop the closing brace */
        n = (int)strlen(payload);
        n += snprintf(payload + n, sizeof(payload) - (size_t)n, ",\"pad\":\"");
        memset(payload + n, 'x', pad);
        n += (int)pad;
        n += snprintf(payload + n, sizeof(payload) - (size_t)n, "\"}");
    }
    uint8_t sig[256];
    for (int i = 0; i < 256; i++)
        sig[i] = (uint8_t)(i * 7 + 3);
    char *out = malloc(16384);
    char *p = out;
    b64url((const uint8_t *)hdr, strlen(hdr), p);
    p += strlen(p);
    *p++ = '.';
    b64url((const uint8_t *)payload, (size_t)n, p);
    p += strlen(p);
    *p++ = '.';
    b64url(sig, sizeof(sig), p);
    return out;
}

static struct token_info *classify(const char *jwt)
{
    struct idp_answer ans = {.http_status = 200,
                             .content_type = "application/jwt",
                             .body = jwt,
                             .body_len = strlen(jwt)};
    struct token_info *ti = idp_classify(&ans);
    if (!ti || ti->outcome != TOKEN_ACTIVE) {
        fprintf(stderr, "bench_decision: the test JWT is not accepted (%s)\n",
                ti && ti->reason ? ti->reason : "out of memory");
        exit(1);
    }
    return ti;
}

/* The NOTIFY HAProxy 2.6 sends for spoe/phantom-token.conf's message (see tests/unit/test_spop.c
 * for captured ones): stream-id, frame-id, then "check-token" with its four arguments. Length
 * prefix included. */
static size_t build_notify(uint8_t *buf, size_t cap, const char *auth, const char *scopes)
{
    size_t n = peer_notify(buf, cap, 123456, 1, auth, scopes);
    if (n == 0) {
        fprintf(stderr, "bench_decision: cannot build the NOTIFY\n");
        exit(1);
    }
    return n;
}

/* One complete frame through the connection's input path, which dispatches it to the worker. */
static inline void dispatch(struct conn *c, const uint8_t *in, size_t len)
{
    if (conn_feed(c, in, len) != len || !conn_is_open(c)) {
        fprintf(stderr, "bench_decision: the connection refused the frame\n");
        exit(1);
    }
}

/* A connection of the worker on fd (one end of a socketpair or a TCP pair), past its HELLO. */
static struct conn *open_conn(struct agent *a, int fd)
{
    uint8_t hello[256];
    const uint8_t *out;
    struct conn *c = agent_adopt(a, fd, "bench");
    size_t n = peer_hello(hello, sizeof(hello), MAX_FRAME, 0);
    if (!c || n == 0 || conn_feed(c, hello, n) != n || !conn_is_open(c) ||
        conn_unsent(c, &out) == 0) {
        fprintf(stderr, "bench_decision: no AGENT-HELLO\n");
        exit(1);
    }
    conn_drop_unsent(c); /* the AGENT-HELLO */
    return c;
}

/* Checks the ACK the agent queued at out: an ACK for our ids whose first action sets status 200
 * and which carries the JWT. Returns the frame length (prefix included). */
static size_t check_ack(const uint8_t *out, size_t len, const char *jwt)
{
    uint32_t flen;
    struct spop_frame f;
    if (spop_frame_complete(out, len, MAX_FRAME, &flen) != 1 ||
        spop_frame_decode(out + SPOP_LEN_PREFIX, flen, &f) < 0 || f.type != SPOP_FRM_ACK ||
        f.stream_id != 123456 || f.frame_id != 1 ||
        !memmem(f.payload, f.payload_len, jwt, strlen(jwt))) {
        fprintf(stderr, "bench_decision: the agent did not answer with the JWT\n");
        exit(1);
    }
    return SPOP_LEN_PREFIX + flen;
}

/* The no-I/O loop: the ACK is queued and the queue dropped before the next NOTIFY (the last ACK
 * stays queued for check_ack()). */
static double loop_hit(struct conn *c, const uint8_t *frame, size_t len, long n)
{
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        conn_drop_unsent(c);
        dispatch(c, frame, len);
    }
    return n > 0 ? (now_ns() - t0) / (double)n : 0;
}

/* The ACK the last loop_hit() left queued; dropped afterwards. */
static size_t check_queued_ack(struct conn *c, const char *jwt)
{
    const uint8_t *out;
    size_t len = conn_unsent(c, &out);
    size_t n = check_ack(out, len, jwt);
    conn_drop_unsent(c);
    return n;
}

static int tcp_pair(int *agent_fd, int *peer_fd)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&sa, &sl) < 0)
        return -1;
    int p = socket(AF_INET, SOCK_STREAM, 0);
    if (p < 0 || connect(p, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -1;
    int s = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    close(l);
    if (s < 0)
        return -1;
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* as listener.c would */
    *agent_fd = s;
    *peer_fd = p;
    return 0;
}

/* The daemon's behaviour on loopback TCP: a flush after every per_flush NOTIFYs. The peer is
 * drained every batch, outside the timed region. */
static double loop_send(struct agent *a, const uint8_t *frame, size_t len, long n, long per_flush)
{
    int afd, pfd;
    if (tcp_pair(&afd, &pfd) < 0) {
        perror("bench_decision: loopback connection");
        return -1;
    }
    struct conn *c = open_conn(a, afd);
    static uint8_t sink[1 << 20];
    double total = 0;
    const long batch = 64;
    for (long done = 0; done < n;) {
        long k = n - done < batch ? n - done : batch;
        double t0 = now_ns();
        for (long i = 0; i < k; i++) {
            dispatch(c, frame, len);
            if ((i + 1) % per_flush == 0 || i + 1 == k)
                conn_flush_dirty(&a->flusher);
        }
        total += now_ns() - t0;
        done += k;
        const uint8_t *unsent;
        if (!conn_is_open(c) || conn_unsent(c, &unsent) != 0) {
            fprintf(stderr, "bench_decision: send() did not take the ACK at once\n");
            break;
        }
        while (recv(pfd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
            ;
    }
    conn_destroy(c); /* closes afd */
    close(pfd);
    return total / (double)n;
}

static void memory_per_entry(const struct config *cfg, const char *jwt)
{
    struct cache_config cc = cfg->cache;
    cc.max_entries = MEM_ENTRIES * 2;
    struct cache *cache = cache_new(&cc, clock_ms, NULL, NULL, 0);
    struct mallinfo2 before = mallinfo2();
    char tok[64];
    for (int i = 0; i < MEM_ENTRIES; i++) {
        int n = snprintf(tok, sizeof(tok), "mem-%039d", i);
        struct cache_key k;
        cache_key_of(cache, tok, (size_t)n, &k);
        cache_resolve(cache, &k, classify(jwt));
    }
    struct mallinfo2 after = mallinfo2();
    struct cache_stats st;
    cache_get_stats(cache, &st);
    double measured =
        (double)(after.uordblks + after.hblkhd - before.uordblks - before.hblkhd) / MEM_ENTRIES;
    printf("memory: %zu entries with a %zu-byte JWT: bytes/entry: %.0f (malloc'd, measured); "
           "the cache's budget counts %.0f\n",
           st.entries, strlen(jwt), measured, st.entries ? (double)st.bytes / st.entries : 0.0);
    cache_free(cache);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    int only_hit = argc > 2 && strcmp(argv[2], "hit") == 0;
    const char *js = getenv("BENCH_JWT_SIZE");
    size_t jwt_size = js ? (size_t)strtoul(js, NULL, 10) : 900;

    log_init(LOG_LVL_WARN, false);
    static struct config cfg;
    config_defaults(&cfg); /* the daemon's defaults: access log off, 100 000 entries, 300 s */
    struct ev_loop *loop = ev_default_loop(0);
    struct cache *cache = cache_new(&cfg.cache, clock_ms, NULL, NULL, 0);
    /* The daemon's chain without its introspection stage (every lookup here hits) and without a
     * listener: the connections come from agent_adopt(). */
    struct pipeline *chain = pipeline_new();
    if (!cache || !chain || stage_l1_add(chain, cache) < 0 ||
        stage_finish_add(chain, NULL, NULL) < 0) {
        fprintf(stderr, "bench_decision: out of memory\n");
        return 1;
    }
    static struct agent a;
    if (agent_init_with(&a, loop, &cfg, cache, chain) < 0)
        return 1;

    /* An opaque token like an identity server's (43 base64url characters), cached as the
     * introspection would have left it. */
    const char *token = "Zk3Qp9v0bX2rL7tY1sW8eH4cN6mJ5aD0gF2kP9qR3uV";
    char *jwt = make_jwt(jwt_size);
    struct cache_key k;
    cache_key_of(cache, token, strlen(token), &k);
    cache_resolve(cache, &k, classify(jwt));

    char auth[128];
    snprintf(auth, sizeof(auth), "Bearer %s", token);
    static uint8_t frame[4096], frame_scoped[4096];
    size_t len = build_notify(frame, sizeof(frame), auth, NULL);
    size_t len_scoped = build_notify(frame_scoped, sizeof(frame_scoped), auth, "read");

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) {
        perror("bench_decision: socketpair");
        return 1;
    }
    struct conn *c = open_conn(&a, sv[0]); /* never flushed: nothing is sent on sv[0] */
    loop_hit(c, frame, len, 1);            /* allocates the output queue, checks the answer */
    size_t ack = check_queued_ack(c, jwt);
    printf("NOTIFY %zu bytes -> ACK %zu bytes (JWT %zu bytes), %ld iterations\n", len, ack,
           strlen(jwt), n);

    uint64_t hits0 = a.metrics.decisions[MST_200];
    double ns = loop_hit(c, frame, len, n);
    if (a.metrics.decisions[MST_200] - hits0 != (uint64_t)n) {
        fprintf(stderr, "bench_decision: not every decision was a 200\n");
        return 1;
    }
    printf("hit, route without scopes (no I/O):  ns/decision: %.1f\n", ns);
    if (!only_hit) {
        double ns_scoped = loop_hit(c, frame_scoped, len_scoped, n);
        check_queued_ack(c, jwt);
        printf("hit, route requiring a scope:        %.1f ns/decision\n", ns_scoped);
        long nsend = n < 200000 ? n : 200000;
        printf("hit + a send() after every NOTIFY (TCP loopback):      %.1f ns/decision\n",
               loop_send(&a, frame, len, nsend, 1));
        printf("hit + a send() after every 16 NOTIFYs (TCP loopback):  %.1f ns/decision\n",
               loop_send(&a, frame, len, nsend, 16));
        memory_per_entry(&cfg, jwt);
    }
    agent_fini(&a); /* closes sv[0] with its connection */
    close(sv[1]);
    cache_free(cache);
    free(jwt);
    return 0;
}
