/* The agent's settings. One table of options drives the defaults, the config file, the command line
 * and --help, so that none of them can disagree with another: adding an option is adding a row. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ev.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "version.h"

enum opt_type {
    T_LISTEN,      /* host:port, [ipv6]:port or unix:/path */
    T_HOSTPORT,    /* host:port or [ipv6]:port; "off" unsets */
    T_URL,         /* http:// or https:// */
    T_STRING,      /* text without control characters */
    T_PATH,        /* a file name; existence is checked by config_finalize() */
    T_UINT,        /* a whole number */
    T_SIZE,        /* bytes, with k/m/g suffixes */
    T_DURATION,    /* ms, s, m, h; a bare number is seconds */
    T_BOOL,        /* a flag */
    T_LOG_LEVEL,   /* error|warn|info|debug */
    T_CLIENT_AUTH, /* basic|post|none */
};

struct opt {
    const char *name; /* long option and config key */
    enum opt_type type;
    size_t off, width; /* where the value lives in struct config */
    uint64_t min, max; /* counts, bytes or milliseconds */
    uint32_t unit_ms;  /* durations: 1 when the field holds ms, 1000 when it holds seconds */
    const char *def;   /* the default as a user would write it; NULL: unset, "" clears it */
    const char *arg;   /* placeholder in --help; NULL: derived from the type */
    const char *section;
    const char *help;
};

#define FIELD(m) .off = offsetof(struct config, m), .width = sizeof(((struct config *)0)->m)
#define MS(n) ((uint64_t)(n))
#define SEC(n) ((uint64_t)(n)*1000)
#define KIB(n) ((uint64_t)(n) << 10)
#define MIB(n) ((uint64_t)(n) << 20)
#define GIB(n) ((uint64_t)(n) << 30)

static const struct opt options[] = {
    {.name = "listen",
     .type = T_LISTEN,
     FIELD(listen),
     .def = "127.0.0.1:12345",
     .arg = "ADDR",
     .section = "SPOP (the HAProxy side)",
     .help = "Address HAProxy's SPOE engine connects to: host:port, [ipv6]:port or unix:/path"},
    {.name = "max-frame-size",
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

    {.name = "metrics-listen",
     .type = T_HOSTPORT,
     FIELD(metrics_listen),
     .arg = "HOST:PORT",
     .section = "Daemon",
     .help = "Prometheus /metrics address; unset or off: no endpoint"},
    {.name = "drain-timeout",
     .type = T_DURATION,
     FIELD(drain_timeout_ms),
     .unit_ms = 1,
     .max = SEC(600),
     .def = "5s",
     .help = "On shutdown, time requests in flight get to finish"},
};

#define NOPTS (sizeof(options) / sizeof(options[0]))
#define SECRET_MAX 4096
#define SECRET_ENV "PHANTOM_CLIENT_SECRET"
#define SECRET_CREDENTIAL "client-secret"

/* The message for anyone looking for a way to pass the secret directly. */
#define SECRET_HINT                                                                                \
    "the client secret is never accepted on the command line or in the config file; use "          \
    "client-secret-file, the " SECRET_ENV " environment variable or a systemd credential "         \
    "named " SECRET_CREDENTIAL

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static const struct opt *find_opt(const char *name)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    return NULL;
}

static bool is_string_type(enum opt_type t)
{
    return t == T_LISTEN || t == T_HOSTPORT || t == T_URL || t == T_STRING || t == T_PATH;
}

/* ---- numbers ----------------------------------------------------------------------------------
 */

/* Reads decimal digits, saturating at UINT64_MAX so that an overflow fails the range check with a
 * clear message instead of wrapping. No sign, no whitespace: strtoull would accept both. */
static int parse_digits(const char **sp, uint64_t *out)
{
    const char *s = *sp;
    uint64_t v = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *sp = s;
    *out = v;
    return 0;
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    return a && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

struct unit {
    const char *suffix;
    uint64_t mult;
};

static const struct unit duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"", 1000}};
static const struct unit size_units[] = {{"k", KIB(1)}, {"m", MIB(1)}, {"g", GIB(1)}, {"K", KIB(1)},
                                         {"M", MIB(1)}, {"G", GIB(1)}, {"", 1}};

