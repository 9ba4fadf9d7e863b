/* Unit tests for the circuit breaker: opening on consecutive failures and on a failure ratio over
 * the sliding window, the cool-down, exactly one probe at a time, closing on success, outcomes of
 * calls admitted in an earlier state being ignored, one report per transition and the time spent
 * open. The clock is a fake one the tests move by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "breaker.h"

static int64_t fake_now;

static int64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

struct report {
    int count;
    enum breaker_state from, to;
    const char *why;
    char name[32];
};

static void on_transition(void *ud, const char *name, enum breaker_state from,
                          enum breaker_state to, const char *why)
{
    struct report *r = ud;
    r->count++;
    r->from = from;
    r->to = to;
    r->why = why;
    strncpy(r->name, name, sizeof(r->name) - 1);
}

static struct breaker *new_breaker(const struct breaker_config *cfg, struct report *r)
{
    fake_now = 1000000;
    struct breaker *b = breaker_new(cfg, "idp.example.test", fake_clock, NULL);
    assert_non_null(b);
    memset(r, 0, sizeof(*r));
    breaker_on_transition(b, on_transition, r);
    return b;
}

static struct breaker_config consecutive(unsigned n, unsigned open_ms)
{
    struct breaker_config c = breaker_config_default();
    c.failures = n;
    c.ratio_percent = 0;
    c.open_ms = open_ms;
    return c;
}

/* One call through the breaker that must be let through, ending with outcome. */
static void call(struct breaker *b, enum breaker_outcome outcome)
{
    struct breaker_ticket t;
    assert_int_equal(breaker_allow(b, &t), BREAKER_PASS);
    breaker_record(b, &t, outcome);
}

static void test_defaults(void **state)
{
    (void)state;
    struct breaker_config c = breaker_config_default();
    assert_int_equal(c.failures, 5);
    assert_int_equal(c.ratio_percent, 0);
    assert_int_equal(c.open_ms, 5000);
    assert_true(breaker_config_enabled(&c));
    c.failures = 0;
    assert_false(breaker_config_enabled(&c));
    assert_string_equal(breaker_state_name(BREAKER_CLOSED), "closed");
    assert_string_equal(breaker_state_name(BREAKER_OPEN), "open");
    assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half-open");
}

static void test_opens_after_consecutive_failures(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = consecutive(3, 5000);
    struct breaker *b = new_breaker(&cfg, &r);
    call(b, BREAKER_FAILURE);
    call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    assert_int_equal(r.count, 0);
    call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.from, BREAKER_CLOSED);
    assert_int_equal(r.to, BREAKER_OPEN);
    assert_string_equal(r.why, "consecutive failures");
    assert_string_equal(r.name, "idp.example.test");
    breaker_free(b);
}

static void test_success_resets_the_run(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = consecutive(3, 5000);
    struct breaker *b = new_breaker(&cfg, &r);
    for (int i = 0; i < 10; i++) {
        call(b, BREAKER_FAILURE);
        call(b, BREAKER_FAILURE);
        call(b, BREAKER_SUCCESS);
    }
    /* neutral outcomes neither break nor extend the run */
    call(b, BREAKER_FAILURE);
    call(b, BREAKER_NEUTRAL);
    call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    breaker_free(b);
}

static void test_open_rejects_until_cool_down_then_one_probe(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = consecutive(1, 5000);
    struct breaker *b = new_breaker(&cfg, &r);
    call(b, BREAKER_FAILURE);
    struct breaker_ticket t, t2;
    assert_int_equal(breaker_retry_in_ms(b), 5000);
    fake_now += 4999;
    assert_int_equal(breaker_allow(b, &t), BREAKER_REJECT);
    assert_int_equal(breaker_retry_in_ms(b), 1);
    fake_now += 1;
    assert_int_equal(breaker_allow(b, &t), BREAKER_PROBE);
    assert_true(t.probe);
    assert_int_equal(breaker_state(b), BREAKER_HALF_OPEN);
    assert_int_equal(r.count, 2);
    assert_string_equal(r.why, "cool-down over");
    assert_int_equal(breaker_retry_in_ms(b), 0);
    /* exactly one probe at a time, however long it takes */
    for (int i = 0; i < 100; i++) {
        fake_now += 100;
        assert_int_equal(breaker_allow(b, &t2), BREAKER_REJECT);
    }
    breaker_record(b, &t, BREAKER_SUCCESS);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    assert_int_equal(r.count, 3);
    assert_int_equal(r.from, BREAKER_HALF_OPEN);
    assert_string_equal(r.why, "probe succeeded");
    call(b, BREAKER_SUCCESS);

    struct breaker_stats st;
    breaker_get_stats(b, &st);
    assert_int_equal(st.probes, 1);
    assert_int_equal(st.rejected, 101);
    assert_int_equal(st.transitions[BREAKER_OPEN], 1);
    assert_int_equal(st.transitions[BREAKER_HALF_OPEN], 1);
    assert_int_equal(st.transitions[BREAKER_CLOSED], 1);
    breaker_free(b);
}

