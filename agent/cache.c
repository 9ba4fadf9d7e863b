/* The token cache: see cache.h for the contract.
 *
 * Layout. One chained hash table of nodes keyed by the 32-byte HMAC, plus an intrusive
 * doubly-linked LRU list through the cached entries. A node is either a cached entry (ti != NULL,
 * on the LRU list) or a flight (ti == NULL, holding the queue of waiting requests instead of LRU
 * links). Keeping flights in the same table means one probe decides HIT / JOINED / LEAD on the hot
 * path, and the flight of a key and its entry can never both exist (a flight is only created on a
 * miss, and resolve removes it before it stores).
 *
 * Why chaining rather than open addressing: entries come and go all the time (LRU eviction, TTL
 * expiry, replacement), and chaining deletes in O(1) without tombstones or backward shifts, node
 * addresses stay stable for the LRU links, and the load factor never degrades probe sequences. The
 * key is already a uniformly distributed MAC, so its first 8 bytes are the hash (no mixing). The
 * bucket array is sized once, at cache_new()/cache_reconfigure(), to the power of two at or above
 * the most entries the budgets allow (max_entries, and max_bytes divided by the smallest possible
 * entry), so the load factor stays <= 1 and nothing is rehashed on the hot path. calloc() of a big
 * array is served by mmap(), so untouched buckets cost no RSS.
 *
 * Memory per entry (x86-64; glibc malloc rounds each block up to 16 and adds 8..16 bytes):
 *   struct cache_node       200 bytes (key 32, chain 8, LRU or waiters + stale entry + purge
 *                            generation 32, ti 8, expiry 8, cost 8, four index links 96, token id
 *                            6 + flag), a 208-byte malloc chunk
 *   bucket slot               8 bytes (load factor <= 1)
 *   index groups        <= 4 x 40 bytes (one per distinct sub, client_id, sid, token id; shared)
 *   struct token_info        88 bytes, plus the JWT and claim strings (token_info_size())
 * cache_entry_overhead() (node + slot + four groups = 368) plus token_info_size() is what
 * max_bytes counts. With a 1 KiB JWT and three short claims bench_cache counted 1532 bytes per
 * entry and measured 1537 in RSS at 1 M entries (1353 before the purge indexes), 8 bytes less
 * than now (the stale-if-error pointer came later).
 *
 * Purge (issue 14). The secondary indexes (cache_index.c) list the entries of each sub,
 * client_id, sid and token id, so cache_purge_by() costs O(entries dropped). A purge also bumps
 * purge_gen: a flight started before it completes without storing its answer.
 *
 * Threads (later). All state lives in struct cache, so a multi-threaded agent can run N shards (a
 * power of two), each a struct cache with 1/N of the budgets and its own mutex, choosing the shard
 * with the key's LAST byte (the bucket index uses the first bytes, so the two stay independent).
 * cache_resolve() already detaches the waiters and removes the flight before calling any done(),
 * so the sharded version takes the lock for the table work and calls done() after unlocking;
 * waiters that belong to another worker's event loop are handed over (ev_async) by the caller.
 * token_info's refcount is atomic, so a HIT reference can leave the lock safely. */
#include "cache.h"

#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include "alloc.h"
#include "cache_index.h"
#include "clock.h"
#include "list.h"

#define HMAC_KEY_MAX 64 /* SHA-256 block size: longer keys are hashed first, as HMAC does */
#define MIN_BUCKETS 16
#define MAX_BUCKETS ((size_t)1 << 27) /* 1 GiB of slots; beyond that chains grow, still correct */
#define MS_PER_S 1000

struct cache_node {
    struct cache_key key;
    struct cache_node *chain; /* next node in the same bucket */
    union {
        struct list lru; /* entry: position in the LRU list */
        struct {
            struct cache_waiter *head, *tail; /* flight: FIFO of waiters */
            struct token_info *stale; /* flight: the expired entry kept for stale-if-error */
            uint64_t purge_gen;       /* flight: c->purge_gen when it started */
        } wq;
    } u;
    struct token_info *ti; /* entry: the cache's reference; NULL for a flight */
    int64_t expires_ms;    /* entry: gone when the clock reaches it; flight: the stale one's */
    size_t cost;           /* entry: bytes counted in c->bytes */
    struct cidx_link idx[CACHE_BY_KINDS]; /* entry: its place in the secondary indexes */
    uint8_t token_id[CACHE_TOKEN_ID_LEN]; /* entry, and a flight's stale one */
    bool has_id;
};

