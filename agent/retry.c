/* Retry policy and Retry-After parsing; see retry.h. */
#include "retry.h"

#include <string.h>

/* Longer waits are clamped: never useful, and no overflow. */
#define RETRY_AFTER_MAX_S (366LL * 86400)

struct retry_policy retry_policy_default(void)
{
    struct retry_policy p = {.max_retries = 1, .jitter_ms = 50, .min_attempt_ms = 100};
    return p;
}

static struct retry_decision no(const char *why)
{
    return (struct retry_decision){.retry = false, .delay_ms = 0, .why = why};
}

/* The wait a retry of this failure needs before the jitter, or -1 (and *why) when it must not be
 * retried at all. */
static int64_t base_delay(const struct retry_attempt *a, const char **why)
{
    switch (a->failure) {
    case RETRY_F_NONE:
        *why = "answered";
        return -1;
    case RETRY_F_TIMEOUT:
        *why = "a timeout is never retried";
        return -1;
    case RETRY_F_OTHER:
        *why = "not a retryable failure";
        return -1;
    case RETRY_F_REFUSED:
    case RETRY_F_RESET:
        if (a->response_started) {
            *why = "the answer had begun";
            return -1;
        }
        *why = a->failure == RETRY_F_REFUSED ? "connection refused" : "connection reset";
        return 0;
    case RETRY_F_HTTP:
        if (a->http_status >= 400 && a->http_status < 500) {
            *why = "a 4xx is never retried";
            return -1;
        }
        if (a->http_status != 503) {
            *why = "only a 503 is retried";
            return -1;
        }
        if (a->retry_after_ms < 0) {
            *why = "503 without a usable Retry-After";
            return -1;
        }
        *why = "503 with Retry-After";
        return a->retry_after_ms;
    }
    *why = "not a retryable failure";
    return -1;
}

struct retry_decision retry_decide(const struct retry_policy *p, const struct retry_attempt *a,
                                   uint32_t random)
{
    const char *why;
    int64_t base = base_delay(a, &why);
    if (base < 0)
        return no(why);
    if (a->retries_done >= p->max_retries)
        return no("retries used up");
    int64_t delay = base + (int64_t)(random % ((uint64_t)p->jitter_ms + 1));
    if (a->now_ms + delay + (int64_t)p->min_attempt_ms > a->deadline_ms)
        return no(base > 0 ? "Retry-After beyond the deadline" : "too little time left");
    if (delay > UINT32_MAX)
        return no("Retry-After beyond the deadline");
    return (struct retry_decision){.retry = true, .delay_ms = (unsigned)delay, .why = why};
}

/* --- Retry-After ------------------------------------------------------------------------------ */

static bool digits(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        if (v <= RETRY_AFTER_MAX_S * 10) /* past that it is clamped anyway */
            v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date, counted in 400-year eras (146097 days
 * each) so that leap years need no table. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int month_of(const char *s)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++) {
        if (memcmp(names + 3 * i, s, 3) == 0)
            return i + 1;
    }
    return 0;
}

/* IMF-fixdate, exactly "Sun, 06 Nov 1994 08:49:37 GMT" (29 characters). */
static int parse_imf_fixdate(const char *s, size_t n, int64_t *epoch_s)
{
    static const char days[] = "MonTueWedThuFriSatSun";
    if (n != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s[19] != ':' || s[22] != ':' || s[25] != ' ' || memcmp(s + 26, "GMT", 3) != 0)
        return -1;
    bool day_ok = false;
    for (int i = 0; i < 7; i++)
        day_ok |= memcmp(days + 3 * i, s, 3) == 0;
    int64_t d, y, hh, mm, ss;
    int mon = month_of(s + 8);
    if (!day_ok || mon == 0 || !digits(s + 5, 2, &d) || !digits(s + 12, 4, &y) ||
        !digits(s + 17, 2, &hh) || !digits(s + 20, 2, &mm) || !digits(s + 23, 2, &ss))
        return -1;
    if (d < 1 || d > 31 || hh > 23 || mm > 59 || ss > 60)
        return -1;
    *epoch_s = days_from_civil(y, mon, d) * 86400 + hh * 3600 + mm * 60 + ss;
    return 0;
}

int retry_after_parse(const char *value, size_t len, int64_t now_epoch_ms, int64_t *delay_ms)
{
    if (!value)
        return -1;
    while (len > 0 && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    int64_t v;
    if (digits(value, len, &v)) {
        *delay_ms = (v > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : v) * 1000;
        return 0;
    }
    if (parse_imf_fixdate(value, len, &v) < 0)
        return -1;
    int64_t ms = v * 1000 - now_epoch_ms;
    if (ms < 0)
        ms = 0;
    if (ms > RETRY_AFTER_MAX_S * 1000)
        ms = RETRY_AFTER_MAX_S * 1000;
    *delay_ms = ms;
    return 0;
}