static int parse_with_unit(const char *s, const struct unit *units, size_t n, uint64_t *out)
{
    uint64_t v;
    if (parse_digits(&s, &v) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, units[i].suffix) == 0) {
            *out = mul_sat(v, units[i].mult);
            return 0;
        }
    }
    return -1;
}

/* Writes n with the largest unit that divides it exactly, as the user would write it. */
static void format_value(enum opt_type t, uint64_t n, char *buf, size_t len)
{
    if (t == T_DURATION) {
        if (n == 0 || n % 1000)
            snprintf(buf, len, "%llums", (unsigned long long)n);
        else if (n % 60000)
            snprintf(buf, len, "%llus", (unsigned long long)(n / 1000));
        else if (n % 3600000)
            snprintf(buf, len, "%llum", (unsigned long long)(n / 60000));
        else
            snprintf(buf, len, "%lluh", (unsigned long long)(n / 3600000));
        if (n == 0)
            snprintf(buf, len, "0");
    } else if (t == T_SIZE && n && n % KIB(1) == 0) {
        const char *u = n % MIB(1) ? "k" : n % GIB(1) ? "m" : "g";
        uint64_t d = n % MIB(1) ? KIB(1) : n % GIB(1) ? MIB(1) : GIB(1);
        snprintf(buf, len, "%llu%s", (unsigned long long)(n / d), u);
    } else {
        snprintf(buf, len, "%llu", (unsigned long long)n);
    }
}

static void store_num(void *field, size_t width, uint64_t v)
{
    if (width == sizeof(uint32_t)) {
        uint32_t x = (uint32_t)v;
        memcpy(field, &x, sizeof(x));
    } else {
        uint64_t x = v;
        memcpy(field, &x, sizeof(x));
    }
}

static const char *expected_number(enum opt_type t)
{
    if (t == T_DURATION)
        return "expected a duration like 300s";
    if (t == T_SIZE)
        return "expected a size like 64k, 16m or a number of bytes";
    return "expected a whole number";
}

static int set_number(const struct opt *o, const char *v, void *field, char *why, size_t len)
{
    uint64_t n;
    int rc = o->type == T_DURATION ? parse_with_unit(v, duration_units, 5, &n)
             : o->type == T_SIZE   ? parse_with_unit(v, size_units, 7, &n)
                                   : parse_with_unit(v, size_units + 6, 1, &n);
    if (rc < 0)
        return fail(why, len, "%s", expected_number(o->type));

    /* A 4-byte field cannot hold more, whatever the table says. */
    uint64_t unit = o->type == T_DURATION ? o->unit_ms : 1;
    uint64_t max = o->max;
    if (o->width == sizeof(uint32_t) && max / unit > UINT32_MAX)
        max = (uint64_t)UINT32_MAX * unit;
    if (n < o->min || n > max) {
        char lo[32], hi[32];
        format_value(o->type, o->min, lo, sizeof(lo));
        format_value(o->type, max, hi, sizeof(hi));
        return fail(why, len, "must be between %s and %s", lo, hi);
    }
    if (n % unit)
        return fail(why, len, "must be a whole number of seconds");
    store_num(field, o->width, n / unit);
    return 0;
}

/* ---- strings ----------------------------------------------------------------------------------
 */

static bool has_control_chars(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

static bool valid_port(const char *s)
{
    uint64_t port;
    return parse_digits(&s, &port) == 0 && *s == '\0' && port >= 1 && port <= 65535;
}

/* host:port or [ipv6]:port. Names are resolved when listening; only the form is checked here. */
static const char *check_hostport(const char *v)
{
    const char *port;
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close == v + 1 || close[1] != ':')
            return "expected [ipv6]:port";
        port = close + 2;
    } else {
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v)
            return "expected host:port";
        if (memchr(v, ':', (size_t)(colon - v)))
            return "an IPv6 address needs brackets, like [::1]:12345";
        port = colon + 1;
    }
    if (strpbrk(v, " \t"))
        return "expected host:port without spaces";
    return valid_port(port) ? NULL : "the port must be a number between 1 and 65535";
}

