/* The fast-path writer (see fastpath_writer.h). The table is the truth: every socket is brought to
 * it by "clear map" + one "add map" per live entry whenever its client says commands may have been
 * lost, and follows it line by line otherwise. */
#include "fastpath_writer.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

#define MAX_SOCKETS 16

struct fw_socket {
    struct fastpath_writer *w;
    struct hcli *cli;
    bool master; /* routed through the master CLI */
};

struct fastpath_writer {
    struct ev_loop *loop;
    char *map;
    char *secret;
    size_t secret_len;
    struct fp_table *table;
    struct fw_socket socks[MAX_SOCKETS];
    size_t nsocks;
    ev_timer expiry;
    struct fpw_stats st;
    char line[FP_CMD_MAX];
};

/* ---- sending ---- */

static void send_line(struct fw_socket *s, long len)
{
    if (len > 0)
        hcli_send(s->cli, s->w->line, (size_t)len); /* a full queue re-syncs by itself */
}

static void send_put(struct fw_socket *s, bool replace, const struct fp_entry *e)
{
    struct fastpath_writer *w = s->w;
    enum fp_value_format fmt = fp_value_format_for(hcli_version(s->cli));
    send_line(s, fp_cmd_put(w->line, sizeof(w->line), replace, hcli_route(s->cli), w->map, e->key,
                            e->expires, fmt, e->jwt, e->jwt_len));
}

static void on_removed(void *ud, const struct fp_entry *e)
{
    struct fastpath_writer *w = ud;
    w->st.removed++;
    for (size_t i = 0; i < w->nsocks; i++) {
        struct fw_socket *s = &w->socks[i];
        send_line(s, fp_cmd_del(w->line, sizeof(w->line), hcli_route(s->cli), w->map, e->key));
    }
}

/* ---- expiry ---- */

static void arm_expiry(struct fastpath_writer *w)
{
    ev_timer_stop(w->loop, &w->expiry);
    int64_t next = fp_table_next_expiry(w->table);
    if (!next)
        return;
    double after = (double)(next - clock_seconds());
    ev_timer_set(&w->expiry, after > 0 ? after : 0., 0.);
    ev_timer_start(w->loop, &w->expiry);
}

static void on_expiry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct fastpath_writer *w = t->data;
    fp_table_expire(w->table, clock_seconds(), on_removed, w);
    arm_expiry(w);
}

/* ---- sessions ---- */

struct refill {
    struct fw_socket *s;
    size_t n;
};

static void refill_one(void *ud, const struct fp_entry *e)
{
    struct refill *r = ud;
    send_put(r->s, false, e);
    r->n++;
}

static void on_ready(void *ud, struct hcli *c, long pid, bool resync)
{
    (void)c;
    struct fw_socket *s = ud;
    struct fastpath_writer *w = s->w;
    if (!resync)
        return;
    /* Whatever the process holds may be stale (another agent run, lost deletes): start over. */
    send_line(s, fp_cmd_clear(w->line, sizeof(w->line), hcli_route(s->cli), w->map));
    struct refill r = {.s = s};
    fp_table_foreach(w->table, refill_one, &r);
    w->st.refills++;
    log_info("fast path %s: HAProxy pid %ld re-filled with %zu entries", hcli_address(s->cli), pid,
             r.n);
}

/* The open session still reaches a worker that a reload replaced: empty its map before leaving,
 * so that the old worker asks the agent (and sees revocations) instead of serving its entries
 * until they expire. Through the master CLI the old worker is addressed by its pid. */
static void on_stale(void *ud, struct hcli *c)
{
    struct fw_socket *s = ud;
    struct fastpath_writer *w = s->w;
    char route[FP_PREFIX_MAX] = "";
    if (s->master) {
        struct hcli_stats st;
        hcli_get_stats(c, &st);
        snprintf(route, sizeof(route), "@!%ld", st.pid);
    }
    send_line(s, fp_cmd_clear(w->line, sizeof(w->line), route, w->map));
}

static const struct hcli_ops socket_ops = {.on_ready = on_ready, .on_stale = on_stale};

static int add_socket(struct fastpath_writer *w, const char *spec, size_t len, char *err,
                      size_t errlen)
{
    while (len && (*spec == ' ' || *spec == '\t')) {
        spec++;
        len--;
    }
    while (len && (spec[len - 1] == ' ' || spec[len - 1] == '\t'))
        len--;
    if (!len) {
        snprintf(err, errlen, "fastpath-socket: an empty element");
        return -1;
    }
    if (w->nsocks == MAX_SOCKETS) {
        snprintf(err, errlen, "fastpath-socket: more than %d sockets", MAX_SOCKETS);
        return -1;
    }
    char addr[256];
    if (len >= sizeof(addr)) {
        snprintf(err, errlen, "fastpath-socket: an address too long");
        return -1;
    }
    memcpy(addr, spec, len);
    addr[len] = '\0';
    struct fw_socket *s = &w->socks[w->nsocks];
    s->w = w;
    s->master = strncmp(addr, "master:", 7) == 0;
    struct hcli_settings hs = {
        .address = s->master ? addr + 7 : addr,
        .route = s->master ? "@1" : "",
        /* a re-fill must fit: the whole table plus what arrives meanwhile */
        .max_queue = fp_table_capacity(w->table) * 2 + 64,
    };
    char cerr[200];
    s->cli = hcli_new(w->loop, &hs, &socket_ops, s, cerr, sizeof(cerr));
    if (!s->cli) {
        snprintf(err, errlen, "fastpath-socket %s: %s", addr, cerr);
        return -1;
    }
    w->nsocks++;
    return 0;
}

