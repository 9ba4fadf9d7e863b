/* The token cache: HMAC-SHA-256(token) -> token_info, with TTLs bounded by the token's own expiry,
 * a negative cache for invalid tokens, LRU eviction under an entry and a byte budget, and single
 * flight: one introspection per token however many requests wait for it. Pure (injected clock, no
 * I/O), so it is unit-tested without sockets. Used by agent.c. Not thread-safe on its own: a
 * multi-threaded agent wraps each shard with a lock (the key already spreads tokens evenly). */
#ifndef PTA_CACHE_H
#define PTA_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "token.h"

#define CACHE_KEY_LEN 32

struct cache_key {
    uint8_t b[CACHE_KEY_LEN];
};

struct cache_config {
    size_t max_entries;    /* default 100000 */
    size_t max_bytes;      /* default 256 MiB, counts JWTs, claims and per-entry overhead */
    uint32_t max_ttl;      /* seconds, default 300 */
    uint32_t negative_ttl; /* seconds, default 5; 0 disables negative caching */
    uint32_t exp_skew;     /* seconds subtracted from the token's exp, default 5 */
    bool honour_no_store;  /* default false: RFC 7662 lets us cache up to exp */
    uint32_t stale_grace;  /* seconds an expired active entry is kept for cache_stale(); 0: off */
};

/* Returns the current time in milliseconds since the epoch (tests inject a fake one). */
typedef int64_t (*cache_clock_fn)(void *ud);

/* A request waiting for an introspection in flight. Owned by the caller; the cache only links it.
 * done() is called exactly once, from cache_resolve(), with a borrowed token_info (take a ref to
 * keep it; NULL if the resolver passed NULL), unless cache_cancel() removed the waiter first.
 * done() may free w and may call cache_lookup(), cache_cancel() and cache_resolve() again: by then
 * the flight is gone and the result (if cacheable) is stored, so a lookup of the same key hits or
 * leads a new flight. It must not call cache_free(). */
struct cache_waiter {
    struct cache_waiter *next;
    void (*done)(struct cache_waiter *w, struct token_info *ti);
};

enum cache_lookup {
    CACHE_HIT,    /* *ti holds a new reference (active or negative entry) */
    CACHE_LEAD,   /* no entry, nothing in flight: the waiter is queued, the caller introspects */
    CACHE_JOINED, /* an introspection is in flight: the waiter is queued */
    CACHE_NOMEM,  /* no memory for a flight record even after recycling an entry: not queued */
};
/* On CACHE_LEAD/JOINED/NOMEM *ti is set to NULL. w must not be NULL. */

/* Counters are cumulative; entries, bytes and flights are current values. hits and negative_hits
 * are disjoint (an active entry vs a negative one). An LRU victim that had already expired counts
 * as an expiration, not an eviction. */
struct cache_stats {
    uint64_t hits, negative_hits, misses, coalesced, evictions, expirations, inserts;
    uint64_t stale;         /* stale entries handed out by cache_stale() */
    uint64_t purged;        /* entries dropped by purges */
    uint64_t purge_skipped; /* answers of flights overtaken by a purge, not stored */
    size_t entries, bytes, flights;
};

/* hmac_key may be NULL: a random per-process key is drawn (a non-NULL key must not be empty).
 * clock may be NULL: CLOCK_REALTIME is used. NULL on failure. */
struct cache *cache_new(const struct cache_config *cfg, cache_clock_fn clock, void *clock_ud,
                        const uint8_t *hmac_key, size_t hmac_key_len);
void cache_free(struct cache *c); /* drops entries; queued waiters are NOT called */
/* Applies new limits (reload); evicts down to the new budget at once. */
void cache_reconfigure(struct cache *c, const struct cache_config *cfg);

/* Uses the cache's scratch digest context: one caller at a time (a multi-threaded agent gives each
 * worker its own). */
void cache_key_of(struct cache *c, const char *token, size_t len, struct cache_key *out);

enum cache_lookup cache_lookup(struct cache *c, const struct cache_key *k, struct cache_waiter *w,
                               struct token_info **ti);
/* Removes a waiter that no longer wants the answer (its connection closed). Returns true if it was
 * queued. A flight whose waiters all left still completes and fills the cache. */
bool cache_cancel(struct cache *c, const struct cache_key *k, struct cache_waiter *w);

/* Completes the flight for k: stores ti when cacheable (active: TTL = min(max_ttl, exp - now -
 * skew, max-age); inactive: negative_ttl; IdP errors: never), then calls every waiter's done().
 * Takes over the caller's reference to ti. With honour_no_store, an answer marked no-store (active
 * or inactive) is not stored. ti may be NULL (out of memory): nothing is stored and done() gets
 * NULL. A resolve for a key with no flight still stores ti (replacing any entry for k). */
void cache_resolve(struct cache *c, const struct cache_key *k, struct token_info *ti);

