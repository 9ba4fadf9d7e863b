/* Logging to stderr or syslog. The level is process-wide on purpose (a SIGHUP changes it for
 * every worker) and tests reset it with log_init(). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include <openssl/sha.h>

static enum log_level g_level = LOG_LVL_INFO;
static bool g_syslog;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int syslog_prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

void log_init(enum log_level level, bool use_syslog)
{
    if (g_syslog && !use_syslog)
        closelog();
    if (use_syslog && !g_syslog)
        openlog("phantom-token-agent", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    g_level = level;
    g_syslog = use_syslog;
}

void log_set_level(enum log_level level)
{
    __atomic_store_n(&g_level, level, __ATOMIC_RELAXED);
}

enum log_level log_get_level(void)
{
    return __atomic_load_n(&g_level, __ATOMIC_RELAXED);
}

bool log_enabled(enum log_level level)
{
    return level <= log_get_level();
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = LOG_LVL_WARN;
        return 0;
    }
    return -1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);

    if (g_syslog) {
        syslog(syslog_prio[level], "%s", line);
        return;
    }
    /* One write per line so that lines from several threads never interleave. */
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char out[2200];
    int n = snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], line);
    if (n > (int)sizeof(out))
        n = (int)sizeof(out);
    fwrite(out, 1, (size_t)n, stderr);
}

void log_token_id(const char *token, size_t len, char out[13])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    static const char hex[] = "0123456789abcdef";
    SHA256((const unsigned char *)token, len, md);
    for (int i = 0; i < 6; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[12] = '\0';
}

void log_printable(const void *data, size_t len, char *out, size_t cap)
{
    const unsigned char *p = data;
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    out[n] = '\0';
}