static const char *check_listen(const char *v)
{
    if (strncmp(v, "unix:", 5) != 0)
        return check_hostport(v);
    const char *path = v + 5;
    if (path[0] != '/')
        return "expected unix:/absolute/path";
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return "the unix socket path is too long";
    return NULL;
}

/* libcurl parses the URL exactly as it will when introspecting, so what passes here works there. */
static const char *check_url(const char *v)
{
    if (strncasecmp(v, "http://", 7) != 0 && strncasecmp(v, "https://", 8) != 0)
        return "expected an http:// or https:// URL";
    if (strpbrk(v, " \t"))
        return "a URL cannot contain spaces";
    CURLU *u = curl_url();
    if (!u)
        return "out of memory";
    char *host = NULL;
    const char *why = NULL;
    if (curl_url_set(u, CURLUPART_URL, v, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host)
        why = "expected an http:// or https:// URL with a host";
    curl_free(host);
    curl_url_cleanup(u);
    return why;
}

static const char *check_string(const struct opt *o, const char *v)
{
    if (has_control_chars(v))
        return "control characters are not allowed";
    switch (o->type) {
    case T_LISTEN:
        return check_listen(v);
    case T_HOSTPORT:
        return check_hostport(v);
    case T_URL:
        return check_url(v);
    default:
        return NULL;
    }
}

/* An option without a default is optional: an empty value (or "off" for an address) unsets it,
 * so that the command line can undo what the file set. */
static int set_string(const struct opt *o, const char *v, char **field, char *why, size_t len)
{
    bool unset = v[0] == '\0' || (o->type == T_HOSTPORT && strcasecmp(v, "off") == 0);
    if (unset && !o->def) {
        free(*field);
        *field = NULL;
        return 0;
    }
    if (v[0] == '\0')
        return fail(why, len, "must not be empty");
    const char *problem = check_string(o, v);
    if (problem)
        return fail(why, len, "%s", problem);
    char *copy = strdup(v);
    if (!copy)
        return fail(why, len, "out of memory");
    free(*field);
    *field = copy;
    return 0;
}

/* ---- booleans and keywords --------------------------------------------------------------------
 */

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
            *out = strcasecmp(v, yes[i]) == 0;
            return 0;
        }
    }
    return -1;
}

static const char *const auth_names[] = {"basic", "post", "none"};

static int parse_client_auth(const char *v, enum client_auth *out)
{
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(v, auth_names[i]) == 0) {
            *out = (enum client_auth)i;
            return 0;
        }
    }
    return -1;
}

static int set_keyword(const struct opt *o, const char *v, void *field, char *why, size_t len)
{
    if (o->type == T_BOOL) {
        if (parse_bool(v, field) < 0)
            return fail(why, len, "expected yes/no, true/false, on/off or 1/0");
    } else if (o->type == T_LOG_LEVEL) {
        if (log_level_parse(v, field) < 0)
            return fail(why, len, "expected error, warn, info or debug");
    } else if (parse_client_auth(v, field) < 0) {
        return fail(why, len, "expected basic, post or none");
    }
    return 0;
}

static int set_opt(struct config *c, const struct opt *o, const char *v, char *err, size_t errlen)
{
    char why[160];
    void *field = (char *)c + o->off;
    int rc;
    if (is_string_type(o->type))
        rc = set_string(o, v, field, why, sizeof(why));
    else if (o->type == T_UINT || o->type == T_SIZE || o->type == T_DURATION)
        rc = set_number(o, v, field, why, sizeof(why));
    else
        rc = set_keyword(o, v, field, why, sizeof(why));
    if (rc < 0)
        return fail(err, errlen, "bad value for %s: '%s' (%s)", o->name, v, why);
    return 0;
}

/* ---- the public setters -----------------------------------------------------------------------
 */

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    /* Cannot fail but for lack of memory; config_finalize() then reports the missing listen. */
    for (size_t i = 0; i < NOPTS; i++)
        if (options[i].def)
            set_opt(c, &options[i], options[i].def, NULL, 0);
}

static void free_secret(struct config *c)
{
    if (c->client_secret) {
        OPENSSL_cleanse(c->client_secret, strlen(c->client_secret));
        free(c->client_secret);
        c->client_secret = NULL;
    }
}