/* The waiters of a flight being completed by cache_resolve(). Kept reachable from the cache so that
 * a done() callback can still cancel a later waiter of the same flight (it is then not called). A
 * stack, because done() may resolve another key. */
struct dispatch {
    struct cache_key key;
    struct cache_waiter *head;
    struct dispatch *outer;
};

struct cache {
    struct cache_config cfg;
    cache_clock_fn clock;
    void *clock_ud;
    uint8_t hmac_key[HMAC_KEY_MAX];
    size_t hmac_key_len;
    /* HMAC with the key's two padded blocks hashed once: a key derivation copies these states and
     * hashes only the token (two SHA-256 compressions, no allocation after the first call). */
    EVP_MD_CTX *inner, *outer, *work;
    struct cache_node **buckets;
    size_t nbuckets; /* a power of two */
    struct list lru; /* head: next is the most recently used entry, prev the least */
    struct dispatch *dispatching;
    struct cache_stats st;
    struct cidx *idx;   /* by sub, client_id, sid, token id */
    uint64_t purge_gen; /* incremented by every purge */
    /* Recent purges, for answers from tiers a purge cannot reach (see cache.h). A ring: the
     * oldest is overwritten, after setting refuse_all_until to its expiry (fail closed). */
    struct tombstone {
        int kind;      /* enum cache_by, or TOMB_KEY */
        uint64_t hash; /* of the value (the key for TOMB_KEY) */
        int64_t until_ms;
    } tombs[CACHE_TOMBSTONES];
    size_t ntombs, tomb_next;
    int64_t refuse_all_until;
    uint8_t tomb_key[16];
};

#define TOMB_KEY CACHE_BY_KINDS

size_t cache_entry_overhead(void)
{
    return sizeof(struct cache_node) + sizeof(struct cache_node *) +
           CACHE_BY_KINDS * cidx_group_size();
}

/* ---- secondary indexes ---- */

static struct cache_node *node_of_idx(const struct cidx_link *links)
{
    return (struct cache_node *)((const char *)links - offsetof(struct cache_node, idx));
}

static const void *str_value(const char *v, size_t *len)
{
    if (!v || !*v)
        return NULL;
    *len = strlen(v);
    return v;
}

/* What an entry is indexed under: its claims, and the token id when the caller gave one. */
static const void *index_value(const struct cidx_link *links, unsigned kind, size_t *len, void *ud)
{
    const struct cache_node *n = node_of_idx(links);
    (void)ud;
    switch ((enum cache_by)kind) {
    case CACHE_BY_SUB:
        return str_value(n->ti->claims.sub, len);
    case CACHE_BY_CLIENT_ID:
        return str_value(n->ti->claims.client_id, len);
    case CACHE_BY_SID:
        return str_value(n->ti->claims.sid, len);
    case CACHE_BY_TOKEN_ID:
        *len = CACHE_TOKEN_ID_LEN;
        return n->has_id ? n->token_id : NULL;
    case CACHE_BY_KINDS:
        break;
    }
    return NULL;
}

/* ---- time and TTLs ---- */

