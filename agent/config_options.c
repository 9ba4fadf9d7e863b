/* The option table: one row per option drives the defaults, the config file, the command line,
 * --help and the reload rules, so that none of them can disagree with another. Adding an option
 * is adding a row (and a field in struct config). */
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <ev.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "config_internal.h"
#include "version.h"

#define FIELD(m) .off = offsetof(struct config, m), .width = sizeof(((struct config *)0)->m)
#define MS(n) ((uint64_t)(n))
#define SEC(n) ((uint64_t)(n)*1000)
#define KIB(n) ((uint64_t)(n) << 10)
#define MIB(n) ((uint64_t)(n) << 20)
#define GIB(n) ((uint64_t)(n) << 30)

const struct opt config_opts[] = {
    {.name = "listen",
     .reload = RELOAD_RESTART,
     .type = T_LISTEN,
     FIELD(listen),
     .def = "127.0.0.1:12345",
     .arg = "ADDR",
     .section = "SPOP (the HAProxy side)",
     .help = "Address HAProxy's SPOE engine connects to: host:port, [ipv6]:port or unix:/path"},
    {.name = "max-frame-size",
     .reload = RELOAD_RESTART,
     .type = T_SIZE,
     FIELD(max_frame_size),
     .min = 256,
     .max = MIB(1),
     .def = "16380",
     .help = "Largest SPOP frame accepted (negotiated down with HAProxy)"},
    {.name = "idle-timeout",
     .type = T_DURATION,
     FIELD(idle_timeout_ms),
     .unit_ms = 1,
     .max = SEC(86400),
     .def = "120s",
     .help = "Close SPOP connections idle that long; 0 never"},

    {.name = "log-level",
     .type = T_LOG_LEVEL,
     FIELD(log_level),
     .def = "info",
     .arg = "LEVEL",
     .section = "Logging",
     .help = "error, warn, info or debug"},
    {.name = "syslog",
     .reload = RELOAD_RESTART,
     .type = T_BOOL,
     FIELD(syslog),
     .def = "no",
     .help = "Log to syslog (daemon facility) instead of stderr"},
    {.name = "access-log",
     .type = T_BOOL,
     FIELD(access_log),
     .def = "no",
     .help = "Log one line per decision (a token's short hash, never the token)"},

    {.name = "introspection-url",
     .type = T_URL,
     FIELD(introspection_url),
     .arg = "URL",
     .section = "Introspection (RFC 7662)",
     .help = "http:// or https:// endpoint; unset: every token gets 503 \"introspection not "
             "configured\"."},
    {.name = "accept",
     .type = T_STRING,
     FIELD(accept),
     .def = "application/jwt",
     .arg = "MEDIA-TYPE",
     .help = "Accept header of introspection requests (the JWT format)"},
    {.name = "client-id",
     .type = T_STRING,
     FIELD(client_id),
     .arg = "ID",
     .help = "OAuth client id the agent authenticates as"},
    {.name = "client-secret-file",
     .type = T_PATH,
     FIELD(client_secret_file),
     .help = "File holding the client secret (one trailing newline is ignored)"},
    {.name = "client-auth",
     .type = T_CLIENT_AUTH,
     FIELD(client_auth),
     .def = "basic",
     .arg = "METHOD",
     .help = "basic (HTTP Basic), post (form fields) or none"},
    {.name = "token-type-hint",
     .type = T_BOOL,
     FIELD(token_type_hint),
     .def = "no",
     .help = "Send token_type_hint=access_token"},
    {.name = "ca-file",
     .type = T_PATH,
     FIELD(ca_file),
     .help = "Extra CA bundle (PEM) that verifies the identity server"},
    {.name = "client-cert",
     .type = T_PATH,
     FIELD(client_cert),
     .help = "Client certificate (PEM) for mutual TLS; needs client-key"},
    {.name = "client-key",
     .type = T_PATH,
     FIELD(client_key),
     .help = "Private key (PEM) of client-cert"},
    {.name = "tls-insecure-skip-verify",
     .type = T_BOOL,
     FIELD(tls_insecure_skip_verify),
     .def = "no",
     .help = "Do not verify the identity server's certificate (tests only!)"},
    {.name = "introspection-timeout",
     .type = T_DURATION,
     FIELD(introspection_timeout_ms),
     .unit_ms = 1,
     .min = MS(1),
     .max = SEC(300),
     .def = "2s",
     .help = "Time limit of one whole introspection request"},
    {.name = "connect-timeout",
     .type = T_DURATION,
     FIELD(connect_timeout_ms),
     .unit_ms = 1,
     .min = MS(1),
     .max = SEC(300),
     .def = "1s",
     .help = "Time limit for connecting to the identity server"},
    {.name = "max-concurrent-introspections",
     .type = T_UINT,
     FIELD(max_concurrent_introspections),
     .min = 1,
     .max = 10000,
     .def = "64",
     .help = "Introspections in flight at once; more wait in a queue"},
    {.name = "max-response-size",
     .type = T_SIZE,
     FIELD(max_response_size),
     .min = KIB(1),
     .max = MIB(16),
     .def = "64k",
     .help = "Largest introspection answer accepted"},

    {.name = "cache-max-ttl",
     .type = T_DURATION,
     FIELD(cache.max_ttl),
     .unit_ms = 1000,
     .min = SEC(1),
     .max = SEC(86400),
     .def = "300s",
     .section = "Cache",
     .help = "Longest time an active token is cached (never beyond its exp)"},
    {.name = "cache-negative-ttl",
     .type = T_DURATION,
     FIELD(cache.negative_ttl),
     .unit_ms = 1000,
     .max = SEC(3600),
     .def = "5s",
     .help = "How long an inactive token is remembered; 0 never"},
    {.name = "cache-exp-skew",
     .type = T_DURATION,
     FIELD(cache.exp_skew),
     .unit_ms = 1000,
     .max = SEC(3600),
     .def = "5s",
     .help = "Entries expire that long before the token's exp"},
    {.name = "cache-max-entries",
     .type = T_UINT,
     FIELD(cache.max_entries),
     .min = 1,
     .max = 100000000,
     .def = "100000",
     .help = "Most tokens kept in the cache"},
    {.name = "fastpath-socket",
     .reload = RELOAD_RESTART,
     .type = T_STRING,
     FIELD(fastpath_sockets),
     .arg = "ADDRS",
     .section = "Fast path (decisions published into HAProxy's map)",
     .help = "HAProxy runtime API sockets (\"stats socket ... level admin\"), comma-separated: "
             "unix:/path or ip:port; \"master:unix:/path\" for the master CLI; unset: no fast "
             "path"},
    {.name = "fastpath-map",
     .reload = RELOAD_RESTART,
     .type = T_STRING,
     FIELD(fastpath_map),
     .arg = "MAP",
     .help = "The map haproxy.cfg looks decisions up in (its file path, as in the cfg)"},
    {.name = "fastpath-key-file",
     .reload = RELOAD_RESTART,
     .type = T_PATH,
     FIELD(fastpath_key_file),
     .help = "The key shared with haproxy.cfg: one line \"fastpath-key <base64 of 32 random "
             "bytes>\" (mode 0640 or stricter)"},
    {.name = "fastpath-ttl",
     .type = T_DURATION,
     FIELD(fastpath_ttl),
     .unit_ms = 1000,
     .min = SEC(1),
     .max = SEC(300),
     .def = "10s",
     .help = "Longest life of a published decision (never beyond the token's exp): the "
             "revocation lag of the fast path"},
    {.name = "fastpath-max-entries",
     .reload = RELOAD_RESTART,
     .type = T_UINT,
     FIELD(fastpath_max_entries),
     .min = 1,
     .max = 1000000,
     .def = "10000",
     .help = "Most decisions published at once (each costs HAProxy about 1.3 KB)"},
    {.name = "cache-max-bytes",
     .type = T_SIZE,
     FIELD(cache.max_bytes),
     .min = KIB(64),
     .max = GIB(64),
     .def = "256m",
     .help = "Memory budget of the cache (JWTs, claims, overhead)"},
    {.name = "cache-honour-no-store",
     .type = T_BOOL,
     FIELD(cache.honour_no_store),
     .def = "no",
     .help = "Do not cache answers that carry Cache-Control: no-store"},

    {.name = "cache-stale-if-error",
     .type = T_DURATION,
     FIELD(cache.stale_grace),
     .unit_ms = 1000,
     .max = SEC(3600),
     .def = "0",
     .section = "Identity server failures",
     .help = "While the IdP fails, serve a token whose entry expired less than this ago (and "
             "whose exp has not passed) from that entry, marked cache=stale; 0: never"},
    {.name = "introspection-retries",
     .type = T_UINT,
     FIELD(introspection_retries),
     .max = 1,
     .def = "1",
     .help = "Retries of an introspection refused or reset before any answer byte, or answered "
             "503 with a Retry-After that fits the time left (0 or 1; never a timeout, never a "
             "4xx)"},
    {.name = "breaker-failures",
     .type = T_UINT,
     FIELD(breaker.failures),
     .max = 1000000,
     .def = "5",
     .help = "Consecutive IdP failures that open the circuit breaker (misses then fail fast "
             "without calling the IdP); 0: this trigger is off"},
    {.name = "breaker-failure-ratio",
     .type = T_UINT,
     FIELD(breaker.ratio_percent),
     .max = 100,
     .def = "0",
     .help = "Failure percentage over breaker-window that opens the breaker; 0: off"},
    {.name = "breaker-window",
     .type = T_DURATION,
     FIELD(breaker.window_ms),
     .unit_ms = 1,
     .min = SEC(1),
     .max = SEC(3600),
     .def = "10s",
     .help = "Sliding window of breaker-failure-ratio"},
    {.name = "breaker-min-requests",
     .type = T_UINT,
     FIELD(breaker.min_requests),
     .min = 1,
     .max = 1000000,
     .def = "20",
     .help = "Outcomes breaker-window must hold before the ratio counts"},
    {.name = "breaker-open-time",
     .type = T_DURATION,
     FIELD(breaker.open_ms),
     .unit_ms = 1,
     .min = MS(100),
     .max = SEC(600),
     .def = "5s",
     .help = "How long an open breaker fails fast before one probe request is let through"},
    {.name = "breaker-failure-answer",
     .type = T_UINT,
     FIELD(breaker_failure_answer),
     .min = 502,
     .max = 503,
     .def = "503",
     .help = "Status while the breaker is open: 503 (with Retry-After) or 502"},

    {.name = "max-introspection-rate",
     .type = T_UINT,
     FIELD(max_introspection_rate),
     .max = 1000000,
     .def = "0",
     .help = "New-token introspections per second, all tokens together (a flood of unknown tokens "
             "then costs the IdP at most this; beyond it misses get 503 with Retry-After: 1); 0: "
             "unlimited"},

    {.name = "cache-redis-url",
     .reload = RELOAD_RESTART,
     .type = T_STRING,
     FIELD(cache_redis_url),
     .arg = "URL",
     .section = "Shared cache (Redis)",
     .help = "redis://[user@]host[:port][/db] or unix:/path[?db=N] of the cache the fleet shares "
             "(rediss:// is refused: Debian 12's hiredis has no TLS); unset: none"},
    {.name = "fleet-key-file",
     .reload = RELOAD_RESTART,
     .type = T_PATH,
     FIELD(fleet_key_file),
     .help = "The key every agent of the fleet shares (one line, 32 to 1024 bytes, mode 0640 or "
             "stricter): keys and encrypts what goes to Redis; required with cache-redis-url"},
    {.name = "cache-redis-prefix",
     .reload = RELOAD_RESTART,
     .type = T_STRING,
     FIELD(cache_redis_prefix),
     .def = "pta:",
     .help = "Prefix of every Redis key (at most 200 bytes)"},
    {.name = "cache-redis-password-file",
     .reload = RELOAD_RESTART,
     .type = T_PATH,
     FIELD(cache_redis_password_file),
     .help = "File holding the Redis AUTH password (the user, if any, is in the URL; mode 0640 "
             "or stricter)"},
    {.name = "cache-redis-timeout",
     .reload = RELOAD_RESTART,
     .type = T_DURATION,
     FIELD(cache_redis_timeout_ms),
     .unit_ms = 1,
     .min = MS(1),
     .max = SEC(10),
     .def = "100ms",
     .help = "Longest wait for one Redis command; then the request goes on to the identity "
             "server (must be shorter than introspection-timeout)"},

    {.name = "jwt-source",
     .type = T_STRING,
     FIELD(jwt_source),
     .def = "auto",
     .arg = "MODE",
     .section = "Gateway-minted JWTs",
     .help = "auto: forward the IdP's access-token JWT, mint for plain JSON and RFC 9701 answers; "
             "idp: forward only what the IdP gives (plain JSON is a 502); mint: always mint"},
    {.name = "signing-key-file",
     .type = T_STRING,
     FIELD(signing_key_file),
     .arg = "FILES",
     .help = "PEM keys, comma-separated: the first signs (EC P-256: ES256, RSA >= 2048: RS256, "
             "Ed25519: EdDSA), the others stay in the JWKS (rotation); mode 0640 or stricter"},
    {.name = "jwt-issuer",
     .type = T_STRING,
     FIELD(jwt_issuer),
     .arg = "URI",
     .help = "iss of minted JWTs (what APIs check)"},
    {.name = "jwt-audience",
     .type = T_STRING,
     FIELD(jwt_audience),
     .arg = "AUDS",
     .help = "aud of minted JWTs, comma-separated: the first is the default, the others are those "
             "routes may ask for with the SPOE audience argument (each gets its own JWT)"},
    {.name = "jwt-max-lifetime",
     .type = T_DURATION,
     FIELD(jwt_max_lifetime_s),
     .unit_ms = 1000,
     .min = SEC(1),
     .max = SEC(86400),
     .def = "5m",
     .help = "A minted JWT expires with the token, but at most this long after it was signed"},
    {.name = "jwt-claims",
     .type = T_STRING,
     FIELD(jwt_claims),
     .arg = "NAMES",
     .help = "Claims copied from the introspection answer besides sub, client_id and scope "
             "(default: auth_time acr amr nbf username groups roles entitlements cnf act)"},
    {.name = "jwks-file",
     .type = T_STRING,
     FIELD(jwks_file),
     .arg = "PATH",
     .help = "Also write the JWKS to this file (mode 0644) at start and on every reload"},
    {.name = "inactive-statuses",
     .type = T_STRING,
     FIELD(inactive_statuses),
     .arg = "LIST",
     .help = "IdP HTTP statuses (4xx) that mean \"inactive token\" (401), e.g. 400 for servers "
             "that answer an unknown token with 400; default none"},

    {.name = "http-listen",
     .alias = "metrics-listen",
     .reload = RELOAD_RESTART,
     .type = T_HOSTPORT,
     FIELD(http_listen),
     .arg = "HOST:PORT",
     .section = "Daemon",
     .help = "HTTP address of /metrics and /healthz (and the admin API with admin-token-file); "
             "unset or off: no HTTP endpoint"},
    {.name = "admin-token-file",
     .type = T_PATH,
     FIELD(admin_token_file),
     .help = "File holding the bearer token of the admin API on http-listen (mode 0640 or "
             "stricter, re-read on SIGHUP); unset: no admin API on http-listen"},
    {.name = "admin-listen",
     .reload = RELOAD_RESTART,
     .type = T_UNIXADDR,
     FIELD(admin_listen),
     .arg = "unix:PATH",
     .help = "Unix socket serving the admin API without a token (the socket's file mode is the "
             "access control: 0600); unset or off: none"},
    {.name = "drain-timeout",
     .type = T_DURATION,
     FIELD(drain_timeout_ms),
     .unit_ms = 1,
     .max = SEC(600),
     .def = "5s",
     .help = "On shutdown, time requests in flight get to finish"},

    {.name = "backchannel-logout-issuer",
     .reload = RELOAD_RESTART,
     .type = T_STRING,
     FIELD(logout_issuer),
     .arg = "ISSUER",
     .section = "Revocation (OpenID Connect Back-Channel Logout)",
     .help = "The identity server's issuer (iss of its logout tokens); with "
             "backchannel-logout-jwks-url, serves POST /backchannel-logout on http-listen"},
    {.name = "backchannel-logout-jwks-url",
     .reload = RELOAD_RESTART,
     .type = T_URL,
     FIELD(logout_jwks_url),
     .arg = "URL",
     .help = "The identity server's JWKS: https:// (http:// only to a loopback host), fetched at "
             "start, every 5 minutes and on an unknown kid (at most every 10 s); ca-file and "
             "tls-insecure-skip-verify apply"},
    {.name = "backchannel-logout-client-id",
     .reload = RELOAD_RESTART,
     .type = T_STRING,
     FIELD(logout_client_id),
     .arg = "ID",
     .help = "aud of the logout tokens: the client id whose backchannel_logout_uri is this agent; "
             "unset: client-id"},
};