void config_free(struct config *c)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (is_string_type(options[i].type)) {
            char **field = (char **)(void *)((char *)c + options[i].off);
            free(*field);
            *field = NULL;
        }
    }
    free_secret(c);
    free(c->config_file);
    c->config_file = NULL;
}

static bool is_cli_only(const char *key)
{
    return strcmp(key, "config") == 0 || strcmp(key, "check-config") == 0 ||
           strcmp(key, "help") == 0 || strcmp(key, "version") == 0;
}

static bool is_secret_key(const char *key)
{
    return strcmp(key, "client-secret") == 0 || strcmp(key, "secret") == 0;
}

int config_set(struct config *c, const char *key, const char *value, char *err, size_t errlen)
{
    const struct opt *o = find_opt(key);
    if (o)
        return set_opt(c, o, value, err, errlen);
    if (is_secret_key(key))
        return fail(err, errlen, "there is no option '%s': %s", key, SECRET_HINT);
    if (is_cli_only(key))
        return fail(err, errlen, "'%s' is only valid on the command line", key);
    return fail(err, errlen, "unknown option '%s'", key);
}

bool config_option_is_flag(const char *key)
{
    const struct opt *o = find_opt(key);
    return o && o->type == T_BOOL;
}

const char *config_option_name(size_t i)
{
    return i < NOPTS ? options[i].name : NULL;
}

/* ---- the config file --------------------------------------------------------------------------
 */

static char *skip_ws(char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static void trim_right(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

/* The value after the key: "quoted" (may hold '#'), or bare up to a '#' that follows whitespace
 * (so that "http://idp/x#frag" survives). *value is NULL when there is nothing at all. */
static int split_value(char *p, char **value, char *why, size_t len)
{
    *value = NULL;
    if (*p == '"') {
        char *close = strchr(p + 1, '"');
        if (!close)
            return fail(why, len, "unterminated quoted value");
        char *rest = skip_ws(close + 1);
        if (*rest && *rest != '#')
            return fail(why, len, "unexpected text after the quoted value");
        *close = '\0';
        *value = p + 1;
        return 0;
    }
    for (char *q = p; *q; q++) {
        if (*q == '#' && (q[-1] == ' ' || q[-1] == '\t')) {
            *q = '\0';
            break;
        }
    }
    trim_right(p);
    if (*p)
        *value = p;
    return 0;
}

static int apply_line(struct config *c, char *line, size_t n, char *why, size_t len)
{
    if (strlen(line) != n)
        return fail(why, len, "NUL byte in line");
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    char *key = skip_ws(line);
    if (*key == '\0' || *key == '#')
        return 0;
    char *p = key + strcspn(key, " \t=");
    char *key_end = p;
    p = skip_ws(p);
    bool has_eq = *p == '=';
    if (has_eq)
        p = skip_ws(p + 1);
    *key_end = '\0'; /* after the scan: it may overwrite the '=' */

    char *value;
    if (split_value(p, &value, why, len) < 0)
        return -1;
    if (!value && !has_eq && find_opt(key)) {
        if (!config_option_is_flag(key))
            return fail(why, len, "missing value for '%s'", key);
        value = "yes"; /* a bare flag, as on the command line */
    }
    /* "key =" passes "", which unsets an optional setting */
    return config_set(c, key, value ? value : "", why, len);
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned lineno = 0;
    int rc = 0;
    char why[CONFIG_ERR_LEN];
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (apply_line(c, line, (size_t)n, why, sizeof(why)) < 0)
            rc = fail(err, errlen, "%s:%u: %s", path, lineno, why);
    }
    if (rc == 0 && ferror(f))
        rc = fail(err, errlen, "%s: read error", path);
    free(line);
    fclose(f);
    return rc;
}

/* ---- the command line -------------------------------------------------------------------------
 */

enum {
    CLI_ERROR = -2,
    CLI_CONFIG = 0x1000,
    CLI_CHECK,
    CLI_SET = 0x2000, /* + index in options[] */
    CLI_NEG = 0x3000, /* + index: --no-<flag> */
};

struct cli {
    struct option longopts[2 * NOPTS + 5];
    char negname[NOPTS][64];
};

static void cli_build(struct cli *cli)
{
    size_t n = 0;
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &options[i];
        bool flag = o->type == T_BOOL;
        cli->longopts[n++] = (struct option){o->name, flag ? optional_argument : required_argument,
                                             NULL, CLI_SET + (int)i};
        if (flag) {
            snprintf(cli->negname[i], sizeof(cli->negname[i]), "no-%s", o->name);
            cli->longopts[n++] =
                (struct option){cli->negname[i], no_argument, NULL, CLI_NEG + (int)i};
        }
    }
    cli->longopts[n++] = (struct option){"config", required_argument, NULL, CLI_CONFIG};
    cli->longopts[n++] = (struct option){"check-config", no_argument, NULL, CLI_CHECK};
    cli->longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    cli->longopts[n++] = (struct option){"version", no_argument, NULL, 'V'};
    cli->longopts[n] = (struct option){0};
}

