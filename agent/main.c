/* phantom-token-agent: the daemon's entry point. Reads the configuration, builds the shared cache
 * and the worker, and runs the event loop until SIGTERM/SIGINT (drain, then exit 0). SIGHUP
 * re-reads the configuration and applies it without dropping connections or the cache (options
 * bound at start keep their running value: config_keep_restart_only()). Serves /metrics, /healthz
 * and the admin routes through http_server.c. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <jansson.h>

#include <openssl/crypto.h>

#include "agent.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "http_router.h"
#include "http_server.h"
#include "fastpath_writer.h"
#include "l2_codec.h"
#include "fleet.h"
#include "log.h"
#include "purge_apply.h"
#include "revoke.h"
#include "version.h"

struct daemon {
    int argc;
    char **argv;
    struct config *cfg;
    struct cache *cache;
    struct agent agent;
    struct http_server *http;
    struct revoke *revoke; /* /admin/purge, /admin/cache, /backchannel-logout */
    struct fleet *fleet;   /* purges broadcast over the shared cache's Redis; NULL without it */
    ev_tstamp started;     /* loop time at start, for /admin/status */
    ev_signal sigterm, sigint, sighup;
    ev_timer drain_deadline;
    ev_prepare drain_check;
};

/* Builds a configuration from the command line (which names the file; parsed again on every
 * reload: the agent never changes directory, so a relative --config names the same file). NULL
 * with err filled.
 * On reload (running set) the restart-only values are put back before anything is checked, so
 * that an ignored change cannot refuse the live ones (a token rotation, a secret). */
static struct config *load_config(int argc, char **argv, const struct config *running,
                                  enum config_action *action, char *err, size_t errlen)
{
    struct config *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    config_defaults(c);
    int rc = config_parse_args(c, argc, argv, action, err, errlen);
    if (rc == 0 && running && config_keep_restart_only(c, running) < 0) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    if (rc == 0 && *action != CONFIG_EXIT_OK)
        rc = running ? config_finalize_reload(c, err, errlen) : config_finalize(c, err, errlen);
    if (rc < 0) {
        config_free(c);
        free(c);
        return NULL;
    }
    return c;
}

static void free_config(struct config *c)
{
    if (!c)
        return;
    config_free(c);
    free(c);
}

/* jwks-file: the JWKS for APIs that read it from disk, rewritten with every configuration (a
 * reload may bring new keys). A failure is logged, never fatal: the HTTP route still serves it. */
static void write_jwks_file(const struct config *c)
{
    if (!c->jwks_file || !c->minting.minter.keys)
        return;
    char err[512];
    if (keyring_write_jwks(c->minting.minter.keys, c->jwks_file, err, sizeof(err)) < 0)
        log_error("%s", err);
    else
        log_info("JWKS written to %s (%zu key(s))", c->jwks_file, c->minting.minter.keys->nkeys);
}

static void log_signing_key(const struct config *c)
{
    const struct jws_key *k = keyring_signer(c->minting.minter.keys);
    if (k)
        log_info("minted JWTs (jwt-source %s) signed with %s key %s, %zu key(s) published",
                 jwt_source_name(c->minting.mode), jws_alg_name(k->alg), k->kid,
                 c->minting.minter.keys->nkeys);
}

static void on_reload(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct daemon *d = w->data;
    char err[CONFIG_ERR_LEN];
    enum config_action action;
    struct config *next = load_config(d->argc, d->argv, d->cfg, &action, err, sizeof(err));
    if (!next) {
        log_error("reload refused, keeping the running configuration: %s", err);
        return;
    }
    if (agent_reconfigure(&d->agent, next) < 0) {
        log_error("reload refused: cannot apply the introspection settings");
        free_config(next);
        return;
    }
    log_set_level(next->log_level);
    cache_reconfigure(d->cache, &next->cache);
    free_config(d->cfg);
    d->cfg = next;
    write_jwks_file(next);
    log_signing_key(next);
    if (d->http && http_server_set_admin_token(d->http, next->admin_token) < 0) {
        http_server_set_admin_token(d->http, NULL); /* fail closed: not the old token */
        log_error("reload: out of memory for the admin token; the admin API is off");
    }
    log_info("configuration reloaded");
}