static int64_t now_ms(const struct cache *c)
{
    return c->clock(c->clock_ud);
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* exp comes from the IdP's JSON and may be absurd: clamp it so the ms arithmetic cannot overflow
 * (UBSan would rightly abort) while keeping any realistic date exact. */
static int64_t exp_deadline_ms(int64_t exp, uint32_t skew)
{
    const int64_t lim = INT64_MAX / (4 * MS_PER_S);
    if (exp > lim)
        exp = lim;
    if (exp < -lim)
        exp = -lim;
    return (exp - (int64_t)skew) * MS_PER_S;
}

/* How long ti may be served from the cache, in ms; <= 0 means do not store it. */
static int64_t ttl_ms(const struct cache *c, const struct token_info *ti, int64_t now)
{
    int64_t ttl;
    if (ti->stale || (c->cfg.honour_no_store && ti->no_store))
        return 0; /* a stale copy must never look fresh */
    if (ti->outcome == TOKEN_INACTIVE)
        return (int64_t)c->cfg.negative_ttl * MS_PER_S;
    if (ti->outcome != TOKEN_ACTIVE)
        return 0; /* IdP trouble is transient: the next request must ask again */
    ttl = (int64_t)c->cfg.max_ttl * MS_PER_S;
    if (ti->claims.has_exp)
        ttl = min64(ttl, exp_deadline_ms(ti->claims.exp, c->cfg.exp_skew) - now);
    if (ti->max_age >= 0)
        ttl = min64(ttl, min64(ti->max_age, INT64_MAX / (4 * MS_PER_S)) * MS_PER_S);
    return ttl;
}

/* ---- hash table ---- */

static size_t pow2_at_least(size_t n)
{
    size_t p = MIN_BUCKETS;
    while (p < n && p < MAX_BUCKETS)
        p <<= 1;
    return p;
}

/* The most entries the budgets can hold: every entry costs at least a node, a slot and a
 * token_info, so max_bytes bounds the count too (and keeps "max_entries = huge" from allocating a
 * huge table). */
static size_t buckets_for(const struct cache_config *cfg)
{
    size_t by_bytes = cfg->max_bytes / (cache_entry_overhead() + sizeof(struct token_info));
    return pow2_at_least(cfg->max_entries < by_bytes ? cfg->max_entries : by_bytes);
}

static size_t bucket_index(const struct cache_key *k, size_t nbuckets)
{
    uint64_t h;
    memcpy(&h, k->b, sizeof(h));
    return (size_t)(h & (nbuckets - 1));
}

/* Returns the link that points at k's node, or at the NULL ending its chain: the caller can then
 * read, unlink or insert in O(1). */
static struct cache_node **table_slot(const struct cache *c, const struct cache_key *k)
{
    struct cache_node **p = &c->buckets[bucket_index(k, c->nbuckets)];
    while (*p && memcmp((*p)->key.b, k->b, CACHE_KEY_LEN) != 0)
        p = &(*p)->chain;
    return p;
}

static void table_unlink(struct cache *c, struct cache_node *n)
{
    struct cache_node **p = table_slot(c, &n->key);
    *p = n->chain;
}

/* Moves every node to a table of nb buckets. Only at (re)configuration; on ENOMEM the old table
 * stays, which is still correct, just with longer chains. */
static void table_resize(struct cache *c, size_t nb)
{
    struct cache_node **nt;
    if (nb == c->nbuckets)
        return;
    nt = pta_calloc(nb, sizeof(*nt));
    if (!nt)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct cache_node *n = c->buckets[i], *next;
        for (; n; n = next) {
            size_t j = bucket_index(&n->key, nb);
            next = n->chain;
            n->chain = nt[j];
            nt[j] = n;
        }
    }
    free(c->buckets);
    c->buckets = nt;
    c->nbuckets = nb;
}

/* ---- LRU ---- */

static struct cache_node *node_of_lru(struct list *l)
{
    return list_entry(l, struct cache_node, u.lru);
}

static void lru_push_front(struct cache *c, struct list *l)
{
    list_insert(&c->lru, l);
}

/* ---- entries ---- */

static void entry_drop(struct cache *c, struct cache_node *n)
{
    cidx_remove(c->idx, n->idx);
    table_unlink(c, n);
    list_del(&n->u.lru);
    c->st.entries--;
    c->st.bytes -= n->cost;
    token_unref(n->ti);
    free(n);
}

/* Drops least recently used entries until the budgets hold `entries` and `bytes`. A victim that
 * has already expired is counted as an expiration, not as an eviction: the budget did not cost
 * it anything. */
static void evict_down_to(struct cache *c, size_t entries, size_t bytes, int64_t now)
{
    while (c->st.entries > 0 && (c->st.entries > entries || c->st.bytes > bytes)) {
        struct cache_node *victim = node_of_lru(c->lru.prev);
        if (victim->expires_ms <= now)
            c->st.expirations++;
        else
            c->st.evictions++;
        entry_drop(c, victim);
    }
}