/* getopt_long accepts any unambiguous prefix; we do not, because "--client-secret=..." would
 * otherwise silently become --client-secret-file, and a prefix may turn ambiguous later. */
static bool exact_long(const char *word, const char *name)
{
    size_t len = strlen(name);
    return strncmp(word, "--", 2) == 0 && strncmp(word + 2, name, len) == 0 &&
           (word[2 + len] == '\0' || word[2 + len] == '=');
}

/* Reports a bad word without its "=value" part, which might be a secret typed by mistake. */
static int cli_unknown(const char *word, char *err, size_t errlen)
{
    int len = (int)strcspn(word, "=");
    if (strncmp(word, "--client-secret", 15) == 0 || strncmp(word, "--secret", 8) == 0)
        return fail(err, errlen, "unknown option '%.*s': %s", len, word, SECRET_HINT);
    return fail(err, errlen, "unknown option '%.*s'", len, word);
}

/* Explains why getopt_long returned '?' or ':'. Returns CLI_ERROR. */
static int cli_error(int code, char **argv, char *err, size_t errlen)
{
    const char *word = argv[optind - 1];
    int len = (int)strcspn(word, "=");
    if (code == ':')
        fail(err, errlen, "option '%s' needs a value", word);
    else if (optopt > 0 && optopt < 0x100)
        fail(err, errlen, "unknown option '-%c'", optopt);
    else if (optopt) /* a known long option given "=value" it does not take */
        fail(err, errlen, "option '%.*s' does not take a value", len, word);
    else
        cli_unknown(word, err, errlen);
    return CLI_ERROR;
}

/* One getopt_long step: an option code, -1 at the end, or CLI_ERROR with err set. */
static int cli_next(struct cli *cli, int argc, char **argv, char *err, size_t errlen)
{
    int first = optind ? optind : 1;
    int idx = -1;
    int code = getopt_long(argc, argv, "+:hV", cli->longopts, &idx);
    if (code == '?' || code == ':')
        return cli_error(code, argv, err, errlen);
    if (code != -1 && idx >= 0 && first < argc &&
        !exact_long(argv[first], cli->longopts[idx].name)) {
        cli_unknown(argv[first], err, errlen);
        return CLI_ERROR;
    }
    return code;
}

struct prescan {
    const char *config;
    bool help, version;
};

/* First pass: --help, --version and --config act before anything else, wherever they are. Errors
 * are left to the second pass, which reports them in order. */
static void cli_prescan(struct cli *cli, int argc, char **argv, struct prescan *p)
{
    char scratch[CONFIG_ERR_LEN];
    int code;
    optind = 0;
    while ((code = cli_next(cli, argc, argv, scratch, sizeof(scratch))) != -1) {
        if (code == CLI_CONFIG)
            p->config = optarg;
        p->help |= code == 'h';
        p->version |= code == 'V';
    }
}

