/* Shared by the config_*.c files only: the option table's row type and the helpers each part
 * offers the others. Nothing outside agent/config*.c includes it. */
#ifndef PTA_CONFIG_INTERNAL_H
#define PTA_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum opt_type {
    T_LISTEN,      /* host:port, [ipv6]:port or unix:/path */
    T_HOSTPORT,    /* host:port or [ipv6]:port; "off" unsets */
    T_UNIXADDR,    /* unix:/path; "off" unsets */
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

/* What SIGHUP does with a changed value. */
enum opt_reload {
    RELOAD_LIVE,    /* applied by the reload */
    RELOAD_RESTART, /* bound at start (a socket, a buffer size, the log sink): a reload logs the
                       change as ignored and keeps the running value */
};

struct opt {
    const char *name;  /* long option and config key */
    const char *alias; /* an older name that still works (file and command line), or NULL */
    enum opt_type type;
    enum opt_reload reload;
    size_t off, width; /* where the value lives in struct config */
    uint64_t min, max; /* counts, bytes or milliseconds */
    uint32_t unit_ms;  /* durations: 1 when the field holds ms, 1000 when it holds seconds */
    const char *def;   /* the default as a user would write it; NULL: unset, "" clears it */
    const char *arg;   /* placeholder in --help; NULL: derived from the type */
    const char *section;
    const char *help;
};

/* config_options.c (a compile-time bound for the command-line tables; checked there) */
#define CONFIG_MAX_OPTS 64
extern const struct opt config_opts[];
extern const size_t config_nopts;
const struct opt *config_find_opt(const char *name); /* by name or alias */

/* config_values.c */
bool config_is_string_type(enum opt_type t);
/* Parses v and stores it into c's field for o. -1 with "bad value for <name>: ..." in err. */
int config_set_opt(struct config *c, const struct opt *o, const char *v, char *err, size_t errlen);
/* n (ms for durations, bytes for sizes) as a user would write it: "5s", "64k". */
void config_format_value(enum opt_type t, uint64_t n, char *buf, size_t len);
/* The names of the client-auth keywords, by enum client_auth. */
extern const char *const config_auth_names[3];

/* The message for anyone looking for a way to pass the secret directly. */
#define SECRET_ENV "PHANTOM_CLIENT_SECRET"
#define SECRET_CREDENTIAL "client-secret"
#define SECRET_HINT                                                                                \
    "the client secret is never accepted on the command line or in the config file; use "          \
    "client-secret-file, the " SECRET_ENV " environment variable or a systemd credential "         \
    "named " SECRET_CREDENTIAL

int config_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