/* Stores ti under k for ttl ms, replacing any entry already there. Takes a new reference. */
static void entry_store(struct cache *c, const struct cache_key *k, struct token_info *ti,
                        int64_t now, int64_t ttl, const uint8_t *id)
{
    size_t cost = token_info_size(ti) + cache_entry_overhead();
    struct cache_node **slot, *n;
    if (c->cfg.max_entries == 0 || cost > c->cfg.max_bytes)
        return; /* would flush the whole cache and still not fit */
    slot = table_slot(c, k);
    if (*slot)
        entry_drop(c, *slot); /* a resolve without a flight, for a key that is cached */
    evict_down_to(c, c->cfg.max_entries - 1, c->cfg.max_bytes - cost, now);
    n = pta_malloc(sizeof(*n));
    if (!n)
        return; /* a cache may forget */
    n->key = *k;
    n->ti = ti;
    n->has_id = id != NULL;
    if (id)
        memcpy(n->token_id, id, CACHE_TOKEN_ID_LEN);
    if (cidx_add(c->idx, n->idx) != 0) {
        free(n); /* an entry that a purge could not find must not be cached */
        return;
    }
    token_ref(ti);
    n->expires_ms = now + ttl;
    n->cost = cost;
    slot = table_slot(c, k); /* evictions may have unlinked the node the old slot pointed into */
    n->chain = NULL;
    *slot = n;
    lru_push_front(c, &n->u.lru);
    c->st.entries++;
    c->st.bytes += cost;
    c->st.inserts++;
}

/* ---- flights ---- */

static void waiter_append(struct cache_node *f, struct cache_waiter *w)
{
    w->next = NULL;
    if (f->u.wq.tail)
        f->u.wq.tail->next = w;
    else
        f->u.wq.head = w;
    f->u.wq.tail = w;
}

/* Allocates a flight node; under memory pressure recycles the least recently used entry, because
 * a request that cannot wait for an introspection is worse than a cache that forgets one token. */
static struct cache_node *flight_alloc(struct cache *c, int64_t now)
{
    struct cache_node *n = pta_malloc(sizeof(*n));
    if (!n && c->st.entries > 0) {
        evict_down_to(c, c->st.entries - 1, c->st.bytes, now);
        n = pta_malloc(sizeof(*n));
    }
    return n;
}

static enum cache_lookup flight_start(struct cache *c, const struct cache_key *k,
                                      struct cache_waiter *w, int64_t now)
{
    struct cache_node *f = flight_alloc(c, now), **slot;
    c->st.misses++;
    if (!f)
        return CACHE_NOMEM;
    memset(f, 0, sizeof(*f));
    f->key = *k;
    f->u.wq.purge_gen = c->purge_gen;
    slot = table_slot(c, k); /* flight_alloc() may have evicted and changed the chain */
    *slot = f;
    waiter_append(f, w);
    c->st.flights++;
    return CACHE_LEAD;
}

/* Unlinks w from the singly-linked list at *head (with optional tail). O(waiters of one token),
 * which is bounded by the concurrent requests carrying that same token. */
static bool waiter_remove(struct cache_waiter **head, struct cache_waiter **tail,
                          struct cache_waiter *w)
{
    struct cache_waiter *prev = NULL;
    for (struct cache_waiter **p = head; *p; prev = *p, p = &(*p)->next) {
        if (*p != w)
            continue;
        *p = w->next;
        if (tail && *tail == w)
            *tail = prev;
        w->next = NULL;
        return true;
    }
    return false;
}

/* ---- public API ---- */

/* Hashes key XOR pad (one 64-byte block) into a fresh SHA-256 context. */
static EVP_MD_CTX *padded_key_state(const struct cache *c, uint8_t pad)
{
    uint8_t block[64];
    memset(block, pad, sizeof(block));
    for (size_t i = 0; i < c->hmac_key_len; i++)
        block[i] ^= c->hmac_key[i];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, block, sizeof(block)) == 1;
    OPENSSL_cleanse(block, sizeof(block));
    if (!ok) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static int mac_init(struct cache *c)
{
    c->inner = padded_key_state(c, 0x36);
    c->outer = padded_key_state(c, 0x5c);
    c->work = EVP_MD_CTX_new();
    return c->inner && c->outer && c->work ? 0 : -1;
}

static int key_setup(struct cache *c, const uint8_t *key, size_t len)
{
    if (!key) {
        c->hmac_key_len = CACHE_KEY_LEN; /* as strong as the output; more adds nothing */
        return RAND_bytes(c->hmac_key, (int)c->hmac_key_len) == 1 ? 0 : -1;
    }
    if (len == 0)
        return -1; /* an empty key would make the keys guessable across processes */
    if (len > HMAC_KEY_MAX) {
        /* RFC 2104 replaces a key longer than the block by its hash: same MAC, fixed storage. */
        unsigned int n = 0;
        if (EVP_Digest(key, len, c->hmac_key, &n, EVP_sha256(), NULL) != 1)
            return -1;
        c->hmac_key_len = n;
        return 0;
    }
    memcpy(c->hmac_key, key, len);
    c->hmac_key_len = len;
    return 0;
}