static void test_failed_probe_reopens_for_a_full_cool_down(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = consecutive(2, 1000);
    struct breaker *b = new_breaker(&cfg, &r);
    call(b, BREAKER_FAILURE);
    call(b, BREAKER_FAILURE);
    fake_now += 1500;
    struct breaker_ticket t;
    assert_int_equal(breaker_allow(b, &t), BREAKER_PROBE);
    fake_now += 700; /* a slow probe: the cool-down counts from its failure */
    breaker_record(b, &t, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    assert_string_equal(r.why, "probe failed");
    assert_int_equal(breaker_retry_in_ms(b), 1000);
    fake_now += 999;
    assert_int_equal(breaker_allow(b, &t), BREAKER_REJECT);
    fake_now += 1;
    assert_int_equal(breaker_allow(b, &t), BREAKER_PROBE);
    breaker_free(b);
}

static void test_neutral_probe_frees_the_slot(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = consecutive(1, 1000);
    struct breaker *b = new_breaker(&cfg, &r);
    call(b, BREAKER_FAILURE);
    fake_now += 1000;
    struct breaker_ticket t, t2;
    assert_int_equal(breaker_allow(b, &t), BREAKER_PROBE);
    breaker_record(b, &t, BREAKER_NEUTRAL);
    assert_int_equal(breaker_state(b), BREAKER_HALF_OPEN);
    assert_int_equal(breaker_allow(b, &t2), BREAKER_PROBE);
    breaker_record(b, &t2, BREAKER_SUCCESS);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    breaker_free(b);
}

static void test_outcomes_from_an_earlier_state_are_ignored(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = consecutive(2, 1000);
    struct breaker *b = new_breaker(&cfg, &r);
    struct breaker_ticket slow_ok, slow_fail, probe, other;
    assert_int_equal(breaker_allow(b, &slow_ok), BREAKER_PASS);
    assert_int_equal(breaker_allow(b, &slow_fail), BREAKER_PASS);
    call(b, BREAKER_FAILURE);
    call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    /* a call admitted while closed ends now: it does not close (nor re-open) the breaker */
    breaker_record(b, &slow_ok, BREAKER_SUCCESS);
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    fake_now += 1000;
    assert_int_equal(breaker_allow(b, &probe), BREAKER_PROBE);
    breaker_record(b, &slow_fail, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_HALF_OPEN);
    /* a rejected call's ticket is no probe either */
    assert_int_equal(breaker_allow(b, &other), BREAKER_REJECT);
    breaker_record(b, &other, BREAKER_SUCCESS);
    assert_int_equal(breaker_state(b), BREAKER_HALF_OPEN);
    breaker_record(b, &probe, BREAKER_SUCCESS);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    /* the probe's ticket cannot be used twice */
    breaker_record(b, &probe, BREAKER_FAILURE);
    call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    assert_int_equal(r.count, 3);
    breaker_free(b);
}

static struct breaker_config ratio(unsigned percent, unsigned min, unsigned window_ms)
{
    struct breaker_config c = breaker_config_default();
    c.failures = 0;
    c.ratio_percent = percent;
    c.min_requests = min;
    c.window_ms = window_ms;
    c.open_ms = 1000;
    return c;
}

static void test_opens_on_failure_ratio(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = ratio(50, 10, 10000);
    struct breaker *b = new_breaker(&cfg, &r);
    /* alternating: never a run, but half of everything fails */
    for (int i = 0; i < 4; i++) {
        call(b, BREAKER_SUCCESS);
        call(b, BREAKER_FAILURE);
    }
    call(b, BREAKER_SUCCESS);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED); /* 4/9: below the ratio */
    call(b, BREAKER_FAILURE);                           /* 5/10 */
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    assert_string_equal(r.why, "failure ratio over the window");
    breaker_free(b);
}

static void test_ratio_needs_min_requests(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = ratio(50, 10, 10000);
    struct breaker *b = new_breaker(&cfg, &r);
    for (int i = 0; i < 9; i++)
        call(b, BREAKER_FAILURE); /* 100 % but only 9 outcomes */
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    breaker_free(b);
}

