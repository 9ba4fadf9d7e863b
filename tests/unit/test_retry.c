/* Unit tests for the retry policy: what is retried (refused, reset before any byte, 503 with a
 * Retry-After that fits), what never is (timeouts, 4xx, other statuses, a reset mid-answer, a
 * second retry), the deadline, the jitter, and the Retry-After parser (delay-seconds and
 * IMF-fixdate). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "retry.h"

#define NOW 5000

static struct retry_attempt attempt(enum retry_failure f)
{
    struct retry_attempt a = {.failure = f,
                              .response_started = false,
                              .http_status = 0,
                              .retry_after_ms = -1,
                              .retries_done = 0,
                              .now_ms = NOW,
                              .deadline_ms = NOW + 2000};
    return a;
}

static struct retry_attempt http(int status, int64_t retry_after_ms)
{
    struct retry_attempt a = attempt(RETRY_F_HTTP);
    a.http_status = status;
    a.retry_after_ms = retry_after_ms;
    return a;
}

static void test_defaults(void **state)
{
    (void)state;
    struct retry_policy p = retry_policy_default();
    assert_int_equal(p.max_retries, 1);
    assert_int_equal(p.jitter_ms, 50);
    assert_int_equal(p.min_attempt_ms, 100);
}

static void test_refused_and_reset_are_retried_with_jitter(void **state)
{
    (void)state;
    struct retry_policy p = retry_policy_default();
    struct retry_attempt a = attempt(RETRY_F_REFUSED);
    struct retry_decision d = retry_decide(&p, &a, 0);
    assert_true(d.retry);
    assert_int_equal(d.delay_ms, 0);
    assert_string_equal(d.why, "connection refused");
    d = retry_decide(&p, &a, 50);
    assert_int_equal(d.delay_ms, 50);
    d = retry_decide(&p, &a, 51); /* random % 51 */
    assert_int_equal(d.delay_ms, 0);
    d = retry_decide(&p, &a, UINT32_MAX);
    assert_true(d.delay_ms <= 50);
    a = attempt(RETRY_F_RESET);
    d = retry_decide(&p, &a, 7);
    assert_true(d.retry);
    assert_int_equal(d.delay_ms, 7);
    assert_string_equal(d.why, "connection reset");
}

static void test_reset_after_the_answer_began_is_not_retried(void **state)
{
    (void)state;
    struct retry_policy p = retry_policy_default();
    struct retry_attempt a = attempt(RETRY_F_RESET);
    a.response_started = true;
    struct retry_decision d = retry_decide(&p, &a, 0);
    assert_false(d.retry);
    assert_string_equal(d.why, "the answer had begun");
}

static void test_never_retried(void **state)
{
    (void)state;
    struct retry_policy p = retry_policy_default();
    struct retry_attempt a = attempt(RETRY_F_TIMEOUT);
    struct retry_decision d = retry_decide(&p, &a, 0);
    assert_false(d.retry);
    assert_string_equal(d.why, "a timeout is never retried");
    a = attempt(RETRY_F_OTHER);
    assert_false(retry_decide(&p, &a, 0).retry);
    a = attempt(RETRY_F_NONE);
    assert_false(retry_decide(&p, &a, 0).retry);
    static const int statuses[] = {400, 401, 403, 404, 429, 499};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        a = http(statuses[i], 0); /* even with a Retry-After */
        d = retry_decide(&p, &a, 0);
        assert_false(d.retry);
        assert_string_equal(d.why, "a 4xx is never retried");
    }
    static const int others[] = {200, 302, 500, 502, 504};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        a = http(others[i], 0);
        d = retry_decide(&p, &a, 0);
        assert_false(d.retry);
        assert_string_equal(d.why, "only a 503 is retried");
    }
}

static void test_503_needs_a_retry_after_that_fits(void **state)
{
    (void)state;
    struct retry_policy p = retry_policy_default();
    struct retry_attempt a = http(503, -1);
    struct retry_decision d = retry_decide(&p, &a, 0);
    assert_false(d.retry);
    assert_string_equal(d.why, "503 without a usable Retry-After");

    a = http(503, 1000);
    d = retry_decide(&p, &a, 20);
    assert_true(d.retry);
    assert_int_equal(d.delay_ms, 1020);
    assert_string_equal(d.why, "503 with Retry-After");

    a = http(503, 0);
    d = retry_decide(&p, &a, 3);
    assert_true(d.retry);
    assert_int_equal(d.delay_ms, 3);

    /* 1900 ms + the 100 ms a retry needs is exactly the budget: fits */
    a = http(503, 1900);
    assert_true(retry_decide(&p, &a, 0).retry);
    /* one millisecond of jitter more does not */
    d = retry_decide(&p, &a, 1);
    assert_false(d.retry);
    assert_string_equal(d.why, "Retry-After beyond the deadline");
    a = http(503, 120000);
    assert_false(retry_decide(&p, &a, 0).retry);
    a = http(503, INT64_MAX / 4);
    assert_false(retry_decide(&p, &a, UINT32_MAX).retry);
}