static int cli_apply(struct cli *cli, struct config *c, int argc, char **argv,
                     enum config_action *action, char *err, size_t errlen)
{
    int code;
    optind = 0;
    while ((code = cli_next(cli, argc, argv, err, errlen)) != -1) {
        if (code == CLI_ERROR)
            return -1;
        if (code == CLI_CHECK)
            *action = CONFIG_CHECK;
        if (code >= CLI_SET && code < CLI_SET + (int)NOPTS &&
            set_opt(c, &options[code - CLI_SET], optarg ? optarg : "yes", err, errlen) < 0)
            return -1;
        if (code >= CLI_NEG && code < CLI_NEG + (int)NOPTS)
            set_opt(c, &options[code - CLI_NEG], "no", NULL, 0);
    }
    if (optind < argc)
        return fail(err, errlen, "unexpected argument '%s'", argv[optind]);
    return 0;
}

/* Remembers the file by its absolute name, so that a reload finds it after a chdir. */
static int record_config_file(struct config *c, const char *path, char *err, size_t errlen)
{
    char *abs = realpath(path, NULL);
    if (!abs)
        abs = strdup(path);
    if (!abs)
        return fail(err, errlen, "out of memory");
    free(c->config_file);
    c->config_file = abs;
    return 0;
}

int config_parse_args(struct config *c, int argc, char **argv, enum config_action *action,
                      char *err, size_t errlen)
{
    struct cli cli;
    struct prescan pre = {0};
    int saved_opterr = opterr;
    int rc = 0;

    *action = CONFIG_RUN;
    cli_build(&cli);
    opterr = 0; /* we report errors ourselves, in err */
    cli_prescan(&cli, argc, argv, &pre);
    if (pre.help || pre.version) {
        if (pre.help)
            config_print_help(argc > 0 ? argv[0] : NULL);
        else
            config_print_version();
        *action = CONFIG_EXIT_OK;
    } else if (pre.config && (config_load_file(c, pre.config, err, errlen) < 0 ||
                              record_config_file(c, pre.config, err, errlen) < 0)) {
        rc = -1;
    } else {
        rc = cli_apply(&cli, c, argc, argv, action, err, errlen);
    }
    optind = 0; /* the next caller (a test, a reload) starts afresh */
    opterr = saved_opterr;
    return rc;
}

/* ---- finalize: the secret and the cross-checks ------------------------------------------------
 */

/* Reads a secret file: one trailing newline (or CRLF) is dropped; it must be non-empty and free of
 * line breaks and NUL bytes, since it ends up in an HTTP header or form field. */
static int read_secret_file(const char *path, char **out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return fail(err, errlen, "cannot read client secret file '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, errlen, "client secret file '%s' is not a regular file", path);
    }
    /* 0640 root:<service group> is the recommended mode, so only other users are a concern. */
    if (st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP))
        log_warn("client secret file %s is accessible to other users (mode %04o); use 0640 or "
                 "stricter",
                 path, (unsigned)(st.st_mode & 07777));
    char buf[SECRET_MAX + 1];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(buf) && (r = read(fd, buf + n, sizeof(buf) - n)) > 0)
        n += (size_t)r;
    close(fd);
    int rc = 0;
    if (n > SECRET_MAX)
        rc = fail(err, errlen, "client secret file '%s' is too large", path);
    if (n && buf[n - 1] == '\n')
        n--;
    if (n && buf[n - 1] == '\r')
        n--;
    if (rc == 0 && n == 0)
        rc = fail(err, errlen, "client secret file '%s' is empty", path);
    if (rc == 0 && (memchr(buf, '\0', n) || memchr(buf, '\n', n) || memchr(buf, '\r', n)))
        rc = fail(err, errlen, "client secret file '%s' holds more than one line", path);
    if (rc == 0 && !(*out = strndup(buf, n)))
        rc = fail(err, errlen, "out of memory");
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

static int secret_from_env(const char *v, char **out, char *err, size_t errlen)
{
    if (!*v)
        return fail(err, errlen, SECRET_ENV " is set but empty");
    if (strpbrk(v, "\r\n"))
        return fail(err, errlen, SECRET_ENV " holds more than one line");
    *out = strdup(v);
    return *out ? 0 : fail(err, errlen, "out of memory");
}

/* client-secret-file, else the environment, else a systemd credential (LoadCredential=). Finding
 * none is not an error here: the cross-checks decide whether a secret is needed. */
