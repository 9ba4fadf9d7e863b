/* Fleet purge broadcast: see fleet.h.
 *
 * Why "drop L1 on reconnect" rather than a purge log kept in Redis: a log needs a reader position
 * per agent and a bound on its length, and an agent away longer than the log is kept must drop
 * its L1 anyway; dropping it every time costs one introspection per active token after a Redis
 * outage, which the IdP has to absorb once, and can never miss a purge. */
#include "fleet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "clock.h"
#include "log.h"
#include "purge_apply.h"
#include "memdup.h"

#define CHANNEL_MAX 256

struct fleet {
    struct redis_client *rc;
    const struct l2_codec *codec;
    struct cache *cache;
    fleet_purge_fn on_purge; /* other tiers, see fleet_on_purge() */
    void *on_purge_ud;
    char channel[CHANNEL_MAX];
    char prefix[CHANNEL_MAX];
    uint8_t origin[8];
    struct l2_replay replay;
    bool was_up, was_down; /* the subscriber's history: a comeback means purges may be missed */
    struct fleet_stats st;
};

/* ---- messages <-> selectors ---- */

static const struct {
    enum purge_kind sel;
    enum l2_purge_kind msg;
} KINDS[] = {
    {PURGE_TOKEN, L2_PURGE_ENTRY_KEY}, {PURGE_TOKEN_HASH, L2_PURGE_TOKEN_ID},
    {PURGE_SUB, L2_PURGE_SUB},         {PURGE_CLIENT_ID, L2_PURGE_CLIENT_ID},
    {PURGE_SID, L2_PURGE_SID},         {PURGE_ALL, L2_PURGE_ALL},
};

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int fleet_msg_from_selector(const struct purge_selector *sel, struct l2_purge_msg *m)
{
    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < sizeof(KINDS) / sizeof(KINDS[0]); i++)
        if (KINDS[i].sel == sel->kind)
            m->kind = KINDS[i].msg;
    switch (sel->kind) {
    case PURGE_TOKEN:
        memcpy(m->value, sel->key, PURGE_KEY_LEN);
        m->value_len = PURGE_KEY_LEN;
        return 0;
    case PURGE_TOKEN_HASH:
        for (size_t i = 0; i < PURGE_ID_LEN; i++)
            snprintf((char *)m->value + 2 * i, 3, "%02x", sel->id[i]);
        m->value_len = 2 * PURGE_ID_LEN;
        return 0;
    case PURGE_ALL:
        return 0;
    case PURGE_SUB:
    case PURGE_CLIENT_ID:
    case PURGE_SID:
        break;
    }
    size_t len = sel->value ? strlen(sel->value) : 0;
    if (len == 0 || len > L2_PURGE_VALUE_MAX)
        return -1;
    memcpy(m->value, sel->value, len);
    m->value_len = len;
    return 0;
}