const size_t config_nopts = sizeof(config_opts) / sizeof(config_opts[0]);

const struct opt *config_find_opt(const char *name)
{
    for (size_t i = 0; i < config_nopts; i++)
        if (strcmp(config_opts[i].name, name) == 0 ||
            (config_opts[i].alias && strcmp(config_opts[i].alias, name) == 0))
            return &config_opts[i];
    return NULL;
}

bool config_option_is_flag(const char *key)
{
    const struct opt *o = config_find_opt(key);
    return o && o->type == T_BOOL;
}

const char *config_option_name(size_t i)
{
    return i < config_nopts ? config_opts[i].name : NULL;
}

bool config_option_restart_only(const char *key)
{
    const struct opt *o = config_find_opt(key);
    return o && o->reload == RELOAD_RESTART;
}

static const char *arg_name(const struct opt *o)
{
    static const char *const by_type[] = {
        [T_LISTEN] = "ADDR", [T_HOSTPORT] = "HOST:PORT", [T_UNIXADDR] = "unix:PATH",
        [T_URL] = "URL",     [T_STRING] = "TEXT",        [T_PATH] = "FILE",
        [T_UINT] = "N",      [T_SIZE] = "SIZE",          [T_DURATION] = "DURATION",
        [T_BOOL] = "",       [T_LOG_LEVEL] = "LEVEL",    [T_CLIENT_AUTH] = "METHOD",
    };
    return o->arg ? o->arg : by_type[o->type];
}

