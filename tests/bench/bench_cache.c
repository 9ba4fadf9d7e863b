/* Micro-benchmark of the token cache: fills it with 1 k, 100 k and 1 M entries carrying a ~1 KB
 * JWT and realistic claims, then prints the time per hit lookup (random order, so the 1 M case
 * pays the real cache misses), the time per insert and per key derivation, the RSS the fill added
 * and the bytes per entry, both as counted by the cache's budget and as measured. Each size runs in
 * a child process so that one size's freed heap cannot hide the next one's growth.
 * Not a test: run it by hand, from a RelWithDebInfo (-O2) build. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "token.h"

#define JWT_LEN 1024
#define LOOKUPS 2000000

static int64_t fixed_clock(void *ud)
{
    return *(const int64_t *)ud; /* the agent passes its loop's cached time; keep it as cheap */
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static long rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static struct token_info *make_token(const char *jwt_template, int i, int64_t now_s)
{
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "bench");
    char buf[64];
    if (!ti)
        abort();
    ti->jwt = strdup(jwt_template); /* each entry owns its JWT, as in the agent */
    ti->jwt_len = JWT_LEN;
    ti->claims.has_exp = true;
    ti->claims.exp = now_s + 3600;
    snprintf(buf, sizeof(buf), "user-%08d", i);
    ti->claims.sub = strdup(buf);
    ti->claims.client_id = strdup("www-client");
    ti->claims.scope = strdup("openid profile read write");
    if (!ti->jwt || !ti->claims.sub || !ti->claims.client_id || !ti->claims.scope)
        abort();
    return ti;
}

static void key_for(struct cache *c, int i, struct cache_key *k)
{
    char tok[48]; /* an opaque token is typically 32..64 characters */
    int n = snprintf(tok, sizeof(tok), "opaque-%040d", i);
    cache_key_of(c, tok, (size_t)n, k);
}

static void bench_keys(struct cache *c)
{
    enum { N = 200000 };
    struct cache_key k;
    double t0 = now_ns();
    for (int i = 0; i < N; i++)
        key_for(c, i, &k);
    printf("key derivation (HMAC-SHA-256 of a 47-byte token): %.0f ns\n", (now_ns() - t0) / N);
}

static void noop_done(struct cache_waiter *w, struct token_info *ti) {}

static void run(size_t n)
{
    static char jwt[JWT_LEN + 1];
    int64_t now = 1700000000000LL;
    struct cache_config cfg = {.max_entries = n,
                               .max_bytes = (size_t)8 << 30,
                               .max_ttl = 300,
                               .negative_ttl = 5,
                               .exp_skew = 5};
    size_t m = n < 100000 ? n : 100000; /* fresh tokens for the steady-state inserts */
    struct cache_key *keys = malloc((n + m) * sizeof(*keys));
    struct cache *c;
    struct cache_stats st;
    struct cache_waiter w = {.done = noop_done};
    struct token_info *ti;
    long rss0, rss1;
    double t0, t_insert, t_lookup, t_steady;
    uint64_t x = 88172645463325252ULL, sum = 0;

    memset(jwt, 'J', JWT_LEN);
    c = cache_new(&cfg, fixed_clock, &now, NULL, 0);
    if (!keys || !c)
        abort();
    for (size_t i = 0; i < n + m; i++)
        key_for(c, (int)i, &keys[i]);
    rss0 = rss_kib();

    t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        cache_resolve(c, &keys[i], make_token(jwt, (int)i, now / 1000));
    t_insert = (now_ns() - t0) / (double)n;
    rss1 = rss_kib();

    t0 = now_ns();
    for (int i = 0; i < LOOKUPS; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift: random order, no prefetching */
        if (cache_lookup(c, &keys[x % n], &w, &ti) != CACHE_HIT)
            abort();
        sum += ti->jwt_len;
        token_unref(ti);
    }
    t_lookup = (now_ns() - t0) / LOOKUPS;

    /* A full cache: every insert evicts the LRU entry and reuses freed heap, no page faults. */
    t0 = now_ns();
    for (size_t i = n; i < n + m; i++)
        cache_resolve(c, &keys[i], make_token(jwt, (int)i, now / 1000));
    t_steady = (now_ns() - t0) / (double)m;

    cache_get_stats(c, &st);
    printf("%8zu entries: lookup hit %6.1f ns | insert into empty %6.1f ns, into full %6.1f ns "
           "(both incl. building the token_info) | RSS +%ld KiB, %.0f B/entry measured, %.0f "
           "B/entry counted (overhead %zu)%s\n",
           n, t_lookup, t_insert, t_steady, rss1 - rss0, (double)(rss1 - rss0) * 1024.0 / (double)n,
           (double)st.bytes / (double)n, cache_entry_overhead(),
           sum == (uint64_t)LOOKUPS * JWT_LEN ? "" : " (checksum mismatch)");
    cache_free(c);
    free(keys);
}

int main(int argc, char **argv)
{
    static const size_t sizes[] = {1000, 100000, 1000000};
    struct cache_config cfg = {.max_entries = 16, .max_bytes = 1 << 20};
    int64_t now = 0;
    struct cache *c = cache_new(&cfg, fixed_clock, &now, NULL, 0);
    if (!c)
        return 1;
    bench_keys(c);
    cache_free(c);
    fflush(stdout);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        pid_t pid = fork();
        int status;
        if (pid == 0) {
            run(sizes[i]);
            fflush(stdout);
            _exit(0);
        }
        if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            return 1;
    }
    return 0;
}
