/* Secondary indexes for the token cache: claim value (sub, client_id, sid, token id) -> the
 * entries carrying it, so that a purge by sub touches only that user's entries instead of scanning
 * a million. Pure and generic: the embedder (cache.c) puts an array of cidx_link in each entry and
 * tells the index, through an ops callback, which value an entry has for each kind. */
#ifndef PTA_CACHE_INDEX_H
#define PTA_CACHE_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "list.h"

#define CIDX_MAX_KINDS 4

struct cidx_group;

/* One per kind in every indexed entry; g is NULL when the entry has no value for that kind. */
struct cidx_link {
    struct list node;
    struct cidx_group *g;
};

/* The value of kind for the entry whose link array is links: bytes and length, or NULL when the
 * entry has none (it is then not indexed under that kind). The value must not change while the
 * entry is indexed (the cache's entries are immutable). */
typedef const void *(*cidx_value_fn)(const struct cidx_link *links, unsigned kind, size_t *len,
                                     void *ud);

/* nkinds <= CIDX_MAX_KINDS. expected: the most entries the cache will hold (sizes the table once;
 * it still grows if that was too low). hash_key: 16 bytes, or NULL for a random one (the values
 * come from the identity server and from users, so the hash is keyed: SipHash-2-4). NULL on
 * failure. */
struct cidx *cidx_new(unsigned nkinds, size_t expected, cidx_value_fn value, void *ud,
                      const uint8_t *hash_key);
void cidx_free(struct cidx *x); /* entries must have been removed (or are simply forgotten) */
/* Resizes the table for a new expected count (cache reconfiguration). False on ENOMEM (the old
 * table stays, still correct). */
bool cidx_resize(struct cidx *x, size_t expected);

void cidx_links_init(struct cidx_link *links, unsigned nkinds);
/* Indexes an entry (not indexed yet: links are initialised here) under every kind it has a value
 * for. All or nothing: -1 on ENOMEM with the
 * entry in no group, so the caller must not cache an entry that a purge could not find. */
int cidx_add(struct cidx *x, struct cidx_link *links);
/* Removes an entry from every group it is in; O(kinds). Harmless on an entry never added. */
void cidx_remove(struct cidx *x, struct cidx_link *links);

/* The link array of some entry with that value for kind, or NULL. Purge loops call it until it
 * returns NULL, removing each entry they get, so removal during the walk is never an issue. */
struct cidx_link *cidx_first(const struct cidx *x, unsigned kind, const void *value, size_t len);
/* Entries with that value for kind. */
size_t cidx_count(const struct cidx *x, unsigned kind, const void *value, size_t len);
/* Calls fn for every entry with that value (at most max; 0 = no bound); fn must not add or remove
 * entries. Returns how many fn saw. For listings (GET /admin/cache?sub=...). */
size_t cidx_foreach(const struct cidx *x, unsigned kind, const void *value, size_t len, size_t max,
                    void (*fn)(struct cidx_link *links, void *ud), void *ud);

/* The bytes one group costs (what an entry is charged per indexed kind, an upper bound). */
size_t cidx_group_size(void);
/* Groups (distinct values over all kinds) and the bytes the index allocates beyond the links. */
size_t cidx_groups(const struct cidx *x);
size_t cidx_bytes(const struct cidx *x);

/* SipHash-2-4 (Aumasson, Bernstein) of in under a 16-byte key; exposed for its test vectors. */
uint64_t cidx_siphash(const uint8_t key[16], const void *in, size_t len);

#endif
