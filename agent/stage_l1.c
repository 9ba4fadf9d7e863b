/* Pipeline stage "l1": stores the answer in the in-process cache on its way back up, which also
 * completes the cache's flight (every waiting request gets the answer). */
#include "stages.h"

#include <openssl/sha.h>

/* The entry also records the token's id (SHA-256 prefix, what the access log prints), so that an
 * operator can purge it by the id found in a log line (POST /admin/purge {"token_hash": ...}). */
static struct token_info *l1_result(void *self, struct flight *f, struct token_info *ti)
{
    size_t len = 0;
    const char *token = flight_token(f, &len);
    uint8_t d[SHA256_DIGEST_LENGTH];
    const uint8_t *id = token && SHA256((const unsigned char *)token, len, d) ? d : NULL;
    cache_resolve_id(self, flight_key(f), token_ref(ti), id);
    return ti;
}

static const struct stage_ops l1_ops = {.name = "l1", .result = l1_result};

int stage_l1_add(struct pipeline *p, struct cache *cache)
{
    return pipeline_add(p, &l1_ops, cache);
}
