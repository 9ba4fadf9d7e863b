/* Unit tests for what the decision does with the IdP-failure handling: a 503 carries the
 * token_info's retry_after_s (the retry_after variable, for HAProxy's Retry-After header), other
 * statuses never do; a stale token_info is answered like a cached one but tagged cache=stale. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "decision.h"

static struct decision_input input(const struct token_info *ti, const char *cache)
{
    struct decision_input in = {
        .bearer = BEARER_OK, .auth_count = 1, .ti = ti, .now = 1000, .cache = cache};
    return in;
}

/* Does the encoded ACK action list contain a set-var of name? */
static bool has_var(const struct decision *d, const char *name)
{
    uint8_t buf[4096];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    decision_put_actions(&w, d);
    assert_false(w.overflow);
    size_t n = strlen(name);
    for (size_t i = 0; i + n + 1 <= w.len; i++)
        if (buf[i] == n && memcmp(buf + i + 1, name, n) == 0)
            return true;
    return false;
}

static void test_503_carries_retry_after(void **state)
{
    (void)state;
    struct token_info *ti = token_info_new(TOKEN_IDP_UNAVAIL, "circuit open");
    ti->retry_after_s = 4;
    struct decision_input in = input(ti, "miss");
    struct decision d;
    assert_int_equal(decide(&in, &d), 0);
    assert_int_equal(d.status, 503);
    assert_int_equal(d.retry_after_s, 4);
    assert_true(has_var(&d, VAR_RETRY_AFTER));
    decision_clear(&d);
    ti->retry_after_s = 0; /* an IdP 503 without one: no variable */
    assert_int_equal(decide(&in, &d), 0);
    assert_false(has_var(&d, VAR_RETRY_AFTER));
    decision_clear(&d);
    token_unref(ti);
}

static void test_other_statuses_never_carry_retry_after(void **state)
{
    (void)state;
    static const enum token_outcome outcomes[] = {TOKEN_IDP_ERROR, TOKEN_IDP_UNKNOWN,
                                                  TOKEN_INACTIVE};
    for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++) {
        struct token_info *ti = token_info_new(outcomes[i], "x");
        ti->retry_after_s = 9;
        struct decision_input in = input(ti, "miss");
        struct decision d;
        decide(&in, &d);
        assert_int_not_equal(d.status, 503);
        assert_int_equal(d.retry_after_s, 0);
        assert_false(has_var(&d, VAR_RETRY_AFTER));
        decision_clear(&d);
        token_unref(ti);
    }
}

static void test_stale_is_tagged(void **state)
{
    (void)state;
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "x");
    ti->jwt = strdup("a.b.c");
    ti->jwt_len = 5;
    ti->claims.exp = 2000;
    ti->claims.has_exp = true;
    ti->stale = true;
    struct decision_input in = input(ti, "miss");
    struct decision d;
    assert_int_equal(decide(&in, &d), 0);
    assert_int_equal(d.status, 200);
    assert_string_equal(d.cache, "stale");
    assert_string_equal(d.jwt, "a.b.c");
    decision_clear(&d);
    /* its own exp still rules: an expired token is refused even from a stale entry */
    in.now = 2000;
    decide(&in, &d);
    assert_int_equal(d.status, 401);
    decision_clear(&d);
    ti->stale = false;
    in.now = 1000;
    decide(&in, &d);
    assert_string_equal(d.cache, "miss");
    decision_clear(&d);
    token_unref(ti);
}

static void test_l2_answer_is_tagged(void **state)
{
    (void)state;
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "x");
    ti->jwt = strdup("a.b.c");
    ti->jwt_len = 5;
    ti->from_l2 = true;
    const char *lookups[][2] = {{"miss", "l2"}, {"coalesced", "coalesced"}, {"hit", "hit"}};
    for (size_t i = 0; i < sizeof(lookups) / sizeof(lookups[0]); i++) {
        struct decision_input in = input(ti, lookups[i][0]);
        struct decision d;
        assert_int_equal(decide(&in, &d), 0);
        assert_int_equal(d.status, 200);
        assert_string_equal(d.cache, lookups[i][1]);
        decision_clear(&d);
    }
    token_unref(ti);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_503_carries_retry_after),
        cmocka_unit_test(test_other_statuses_never_carry_retry_after),
        cmocka_unit_test(test_stale_is_tagged),
        cmocka_unit_test(test_l2_answer_is_tagged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
