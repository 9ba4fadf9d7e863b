/* A thin non-blocking Redis client on the caller's libev loop (hiredis async + its libev
 * adapter): GET, SET PX, PUBLISH and one SUBSCRIBE channel, a bounded time per command, reconnect
 * with capped exponential backoff, AUTH and SELECT. Used by the L2 cache stage and revocation. */
#ifndef PTA_REDIS_CLIENT_H
#define PTA_REDIS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis_url.h"

struct ev_loop;
struct redis_client;
struct rc_cmd;

struct redis_client_settings {
    struct redis_url url;
    const char *password;        /* AUTH password or NULL (copied; cleansed on free) */
    uint32_t command_timeout_ms; /* per command; default 100 */
    uint32_t connect_timeout_ms; /* TCP connect + AUTH + SELECT; default 1000 */
    uint32_t backoff_min_ms;     /* first retry delay; default 100 */
    uint32_t backoff_max_ms;     /* cap of the doubling; default 5000 */
    uint32_t max_inflight;       /* commands awaiting a reply (late ones included); 1024 */
    uint32_t stall_timeouts;     /* this many timeouts in a row, no reply: reconnect; 16 */
    const char *name;            /* for logs, e.g. "L2"; default "redis" */
};
void redis_client_settings_default(struct redis_client_settings *s);

enum rc_result {
    RC_OK,      /* a value (str/len), a status or an integer */
    RC_NIL,     /* GET of a missing key */
    RC_ERROR,   /* Redis answered an error (str holds its text) */
    RC_TIMEOUT, /* no reply within command_timeout_ms; a late reply is dropped */
    RC_DOWN,    /* the connection failed or closed before the reply */
};
const char *rc_result_name(enum rc_result r);

struct rc_reply {
    enum rc_result result;
    const char *str; /* RC_OK bulk or status, RC_ERROR text; borrowed for the callback only */
    size_t len;
    long long integer; /* RC_OK integer replies (PUBLISH: receivers) */
};

/* Called exactly once per command that was accepted, unless redis_cancel() came first; never
 * from inside the call that issued the command. It may issue new commands, but must not call
 * redis_client_free(). */
typedef void (*rc_reply_fn)(void *ud, const struct rc_reply *r);
/* A message on the subscribed channel (payload borrowed for the call). */
typedef void (*rc_message_fn)(void *ud, const char *data, size_t len);

/* What the owner hears about (all optional). */
struct redis_client_ops {
    /* The command connection (subscriber false) or the subscriber one went up or down. Called
     * once per change; e.g. revocation drops L1 when the subscriber comes back, since purges
     * may have been missed. */
    void (*state)(void *ud, bool subscriber, bool up);
};

/* Cumulative counters. latency covers commands that got a reply (not timeouts). */
#define RC_LATENCY_BUCKETS 10 /* upper bounds in µs: see rc_latency_bounds_us */
extern const uint32_t rc_latency_bounds_us[RC_LATENCY_BUCKETS];
struct rc_stats {
    uint64_t commands; /* accepted */
    uint64_t rejected; /* not accepted: down, too many in flight, no memory */
    uint64_t hits;     /* GET with a value */
    uint64_t misses;   /* GET of a missing key */
    uint64_t errors;   /* RC_ERROR and RC_DOWN results */
    uint64_t timeouts; /* RC_TIMEOUT results */
    uint64_t late;     /* replies dropped because they came after the timeout */
    uint64_t connects; /* successful (re)connections, both connections */
    uint64_t disconnects;
    uint64_t messages; /* pub/sub messages delivered */
    uint64_t latency_count, latency_sum_us;
    uint64_t latency_le[RC_LATENCY_BUCKETS + 1]; /* non-cumulative; last: above the largest */
    uint32_t inflight;                           /* current */
    bool up;                                     /* current: command connection ready */
};

/* Starts connecting at once (a host name is resolved here, once: later connections use the
 * address found, so no lookup ever blocks the loop). NULL with a message in err on failure. */
struct redis_client *redis_client_new(struct ev_loop *loop, const struct redis_client_settings *s,
                                      const struct redis_client_ops *ops, void *ud, char *err,
                                      size_t errlen);
/* Closes the connections; every pending command's callback is called with RC_DOWN first. Not
 * from inside one of this client's callbacks. NULL is a no-op. */
void redis_client_free(struct redis_client *rc);

/* Each returns the command (for redis_cancel), or NULL when it was not accepted (connection down,
 * max_inflight reached, out of memory): the callback will then never be called. Keys and values
 * are binary-safe and copied. */
struct rc_cmd *redis_get(struct redis_client *rc, const char *key, size_t klen, rc_reply_fn fn,
                         void *ud);
struct rc_cmd *redis_set_px(struct redis_client *rc, const char *key, size_t klen, const void *val,
                            size_t vlen, uint64_t ttl_ms, rc_reply_fn fn, void *ud);
/* DEL of one key (a purge): RC_OK with integer = keys removed. */
struct rc_cmd *redis_del(struct redis_client *rc, const char *key, size_t klen, rc_reply_fn fn,
                         void *ud);
struct rc_cmd *redis_publish(struct redis_client *rc, const char *channel, const void *msg,
                             size_t len, rc_reply_fn fn, void *ud);
/* Any command (tests, admin tools): argv as for redisCommandArgv. timeout_ms 0: the default. */
struct rc_cmd *redis_command(struct redis_client *rc, int argc, const char **argv,
                             const size_t *argvlen, uint32_t timeout_ms, rc_reply_fn fn, void *ud);
/* The callback will not be called; a reply that still comes is dropped. */
void redis_cancel(struct rc_cmd *cmd);

/* Opens a second connection subscribed to channel (re-subscribed after each reconnect). One
 * channel per client. Returns 0, or -1 (already subscribed, out of memory). */
int redis_subscribe(struct redis_client *rc, const char *channel, rc_message_fn fn, void *ud);

bool redis_client_up(const struct redis_client *rc);
void redis_client_get_stats(const struct redis_client *rc, struct rc_stats *st);

/* The next retry delay after a failure: double the previous one within [min, max]. Pure. */
uint32_t rc_backoff_next(uint32_t prev_ms, uint32_t min_ms, uint32_t max_ms);

#endif
