/* config_finalize(): what a single option cannot check on its own. Loads the secrets (through
 * secret_file.c), resolves the addresses as the agent will bind them (so that --check-config means
 * "this will start"), and checks the options that only make sense together. */
#include <errno.h>
#include <openssl/crypto.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "config_internal.h"
#include "fastpath.h"
#include "jwks.h"
#include "l2_codec.h"
#include "log.h"
#include "secret_file.h"

static const struct secret_spec client_secret_spec = {.what = "client secret"};
/* A new kind of secret: strict from the start (nobody relies on a looser mode yet). */
static const struct secret_spec admin_token_spec = {.what = "admin token", .strict = true};
/* HAProxy reads the same file as a map file: comment lines are allowed. */
static const struct secret_spec fastpath_key_spec = {
    .what = "fast-path key", .strict = true, .multi_line = true};
static const struct secret_spec fleet_key_spec = {
    .what = "fleet key", .max = L2_FLEET_KEY_MAX, .strict = true};
static const struct secret_spec redis_password_spec = {.what = "Redis password", .strict = true};

static int secret_from_env(const char *v, char **out, char *err, size_t errlen)
{
    if (!*v)
        return config_fail(err, errlen, SECRET_ENV " is set but empty");
    if (strpbrk(v, "\r\n"))
        return config_fail(err, errlen, SECRET_ENV " holds more than one line");
    *out = strdup(v);
    return *out ? 0 : config_fail(err, errlen, "out of memory");
}

/* client-secret-file, else the environment, else a systemd credential (LoadCredential=). Finding
 * none is not an error here: the cross-checks decide whether a secret is needed. */
static int load_secret(struct config *c, char *err, size_t errlen)
{
    secret_free(&c->client_secret); /* a reload re-reads it */
    if (c->client_secret_file)
        return secret_file_read(c->client_secret_file, &client_secret_spec, &c->client_secret, NULL,
                                err, errlen);
    const char *env = getenv(SECRET_ENV);
    if (env)
        return secret_from_env(env, &c->client_secret, err, errlen);
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir)
        return 0;
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/" SECRET_CREDENTIAL, dir) >= (int)sizeof(path))
        return config_fail(err, errlen, "CREDENTIALS_DIRECTORY is too long");
    if (access(path, F_OK) < 0)
        return 0;
    return secret_file_read(path, &client_secret_spec, &c->client_secret, NULL, err, errlen);
}

static int check_readable(const char *what, const char *path, char *err, size_t errlen)
{
    if (!path)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return config_fail(err, errlen, "cannot read %s '%s': %s", what, path, strerror(errno));
    close(fd);
    return 0;
}

static int check_tls(const struct config *c, char *err, size_t errlen)
{
    if (!c->client_cert != !c->client_key)
        return config_fail(err, errlen, "client-cert and client-key must be set together");
    if (check_readable("ca-file", c->ca_file, err, errlen) < 0 ||
        check_readable("client-cert", c->client_cert, err, errlen) < 0 ||
        check_readable("client-key", c->client_key, err, errlen) < 0)
        return -1;
    return 0;
}

static int check_client_auth(const struct config *c, char *err, size_t errlen)
{
    if (!c->introspection_url || c->client_auth == CLIENT_AUTH_NONE)
        return 0;
    const char *method = config_auth_names[c->client_auth];
    if (!c->client_id)
        return config_fail(err, errlen, "client-auth %s needs client-id", method);
    if (!c->client_secret)
        return config_fail(err, errlen,
                           "client-auth %s needs a client secret: set client-secret-file, "
                           "the " SECRET_ENV " environment variable or a systemd credential named "
                           "" SECRET_CREDENTIAL,
                           method);
    return 0;
}

/* The fast path needs its three settings together; the key file is parsed as HAProxy reads it. */
static int fastpath_key(struct config *c, char *err, size_t errlen)
{
    secret_free(&c->fastpath_key);
    if (!c->fastpath_sockets)
        return 0;
    if (!c->fastpath_map || !fp_map_name_valid(c->fastpath_map))
        return config_fail(err, errlen,
                           "fastpath-socket needs fastpath-map (the map's file path "
                           "as haproxy.cfg names it, no spaces)");
    if (!c->fastpath_key_file)
        return config_fail(err, errlen, "fastpath-socket needs fastpath-key-file");
    char *text = NULL, perr[160];
    size_t len = 0;
    if (secret_file_read(c->fastpath_key_file, &fastpath_key_spec, &text, &len, err, errlen) < 0)
        return -1;
    char key[FP_SECRET_MAX + 1];
    int rc = fp_secret_parse(text, len, key, perr, sizeof(perr));
    secret_free(&text);
    if (rc < 0)
        return config_fail(err, errlen, "fast-path key file '%s': %s", c->fastpath_key_file, perr);
    c->fastpath_key = strdup(key);
    OPENSSL_cleanse(key, sizeof(key));
    return c->fastpath_key ? 0 : config_fail(err, errlen, "out of memory");
}