static void on_drain_check(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct daemon *d = w->data;
    if (agent_drained(&d->agent))
        ev_break(loop, EVBREAK_ALL);
}

static void on_drain_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    log_warn("drain time is over: closing the remaining connections");
    ev_break(loop, EVBREAK_ALL);
}

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct daemon *d = w->data;
    if (d->agent.draining) {
        log_warn("second stop signal: exiting now");
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    log_info("stopping: draining %u connection(s) for at most %u ms", d->agent.nconns,
             d->cfg->drain_timeout_ms);
    agent_drain(&d->agent);
    ev_timer_set(&d->drain_deadline, d->cfg->drain_timeout_ms / 1000.0, 0);
    ev_timer_start(loop, &d->drain_deadline);
    ev_prepare_start(loop, &d->drain_check);
}

static void setup_signals(struct daemon *d, struct ev_loop *loop)
{
    signal(SIGPIPE, SIG_IGN);
    ev_signal_init(&d->sigterm, on_stop, SIGTERM);
    ev_signal_init(&d->sigint, on_stop, SIGINT);
    ev_signal_init(&d->sighup, on_reload, SIGHUP);
    ev_init(&d->drain_deadline, on_drain_deadline);
    ev_prepare_init(&d->drain_check, on_drain_check);
    d->sigterm.data = d->sigint.data = d->sighup.data = d;
    d->drain_deadline.data = d->drain_check.data = d;
    ev_signal_start(loop, &d->sigterm);
    ev_signal_start(loop, &d->sigint);
    ev_signal_start(loop, &d->sighup);
    /* Signals must not keep the loop alive on their own once the agent is done. */
    ev_unref(loop);
    ev_unref(loop);
    ev_unref(loop);
}

/* ---- HTTP routes (handlers run on the loop thread) ------------------------------------------ */

static void serve_healthz(void *ud, const struct http_request *req, struct http_response *resp)
{
    struct daemon *d = ud;
    /* 503 tells load balancers and orchestrators to look elsewhere */
    http_response_text(resp, d->agent.draining ? 503 : 200, "text/plain; charset=utf-8",
                       strdup(d->agent.draining ? "draining\n" : "ok\n"));
}

/* text followed by more (both malloc'd, more is freed); NULL when either is (the answer is then a
 * 500 rather than metrics with a part silently missing). */
static char *append_text(char *text, char *more)
{
    if (!text || !more) {
        free(text);
        free(more);
        return NULL;
    }
    size_t a = strlen(text), b = strlen(more);
    char *all = realloc(text, a + b + 1);
    if (all)
        memcpy(all + a, more, b + 1);
    else
        free(text);
    free(more);
    return all;
}

static void serve_metrics(void *ud, const struct http_request *req, struct http_response *resp)
{
    struct daemon *d = ud;
    d->agent.metrics.idp_retries = introspector_retries(d->agent.idp);
    const struct metrics *workers[1] = {&d->agent.metrics};
    struct cache_stats cs;
    cache_get_stats(d->cache, &cs);
    char *text = metrics_render(workers, 1, &cs, introspector_pending(d->agent.idp));
    if (d->revoke)
        text = append_text(text, revoke_metrics_text(d->revoke));
    if (d->fleet)
        text = append_text(text, fleet_metrics_text(d->fleet));
    if (d->agent.fastpath)
        text = append_text(text, fpw_metrics_text(d->agent.fastpath));
    http_response_text(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text);
}

/* What an operator asks first: which build, since when, how busy. */
static void serve_admin_status(void *ud, const struct http_request *req, struct http_response *resp)
{
    struct daemon *d = ud;
    struct cache_stats cs;
    cache_get_stats(d->cache, &cs);
    json_t *doc =
        json_pack("{ss sI sb sI sI sI sI}", "version", PTA_VERSION, "uptime_s",
                  (json_int_t)(ev_now(d->agent.loop) - d->started), "draining", d->agent.draining,
                  "spop_connections", (json_int_t)d->agent.nconns, "cache_entries",
                  (json_int_t)cs.entries, "cache_bytes", (json_int_t)cs.bytes,
                  "introspections_pending", (json_int_t)introspector_pending(d->agent.idp));
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text)
        http_response_json(resp, 200, text);
    else
        http_response_error(resp, 500, "out of memory");
    free(text);
}