static void test_ratio_window_slides(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = ratio(50, 10, 10000);
    struct breaker *b = new_breaker(&cfg, &r);
    for (int i = 0; i < 9; i++)
        call(b, BREAKER_FAILURE);
    fake_now += 10000; /* every slot of those failures has left the window */
    for (int i = 0; i < 9; i++)
        call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    fake_now += 5000; /* half the window later the last 9 still count */
    call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    breaker_free(b);
}

static void test_closing_starts_a_fresh_window(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = ratio(50, 4, 10000);
    struct breaker *b = new_breaker(&cfg, &r);
    for (int i = 0; i < 4; i++)
        call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    fake_now += 1000;
    struct breaker_ticket t;
    assert_int_equal(breaker_allow(b, &t), BREAKER_PROBE);
    breaker_record(b, &t, BREAKER_SUCCESS);
    call(b, BREAKER_FAILURE); /* the old failures are gone: 1/1 is below min_requests */
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    breaker_free(b);
}

static void test_time_spent_open(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = consecutive(1, 2000);
    struct breaker *b = new_breaker(&cfg, &r);
    struct breaker_stats st;
    call(b, BREAKER_FAILURE);
    fake_now += 1500;
    breaker_get_stats(b, &st);
    assert_int_equal(st.state, BREAKER_OPEN);
    assert_int_equal(st.open_ms_total, 1500); /* the current spell counts */
    fake_now += 500;
    struct breaker_ticket t;
    assert_int_equal(breaker_allow(b, &t), BREAKER_PROBE);
    fake_now += 250; /* half-open counts as not closed */
    breaker_record(b, &t, BREAKER_SUCCESS);
    fake_now += 10000;
    breaker_get_stats(b, &st);
    assert_int_equal(st.state, BREAKER_CLOSED);
    assert_int_equal(st.open_ms_total, 2250);
    call(b, BREAKER_FAILURE);
    fake_now += 100;
    breaker_get_stats(b, &st);
    assert_int_equal(st.open_ms_total, 2350);
    breaker_free(b);
}

static void test_disabled_never_opens(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = consecutive(0, 1000);
    struct breaker *b = new_breaker(&cfg, &r);
    for (int i = 0; i < 1000; i++)
        call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    assert_int_equal(r.count, 0);
    breaker_free(b);
}

static void test_reconfigure_keeps_the_state(void **state)
{
    (void)state;
    struct report r;
    struct breaker_config cfg = consecutive(1, 1000);
    struct breaker *b = new_breaker(&cfg, &r);
    call(b, BREAKER_FAILURE);
    struct breaker_config longer = consecutive(3, 60000);
    breaker_reconfigure(b, &longer);
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    fake_now += 1000;
    struct breaker_ticket t;
    assert_int_equal(breaker_allow(b, &t), BREAKER_REJECT); /* the new cool-down applies */
    fake_now += 59000;
    assert_int_equal(breaker_allow(b, &t), BREAKER_PROBE);
    breaker_record(b, &t, BREAKER_SUCCESS);
    call(b, BREAKER_FAILURE);
    call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED); /* the new threshold: 3 */
    call(b, BREAKER_FAILURE);
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    breaker_free(b);
}

static void test_null_name_and_free(void **state)
{
    (void)state;
    struct breaker_config cfg = breaker_config_default();
    struct breaker *b = breaker_new(&cfg, NULL, fake_clock, NULL);
    assert_non_null(b);
    breaker_free(b);
    breaker_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_opens_after_consecutive_failures),
        cmocka_unit_test(test_success_resets_the_run),
        cmocka_unit_test(test_open_rejects_until_cool_down_then_one_probe),
        cmocka_unit_test(test_failed_probe_reopens_for_a_full_cool_down),
        cmocka_unit_test(test_neutral_probe_frees_the_slot),
        cmocka_unit_test(test_outcomes_from_an_earlier_state_are_ignored),
        cmocka_unit_test(test_opens_on_failure_ratio),
        cmocka_unit_test(test_ratio_needs_min_requests),
        cmocka_unit_test(test_ratio_window_slides),
        cmocka_unit_test(test_closing_starts_a_fresh_window),
        cmocka_unit_test(test_time_spent_open),
        cmocka_unit_test(test_disabled_never_opens),
        cmocka_unit_test(test_reconfigure_keeps_the_state),
        cmocka_unit_test(test_null_name_and_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