static int admin_token(struct config *c, char *err, size_t errlen)
{
    secret_free(&c->admin_token);
    if (!c->admin_token_file)
        return 0;
    return secret_file_read(c->admin_token_file, &admin_token_spec, &c->admin_token, NULL, err,
                            errlen);
}

/* Parses and resolves one address option, as the listener will. */
static int check_address(const char *name, const char *v, unsigned allow, struct addr *a,
                         struct sockaddr_storage *ss, socklen_t *len, char *err, size_t errlen)
{
    const char *why = addr_parse(v, allow, a);
    if (why)
        return config_fail(err, errlen, "bad value for %s: '%s' (%s)", name, v, why);
    if (a->kind == ADDR_UNIX) {
        *len = 0;
        return 0;
    }
    char reason[CONFIG_ERR_LEN];
    if (addr_resolve(a, ss, len, reason, sizeof(reason)) < 0)
        return config_fail(err, errlen, "%s %s: %s", name, v, reason);
    return 0;
}

static int check_addresses(const struct config *c, char *err, size_t errlen)
{
    if (!c->listen || !c->accept)
        return config_fail(err, errlen, "out of memory");
    struct sockaddr_storage spop, http;
    socklen_t spop_len, http_len;
    struct addr spop_a, other;
    if (check_address("listen", c->listen, ADDR_ALLOW_TCP | ADDR_ALLOW_UNIX, &spop_a, &spop,
                      &spop_len, err, errlen) < 0)
        return -1;
    if (c->admin_listen && check_address("admin-listen", c->admin_listen, ADDR_ALLOW_UNIX, &other,
                                         &http, &http_len, err, errlen) < 0)
        return -1;
    /* parsed paths are normalised: unix:/a//s.sock is unix:/a/s.sock */
    if (c->admin_listen && spop_a.kind == ADDR_UNIX && strcmp(spop_a.path, other.path) == 0)
        return config_fail(err, errlen, "listen and admin-listen cannot be the same address");
    if (!c->http_listen)
        return 0;
    if (check_address("http-listen", c->http_listen, ADDR_ALLOW_TCP, &other, &http, &http_len, err,
                      errlen) < 0)
        return -1;
    if (strcmp(c->http_listen, c->listen) == 0 || (spop_len && addr_tcp_overlap(&spop, &http)))
        return config_fail(err, errlen, "listen and http-listen cannot be the same address");
    return 0;
}

static int fleet_key(struct config *c, char *err, size_t errlen)
{
    secret_free(&c->fleet_key);
    c->fleet_key_len = 0;
    if (!c->fleet_key_file)
        return 0;
    if (secret_file_read(c->fleet_key_file, &fleet_key_spec, &c->fleet_key, &c->fleet_key_len, err,
                         errlen) < 0)
        return -1;
    if (c->fleet_key_len < L2_FLEET_KEY_MIN)
        return config_fail(err, errlen,
                           "fleet key file '%s' is too short: at least %d bytes (e.g. the output "
                           "of 'openssl rand -base64 48')",
                           c->fleet_key_file, L2_FLEET_KEY_MIN);
    return 0;
}

/* The shared cache: a URL the client accepts, a host that resolves (as the client will resolve
 * it when the agent starts), the fleet key, the password, a timeout that leaves the identity
 * server its time. */
static int check_redis(struct config *c, char *err, size_t errlen)
{
    secret_free(&c->cache_redis_password);
    if (!c->cache_redis_url)
        return 0;
    char why[CONFIG_ERR_LEN];
    if (redis_url_parse(c->cache_redis_url, &c->redis, why, sizeof(why)) < 0)
        return config_fail(err, errlen, "%s", why);
    if (!c->fleet_key)
        return config_fail(err, errlen,
                           "cache-redis-url needs fleet-key-file: the key every agent of the fleet "
                           "shares, which keys and encrypts what goes to Redis");
    if (!c->cache_redis_prefix || strlen(c->cache_redis_prefix) > 200)
        return config_fail(err, errlen, "cache-redis-prefix is longer than 200 bytes");
    if (c->cache_redis_timeout_ms >= c->introspection_timeout_ms)
        return config_fail(err, errlen,
                           "cache-redis-timeout must be shorter than introspection-timeout (a "
                           "slow Redis must leave the identity server its time)");
    if (c->cache_redis_password_file &&
        secret_file_read(c->cache_redis_password_file, &redis_password_spec,
                         &c->cache_redis_password, NULL, err, errlen) < 0)
        return -1;
    if (c->redis.unix_socket)
        return 0;
    struct addr a = {.kind = ADDR_TCP};
    snprintf(a.host, sizeof(a.host), "%s", c->redis.host);
    snprintf(a.port, sizeof(a.port), "%d", c->redis.port);
    struct sockaddr_storage ss;
    socklen_t len;
    if (addr_resolve(&a, &ss, &len, why, sizeof(why)) < 0)
        return config_fail(err, errlen, "cache-redis-url: %s", why);
    return 0;
}