/* ---- revocation: what a purge reaches (revoke_ops) ------------------------------------------ */

static void rv_token_key(void *ud, const char *token, size_t len, uint8_t out[PURGE_KEY_LEN])
{
    struct daemon *d = ud;
    struct cache_key k;
    cache_key_of(d->cache, token, len, &k);
    memcpy(out, k.b, PURGE_KEY_LEN);
}

/* HAProxy's fast-path map knows entries by the token's cache key only: a token purge drops that
 * token's entries, any other selector clears the map (fail closed: the next requests go through
 * the agent, which publishes again what is still valid). */
static void purge_fastpath(void *ud, const struct purge_selector *sel)
{
    struct daemon *d = ud;
    if (!d->agent.fastpath)
        return;
    if (sel->kind == PURGE_TOKEN)
        fpw_purge_token(d->agent.fastpath, sel->key);
    else
        fpw_purge_all(d->agent.fastpath);
}

/* Every tier a token can be served from: L1 (with its in-flight introspections and tombstones
 * against L2 hits), the HAProxy fast path, and, through the fleet broadcast, the other agents and
 * the token's L2 entry. */
static size_t rv_purge(void *ud, const struct purge_selector *sel)
{
    struct daemon *d = ud;
    size_t n = purge_apply(d->cache, sel);
    purge_fastpath(d, sel);
    if (d->fleet)
        fleet_publish(d->fleet, sel);
    return n;
}

static void on_fleet_state(void *ud, bool up)
{
    fleet_subscriber_state(ud, up);
}

/* With the shared cache, purges go to the whole fleet over its Redis. */
static int start_fleet(struct daemon *d)
{
    char err[256];
    if (!d->agent.l2)
        return 0;
    d->fleet = fleet_new(d->agent.l2, d->agent.l2_codec, d->cfg->cache_redis_prefix, d->cache, err,
                         sizeof(err));
    if (!d->fleet) {
        log_error("fleet purges: %s", err);
        return -1;
    }
    fleet_on_purge(d->fleet, purge_fastpath, d); /* purges from the other agents */
    d->agent.l2_subscriber_state = on_fleet_state;
    d->agent.l2_subscriber_ud = d->fleet;
    return 0;
}

static size_t rv_list(void *ud, const struct purge_selector *sel, size_t max, purge_entry_fn fn,
                      void *ctx)
{
    struct daemon *d = ud;
    return purge_list(d->cache, sel, max, fn, ctx);
}

static int start_revoke(struct daemon *d, struct ev_loop *loop)
{
    static const struct revoke_ops ops = {
        .token_key = rv_token_key, .purge = rv_purge, .list = rv_list};
    const struct config *c = d->cfg;
    struct revoke_config rc = {
        .issuer = c->logout_issuer,
        .client_id = c->logout_client_id ? c->logout_client_id : c->client_id,
        .jwks_url = c->logout_jwks_url,
        .ca_file = c->ca_file,
        .insecure = c->tls_insecure_skip_verify,
    };
    char err[256];
    d->revoke = revoke_new(loop, &rc, &ops, d, err, sizeof(err));
    if (!d->revoke) {
        log_error("revocation: %s", err);
        return -1;
    }
    if (revoke_logout_enabled(d->revoke))
        log_info("back-channel logout for %s, keys from %s", c->logout_issuer, c->logout_jwks_url);
    return 0;
}

/* The gateway's public keys (RFC 7517), for APIs verifying minted JWTs. Short max-age: after a
 * rotation, APIs see the new key within minutes (and jose-style clients refetch on an unknown kid).
 */
static void serve_jwks(void *ud, const struct http_request *req, struct http_response *resp)
{
    struct daemon *d = ud;
    size_t len;
    http_response_json(resp, 200, minting_jwks(&d->cfg->minting, &len));
    resp->cache_control = "public, max-age=300";
}