/* ---- public ---- */

struct fastpath_writer *fpw_new(struct ev_loop *loop, const struct fpw_settings *s, char *err,
                                size_t errlen)
{
    if (!s->sockets || !*s->sockets || !fp_map_name_valid(s->map) || !s->secret ||
        strlen(s->secret) < FP_SECRET_MIN) {
        snprintf(err, errlen,
                 "the fast path needs fastpath-socket, a valid fastpath-map and "
                 "fastpath-key-file");
        return NULL;
    }
    struct fastpath_writer *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->loop = loop;
    w->map = strdup(s->map);
    w->secret = strdup(s->secret);
    w->secret_len = strlen(s->secret);
    w->table = fp_table_new(s->max_entries ? s->max_entries : 10000);
    ev_init(&w->expiry, on_expiry);
    w->expiry.data = w;
    if (!w->map || !w->secret || !w->table) {
        snprintf(err, errlen, "out of memory");
        fpw_free(w);
        return NULL;
    }
    for (const char *p = s->sockets;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (add_socket(w, p, len, err, errlen) < 0) {
            fpw_free(w);
            return NULL;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return w;
}

void fpw_free(struct fastpath_writer *w)
{
    if (!w)
        return;
    ev_timer_stop(w->loop, &w->expiry);
    for (size_t i = 0; i < w->nsocks; i++)
        hcli_free(w->socks[i].cli);
    fp_table_free(w->table);
    if (w->secret)
        OPENSSL_cleanse(w->secret, w->secret_len);
    free(w->secret);
    free(w->map);
    free(w);
}

void fpw_publish(struct fastpath_writer *w, const struct fp_candidate *c, const struct fp_limits *l,
                 const uint8_t token_id[FP_TOKEN_ID_LEN], int64_t now)
{
    int64_t expires;
    if (fp_admit(c, l, now, &expires) != FP_OK) {
        w->st.refused++;
        return;
    }
    char key[FP_KEY_HEX + 1];
    if (fp_map_key(w->secret, w->secret_len, c->auth, c->auth_len, c->scopes, c->scopes_len,
                   c->audience, c->audience_len, key) < 0) {
        w->st.refused++;
        return;
    }
    enum fp_put_result r =
        fp_table_put(w->table, key, token_id, expires, c->jwt, c->jwt_len, on_removed, w);
    if (r == FP_PUT_UNCHANGED) {
        w->st.unchanged++;
        return;
    }
    if (r == FP_PUT_NOMEM) {
        w->st.refused++;
        return;
    }
    const struct fp_entry *e = fp_table_get(w->table, key);
    for (size_t i = 0; i < w->nsocks; i++)
        send_put(&w->socks[i], r == FP_PUT_REPLACED, e);
    w->st.published++;
    arm_expiry(w);
}

size_t fpw_purge_token(struct fastpath_writer *w, const uint8_t token_id[FP_TOKEN_ID_LEN])
{
    size_t n = fp_table_purge_token(w->table, token_id, on_removed, w);
    arm_expiry(w);
    return n;
}

size_t fpw_purge_all(struct fastpath_writer *w)
{
    size_t n = fp_table_purge_all(w->table, on_removed, w);
    arm_expiry(w);
    return n;
}

void fpw_get_stats(const struct fastpath_writer *w, struct fpw_stats *out)
{
    *out = w->st;
    out->entries = fp_table_count(w->table);
}

size_t fpw_nsockets(const struct fastpath_writer *w)
{
    return w->nsocks;
}

const struct hcli *fpw_socket(const struct fastpath_writer *w, size_t i)
{
    return i < w->nsocks ? w->socks[i].cli : NULL;
}

char *fpw_metrics_text(const struct fastpath_writer *w)
{
    struct fpw_stats st;
    fpw_get_stats(w, &st);
    char *b = NULL;
    int n = asprintf(&b,
                     "# HELP phantom_fastpath_decisions_total Decisions offered to HAProxy's map.\n"
                     "# TYPE phantom_fastpath_decisions_total counter\n"
                     "phantom_fastpath_decisions_total{result=\"published\"} %llu\n"
                     "phantom_fastpath_decisions_total{result=\"unchanged\"} %llu\n"
                     "phantom_fastpath_decisions_total{result=\"refused\"} %llu\n"
                     "# HELP phantom_fastpath_removed_total Map entries deleted (expiry, "
                     "eviction, purge).\n"
                     "# TYPE phantom_fastpath_removed_total counter\n"
                     "phantom_fastpath_removed_total %llu\n"
                     "# HELP phantom_fastpath_refills_total HAProxy processes re-filled.\n"
                     "# TYPE phantom_fastpath_refills_total counter\n"
                     "phantom_fastpath_refills_total %llu\n"
                     "# HELP phantom_fastpath_entries Entries live in the map.\n"
                     "# TYPE phantom_fastpath_entries gauge\n"
                     "phantom_fastpath_entries %zu\n",
                     (unsigned long long)st.published, (unsigned long long)st.unchanged,
                     (unsigned long long)st.refused, (unsigned long long)st.removed,
                     (unsigned long long)st.refills, st.entries);
    return n < 0 ? NULL : b;
}