static void print_option(const struct opt *o)
{
    if (o->type == T_BOOL)
        printf("  --%s, --no-%s\n", o->name, o->name);
    else
        printf("  --%s=%s\n", o->name, arg_name(o));
    if (o->alias)
        printf("  --%s=%s (the former name, still accepted)\n", o->alias, arg_name(o));
    char range[80] = "";
    if (o->type == T_UINT || o->type == T_SIZE || o->type == T_DURATION) {
        char lo[32], hi[32];
        config_format_value(o->type, o->min, lo, sizeof(lo));
        config_format_value(o->type, o->max, hi, sizeof(hi));
        snprintf(range, sizeof(range), "; %s..%s", lo, hi);
    }
    printf("        %s (default: %s%s)\n", o->help, o->def ? o->def : "none", range);
    if (o->reload == RELOAD_RESTART)
        printf("        Restart only: SIGHUP keeps the running value.\n");
}

void config_print_help(const char *argv0)
{
    printf("Usage: %s [--config FILE] [OPTIONS]\n\n"
           "HAProxy SPOE agent for the Phantom Token pattern: swaps opaque Bearer tokens for\n"
           "JWTs through RFC 7662 introspection.\n\n"
           "Every option is also a config file key (\"key = value\"); command-line options\n"
           "override the file. Durations: 500ms, 2s, 5m or seconds. Sizes: 64k, 16m or bytes.\n"
           "Flags: --flag, --no-flag or --flag=yes|no.\n",
           argv0 ? argv0 : "phantom-token-agent");
    for (size_t i = 0; i < config_nopts; i++) {
        if (config_opts[i].section)
            printf("\n%s:\n", config_opts[i].section);
        print_option(&config_opts[i]);
    }
    printf("\nCommand line only:\n"
           "  --config=FILE\n        Read settings from FILE first (re-read on SIGHUP).\n"
           "  --check-config\n        Validate the settings and the secret, then exit.\n"
           "  -h, --help\n        Print this help and exit.\n"
           "  -V, --version\n        Print the versions of the agent and its libraries.\n"
           "\nThere is no client-secret option: %s.\n",
           SECRET_HINT);
}

void config_print_version(void)
{
    printf("phantom-token-agent %s\n"
           "libcurl: %s\n"
           "libev: %d.%d\n"
           "jansson: %s\n"
           "OpenSSL: %s\n",
           PTA_VERSION, curl_version(), ev_version_major(), ev_version_minor(), JANSSON_VERSION,
           OpenSSL_version(OPENSSL_VERSION));
}

_Static_assert(sizeof(config_opts) / sizeof(config_opts[0]) <= CONFIG_MAX_OPTS,
               "raise CONFIG_MAX_OPTS in config_internal.h");
