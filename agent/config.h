/* The agent's settings: defaults, the config file (key = value, the same names as the long
 * options), the command line, validation with precise messages ("file:line: ..."), and the reload
 * rules (which options SIGHUP applies). Pure apart from reading the files it is given and
 * resolving addresses. Used by main.c (start, --check-config, SIGHUP reload).
 * Split by concern: config_options.c (the table, --help), config_values.c (value parsers),
 * config.c (file, command line, reload rules), config_check.c (cross-checks, secrets). */
#ifndef PTA_CONFIG_H
#define PTA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "cache.h"
#include "introspect.h"
#include "log.h"
#include "minting.h"
#include "redis_url.h"

#define CONFIG_ERR_LEN 512

struct config {
    /* SPOP side */
    char *listen; /* "127.0.0.1:12345", "[::1]:12345", "unix:/path" */
    uint32_t max_frame_size;
    unsigned idle_timeout_ms; /* close SPOP connections idle that long; 0 never */

    /* logging */
    enum log_level log_level;
    bool syslog;
    bool access_log; /* one line per decision */

    /* introspection; the strings are owned (strdup) */
    char *introspection_url;
    char *accept;
    char *client_id;
    char *client_secret_file;
    char *client_secret; /* loaded by config_finalize(), never set from the command line */
    enum client_auth client_auth;
    bool token_type_hint;
    char *ca_file, *client_cert, *client_key;
    bool tls_insecure_skip_verify;
    unsigned introspection_timeout_ms;
    unsigned connect_timeout_ms;
    unsigned max_concurrent_introspections;
    size_t max_response_size;

    /* cache */
    struct cache_config cache;

    /* fast path: decisions published into HAProxy's map (NULL sockets: off) */
    char *fastpath_sockets;  /* comma-separated runtime API addresses */
    char *fastpath_map;      /* the map identifier haproxy.cfg uses */
    char *fastpath_key_file; /* the key shared with haproxy.cfg */
    char *fastpath_key;      /* its base64 text, loaded by config_finalize() */
    uint32_t fastpath_ttl;   /* seconds an entry lives at most */
    unsigned fastpath_max_entries;
    /* identity server failures */
    struct breaker_config breaker;
    unsigned breaker_failure_answer; /* 503 (with Retry-After) or 502 */
    unsigned introspection_retries;  /* 0 or 1 */
    unsigned max_introspection_rate; /* new-token introspections per second; 0: unlimited */

    /* shared cache (L2, Redis); every option restart-only */
    char *cache_redis_url;    /* NULL: no shared cache */
    struct redis_url redis;   /* cache_redis_url parsed by config_finalize() */
    char *cache_redis_prefix; /* prepended to every key */
    char *cache_redis_password_file;
    char *cache_redis_password; /* loaded by config_finalize(); NULL: no AUTH */
    unsigned cache_redis_timeout_ms;
    char *fleet_key_file;
    char *fleet_key; /* loaded by config_finalize(); keys L1 too when set */
    size_t fleet_key_len;

    /* gateway-minted JWTs (issue 11): the option strings, and what config_finalize() builds */
    char *jwt_source, *signing_key_file, *jwt_issuer, *jwt_audience, *jwt_claims, *jwks_file;
    char *inactive_statuses;
    unsigned jwt_max_lifetime_s;
    struct minting minting; /* keys loaded, lists parsed; see minting.h */

    /* daemon */
    char *http_listen;      /* option http-listen, formerly metrics-listen; NULL: off */
    char *admin_token_file; /* NULL: no admin API on http_listen */
    char *admin_token;      /* loaded by config_finalize() from admin_token_file */
    char *admin_listen;     /* "unix:/path" of the admin socket; NULL: none */
    unsigned drain_timeout_ms;

    /* back-channel logout (revoke.c); off unless issuer and JWKS URL are both set */
    char *logout_issuer;
    char *logout_jwks_url;
    char *logout_client_id; /* NULL: client_id */
};

void config_defaults(struct config *c);
void config_free(struct config *c);

/* Sets one option by its long name ("listen", "cache-max-ttl", ...). Returns 0, or -1 with a
 * message in err ("bad value for cache-max-ttl: ..."). */
int config_set(struct config *c, const char *key, const char *value, char *err, size_t errlen);

/* Reads a config file: "key = value" or "key value" lines, '#' comments, blank lines. Returns 0 or
 * -1 with "path:line: message" in err. */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);

enum config_action { CONFIG_RUN, CONFIG_EXIT_OK, CONFIG_CHECK };

/* Parses argv: --config FILE is read first, then the other options override it. --help and
 * --version print and give CONFIG_EXIT_OK; --check-config gives CONFIG_CHECK. Returns -1 with a
 * message on a bad option or value. */
int config_parse_args(struct config *c, int argc, char **argv, enum config_action *action,
                      char *err, size_t errlen);

/* Cross-checks the settings and loads the client secret (client-secret-file, else the
 * PHANTOM_CLIENT_SECRET environment variable, else $CREDENTIALS_DIRECTORY/client-secret). */
int config_finalize(struct config *c, char *err, size_t errlen);

/* The reload rule, in one place: for every restart-only option (listen, max-frame-size, syslog,
 * http-listen, admin-listen) whose value differs, logs the change as ignored, naming the option,
 * and copies the running value into next, so that nothing downstream sees it. Returns the number
 * of options kept, or -1 when out of memory. */
int config_keep_restart_only(struct config *next, const struct config *running);

/* On SIGHUP, after config_keep_restart_only(): config_finalize() without the address checks. The
 * addresses are then the running ones, checked at start and bound: re-checking them could only
 * refuse a reload for a value that is ignored anyway, and would resolve names on the loop.
 * An admin token file that cannot be read does not refuse it either: c->admin_token stays NULL
 * (the admin API over http-listen goes off, logged) rather than the old token staying valid. */
int config_finalize_reload(struct config *c, char *err, size_t errlen);

/* The introspection settings as introspect.c takes them (borrows c's strings). */
void config_introspect(const struct config *c, struct introspect_config *out);

/* Prints every option with its default and a line of explanation to stdout. */
void config_print_help(const char *argv0);
/* Prints the agent's version and those of libcurl, libev, jansson and OpenSSL to stdout. */
void config_print_version(void);

/* The name of the i-th option in --help order, NULL past the last (tests, docs). */
const char *config_option_name(size_t i);
/* True when key names a flag: a bare "key" in the file or "--key" on the command line sets it. */
bool config_option_is_flag(const char *key);
/* True when key names an option that SIGHUP does not apply (see config_keep_restart_only()). */
bool config_option_restart_only(const char *key);

#endif