static int load_secret(struct config *c, char *err, size_t errlen)
{
    free_secret(c); /* a reload re-reads it */
    if (c->client_secret_file)
        return read_secret_file(c->client_secret_file, &c->client_secret, err, errlen);
    const char *env = getenv(SECRET_ENV);
    if (env)
        return secret_from_env(env, &c->client_secret, err, errlen);
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir)
        return 0;
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/" SECRET_CREDENTIAL, dir) >= (int)sizeof(path))
        return fail(err, errlen, "CREDENTIALS_DIRECTORY is too long");
    if (access(path, F_OK) < 0)
        return 0;
    return read_secret_file(path, &c->client_secret, err, errlen);
}

static int check_readable(const char *what, const char *path, char *err, size_t errlen)
{
    if (!path)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return fail(err, errlen, "cannot read %s '%s': %s", what, path, strerror(errno));
    close(fd);
    return 0;
}

static int check_tls(const struct config *c, char *err, size_t errlen)
{
    if (!c->client_cert != !c->client_key)
        return fail(err, errlen, "client-cert and client-key must be set together");
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
    const char *method = auth_names[c->client_auth];
    if (!c->client_id)
        return fail(err, errlen, "client-auth %s needs client-id", method);
    if (!c->client_secret)
        return fail(err, errlen,
                    "client-auth %s needs a client secret: set client-secret-file, "
                    "the " SECRET_ENV " environment variable or a systemd credential named "
                    "" SECRET_CREDENTIAL,
                    method);
    return 0;
}

static int check_addresses(const struct config *c, char *err, size_t errlen)
{
    if (!c->listen || !c->accept)
        return fail(err, errlen, "out of memory");
    if (c->metrics_listen && strcmp(c->metrics_listen, c->listen) == 0)
        return fail(err, errlen, "listen and metrics-listen cannot be the same address");
    return 0;
}

static void warn_risky(const struct config *c)
{
    if (!c->introspection_url) {
        log_warn("introspection-url is not set: every token will be answered with 503");
        return;
    }
    if (c->client_secret && c->client_auth != CLIENT_AUTH_NONE &&
        strncasecmp(c->introspection_url, "http://", 7) == 0)
        log_warn("the client secret is sent to %s without TLS", c->introspection_url);
}

int config_finalize(struct config *c, char *err, size_t errlen)
{
    if (check_addresses(c, err, errlen) < 0 || load_secret(c, err, errlen) < 0 ||
        check_tls(c, err, errlen) < 0 || check_client_auth(c, err, errlen) < 0)
        return -1;
    warn_risky(c);
    return 0;
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
    };
}

/* ---- --help and --version ---------------------------------------------------------------------
 */

static const char *arg_name(const struct opt *o)
{
    static const char *const by_type[] = {
        [T_LISTEN] = "ADDR",     [T_HOSTPORT] = "HOST:PORT", [T_URL] = "URL",
        [T_STRING] = "TEXT",     [T_PATH] = "FILE",          [T_UINT] = "N",
        [T_SIZE] = "SIZE",       [T_DURATION] = "DURATION",  [T_BOOL] = "",
        [T_LOG_LEVEL] = "LEVEL", [T_CLIENT_AUTH] = "METHOD",
    };
    return o->arg ? o->arg : by_type[o->type];
}

static void print_option(const struct opt *o)
{
    if (o->type == T_BOOL)
        printf("  --%s, --no-%s\n", o->name, o->name);
    else
        printf("  --%s=%s\n", o->name, arg_name(o));
    char range[80] = "";
    if (o->type == T_UINT || o->type == T_SIZE || o->type == T_DURATION) {
        char lo[32], hi[32];
        format_value(o->type, o->min, lo, sizeof(lo));
        format_value(o->type, o->max, hi, sizeof(hi));
        snprintf(range, sizeof(range), "; %s..%s", lo, hi);
    }
    printf("        %s (default: %s%s)\n", o->help, o->def ? o->def : "none", range);
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
    for (size_t i = 0; i < NOPTS; i++) {
        if (options[i].section)
            printf("\n%s:\n", options[i].section);
        print_option(&options[i]);
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