struct cache *cache_new(const struct cache_config *cfg, cache_clock_fn clock, void *clock_ud,
                        const uint8_t *hmac_key, size_t hmac_key_len)
{
    struct cache *c = pta_calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->cfg = *cfg;
    c->clock = clock ? clock : clock_ms;
    c->clock_ud = clock_ud;
    list_init(&c->lru);
    c->nbuckets = buckets_for(cfg);
    c->buckets = pta_calloc(c->nbuckets, sizeof(*c->buckets));
    c->idx = cidx_new(CACHE_BY_KINDS, c->nbuckets, index_value, NULL, NULL);
    if (c->idx && RAND_bytes(c->tomb_key, sizeof(c->tomb_key)) != 1) {
        cidx_free(c->idx);
        c->idx = NULL;
    }
    if (!c->buckets || !c->idx || key_setup(c, hmac_key, hmac_key_len) != 0 || mac_init(c) != 0) {
        cache_free(c);
        return NULL;
    }
    return c;
}

static void flight_free(struct cache_node *f)
{
    token_unref(f->u.wq.stale);
    free(f); /* waiters belong to their callers and are not called */
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    while (!list_empty(&c->lru))
        entry_drop(c, node_of_lru(c->lru.next));
    for (size_t i = 0; c->buckets && i < c->nbuckets; i++) {
        struct cache_node *f = c->buckets[i], *next;
        for (; f; f = next) { /* only flights are left */
            next = f->chain;
            flight_free(f);
        }
    }
    free(c->buckets);
    cidx_free(c->idx);
    EVP_MD_CTX_free(c->inner);
    EVP_MD_CTX_free(c->outer);
    EVP_MD_CTX_free(c->work);
    OPENSSL_cleanse(c->hmac_key, sizeof(c->hmac_key));
    free(c);
}

/* Shortens the lifetime of entries stored under older, longer limits: after a reload that lowers
 * max_ttl or negative_ttl nobody expects a token to be served from the cache for the old time. */
static void clamp_expiries(struct cache *c, int64_t now)
{
    int64_t pos = now + (int64_t)c->cfg.max_ttl * MS_PER_S;
    int64_t neg = now + (int64_t)c->cfg.negative_ttl * MS_PER_S;
    for (struct list *l = c->lru.next; l != &c->lru; l = l->next) {
        struct cache_node *n = node_of_lru(l);
        n->expires_ms = min64(n->expires_ms, n->ti->outcome == TOKEN_ACTIVE ? pos : neg);
    }
}

void cache_reconfigure(struct cache *c, const struct cache_config *cfg)
{
    int64_t now = now_ms(c);
    c->cfg = *cfg;
    clamp_expiries(c, now);
    evict_down_to(c, cfg->max_entries, cfg->max_bytes, now);
    table_resize(c, buckets_for(cfg));
    cidx_resize(c->idx, c->nbuckets); /* on ENOMEM the old table stays: still correct */
}

/* HMAC-SHA-256 (RFC 2104): H((K ^ opad) || H((K ^ ipad) || token)). */
void cache_key_of(struct cache *c, const char *token, size_t len, struct cache_key *out)
{
    uint8_t inner[CACHE_KEY_LEN];
    unsigned n = 0, m = 0;
    int ok = EVP_MD_CTX_copy_ex(c->work, c->inner) == 1 &&
             EVP_DigestUpdate(c->work, token, len) == 1 &&
             EVP_DigestFinal_ex(c->work, inner, &n) == 1 && n == CACHE_KEY_LEN &&
             EVP_MD_CTX_copy_ex(c->work, c->outer) == 1 &&
             EVP_DigestUpdate(c->work, inner, sizeof(inner)) == 1 &&
             EVP_DigestFinal_ex(c->work, out->b, &m) == 1 && m == CACHE_KEY_LEN;
    OPENSSL_cleanse(inner, sizeof(inner));
    if (ok)
        return;
    /* Never hand out a predictable key (e.g. zeros): two tokens sharing it would share a JWT. A
     * random key simply misses; if even that is impossible, stopping is the only safe answer. */
    if (RAND_bytes(out->b, CACHE_KEY_LEN) != 1)
        abort();
}

