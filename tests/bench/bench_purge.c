/* Micro-benchmark of purges at 1 M cached entries, through the real cache (cache.c with its
 * secondary indexes, cache_index.c): 1 M tokens of 100 k users (10 tokens each), 50 clients, one
 * session per 2 tokens, a 512-byte JWT each. Prints the time to store an entry (HMAC excluded),
 * to purge one user's tokens (sub), one session's (sid), one token by token_hash and by token, one
 * client's (20 k entries) and everything; and, for comparison, one pass over all entries, which is
 * what a purge by sub would cost without the index.
 * Not a test: run it by hand, from a RelWithDebInfo (-O2) build. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "token.h"

#define N 1000000
#define USERS 100000
#define CLIENTS 50
#define ROUNDS 200
#define JWT_LEN 512

static int64_t fixed_clock(void *ud)
{
    return *(const int64_t *)ud;
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

static char *fmt(const char *prefix, long i, int width)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s%0*ld", prefix, width, i);
    char *s = strdup(buf);
    if (!s)
        abort();
    return s;
}

static struct token_info *make(long i, int64_t now_s, const char *jwt)
{
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "bench");
    if (!ti || !(ti->jwt = strdup(jwt)))
        abort();
    ti->jwt_len = JWT_LEN;
    ti->claims.has_exp = true;
    ti->claims.exp = now_s + 3600;
    ti->claims.sub = fmt("user-", i % USERS, 8);
    ti->claims.client_id = fmt("client-", i % CLIENTS, 0);
    ti->claims.sid = fmt("session-", i / 2, 8);
    ti->claims.scope = strdup("openid profile read");
    return ti;
}

static void key_of(struct cache *c, long i, struct cache_key *k)
{
    char tok[64];
    int n = snprintf(tok, sizeof(tok), "opaque-%040ld", i);
    cache_key_of(c, tok, (size_t)n, k);
}

static void id_of(long i, uint8_t id[CACHE_TOKEN_ID_LEN])
{
    memcpy(id, &i, CACHE_TOKEN_ID_LEN); /* stands in for SHA-256(token)[0..6) */
}

static double per_purge(struct cache *c, enum cache_by by, const char *prefix, long stride,
                        size_t *dropped)
{
    char v[64];
    double t0 = now_ns();
    *dropped = 0;
    for (long r = 0; r < ROUNDS; r++) {
        int n = snprintf(v, sizeof(v), "%s%08ld", prefix, r * stride + 7);
        *dropped += cache_purge_by(c, by, v, (size_t)n);
    }
    return (now_ns() - t0) / ROUNDS;
}

static size_t scanned;
static void count_entry(void *ud, const struct cache_entry_view *e)
{
    (void)ud;
    (void)e;
    scanned++;
}

int main(void)
{
    int64_t now = (int64_t)time(NULL) * 1000;
    struct cache_config cfg = {.max_entries = N,
                               .max_bytes = (size_t)4 << 30,
                               .max_ttl = 3600,
                               .negative_ttl = 5,
                               .exp_skew = 5};
    struct cache *c = cache_new(&cfg, fixed_clock, &now, (const uint8_t *)"bench", 5);
    static struct cache_key keys[N];
    static struct token_info *tis[N];
    char jwt[JWT_LEN + 1];
    memset(jwt, 'j', JWT_LEN);
    jwt[JWT_LEN] = '\0';
    if (!c)
        return 1;
    for (long i = 0; i < N; i++) {
        key_of(c, i, &keys[i]);
        tis[i] = make(i, now / 1000, jwt);
    }
    long rss0 = rss_kib();
    double t0 = now_ns();
    for (long i = 0; i < N; i++) {
        uint8_t id[CACHE_TOKEN_ID_LEN];
        id_of(i, id);
        cache_resolve_id(c, &keys[i], tis[i], id); /* takes the reference */
    }
    double store = (now_ns() - t0) / N;
    struct cache_stats st;
    cache_get_stats(c, &st);
    printf("entries %zu (users %d, clients %d), budget per entry %zu + token_info\n", st.entries,
           USERS, CLIENTS, cache_entry_overhead());
    printf("store: %.0f ns per entry (table, LRU and 4 indexes); RSS added by the nodes and "
           "indexes: %.0f bytes per entry\n",
           store, (double)(rss_kib() - rss0) * 1024 / N);

    size_t dropped;
    double t = per_purge(c, CACHE_BY_SUB, "user-", 1, &dropped);
    printf("purge by sub (10 entries each): %.1f us per purge (%zu dropped in %d purges)\n",
           t / 1e3, dropped, ROUNDS);
    t = per_purge(c, CACHE_BY_SID, "session-", 977, &dropped);
    printf("purge by sid (2 entries each): %.1f us per purge (%zu dropped)\n", t / 1e3, dropped);
    uint8_t id[CACHE_TOKEN_ID_LEN];
    id_of(123457, id);
    t0 = now_ns();
    dropped = cache_purge_by(c, CACHE_BY_TOKEN_ID, id, sizeof(id));
    printf("purge by token_hash: %.1f us (%zu dropped)\n", (now_ns() - t0) / 1e3, dropped);
    t0 = now_ns();
    dropped = cache_purge_key(c, &keys[654321]);
    printf("purge by token: %.1f us (%zu dropped)\n", (now_ns() - t0) / 1e3, dropped);

    /* Without an index, finding one user's tokens means visiting every entry: listing every
     * client's entries is such a pass (all 50 clients together hold every entry). */
    t0 = now_ns();
    for (int k = 0; k < CLIENTS; k++) {
        char v[32];
        int n = snprintf(v, sizeof(v), "client-%d", k);
        cache_list_by(c, CACHE_BY_CLIENT_ID, v, (size_t)n, 0, count_entry, NULL);
    }
    printf("one pass over all %zu entries (what a purge by sub costs without the index): %.1f ms\n",
           scanned, (now_ns() - t0) / 1e6);

    t0 = now_ns();
    dropped = cache_purge_by(c, CACHE_BY_CLIENT_ID, "client-3", 8);
    t = now_ns() - t0;
    printf("purge by client_id: %zu entries in %.1f ms (%.0f ns per entry)\n", dropped, t / 1e6,
           t / (double)dropped);
    t0 = now_ns();
    dropped = cache_purge_all(c);
    t = now_ns() - t0;
    printf("purge all: %zu entries in %.1f ms (%.0f ns per entry)\n", dropped, t / 1e6,
           t / (double)dropped);
    cache_free(c);
    return 0;
}
