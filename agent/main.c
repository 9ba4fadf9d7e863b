/* phantom-token-agent: the daemon's entry point. Reads the configuration, builds the shared cache
 * and the worker, and runs the event loop until SIGTERM/SIGINT (drain, then exit 0). SIGHUP
 * re-reads the configuration and applies it without dropping connections or the cache. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "agent.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "metrics_http.h"
#include "version.h"

struct daemon {
    int argc;
    char **argv;
    struct config *cfg;
    struct cache *cache;
    struct agent agent;
    struct metrics_http *metrics;
    ev_signal sigterm, sigint, sighup;
    ev_timer drain_deadline;
    ev_prepare drain_check;
};

/* Builds a configuration from the command line (which names the file). NULL with err filled. */
static struct config *load_config(int argc, char **argv, enum config_action *action, char *err,
                                  size_t errlen)
{
    struct config *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    config_defaults(c);
    if (config_parse_args(c, argc, argv, action, err, errlen) < 0 ||
        (*action != CONFIG_EXIT_OK && config_finalize(c, err, errlen) < 0)) {
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

static void on_reload(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct daemon *d = w->data;
    char err[CONFIG_ERR_LEN];
    enum config_action action;
    struct config *next = load_config(d->argc, d->argv, &action, err, sizeof(err));
    if (!next) {
        log_error("reload refused, keeping the running configuration: %s", err);
        return;
    }
    if (strcmp(next->listen, d->cfg->listen) != 0 || next->max_frame_size != d->cfg->max_frame_size)
        log_warn("reload: listen and max-frame-size only change on restart");
    if (agent_reconfigure(&d->agent, next) < 0) {
        log_error("reload refused: cannot apply the introspection settings");
        free_config(next);
        return;
    }
    log_set_level(next->log_level);
    cache_reconfigure(d->cache, &next->cache);
    free_config(d->cfg);
    d->cfg = next;
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

/* Runs on the loop thread, for the metrics endpoint. */
static char *render_http(void *ud, const char *path, unsigned *status)
{
    struct daemon *d = ud;
    if (strcmp(path, "/healthz") == 0) {
        if (d->agent.draining) /* tells load balancers and orchestrators to look elsewhere */
            *status = 503;
        return strdup(d->agent.draining ? "draining\n" : "ok\n");
    }
    if (strcmp(path, "/metrics") != 0)
        return NULL;
    const struct metrics *workers[1] = {&d->agent.metrics};
    struct cache_stats cs;
    cache_get_stats(d->cache, &cs);
    return metrics_render(workers, 1, &cs, introspector_pending(d->agent.idp));
}

static int start_metrics(struct daemon *d, struct ev_loop *loop)
{
    if (!d->cfg->metrics_listen)
        return 0;
    char err[256];
    d->metrics = metrics_http_start(loop, d->cfg->metrics_listen, render_http, d, err, sizeof(err));
    if (!d->metrics) {
        log_error("metrics: %s", err);
        return -1;
    }
    log_info("metrics on http://%s/metrics", d->cfg->metrics_listen);
    return 0;
}

static int run(struct daemon *d)
{
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    if (!loop) {
        log_error("cannot create the event loop");
        return 1;
    }
    d->cache = cache_new(&d->cfg->cache, clock_ms, NULL, NULL, 0);
    if (!d->cache) {
        log_error("cannot create the cache");
        return 1;
    }
    if (agent_init(&d->agent, loop, d->cfg, d->cache) < 0) {
        cache_free(d->cache);
        return 1;
    }
    if (start_metrics(d, loop) < 0) {
        agent_fini(&d->agent);
        cache_free(d->cache);
        return 1;
    }
    setup_signals(d, loop);
    log_info("phantom-token-agent %s listening on %s", PTA_VERSION, d->cfg->listen);

    ev_run(loop, 0);

    metrics_http_stop(d->metrics);
    agent_fini(&d->agent);
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
    d.cfg = load_config(argc, argv, &action, err, sizeof(err));
    if (!d.cfg) {
        fprintf(stderr, "phantom-token-agent: %s\n", err);
        return 2;
    }
    int rc = 0;
    if (action == CONFIG_CHECK)
        printf("configuration is valid\n");
    else if (action == CONFIG_RUN) {
        log_init(d.cfg->log_level, d.cfg->syslog);
        rc = run(&d);
    }
    free_config(d.cfg);
    return rc;
}