static enum cache_lookup entry_hit(struct cache *c, struct cache_node *n, struct token_info **ti)
{
    list_del(&n->u.lru);
    lru_push_front(c, &n->u.lru);
    if (n->ti->outcome == TOKEN_ACTIVE)
        c->st.hits++;
    else
        c->st.negative_hits++;
    *ti = token_ref(n->ti);
    return CACHE_HIT;
}

/* ---- stale-if-error ---- */

static bool within_grace(const struct cache *c, const struct token_info *ti, int64_t expired_at,
                         int64_t now)
{
    if (c->cfg.stale_grace == 0 || !ti || ti->outcome != TOKEN_ACTIVE || ti->stale)
        return false;
    if (now - expired_at >= (int64_t)c->cfg.stale_grace * MS_PER_S)
        return false;
    return !ti->claims.has_exp || exp_deadline_ms(ti->claims.exp, 0) > now;
}

/* The expired entry n becomes the flight for its key, keeping its token_info as the stale one:
 * the same node, so the table slot stays valid. It leaves the LRU and the budget meanwhile. */
static enum cache_lookup flight_from_stale(struct cache *c, struct cache_node *n,
                                           struct cache_waiter *w)
{
    struct token_info *old = n->ti;
    cidx_remove(c->idx, n->idx); /* a flight: no purge may find it as an entry */
    list_del(&n->u.lru);
    c->st.entries--;
    c->st.bytes -= n->cost;
    n->ti = NULL;
    n->cost = 0;
    n->u.wq.head = n->u.wq.tail = NULL;
    n->u.wq.stale = old;
    n->u.wq.purge_gen = c->purge_gen;
    waiter_append(n, w);
    c->st.misses++;
    c->st.flights++;
    return CACHE_LEAD;
}

struct token_info *cache_stale(struct cache *c, const struct cache_key *k)
{
    int64_t now = now_ms(c);
    struct cache_node *n = *table_slot(c, k);
    if (!n)
        return NULL;
    struct token_info *ti = n->ti ? n->ti : n->u.wq.stale;
    if (n->ti && n->expires_ms > now)
        return NULL; /* fresh: not a stale-if-error matter */
    if (!n->ti && n->u.wq.purge_gen != c->purge_gen)
        return NULL; /* a purge since: the stale entry may be what it revoked */
    if (!within_grace(c, ti, n->expires_ms, now))
        return NULL;
    c->st.stale++;
    return token_ref(ti);
}

static bool idp_failed(const struct token_info *ti)
{
    return !ti || ti->stale || (ti->outcome != TOKEN_ACTIVE && ti->outcome != TOKEN_INACTIVE);
}

enum cache_lookup cache_lookup(struct cache *c, const struct cache_key *k, struct cache_waiter *w,
                               struct token_info **ti)
{
    int64_t now = now_ms(c);
    struct cache_node **slot = table_slot(c, k), *n = *slot;
    *ti = NULL;
    if (n && !n->ti) {
        waiter_append(n, w);
        c->st.coalesced++;
        return CACHE_JOINED;
    }
    if (n && n->expires_ms > now)
        return entry_hit(c, n, ti);
    if (n) {
        if (within_grace(c, n->ti, n->expires_ms, now))
            return flight_from_stale(c, n, w); /* counted as an expiration once it is dropped */
        c->st.expirations++;
        entry_drop(c, n);
    }
    return flight_start(c, k, w, now);
}

int64_t cache_entry_until_ms(const struct cache *c, const struct cache_key *k,
                             const struct token_info *ti)
{
    const struct cache_node *n = *table_slot(c, k);
    if (!ti || !n || n->ti != ti || n->expires_ms <= now_ms(c))
        return 0;
    return n->expires_ms;
}

bool cache_cancel(struct cache *c, const struct cache_key *k, struct cache_waiter *w)
{
    struct cache_node *f = *table_slot(c, k);
    if (f && !f->ti && waiter_remove(&f->u.wq.head, &f->u.wq.tail, w))
        return true;
    /* Not in the current flight: it may be a later waiter of a flight being completed right now
     * (a done() cancelling a neighbour), which a done() may have followed with a new flight. */
    for (struct dispatch *d = c->dispatching; d; d = d->outer)
        if (memcmp(d->key.b, k->b, CACHE_KEY_LEN) == 0 && waiter_remove(&d->head, NULL, w))
            return true;
    return false;
}

/* Removes k's flight, if any, and returns its waiters; its stale entry (a reference), that
 * entry's expiry and token id go to *stale, *stale_expires and stale_id (*has_id). *purged says
 * whether a purge happened while it was in progress (its answer is then not stored, nor is the
 * stale entry put back). */
