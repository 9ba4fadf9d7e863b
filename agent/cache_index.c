/* Secondary indexes: see cache_index.h.
 *
 * Layout. One chained hash table of groups for all kinds; a group is (kind, value) and heads an
 * intrusive list through the members' links[kind]. The group keeps no copy of the value: it
 * compares against its first member's value through the ops callback (a group exists only while
 * it has members), so the index costs a link per kind in each entry (24 bytes) plus one 40-byte
 * group per distinct value, and never duplicates the claim strings. Removing an entry unlinks it
 * in O(1) per kind and frees a group that became empty, so a purge of k entries by one value is
 * O(k): one hash probe per removed entry, no scan.
 *
 * The hash is SipHash-2-4 under a random per-index key: sub and client_id can be chosen by users
 * (self-registration, dynamic client registration), and an unkeyed hash would let them aim every
 * entry at one chain. */
#include "cache_index.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "alloc.h"

#define MIN_BUCKETS 16
#define MAX_BUCKETS ((size_t)1 << 26)
#define KIND_MIX UINT64_C(0x9e3779b97f4a7c15) /* golden ratio: spreads kinds over the table */

struct cidx_group {
    struct cidx_group *chain;
    uint64_t hash;
    struct list members; /* through links[kind].node */
    uint32_t count;
    uint32_t kind;
};

struct cidx {
    unsigned nkinds;
    cidx_value_fn value;
    void *ud;
    uint8_t key[16];
    struct cidx_group **buckets;
    size_t nbuckets; /* a power of two */
    size_t ngroups;
};

/* ---- SipHash-2-4 ---- */

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void sip_rounds(uint64_t v[4], int n)
{
    for (int i = 0; i < n; i++) {
        v[0] += v[1];
        v[1] = rotl(v[1], 13) ^ v[0];
        v[0] = rotl(v[0], 32);
        v[2] += v[3];
        v[3] = rotl(v[3], 16) ^ v[2];
        v[0] += v[3];
        v[3] = rotl(v[3], 21) ^ v[0];
        v[2] += v[1];
        v[1] = rotl(v[1], 17) ^ v[2];
        v[2] = rotl(v[2], 32);
    }
}

static void sip_absorb(uint64_t v[4], uint64_t m)
{
    v[3] ^= m;
    sip_rounds(v, 2);
    v[0] ^= m;
}

uint64_t cidx_siphash(const uint8_t key[16], const void *in, size_t len)
{
    const uint8_t *p = in;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    uint64_t v[4] = {k0 ^ UINT64_C(0x736f6d6570736575), k1 ^ UINT64_C(0x646f72616e646f6d),
                     k0 ^ UINT64_C(0x6c7967656e657261), k1 ^ UINT64_C(0x7465646279746573)};
    size_t full = len - len % 8;
    for (size_t i = 0; i < full; i += 8)
        sip_absorb(v, load_le64(p + i));
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < len % 8; i++)
        last |= (uint64_t)p[full + i] << (8 * i);
    sip_absorb(v, last);
    v[2] ^= 0xff;
    sip_rounds(v, 4);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* ---- table ---- */

static uint64_t hash_of(const struct cidx *x, unsigned kind, const void *value, size_t len)
{
    return cidx_siphash(x->key, value, len) + KIND_MIX * (kind + 1);
}

static size_t buckets_for(size_t expected)
{
    size_t p = MIN_BUCKETS;
    while (p < expected && p < MAX_BUCKETS)
        p <<= 1;
    return p;
}

static struct cidx_link *links_of(struct list *node, unsigned kind)
{
    return list_entry(node, struct cidx_link, node) - kind;
}

static bool group_matches(const struct cidx *x, const struct cidx_group *g, unsigned kind,
                          uint64_t h, const void *value, size_t len)
{
    if (g->hash != h || g->kind != kind)
        return false;
    size_t glen = 0;
    const void *gv = x->value(links_of(g->members.next, kind), kind, &glen, x->ud);
    return gv && glen == len && memcmp(gv, value, len) == 0;
}

/* The link pointing at the group for (kind, value), or at the NULL ending its chain. */
static struct cidx_group **group_slot(const struct cidx *x, unsigned kind, uint64_t h,
                                      const void *value, size_t len)
{
    struct cidx_group **p = &x->buckets[h & (x->nbuckets - 1)];
    while (*p && !group_matches(x, *p, kind, h, value, len))
        p = &(*p)->chain;
    return p;
}

static bool rehash(struct cidx *x, size_t nb)
{
    struct cidx_group **nt = pta_calloc(nb, sizeof(*nt));
    if (!nt)
        return false;
    for (size_t i = 0; i < x->nbuckets; i++) {
        struct cidx_group *g = x->buckets[i], *next;
        for (; g; g = next) {
            next = g->chain;
            g->chain = nt[g->hash & (nb - 1)];
            nt[g->hash & (nb - 1)] = g;
        }
    }
    free(x->buckets);
    x->buckets = nt;
    x->nbuckets = nb;
    return true;
}

bool cidx_resize(struct cidx *x, size_t expected)
{
    size_t nb = buckets_for(expected);
    return nb == x->nbuckets || rehash(x, nb);
}

