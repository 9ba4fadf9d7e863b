/* The agent's settings as a whole: defaults, the config file, the command line and the reload
 * rules, all driven by the option table (config_options.c). Values are parsed by config_values.c,
 * cross-checked and completed with secrets by config_check.c. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_internal.h"
#include "secret_file.h"

/* ---- the public setters -----------------------------------------------------------------------
 */

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    /* Cannot fail but for lack of memory; config_finalize() then reports the missing listen. */
    for (size_t i = 0; i < config_nopts; i++)
        if (config_opts[i].def)
            config_set_opt(c, &config_opts[i], config_opts[i].def, NULL, 0);
}

void config_free(struct config *c)
{
    for (size_t i = 0; i < config_nopts; i++) {
        if (config_is_string_type(config_opts[i].type)) {
            char **field = (char **)(void *)((char *)c + config_opts[i].off);
            free(*field);
            *field = NULL;
        }
    }
    secret_free(&c->client_secret);
    secret_free(&c->admin_token);
    secret_free(&c->fastpath_key);
    minting_clear(&c->minting);
    secret_free(&c->cache_redis_password);
    secret_free(&c->fleet_key);
    c->fleet_key_len = 0;
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
    const struct opt *o = config_find_opt(key);
    if (o)
        return config_set_opt(c, o, value, err, errlen);
    if (is_secret_key(key))
        return config_fail(err, errlen, "there is no option '%s': %s", key, SECRET_HINT);
    if (is_cli_only(key))
        return config_fail(err, errlen, "'%s' is only valid on the command line", key);
    return config_fail(err, errlen, "unknown option '%s'", key);
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
            return config_fail(why, len, "unterminated quoted value");
        char *rest = skip_ws(close + 1);
        if (*rest && *rest != '#')
            return config_fail(why, len, "unexpected text after the quoted value");
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
        return config_fail(why, len, "NUL byte in line");
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
    if (!value && !has_eq && config_find_opt(key)) {
        if (!config_option_is_flag(key))
            return config_fail(why, len, "missing value for '%s'", key);
        value = "yes"; /* a bare flag, as on the command line */
    }
    /* "key =" passes "", which unsets an optional setting */
    return config_set(c, key, value ? value : "", why, len);
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return config_fail(err, errlen, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned lineno = 0;
    int rc = 0;
    char why[CONFIG_ERR_LEN];
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (apply_line(c, line, (size_t)n, why, sizeof(why)) < 0)
            rc = config_fail(err, errlen, "%s:%u: %s", path, lineno, why);
    }
    if (rc == 0 && ferror(f))
        rc = config_fail(err, errlen, "%s: read error", path);
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
    CLI_SET = 0x2000, /* + index in config_opts[] */
    CLI_NEG = 0x3000, /* + index: --no-<flag> */
};

struct cli {
    struct option longopts[4 * CONFIG_MAX_OPTS + 5]; /* name, no-name, alias, no-alias */
    char negname[CONFIG_MAX_OPTS][2][64];
};

/* One getopt entry for a name (and its --no- form for a flag). */
static size_t cli_add(struct cli *cli, size_t n, size_t i, const char *name, char *negname)
{
    bool flag = config_opts[i].type == T_BOOL;
    cli->longopts[n++] =
        (struct option){name, flag ? optional_argument : required_argument, NULL, CLI_SET + (int)i};
    if (flag) {
        snprintf(negname, 64, "no-%s", name);
        cli->longopts[n++] = (struct option){negname, no_argument, NULL, CLI_NEG + (int)i};
    }
    return n;
}

static void cli_build(struct cli *cli)
{
    size_t n = 0;
    for (size_t i = 0; i < config_nopts; i++) {
        n = cli_add(cli, n, i, config_opts[i].name, cli->negname[i][0]);
        if (config_opts[i].alias)
            n = cli_add(cli, n, i, config_opts[i].alias, cli->negname[i][1]);
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
        return config_fail(err, errlen, "unknown option '%.*s': %s", len, word, SECRET_HINT);
    return config_fail(err, errlen, "unknown option '%.*s'", len, word);
}

/* Explains why getopt_long returned '?' or ':'. Returns CLI_ERROR. */
static int cli_error(int code, char **argv, char *err, size_t errlen)
{
    const char *word = argv[optind - 1];
    int len = (int)strcspn(word, "=");
    if (code == ':')
        config_fail(err, errlen, "option '%s' needs a value", word);
    else if (optopt > 0 && optopt < 0x100)
        config_fail(err, errlen, "unknown option '-%c'", optopt);
    else if (optopt) /* a known long option given "=value" it does not take */
        config_fail(err, errlen, "option '%.*s' does not take a value", len, word);
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
        if (code >= CLI_SET && code < CLI_SET + (int)config_nopts &&
            config_set_opt(c, &config_opts[code - CLI_SET], optarg ? optarg : "yes", err, errlen) <
                0)
            return -1;
        if (code >= CLI_NEG && code < CLI_NEG + (int)config_nopts)
            config_set_opt(c, &config_opts[code - CLI_NEG], "no", NULL, 0);
    }
    if (optind < argc)
        return config_fail(err, errlen, "unexpected argument '%s'", argv[optind]);
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
    } else if (pre.config && config_load_file(c, pre.config, err, errlen) < 0) {
        rc = -1;
    } else {
        rc = cli_apply(&cli, c, argc, argv, action, err, errlen);
    }
    optind = 0; /* the next caller (a test, a reload) starts afresh */
    opterr = saved_opterr;
    return rc;
}

/* ---- reload rules -----------------------------------------------------------------------------
 */

static const void *field_of(const struct config *c, const struct opt *o)
{
    return (const char *)c + o->off;
}

static bool same_value(const struct opt *o, const struct config *a, const struct config *b)
{
    if (!config_is_string_type(o->type))
        return memcmp(field_of(a, o), field_of(b, o), o->width) == 0;
    const char *sa = *(char *const *)field_of(a, o), *sb = *(char *const *)field_of(b, o);
    return sa == sb || (sa && sb && strcmp(sa, sb) == 0);
}

static int copy_value(const struct opt *o, struct config *dst, const struct config *src)
{
    void *field = (char *)dst + o->off;
    if (!config_is_string_type(o->type)) {
        memcpy(field, field_of(src, o), o->width);
        return 0;
    }
    const char *v = *(char *const *)field_of(src, o);
    char *copy = v ? strdup(v) : NULL;
    if (v && !copy)
        return -1;
    free(*(char **)field);
    *(char **)field = copy;
    return 0;
}

int config_keep_restart_only(struct config *next, const struct config *running)
{
    int kept = 0;
    for (size_t i = 0; i < config_nopts; i++) {
        const struct opt *o = &config_opts[i];
        if (o->reload != RELOAD_RESTART || same_value(o, next, running))
            continue;
        if (copy_value(o, next, running) < 0)
            return -1;
        log_warn("reload: the change of %s%s%s%s is ignored: it only takes effect on restart "
                 "(the running value stays)",
                 o->name, o->alias ? " (formerly " : "", o->alias ? o->alias : "",
                 o->alias ? ")" : "");
        kept++;
    }
    return kept;
}
