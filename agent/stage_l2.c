/* Pipeline stage "l2": the cache the fleet shares, in Redis. Going down, the flight's leader asks
 * Redis (one GET per token per agent: single flight is in front of the chain); a usable entry
 * answers the flight, anything else (missing, undecryptable, Redis slow or down) passes it on to
 * the identity server. Going up, an answer worth sharing (active, or inactive for the short
 * negative TTL; never an IdP error) is written with PX = the lifetime L1 would give it. The stage
 * never makes a request wait longer than one Redis command timeout. */
#include "stages.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "clock.h"
#include "l2_codec.h"
#include "log.h"
#include "redis_client.h"

#include <openssl/sha.h>

_Static_assert(L2_STATUS_COUNT <= METRICS_L2_REASONS, "metrics cannot count every l2_status");

#define KEY_MAX 512 /* prefix (at most 256, checked by the option) + 64 hex + NUL */

struct l2_stage {
    struct redis_client *rc;      /* borrowed; freed by the owner before the pipeline */
    const struct l2_codec *codec; /* borrowed */
    struct cache *cache;          /* borrowed: its TTL rules decide the Redis TTL */
    struct metrics *m;            /* borrowed */
    char prefix[KEY_MAX - 2 * L2_KEY_LEN - 1];
};

/* One GET in flight. */
struct l2_get {
    struct l2_stage *st;
    struct flight *f;
    double t0;
};

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int redis_key(const struct l2_stage *st, const struct flight *f, char key[KEY_MAX])
{
    return l2_redis_key(st->prefix, flight_key(f)->b, key, KEY_MAX);
}

static void log_unusable(struct flight *f, enum l2_status s)
{
    if (!log_enabled(LOG_LVL_DEBUG))
        return;
    size_t len;
    const char *tok = flight_token(f, &len);
    char id[13];
    log_token_id(tok, len, id);
    log_debug("token %s: shared cache entry unusable (%s), asking the identity server", id,
              l2_status_name(s));
}

/* Revocation: an entry written before a purge that selects it must not come back into L1. */
static bool purged_since(struct l2_stage *st, struct flight *f, const struct token_info *ti)
{
    size_t len = 0;
    const char *tok = flight_token(f, &len);
    uint8_t d[SHA256_DIGEST_LENGTH];
    const uint8_t *id = tok && SHA256((const unsigned char *)tok, len, d) ? d : NULL;
    return cache_purged_since_write(st->cache, flight_key(f), id, ti);
}

static void on_get(void *ud, const struct rc_reply *r)
{
    struct l2_get *g = ud;
    struct l2_stage *st = g->st;
    struct flight *f = g->f;
    double ms = mono_ms() - g->t0;
    free(g);
    enum metrics_l2 what = ML2_ERROR;
    if (r->result == RC_OK) {
        struct token_info *ti = NULL;
        int64_t expires;
        enum l2_status s = l2_value_decode(st->codec, flight_key(f)->b, (const uint8_t *)r->str,
                                           r->len, clock_ms(NULL), &ti, &expires);
        if (s == L2_OK && purged_since(st, f, ti)) {
            token_unref(ti); /* may predate a purge (revocation): ask the identity server */
            metrics_observe_l2(st->m, ML2_MISS, ms);
            flight_next(f);
            return;
        }
        if (s == L2_OK) {
            metrics_observe_l2(st->m, ML2_HIT, ms);
            ti->from_l2 = true; /* fresh from the decoder, not shared yet */
            flight_resolve(f, ti);
            return;
        }
        metrics_count_l2_invalid(st->m, s);
        log_unusable(f, s);
        what = ML2_INVALID;
    } else if (r->result == RC_NIL) {
        what = ML2_MISS;
    } else if (r->result == RC_TIMEOUT) {
        what = ML2_TIMEOUT;
    }
    metrics_observe_l2(st->m, what, what == ML2_TIMEOUT ? -1 : ms);
    flight_next(f);
}

static void l2_lookup(void *self, struct flight *f)
{
    struct l2_stage *st = self;
    char key[KEY_MAX];
    int n = redis_key(st, f, key);
    struct l2_get *g = n > 0 ? pta_malloc(sizeof(*g)) : NULL;
    if (g) {
        *g = (struct l2_get){.st = st, .f = f, .t0 = mono_ms()};
        if (redis_get(st->rc, key, (size_t)n, on_get, g))
            return;
        free(g);
    }
    metrics_observe_l2(st->m, ML2_SKIPPED, -1); /* down, saturated or out of memory */
    flight_next(f);
}

static void on_set(void *ud, const struct rc_reply *r)
{
    struct l2_stage *st = ud;
    metrics_count_l2_write(st->m, r->result == RC_OK);
}

static struct token_info *l2_result(void *self, struct flight *f, struct token_info *ti)
{
    struct l2_stage *st = self;
    if (!ti || (ti->outcome != TOKEN_ACTIVE && ti->outcome != TOKEN_INACTIVE))
        return ti; /* IdP trouble is never shared: every agent must ask again */
    int64_t ttl = cache_ttl_ms(st->cache, ti);
    if (ttl <= 0)
        return ti;
    char key[KEY_MAX];
    int n = redis_key(st, f, key);
    uint8_t *blob = NULL;
    size_t len = 0;
    enum l2_status s = L2_E_FIELD;
    if (n > 0)
        s = l2_value_encode(st->codec, flight_key(f)->b, ti, clock_ms(NULL) + ttl, &blob, &len);
    if (s != L2_OK) {
        metrics_count_l2_write(st->m, false);
        return ti;
    }
    if (!redis_set_px(st->rc, key, (size_t)n, blob, len, (uint64_t)ttl, on_set, st))
        metrics_count_l2_write(st->m, false);
    free(blob);
    return ti;
}

static void l2_free(void *self)
{
    free(self);
}

static const struct stage_ops l2_ops = {
    .name = "l2", .lookup = l2_lookup, .result = l2_result, .free = l2_free};

/* The flight's key must be the fleet's entry key, or no two agents would ever share an entry. */
static bool same_keying(struct cache *cache, const struct l2_codec *codec)
{
    static const char probe[] = "phantom-token-agent keying probe";
    struct cache_key ck;
    uint8_t ek[L2_KEY_LEN];
    cache_key_of(cache, probe, sizeof(probe) - 1, &ck);
    return l2_entry_key(codec, probe, sizeof(probe) - 1, ek) == 0 &&
           memcmp(ck.b, ek, L2_KEY_LEN) == 0;
}

int stage_l2_add(struct pipeline *p, struct redis_client *rc, const struct l2_codec *codec,
                 const char *prefix, struct cache *cache, struct metrics *m)
{
    if (strlen(prefix) >= sizeof(((struct l2_stage *)0)->prefix) || !same_keying(cache, codec)) {
        log_error("shared cache: the prefix is too long or the L1 cache is not keyed with the "
                  "fleet key");
        return -1;
    }
    struct l2_stage *st = pta_calloc(1, sizeof(*st));
    if (!st)
        return -1;
    *st = (struct l2_stage){.rc = rc, .codec = codec, .cache = cache, .m = m};
    strcpy(st->prefix, prefix);
    return pipeline_add(p, &l2_ops, st);
}