struct cidx *cidx_new(unsigned nkinds, size_t expected, cidx_value_fn value, void *ud,
                      const uint8_t *hash_key)
{
    if (nkinds == 0 || nkinds > CIDX_MAX_KINDS || !value)
        return NULL;
    struct cidx *x = pta_calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->nkinds = nkinds;
    x->value = value;
    x->ud = ud;
    x->nbuckets = buckets_for(expected);
    x->buckets = pta_calloc(x->nbuckets, sizeof(*x->buckets));
    bool keyed =
        hash_key ? (memcpy(x->key, hash_key, 16), true) : RAND_bytes(x->key, sizeof(x->key)) == 1;
    if (!x->buckets || !keyed) {
        cidx_free(x);
        return NULL;
    }
    return x;
}

void cidx_free(struct cidx *x)
{
    if (!x)
        return;
    for (size_t i = 0; x->buckets && i < x->nbuckets; i++) {
        struct cidx_group *g = x->buckets[i], *next;
        for (; g; g = next) {
            next = g->chain;
            /* Detach the members so that their links do not point into freed memory. */
            while (!list_empty(&g->members)) {
                struct list *n = g->members.next;
                links_of(n, g->kind)[g->kind].g = NULL;
                list_del(n);
            }
            free(g);
        }
    }
    free(x->buckets);
    OPENSSL_cleanse(x->key, sizeof(x->key));
    free(x);
}

/* ---- entries ---- */

void cidx_links_init(struct cidx_link *links, unsigned nkinds)
{
    for (unsigned k = 0; k < nkinds; k++) {
        list_init(&links[k].node);
        links[k].g = NULL;
    }
}

static void unlink_kind(struct cidx *x, struct cidx_link *l)
{
    struct cidx_group *g = l->g;
    if (!g)
        return;
    list_del(&l->node);
    l->g = NULL;
    if (--g->count > 0)
        return;
    struct cidx_group **p = &x->buckets[g->hash & (x->nbuckets - 1)];
    while (*p != g)
        p = &(*p)->chain;
    *p = g->chain;
    free(g);
    x->ngroups--;
}

void cidx_remove(struct cidx *x, struct cidx_link *links)
{
    for (unsigned k = 0; k < x->nkinds; k++)
        unlink_kind(x, &links[k]);
}

/* Doubles the table when groups outnumber buckets twice over (the expected size was too low). */
static void maybe_grow(struct cidx *x)
{
    if (x->ngroups > 2 * x->nbuckets && x->nbuckets < MAX_BUCKETS)
        rehash(x, x->nbuckets * 2); /* on ENOMEM chains just grow */
}

static int add_kind(struct cidx *x, struct cidx_link *links, unsigned k)
{
    size_t len = 0;
    const void *v = x->value(links, k, &len, x->ud);
    if (!v)
        return 0;
    uint64_t h = hash_of(x, k, v, len);
    struct cidx_group **slot = group_slot(x, k, h, v, len), *g = *slot;
    if (!g) {
        g = pta_malloc(sizeof(*g));
        if (!g)
            return -1;
        g->chain = NULL;
        g->hash = h;
        g->kind = k;
        g->count = 0;
        list_init(&g->members);
        *slot = g;
        x->ngroups++;
    }
    list_insert(&g->members, &links[k].node);
    links[k].g = g;
    g->count++;
    return 0;
}

int cidx_add(struct cidx *x, struct cidx_link *links)
{
    cidx_links_init(links, x->nkinds);
    for (unsigned k = 0; k < x->nkinds; k++) {
        if (add_kind(x, links, k) != 0) {
            cidx_remove(x, links);
            return -1;
        }
    }
    maybe_grow(x);
    return 0;
}

static struct cidx_group *find(const struct cidx *x, unsigned kind, const void *value, size_t len)
{
    if (kind >= x->nkinds)
        return NULL;
    return *group_slot(x, kind, hash_of(x, kind, value, len), value, len);
}

struct cidx_link *cidx_first(const struct cidx *x, unsigned kind, const void *value, size_t len)
{
    struct cidx_group *g = find(x, kind, value, len);
    return g ? links_of(g->members.next, kind) : NULL;
}

size_t cidx_count(const struct cidx *x, unsigned kind, const void *value, size_t len)
{
    struct cidx_group *g = find(x, kind, value, len);
    return g ? g->count : 0;
}

size_t cidx_foreach(const struct cidx *x, unsigned kind, const void *value, size_t len, size_t max,
                    void (*fn)(struct cidx_link *links, void *ud), void *ud)
{
    struct cidx_group *g = find(x, kind, value, len);
    size_t n = 0;
    if (!g)
        return 0;
    for (struct list *l = g->members.next; l != &g->members && (max == 0 || n < max);
         l = l->next, n++)
        fn(links_of(l, kind), ud);
    return n;
}

size_t cidx_group_size(void)
{
    return sizeof(struct cidx_group);
}

size_t cidx_groups(const struct cidx *x)
{
    return x->ngroups;
}

size_t cidx_bytes(const struct cidx *x)
{
    return sizeof(*x) + x->nbuckets * sizeof(*x->buckets) + x->ngroups * sizeof(struct cidx_group);
}
