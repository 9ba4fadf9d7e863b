/* Unit tests for the token bucket: unlimited at rate 0, the burst, the refill rate, a clock going
 * back, and new limits on reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ratelimit.h"

static int take_n(struct ratelimit *r, int n, int64_t now)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += ratelimit_take(r, now);
    return ok;
}

static void test_unlimited(void **state)
{
    (void)state;
    struct ratelimit r;
    ratelimit_init(&r, 0, 0, 0);
    assert_int_equal(take_n(&r, 100000, 0), 100000);
}

static void test_burst_then_rate(void **state)
{
    (void)state;
    struct ratelimit r;
    ratelimit_init(&r, 100, 0, 1000); /* burst = one second's worth */
    assert_int_equal(take_n(&r, 150, 1000), 100);
    assert_int_equal(take_n(&r, 10, 1005), 0);      /* 0.5 of a token */
    assert_int_equal(take_n(&r, 10, 1010), 1);      /* 1 */
    assert_int_equal(take_n(&r, 100, 1510), 50);    /* 500 ms at 100/s */
    assert_int_equal(take_n(&r, 1000, 60000), 100); /* refill caps at the burst */
}

static void test_explicit_burst(void **state)
{
    (void)state;
    struct ratelimit r;
    ratelimit_init(&r, 10, 3, 0);
    assert_int_equal(take_n(&r, 10, 0), 3);
    assert_int_equal(take_n(&r, 10, 100), 1);
}

static void test_clock_going_back(void **state)
{
    (void)state;
    struct ratelimit r;
    ratelimit_init(&r, 10, 1, 5000);
    assert_true(ratelimit_take(&r, 5000));
    assert_false(ratelimit_take(&r, 1000)); /* earlier: no refill */
    assert_false(ratelimit_take(&r, 1050));
    assert_true(ratelimit_take(&r, 1100)); /* 100 ms after the new reference */
}

static void test_reload(void **state)
{
    (void)state;
    struct ratelimit r;
    ratelimit_init(&r, 1000, 0, 0);
    assert_int_equal(take_n(&r, 10, 0), 10);
    ratelimit_set(&r, 5, 0, 0); /* 990 left, capped at the new burst of 5 */
    assert_int_equal(take_n(&r, 10, 0), 5);
    ratelimit_set(&r, 0, 0, 0);
    assert_int_equal(take_n(&r, 1000, 0), 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unlimited),      cmocka_unit_test(test_burst_then_rate),
        cmocka_unit_test(test_explicit_burst), cmocka_unit_test(test_clock_going_back),
        cmocka_unit_test(test_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
