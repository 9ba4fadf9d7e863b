/* Applies a purge selector to the in-process cache (L1) and lists its entries for the admin API:
 * the bridge between purge.h / revoke.h and cache.h. Pure (no I/O). Used by main.c's revoke_ops,
 * which adds the other tiers (L2, fast path, fleet broadcast) around it. */
#ifndef PTA_PURGE_APPLY_H
#define PTA_PURGE_APPLY_H

#include <stddef.h>

#include "cache.h"
#include "purge.h"

/* Drops what sel selects from c (and keeps its in-flight answers out); returns the entries
 * dropped. */
size_t purge_apply(struct cache *c, const struct purge_selector *sel);

/* revoke_ops.list for c: SUB, CLIENT_ID, SID or TOKEN_HASH selectors (others list nothing). */
size_t purge_list(struct cache *c, const struct purge_selector *sel, size_t max, purge_entry_fn fn,
                  void *ctx);

#endif
