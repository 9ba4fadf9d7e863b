/* Option values: numbers with units, addresses, URLs, strings, flags and keywords, each checked
 * with a message that says what was expected. Pure but for libcurl's URL parser. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "addr.h"
#include "config_internal.h"

#define KIB(n) ((uint64_t)(n) << 10)
#define MIB(n) ((uint64_t)(n) << 20)
#define GIB(n) ((uint64_t)(n) << 30)

int config_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

bool config_is_string_type(enum opt_type t)
{
    return t == T_LISTEN || t == T_HOSTPORT || t == T_UNIXADDR || t == T_URL || t == T_STRING ||
           t == T_PATH;
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
void config_format_value(enum opt_type t, uint64_t n, char *buf, size_t len)
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
        return config_fail(why, len, "%s", expected_number(o->type));

    /* A 4-byte field cannot hold more, whatever the table says. */
    uint64_t unit = o->type == T_DURATION ? o->unit_ms : 1;
    uint64_t max = o->max;
    if (o->width == sizeof(uint32_t) && max / unit > UINT32_MAX)
        max = (uint64_t)UINT32_MAX * unit;
    if (n < o->min || n > max) {
        char lo[32], hi[32];
        config_format_value(o->type, o->min, lo, sizeof(lo));
        config_format_value(o->type, max, hi, sizeof(hi));
        return config_fail(why, len, "must be between %s and %s", lo, hi);
    }
    if (n % unit)
        return config_fail(why, len, "must be a whole number of seconds");
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

/* The form only: names are resolved by config_finalize() (addr_check), as they will be at start. */
static const char *check_addr(const char *v, unsigned allow)
{
    struct addr a;
    return addr_parse(v, allow, &a);
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
        return check_addr(v, ADDR_ALLOW_TCP | ADDR_ALLOW_UNIX);
    case T_HOSTPORT:
        return check_addr(v, ADDR_ALLOW_TCP);
    case T_UNIXADDR:
        return check_addr(v, ADDR_ALLOW_UNIX);
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
    bool unset = v[0] == '\0' ||
                 ((o->type == T_HOSTPORT || o->type == T_UNIXADDR) && strcasecmp(v, "off") == 0);
    if (unset && !o->def) {
        free(*field);
        *field = NULL;
        return 0;
    }
    if (v[0] == '\0')
        return config_fail(why, len, "must not be empty");
    const char *problem = check_string(o, v);
    if (problem)
        return config_fail(why, len, "%s", problem);
    char *copy = strdup(v);
    if (!copy)
        return config_fail(why, len, "out of memory");
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

const char *const config_auth_names[3] = {"basic", "post", "none"};

static int parse_client_auth(const char *v, enum client_auth *out)
{
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(v, config_auth_names[i]) == 0) {
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
            return config_fail(why, len, "expected yes/no, true/false, on/off or 1/0");
    } else if (o->type == T_LOG_LEVEL) {
        if (log_level_parse(v, field) < 0)
            return config_fail(why, len, "expected error, warn, info or debug");
    } else if (parse_client_auth(v, field) < 0) {
        return config_fail(why, len, "expected basic, post or none");
    }
    return 0;
}

int config_set_opt(struct config *c, const struct opt *o, const char *v, char *err, size_t errlen)
{
    char why[160];
    void *field = (char *)c + o->off;
    int rc;
    if (config_is_string_type(o->type))
        rc = set_string(o, v, field, why, sizeof(why));
    else if (o->type == T_UINT || o->type == T_SIZE || o->type == T_DURATION)
        rc = set_number(o, v, field, why, sizeof(why));
    else
        rc = set_keyword(o, v, field, why, sizeof(why));
    if (rc < 0)
        return config_fail(err, errlen, "bad value for %s: '%s' (%s)", o->name, v, why);
    return 0;
}
