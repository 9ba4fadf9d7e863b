/* Logging: one line per event to stderr or syslog, filtered by level. Tokens, JWTs and secrets are
 * never logged; log_token_id() gives the short hash that identifies a token in logs instead. */
#ifndef PTA_LOG_H
#define PTA_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_init(enum log_level level, bool use_syslog);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
bool log_enabled(enum log_level level);
int log_level_parse(const char *s, enum log_level *out); /* "error", "warn", "info", "debug" */

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_LVL_DEBUG))                                                            \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

/* Copies bytes from the wire for a log line: at most cap - 1 of them, NUL-terminated, each byte
 * outside printable ASCII replaced by '?' so that peer data can never forge a log line. */
void log_printable(const void *data, size_t len, char *out, size_t cap);

/* Writes the first 12 hex digits of SHA-256(token) into out (13 bytes with the NUL). */
void log_token_id(const char *token, size_t len, char out[13]);

#endif