static struct cache_waiter *flight_take(struct cache *c, const struct cache_key *k, bool *purged,
                                        struct token_info **stale, int64_t *stale_expires,
                                        uint8_t stale_id[CACHE_TOKEN_ID_LEN], bool *has_id)
{
    struct cache_node **slot = table_slot(c, k), *f = *slot;
    struct cache_waiter *head;
    *purged = false;
    *stale = NULL;
    *has_id = false;
    if (!f || f->ti)
        return NULL;
    *purged = f->u.wq.purge_gen != c->purge_gen;
    head = f->u.wq.head;
    *stale = f->u.wq.stale;
    *stale_expires = f->expires_ms;
    *has_id = f->has_id;
    memcpy(stale_id, f->token_id, CACHE_TOKEN_ID_LEN);
    f->u.wq.stale = NULL;
    *slot = f->chain;
    flight_free(f);
    c->st.flights--;
    return head;
}

void cache_resolve(struct cache *c, const struct cache_key *k, struct token_info *ti)
{
    cache_resolve_id(c, k, ti, NULL);
}

void cache_resolve_id(struct cache *c, const struct cache_key *k, struct token_info *ti,
                      const uint8_t id[CACHE_TOKEN_ID_LEN])
{
    int64_t now = now_ms(c), stale_expires = 0;
    struct token_info *stale;
    uint8_t stale_id[CACHE_TOKEN_ID_LEN];
    bool purged, has_id;
    struct dispatch d = {.key = *k,
                         .head =
                             flight_take(c, k, &purged, &stale, &stale_expires, stale_id, &has_id),
                         .outer = c->dispatching};
    int64_t ttl = ti && !purged ? ttl_ms(c, ti, now) : 0;
    if (purged)
        c->st.purge_skipped++;
    if (ttl > 0)
        entry_store(c, k, ti, now, ttl, id);
    else if (!purged && stale && idp_failed(ti) && within_grace(c, stale, stale_expires, now))
        entry_store(c, k, stale, now, stale_expires - now,
                    has_id ? stale_id : NULL); /* back as it was: still expired */
    token_unref(stale);
    /* From here the flight is gone and the entry (if any) is visible, so a done() that looks k up
     * again gets a HIT or leads a new flight. Our reference keeps ti alive even if a re-entrant
     * call evicts the entry. Each waiter is popped before its done() runs, since done() frees it,
     * and later waiters stay cancellable through c->dispatching. */
    c->dispatching = &d;
    while (d.head) {
        struct cache_waiter *w = d.head;
        d.head = w->next;
        w->next = NULL;
        w->done(w, ti);
    }
    c->dispatching = d.outer;
    token_unref(ti);
}

int64_t cache_ttl_ms(const struct cache *c, const struct token_info *ti)
{
    return ttl_ms(c, ti, now_ms(c));
}

void cache_get_stats(const struct cache *c, struct cache_stats *st)
{
    *st = c->st;
}

void cache_visit_memory(const struct cache *c, cache_memory_fn fn, void *ud)
{
    fn(c, sizeof(*c), ud);
    fn(c->buckets, c->nbuckets * sizeof(*c->buckets), ud);
    for (size_t i = 0; i < c->nbuckets; i++)
        for (const struct cache_node *n = c->buckets[i]; n; n = n->chain)
            fn(n, sizeof(*n), ud);
}

/* ---- purge ---- */

/* ---- tombstones ---- */

static int64_t tomb_window_ms(const struct cache *c)
{
    uint32_t ttl = c->cfg.max_ttl > c->cfg.negative_ttl ? c->cfg.max_ttl : c->cfg.negative_ttl;
    return (int64_t)ttl * MS_PER_S + MS_PER_S; /* one second more for clock steps */
}

static uint64_t tomb_hash(const struct cache *c, int kind, const void *v, size_t len)
{
    return cidx_siphash(c->tomb_key, v, len) ^ (uint64_t)kind;
}