static int id_from_hex(const uint8_t *hex, size_t len, uint8_t id[PURGE_ID_LEN])
{
    if (len != 2 * PURGE_ID_LEN)
        return -1;
    for (size_t i = 0; i < PURGE_ID_LEN; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        id[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int fleet_selector_from_msg(const struct l2_purge_msg *m, struct purge_selector *sel)
{
    memset(sel, 0, sizeof(*sel));
    size_t i = 0;
    while (i < sizeof(KINDS) / sizeof(KINDS[0]) && KINDS[i].msg != m->kind)
        i++;
    if (i == sizeof(KINDS) / sizeof(KINDS[0]))
        return -1;
    sel->kind = KINDS[i].sel;
    switch (sel->kind) {
    case PURGE_TOKEN:
        if (m->value_len != PURGE_KEY_LEN)
            return -1;
        memcpy(sel->key, m->value, PURGE_KEY_LEN);
        return 0;
    case PURGE_TOKEN_HASH:
        return id_from_hex(m->value, m->value_len, sel->id);
    case PURGE_ALL:
        return 0;
    case PURGE_SUB:
    case PURGE_CLIENT_ID:
    case PURGE_SID:
        break;
    }
    if (m->value_len == 0 || m->value_len > L2_PURGE_VALUE_MAX ||
        memchr(m->value, '\0', m->value_len))
        return -1;
    sel->value = mem_strdup((const char *)m->value, m->value_len);
    return sel->value ? 0 : -1;
}

/* ---- receiving ---- */

static void on_message(void *ud, const char *data, size_t len)
{
    struct fleet *f = ud;
    struct l2_purge_msg m;
    struct purge_selector sel;
    f->st.received++;
    enum l2_status s = l2_purge_decode(f->codec, f->channel, (const uint8_t *)data, len,
                                       clock_ms(NULL), FLEET_MAX_AGE_MS, &f->replay, &m);
    if (s != L2_OK || fleet_selector_from_msg(&m, &sel) != 0) {
        f->st.refused++;
        log_warn("fleet purge message refused (%s)", s != L2_OK ? l2_status_name(s) : "malformed");
        return;
    }
    if (memcmp(m.origin, f->origin, sizeof(f->origin)) == 0) {
        purge_selector_clear(&sel); /* our own: applied when it was made */
        return;
    }
    size_t n = purge_apply(f->cache, &sel);
    if (f->on_purge)
        f->on_purge(f->on_purge_ud, &sel);
    f->st.applied++;
    log_info("purge (fleet): by %s, %zu cache entries dropped", purge_kind_name(sel.kind), n);
    purge_selector_clear(&sel);
}

void fleet_subscriber_state(struct fleet *f, bool up)
{
    if (!up) {
        f->was_down = f->was_up;
        return;
    }
    if (f->was_down) {
        size_t n = cache_purge_all(f->cache);
        const struct purge_selector all = {.kind = PURGE_ALL};
        if (f->on_purge)
            f->on_purge(f->on_purge_ud, &all);
        f->st.resyncs++;
        log_warn("fleet: purge subscription back after an outage; %zu cache entries dropped, "
                 "shared cache hits refused for one cache lifetime (purges may have been missed)",
                 n);
    }
    f->was_up = true;
    f->was_down = false;
}

/* ---- sending ---- */

static void on_published(void *ud, const struct rc_reply *r)
{
    struct fleet *f = ud;
    if (r->result != RC_OK) {
        f->st.publish_failed++;
        log_warn("fleet: a purge could not be published (%s): other agents keep their entries",
                 rc_result_name(r->result));
    }
}

static void on_deleted(void *ud, const struct rc_reply *r)
{
    (void)ud;
    (void)r; /* the tombstones cover an entry a failed DEL left behind */
}

static void del_entry(struct fleet *f, const uint8_t key[PURGE_KEY_LEN])
{
    char k[CHANNEL_MAX + 2 * L2_KEY_LEN + 1];
    int n = l2_redis_key(f->prefix, key, k, sizeof(k));
    if (n > 0)
        redis_del(f->rc, k, (size_t)n, on_deleted, f);
}

void fleet_publish(struct fleet *f, const struct purge_selector *sel)
{
    struct l2_purge_msg m;
    uint8_t *blob = NULL;
    size_t len = 0;
    if (sel->kind == PURGE_TOKEN)
        del_entry(f, sel->key);
    if (fleet_msg_from_selector(sel, &m) != 0)
        return;
    m.ts_ms = clock_ms(NULL);
    memcpy(m.origin, f->origin, sizeof(m.origin));
    if (l2_purge_encode(f->codec, f->channel, &m, &blob, &len) == L2_OK &&
        redis_publish(f->rc, f->channel, blob, len, on_published, f))
        f->st.published++;
    else {
        f->st.publish_failed++;
        log_warn("fleet: a purge could not be published (Redis down?): other agents keep their "
                 "entries");
    }
    free(blob);
}

/* ---- life cycle ---- */

struct fleet *fleet_new(struct redis_client *rc, const struct l2_codec *codec, const char *prefix,
                        struct cache *cache, char *err, size_t errlen)
{
    struct fleet *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f->rc = rc;
    f->codec = codec;
    f->cache = cache;
    l2_replay_init(&f->replay);
    int n = snprintf(f->channel, sizeof(f->channel), "%spurge", prefix);
    snprintf(f->prefix, sizeof(f->prefix), "%s", prefix);
    if (n < 0 || (size_t)n >= sizeof(f->channel) || RAND_bytes(f->origin, sizeof(f->origin)) != 1 ||
        redis_subscribe(rc, f->channel, on_message, f) != 0) {
        snprintf(err, errlen, "cannot subscribe to the purge channel");
        free(f);
        return NULL;
    }
    return f;
}

void fleet_free(struct fleet *f)
{
    free(f);
}

void fleet_get_stats(const struct fleet *f, struct fleet_stats *st)
{
    *st = f->st;
}

char *fleet_metrics_text(const struct fleet *f)
{
    char *b = NULL;
    const struct fleet_stats *s = &f->st;
    int n = asprintf(
        &b,
        "# HELP phantom_fleet_purges_published_total Purges sent to the fleet, by result.\n"
        "# TYPE phantom_fleet_purges_published_total counter\n"
        "phantom_fleet_purges_published_total{result=\"ok\"} %llu\n"
        "phantom_fleet_purges_published_total{result=\"error\"} %llu\n"
        "# HELP phantom_fleet_purges_received_total Purges from other agents, by result.\n"
        "# TYPE phantom_fleet_purges_received_total counter\n"
        "phantom_fleet_purges_received_total{result=\"applied\"} %llu\n"
        "phantom_fleet_purges_received_total{result=\"refused\"} %llu\n"
        "# HELP phantom_fleet_resyncs_total L1 drops after the purge subscription came back.\n"
        "# TYPE phantom_fleet_resyncs_total counter\n"
        "phantom_fleet_resyncs_total %llu\n",
        (unsigned long long)(s->published - s->publish_failed),
        (unsigned long long)s->publish_failed, (unsigned long long)s->applied,
        (unsigned long long)s->refused, (unsigned long long)s->resyncs);
    return n < 0 ? NULL : b;
}

void fleet_on_purge(struct fleet *f, fleet_purge_fn fn, void *ud)
{
    f->on_purge = fn;
    f->on_purge_ud = ud;
}