/* Stale-if-error. With stale_grace, an active entry that expired less than stale_grace ago is not
 * dropped by the lookup that finds it expired: it stays with the flight that lookup starts, and
 * cache_stale() hands it out while the flight is in progress (a new reference, or NULL: none,
 * past the grace, or the token's own exp has passed). When the flight's answer is an IdP failure
 * (or a stale copy, or NULL) the entry is put back as it was, still expired, so the next request
 * asks the IdP again; any other answer (active or inactive) replaces it. An entry's life is never
 * extended: its expiry and grace count from when it was first stored. Negative entries are never
 * kept. Whatever drops an entry (eviction, a purge) must drop a flight's stale entry too. The
 * answer stored by cache_resolve() is never a token_info marked stale. */
struct token_info *cache_stale(struct cache *c, const struct cache_key *k);

/* How long cache_resolve() would keep ti from now, in ms (<= 0: not stored). The shared L2 tier
 * gives its copy the same lifetime. */
int64_t cache_ttl_ms(const struct cache *c, const struct token_info *ti);

/* When k's live entry ends (ms since the epoch, on the cache's clock), provided it holds ti; 0
 * when it does not: no entry, a flight, another answer, an expired entry (or ti served stale).
 * The fast path never publishes a decision for longer than this agent would answer it from its
 * cache. */
int64_t cache_entry_until_ms(const struct cache *c, const struct cache_key *k,
                             const struct token_info *ti);

void cache_get_stats(const struct cache *c, struct cache_stats *st);

/* ---- purge (issue 14) ----
 * Entries are indexed by sub, client_id, sid and token id (cache_index.c), so a purge by one of
 * them costs O(entries dropped), not a scan. A purge also makes every flight in progress at that
 * moment complete WITHOUT storing its answer (its waiters still get it): an introspection that
 * started before a revocation must not re-fill the cache after it. */
enum cache_by { CACHE_BY_SUB, CACHE_BY_CLIENT_ID, CACHE_BY_SID, CACHE_BY_TOKEN_ID, CACHE_BY_KINDS };
#define CACHE_TOKEN_ID_LEN                                                                         \
    6 /* the first bytes of SHA-256(token): the access log's 12 hex digits                         \
       */

/* cache_resolve() that also records the token id with the entry (id may be NULL: none), so that a
 * purge by token_hash finds it. The l1 stage calls this one. */
void cache_resolve_id(struct cache *c, const struct cache_key *k, struct token_info *ti,
                      const uint8_t id[CACHE_TOKEN_ID_LEN]);
/* Each returns the entries dropped; each also stops the flights in progress from storing. */
size_t cache_purge_key(struct cache *c, const struct cache_key *k);
size_t cache_purge_by(struct cache *c, enum cache_by by, const void *value, size_t len);
size_t cache_purge_all(struct cache *c);
/* Incremented by every purge: a tier that completes work started earlier compares it. */
uint64_t cache_purge_generation(const struct cache *c);

/* Tombstones, for a tier the purge cannot reach entry by entry (the shared L2 holds entries by key
 * only, and other agents may still write what they introspected before the purge): every purge is
 * remembered for max_ttl (nothing written before it can live longer), and an answer from such a
 * tier is refused when it matches one (its key, token id, sub, client_id or sid; or any answer
 * after a purge of all). True: do not use ti, ask the identity server. id may be NULL (unknown).
 * Values are remembered as keyed 64-bit hashes: a collision only refuses an answer. At most
 * CACHE_TOMBSTONES are kept; beyond that every answer is refused until the oldest would expire
 * (fail closed). */
#define CACHE_TOMBSTONES 512
bool cache_purged_since_write(struct cache *c, const struct cache_key *k,
                              const uint8_t id[CACHE_TOKEN_ID_LEN], const struct token_info *ti);

/* One live entry, for listings (GET /admin/cache). Borrowed for the duration of the callback. */
struct cache_entry_view {
    const uint8_t *token_id; /* CACHE_TOKEN_ID_LEN bytes, or NULL when unknown */
    int64_t expires_ms;
    const struct token_info *ti;
};
/* Calls fn for at most max (0: no bound) live entries with that value; returns how many live
 * entries have it. fn must not change the cache. */
size_t cache_list_by(struct cache *c, enum cache_by by, const void *value, size_t len, size_t max,
                     void (*fn)(void *ud, const struct cache_entry_view *e), void *ud);

/* Bytes max_bytes counts per entry on top of token_info_size(): the node (with its index links),
 * its table slot, and one index group per indexed kind (an upper bound: groups are shared). */
size_t cache_entry_overhead(void);

/* For tests and audits: calls fn for every block of memory the cache itself owns (the cache, its
 * table, each entry and flight; not the token_info it references), e.g. to prove that no token
 * bytes are retained. */
typedef void (*cache_memory_fn)(const void *p, size_t len, void *ud);
void cache_visit_memory(const struct cache *c, cache_memory_fn fn, void *ud);

#endif