static void add_routes(struct daemon *d, struct http_router *r)
{
    const struct http_route routes[] = {
        {.method = "GET", .path = "/.well-known/jwks.json", .fn = serve_jwks, .ud = d},
        {.method = "GET", .path = "/metrics", .fn = serve_metrics, .ud = d},
        {.method = "GET", .path = "/healthz", .fn = serve_healthz, .ud = d},
        {.method = "GET",
         .path = "/admin/status",
         .auth = HTTP_AUTH_ADMIN,
         .fn = serve_admin_status,
         .ud = d},
    };
    http_router_init(r);
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        http_router_add(r, &routes[i]); /* cannot fail: distinct, and fewer than the maximum */
    if (d->revoke && revoke_add_routes(d->revoke, r) != 0)
        log_error("http: no room for the revocation routes"); /* HTTP_ROUTES_MAX is far above */
}

static int start_http(struct daemon *d, struct ev_loop *loop)
{
    if (!d->cfg->http_listen && !d->cfg->admin_listen)
        return 0;
    struct http_router routes;
    char err[256];
    add_routes(d, &routes);
    d->started = ev_now(loop);
    d->http = http_server_start(loop, &routes, d->cfg->http_listen, d->cfg->admin_listen, err,
                                sizeof(err));
    if (!d->http || http_server_set_admin_token(d->http, d->cfg->admin_token) < 0) {
        log_error("http: %s", d->http ? "out of memory" : err);
        return -1;
    }
    if (d->cfg->http_listen)
        log_info("metrics on http://%s/metrics%s", d->cfg->http_listen,
                 d->cfg->admin_token ? ", admin API on it" : "");
    if (d->cfg->admin_listen)
        log_info("admin API on %s", d->cfg->admin_listen);
    return 0;
}

/* With a fleet key, L1 is keyed like the shared cache, so one HMAC per request serves both. */
static struct cache *new_cache(const struct config *cfg)
{
    if (!cfg->fleet_key)
        return cache_new(&cfg->cache, clock_ms, NULL, NULL, 0);
    uint8_t key[L2_KEY_LEN];
    if (l2_entry_hmac_key_of((const uint8_t *)cfg->fleet_key, cfg->fleet_key_len, key) < 0)
        return NULL;
    struct cache *c = cache_new(&cfg->cache, clock_ms, NULL, key, sizeof(key));
    OPENSSL_cleanse(key, sizeof(key));
    return c;
}

static int run(struct daemon *d)
{
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    if (!loop) {
        log_error("cannot create the event loop");
        return 1;
    }
    d->cache = new_cache(d->cfg);
    if (!d->cache) {
        log_error("cannot create the cache");
        return 1;
    }
    if (agent_init(&d->agent, loop, d->cfg, d->cache) < 0) {
        cache_free(d->cache);
        return 1;
    }
    if (start_fleet(d) < 0 || start_revoke(d, loop) < 0 || start_http(d, loop) < 0) {
        http_server_stop(d->http);
        revoke_free(d->revoke);
        agent_fini(&d->agent);
        fleet_free(d->fleet); /* after the Redis client, which may still call it */
        cache_free(d->cache);
        return 1;
    }
    setup_signals(d, loop);
    log_info("phantom-token-agent %s listening on %s", PTA_VERSION, d->cfg->listen);

    ev_run(loop, 0);

    http_server_stop(d->http);
    revoke_free(d->revoke);
    agent_fini(&d->agent);
    fleet_free(d->fleet);
    cache_free(d->cache);
    log_info("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    struct daemon d = {.argc = argc, .argv = argv};
    char err[CONFIG_ERR_LEN];
    enum config_action action = CONFIG_RUN;
    log_init(LOG_LVL_INFO, false);
    d.cfg = load_config(argc, argv, NULL, &action, err, sizeof(err));
    if (!d.cfg) {
        fprintf(stderr, "phantom-token-agent: %s\n", err);
        return 2;
    }
    int rc = 0;
    if (action == CONFIG_CHECK)
        printf("configuration is valid\n");
    else if (action == CONFIG_RUN) {
        log_init(d.cfg->log_level, d.cfg->syslog);
        write_jwks_file(d.cfg);
        log_signing_key(d.cfg);
        rc = run(&d);
    }
    free_config(d.cfg);
    return rc;
}