static void test_never_past_the_deadline(void **state)
{
    (void)state;
    struct retry_policy p = retry_policy_default();
    struct retry_attempt a = attempt(RETRY_F_REFUSED);
    a.deadline_ms = NOW + 100; /* exactly min_attempt_ms left */
    assert_true(retry_decide(&p, &a, 0).retry);
    a.deadline_ms = NOW + 99;
    struct retry_decision d = retry_decide(&p, &a, 0);
    assert_false(d.retry);
    assert_string_equal(d.why, "too little time left");
    a.deadline_ms = NOW - 1; /* already late */
    assert_false(retry_decide(&p, &a, 0).retry);
    a.deadline_ms = NOW + 120; /* the jitter counts against the budget */
    assert_true(retry_decide(&p, &a, 20).retry);
    assert_false(retry_decide(&p, &a, 21).retry);
}

static void test_once_only(void **state)
{
    (void)state;
    struct retry_policy p = retry_policy_default();
    struct retry_attempt a = attempt(RETRY_F_REFUSED);
    a.retries_done = 1;
    struct retry_decision d = retry_decide(&p, &a, 0);
    assert_false(d.retry);
    assert_string_equal(d.why, "retries used up");
    p.max_retries = 0;
    a.retries_done = 0;
    assert_false(retry_decide(&p, &a, 0).retry);
    p.max_retries = 2;
    a.retries_done = 1;
    assert_true(retry_decide(&p, &a, 0).retry);
}

static void test_no_jitter(void **state)
{
    (void)state;
    struct retry_policy p = {.max_retries = 1, .jitter_ms = 0, .min_attempt_ms = 0};
    struct retry_attempt a = attempt(RETRY_F_RESET);
    assert_int_equal(retry_decide(&p, &a, 12345).delay_ms, 0);
}

static int64_t parse(const char *s, int64_t now_epoch_ms)
{
    int64_t ms = -42;
    if (retry_after_parse(s, strlen(s), now_epoch_ms, &ms) < 0)
        return -1;
    return ms;
}

static void test_retry_after_seconds(void **state)
{
    (void)state;
    assert_int_equal(parse("0", 0), 0);
    assert_int_equal(parse("1", 0), 1000);
    assert_int_equal(parse("120", 0), 120000);
    assert_int_equal(parse("  5\t", 0), 5000);
    assert_int_equal(parse("007", 0), 7000);
    /* clamped to a year, never an overflow */
    assert_int_equal(parse("99999999999999999999999999", 0), 366LL * 86400 * 1000);
    assert_int_equal(parse("", 0), -1);
    assert_int_equal(parse("   ", 0), -1);
    assert_int_equal(parse("-1", 0), -1);
    assert_int_equal(parse("+1", 0), -1);
    assert_int_equal(parse("1.5", 0), -1);
    assert_int_equal(parse("1 2", 0), -1);
    assert_int_equal(parse("0x10", 0), -1);
    int64_t ms;
    assert_int_equal(retry_after_parse(NULL, 0, 0, &ms), -1);
    assert_int_equal(retry_after_parse("12", 1, 0, &ms), 0); /* only len bytes are read */
    assert_int_equal(ms, 1000);
}

static void test_retry_after_date(void **state)
{
    (void)state;
    const int64_t t = 784111777LL * 1000; /* Sun, 06 Nov 1994 08:49:37 GMT */
    assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 GMT", t - 10000), 10000);
    assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 GMT", t - 250), 250);
    assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 GMT", t + 5000), 0); /* in the past */
    /* leap day and a far-away century */
    assert_int_equal(parse("Thu, 29 Feb 2024 00:00:00 GMT", 1709164800LL * 1000 - 3000), 3000);
    assert_int_equal(parse("Mon, 01 Mar 2100 12:00:00 GMT", 4107585600LL * 1000 - 1), 1);
    /* the obsolete formats, garbage, bad fields */
    assert_int_equal(parse("Sunday, 06-Nov-94 08:49:37 GMT", t), -1);
    assert_int_equal(parse("Sun Nov  6 08:49:37 1994", t), -1);
    assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 UTC", t), -1);
    assert_int_equal(parse("Sun, 06 Foo 1994 08:49:37 GMT", t), -1);
    assert_int_equal(parse("Xyz, 06 Nov 1994 08:49:37 GMT", t), -1);
    assert_int_equal(parse("Sun, 32 Nov 1994 08:49:37 GMT", t), -1);
    assert_int_equal(parse("Sun, 06 Nov 1994 24:49:37 GMT", t), -1);
    assert_int_equal(parse("Sun, 06 Nov 1994 08:4a:37 GMT", t), -1);
    assert_int_equal(parse("Sun, 06 Nov 1994 08:49:37 GMTX", t), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_refused_and_reset_are_retried_with_jitter),
        cmocka_unit_test(test_reset_after_the_answer_began_is_not_retried),
        cmocka_unit_test(test_never_retried),
        cmocka_unit_test(test_503_needs_a_retry_after_that_fits),
        cmocka_unit_test(test_never_past_the_deadline),
        cmocka_unit_test(test_once_only),
        cmocka_unit_test(test_no_jitter),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_date),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