static void tomb_add(struct cache *c, int kind, const void *v, size_t len)
{
    int64_t now = now_ms(c), until = now + tomb_window_ms(c);
    if (kind < 0) { /* a purge of all */
        c->refuse_all_until = until;
        return;
    }
    struct tombstone *t = &c->tombs[c->tomb_next];
    if (c->ntombs == CACHE_TOMBSTONES && t->until_ms > now && t->until_ms > c->refuse_all_until)
        c->refuse_all_until = t->until_ms; /* forgetting a live one: refuse everything instead */
    t->kind = kind;
    t->hash = tomb_hash(c, kind, v, len);
    t->until_ms = until;
    c->tomb_next = (c->tomb_next + 1) % CACHE_TOMBSTONES;
    if (c->ntombs < CACHE_TOMBSTONES)
        c->ntombs++;
}

static bool tomb_match(const struct cache *c, int64_t now, int kind, const void *v, size_t len)
{
    uint64_t h = tomb_hash(c, kind, v, len);
    for (size_t i = 0; i < c->ntombs; i++)
        if (c->tombs[i].until_ms > now && c->tombs[i].kind == kind && c->tombs[i].hash == h)
            return true;
    return false;
}

static bool tomb_match_str(const struct cache *c, int64_t now, int kind, const char *v)
{
    return v && *v && tomb_match(c, now, kind, v, strlen(v));
}

bool cache_purged_since_write(struct cache *c, const struct cache_key *k,
                              const uint8_t id[CACHE_TOKEN_ID_LEN], const struct token_info *ti)
{
    int64_t now = now_ms(c);
    const struct token_claims *cl = &ti->claims;
    if (now < c->refuse_all_until)
        return true;
    if (c->ntombs == 0)
        return false;
    return tomb_match(c, now, TOMB_KEY, k->b, CACHE_KEY_LEN) ||
           (id && tomb_match(c, now, CACHE_BY_TOKEN_ID, id, CACHE_TOKEN_ID_LEN)) ||
           tomb_match_str(c, now, CACHE_BY_SUB, cl->sub) ||
           tomb_match_str(c, now, CACHE_BY_CLIENT_ID, cl->client_id) ||
           tomb_match_str(c, now, CACHE_BY_SID, cl->sid);
}

static void purge_begin(struct cache *c)
{
    c->purge_gen++; /* flights in progress will not store their answer */
}

static size_t purged(struct cache *c, size_t n)
{
    c->st.purged += n;
    return n;
}

size_t cache_purge_key(struct cache *c, const struct cache_key *k)
{
    struct cache_node *n = *table_slot(c, k);
    purge_begin(c);
    tomb_add(c, TOMB_KEY, k->b, CACHE_KEY_LEN);
    if (!n || !n->ti)
        return 0; /* nothing stored, or a flight (which now will not store) */
    entry_drop(c, n);
    return purged(c, 1);
}

size_t cache_purge_by(struct cache *c, enum cache_by by, const void *value, size_t len)
{
    size_t n = 0;
    struct cidx_link *l;
    purge_begin(c);
    tomb_add(c, (int)by, value, len);
    while ((l = cidx_first(c->idx, (unsigned)by, value, len)) != NULL) {
        entry_drop(c, node_of_idx(l));
        n++;
    }
    return purged(c, n);
}

size_t cache_purge_all(struct cache *c)
{
    size_t n = 0;
    purge_begin(c);
    tomb_add(c, -1, NULL, 0);
    while (!list_empty(&c->lru)) {
        entry_drop(c, node_of_lru(c->lru.next));
        n++;
    }
    return purged(c, n);
}

uint64_t cache_purge_generation(const struct cache *c)
{
    return c->purge_gen;
}

struct list_ctx {
    int64_t now;
    size_t max, live, shown;
    void (*fn)(void *ud, const struct cache_entry_view *e);
    void *ud;
};

static void list_one(struct cidx_link *links, void *ud)
{
    struct list_ctx *l = ud;
    const struct cache_node *n = node_of_idx(links);
    if (n->expires_ms <= l->now)
        return; /* never served again: not worth showing */
    l->live++;
    if (l->max && l->shown >= l->max)
        return;
    struct cache_entry_view v = {
        .token_id = n->has_id ? n->token_id : NULL, .expires_ms = n->expires_ms, .ti = n->ti};
    l->shown++;
    l->fn(l->ud, &v);
}

size_t cache_list_by(struct cache *c, enum cache_by by, const void *value, size_t len, size_t max,
                     void (*fn)(void *ud, const struct cache_entry_view *e), void *ud)
{
    struct list_ctx l = {.now = now_ms(c), .max = max, .fn = fn, .ud = ud};
    cidx_foreach(c->idx, (unsigned)by, value, len, 0, list_one, &l);
    return l.live;
}