static void warn_risky(const struct config *c)
{
    if (c->admin_token_file && !c->http_listen)
        log_warn("admin-token-file is set but http-listen is not: no admin API over HTTP");
    if (!c->introspection_url) {
        log_warn("introspection-url is not set: every token will be answered with 503");
        return;
    }
    if (c->client_secret && c->client_auth != CLIENT_AUTH_NONE &&
        strncasecmp(c->introspection_url, "http://", 7) == 0)
        log_warn("the client secret is sent to %s without TLS", c->introspection_url);
}

/* Back-channel logout needs both the issuer and the keys, and an audience to check. */
static int check_logout(const struct config *c, char *err, size_t errlen)
{
    if (!c->logout_issuer && !c->logout_jwks_url)
        return 0;
    if (!c->logout_issuer || !c->logout_jwks_url)
        return config_fail(err, errlen,
                           "backchannel-logout-issuer and backchannel-logout-jwks-url go together");
    if (!c->logout_client_id && !c->client_id)
        return config_fail(err, errlen,
                           "back-channel logout needs backchannel-logout-client-id or client-id");
    if (!jwks_url_allowed(c->logout_jwks_url))
        return config_fail(err, errlen,
                           "backchannel-logout-jwks-url must be https:// (http:// only to a "
                           "loopback host)");
    if (!c->http_listen)
        log_warn("backchannel-logout-issuer is set but http-listen is not: no logout endpoint");
    return 0;
}

/* The jwt-* options: keys loaded now, so that --check-config means "this will start" and a
 * reload with a broken key file keeps the running configuration. */
static int load_minting(struct config *c, char *err, size_t errlen)
{
    minting_clear(&c->minting);
    const struct minting_options o = {
        .jwt_source = c->jwt_source,
        .signing_key_files = c->signing_key_file,
        .jwt_issuer = c->jwt_issuer,
        .jwt_audience = c->jwt_audience,
        .jwt_max_lifetime_s = c->jwt_max_lifetime_s,
        .jwt_claims = c->jwt_claims,
        .inactive_statuses = c->inactive_statuses,
    };
    return minting_load(&c->minting, &o, err, errlen);
}

/* On reload an admin token that cannot be read must not leave the old one valid (a rotation
 * after a leak): the admin API over http-listen goes off, and the rest of the reload applies. */
static int admin_token_reload(struct config *c, char *err, size_t errlen)
{
    if (admin_token(c, err, errlen) == 0)
        return 0;
    log_error("reload: %s: the admin API over http-listen is OFF (the old token is no longer "
              "valid) until a reload reads the token",
              err);
    secret_free(&c->admin_token);
    return 0;
}

/* Everything but the addresses. */
static int finalize_rest(struct config *c, bool reload, char *err, size_t errlen)
{
    int rc = reload ? admin_token_reload(c, err, errlen) : admin_token(c, err, errlen);
    if (rc < 0 || load_secret(c, err, errlen) < 0 || fastpath_key(c, err, errlen) < 0 ||
        fleet_key(c, err, errlen) < 0 || check_redis(c, err, errlen) < 0 ||
        check_tls(c, err, errlen) < 0 || check_client_auth(c, err, errlen) < 0 ||
        check_logout(c, err, errlen) < 0 || load_minting(c, err, errlen) < 0)
        return -1;
    warn_risky(c);
    return 0;
}

int config_finalize(struct config *c, char *err, size_t errlen)
{
    if (check_addresses(c, err, errlen) < 0)
        return -1;
    return finalize_rest(c, false, err, errlen);
}

int config_finalize_reload(struct config *c, char *err, size_t errlen)
{
    if (!c->listen || !c->accept)
        return config_fail(err, errlen, "out of memory");
    return finalize_rest(c, true, err, errlen);
}

void config_introspect(const struct config *c, struct introspect_config *out)
{
    *out = (struct introspect_config){
        .url = c->introspection_url,
        .accept = c->accept,
        .client_id = c->client_id,
        .client_secret = c->client_secret,
        .auth = c->client_auth,
        .token_type_hint = c->token_type_hint,
        .ca_file = c->ca_file,
        .client_cert = c->client_cert,
        .client_key = c->client_key,
        .insecure_skip_verify = c->tls_insecure_skip_verify,
        .timeout_ms = c->introspection_timeout_ms,
        .connect_timeout_ms = c->connect_timeout_ms,
        .max_concurrent = c->max_concurrent_introspections,
        .max_response = c->max_response_size,
        .max_retries = c->introspection_retries,
        .classify = &c->minting.classify,
    };
}
