/* Micro-benchmark of purge by claim at 1 M cached entries: the secondary index (cache_index.c)
 * against the full scan it replaces. Entries look like the cache's: 1 M tokens of 100 k users
 * (10 tokens each), 50 clients, one session per 2 tokens. Prints the time to drop one user's
 * tokens (sub), one session's (sid), one client's (20 k entries), the full scan that finds one
 * user's tokens without an index, and the memory the index adds per entry.
 * Not a test: run it by hand, from a RelWithDebInfo (-O2) build. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache_index.h"
#include "list.h"

#define N 1000000
#define USERS 100000
#define CLIENTS 50
#define ROUNDS 200

enum { K_SUB, K_CLIENT, K_SID, K_ID, NKINDS };

/* Stand-in for a cache entry: the claim strings live in the token_info, the links in the node. */
struct entry {
    struct list lru;
    char *sub, *client, *sid;
    uint8_t id[6];
    struct cidx_link links[NKINDS];
};

static struct list all = {&all, &all};

static struct entry *entry_of(struct cidx_link *l)
{
    return (struct entry *)((char *)l - offsetof(struct entry, links));
}

static const void *value_of(const struct cidx_link *links, unsigned kind, size_t *len, void *ud)
{
    const struct entry *e = entry_of((struct cidx_link *)links);
    const char *v = kind == K_SUB ? e->sub : kind == K_CLIENT ? e->client : e->sid;
    (void)ud;
    if (kind == K_ID) {
        *len = sizeof(e->id);
        return e->id;
    }
    *len = strlen(v);
    return v;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* prefix followed by i, zero-padded to width digits. */
static char *fmt(const char *prefix, long i, int width)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s%0*ld", prefix, width, i);
    char *s = strdup(buf);
    if (!s)
        abort();
    return s;
}

static struct entry *make(long i)
{
    struct entry *e = calloc(1, sizeof(*e));
    if (!e)
        abort();
    e->sub = fmt("user-", i % USERS, 8);
    e->client = fmt("client-", i % CLIENTS, 0);
    e->sid = fmt("session-", i / 2, 8);
    memcpy(e->id, &i, sizeof(e->id));
    list_insert(&all, &e->lru);
    return e;
}

static void drop(struct cidx *x, struct entry *e)
{
    cidx_remove(x, e->links);
    list_del(&e->lru);
    free(e->sub);
    free(e->client);
    free(e->sid);
    free(e);
}

static size_t purge(struct cidx *x, unsigned kind, const void *v, size_t len)
{
    size_t n = 0;
    struct cidx_link *l;
    while ((l = cidx_first(x, kind, v, len)) != NULL) {
        drop(x, entry_of(l));
        n++;
    }
    return n;
}

/* Purges ROUNDS different users (or sessions), re-adding nothing; returns ns per purge. */
static double bench_value(struct cidx *x, unsigned kind, const char *prefix, long stride,
                          size_t *dropped)
{
    double t0 = now_ns();
    *dropped = 0;
    for (long r = 0; r < ROUNDS; r++) {
        char v[64];
        snprintf(v, sizeof(v), "%s%08ld", prefix, r * stride + 7);
        *dropped += purge(x, kind, v, strlen(v));
    }
    return (now_ns() - t0) / ROUNDS;
}

/* What purge by sub costs without an index: one pass over every entry. */
static double bench_scan(const char *sub, size_t *found)
{
    double t0 = now_ns();
    *found = 0;
    for (struct list *l = all.next; l != &all; l = l->next)
        *found += strcmp(list_entry(l, struct entry, lru)->sub, sub) == 0;
    return now_ns() - t0;
}

int main(void)
{
    struct cidx *x = cidx_new(NKINDS, N, value_of, NULL, NULL);
    size_t dropped;
    if (!x)
        return 1;
    static struct entry *e[N];
    for (long i = 0; i < N; i++)
        e[i] = make(i);
    double t0 = now_ns(); /* in insertion order, as the cache adds them */
    for (long i = 0; i < N; i++)
        if (cidx_add(x, e[i]->links) != 0)
            abort();
    double fill = (now_ns() - t0) / N;
    printf("entries %d, users %d, clients %d, groups %zu\n", N, USERS, CLIENTS, cidx_groups(x));
    printf("index insert: %.0f ns per entry (4 kinds)\n", fill);
    printf("index memory: %zu bytes per entry (%zu of links in the entry, %.1f of groups and "
           "table)\n",
           (size_t)NKINDS * sizeof(struct cidx_link) + cidx_bytes(x) / N,
           (size_t)NKINDS * sizeof(struct cidx_link), (double)cidx_bytes(x) / N);

    double t = bench_value(x, K_SUB, "user-", 1, &dropped);
    printf("purge by sub (10 entries each): %.1f us per purge (%zu dropped)\n", t / 1e3, dropped);
    t = bench_value(x, K_SID, "session-", 977, &dropped);
    printf("purge by sid (2 entries each): %.1f us per purge (%zu dropped)\n", t / 1e3, dropped);
    uint8_t id[6];
    long victim = 123457;
    memcpy(id, &victim, sizeof(id));
    t0 = now_ns();
    dropped = purge(x, K_ID, id, sizeof(id));
    printf("purge by token_hash: %.1f us (%zu dropped)\n", (now_ns() - t0) / 1e3, dropped);

    size_t found;
    t = bench_scan("user-00099999", &found);
    printf("full scan for one sub, no index: %.1f ms (%zu found)\n", t / 1e6, found);

    t0 = now_ns();
    dropped = purge(x, K_CLIENT, "client-3", 8);
    printf("purge by client_id (%zu entries): %.1f ms, %.0f ns per entry\n", dropped,
           (now_ns() - t0) / 1e6, (now_ns() - t0) / (double)dropped);

    while (!list_empty(&all))
        drop(x, list_entry(all.next, struct entry, lru));
    cidx_free(x);
    return 0;
}
