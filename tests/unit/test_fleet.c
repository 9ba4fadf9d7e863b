/* fleet.c's pure half: purge selectors to pub/sub messages and back, through the real codec
 * (encrypted, authenticated, replay-checked), for every selector kind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fleet.h"

static const char FLEET_KEY[] = "a fleet key of at least thirty-two bytes, for tests";

/* sel -> message -> bytes on the channel -> message -> selector. */
static void roundtrip(const struct purge_selector *sel, struct purge_selector *out)
{
    struct l2_codec *c = l2_codec_new((const uint8_t *)FLEET_KEY, sizeof(FLEET_KEY) - 1);
    assert_non_null(c);
    struct l2_purge_msg m, back;
    uint8_t *blob = NULL;
    size_t len = 0;
    struct l2_replay rp;
    l2_replay_init(&rp);
    assert_int_equal(fleet_msg_from_selector(sel, &m), 0);
    m.ts_ms = 1700000000000;
    assert_int_equal(l2_purge_encode(c, "pta:purge", &m, &blob, &len), L2_OK);
    assert_int_equal(
        l2_purge_decode(c, "pta:purge", blob, len, 1700000000500, FLEET_MAX_AGE_MS, &rp, &back),
        L2_OK);
    /* The same bytes again: a replay. On another channel: not authentic. */
    assert_int_equal(
        l2_purge_decode(c, "pta:purge", blob, len, 1700000000500, FLEET_MAX_AGE_MS, &rp, &back),
        L2_E_REPLAY);
    assert_int_not_equal(
        l2_purge_decode(c, "other:purge", blob, len, 1700000000500, FLEET_MAX_AGE_MS, NULL, &back),
        L2_OK);
    assert_int_equal(l2_purge_decode(c, "pta:purge", blob, len,
                                     1700000000000 + FLEET_MAX_AGE_MS + 1, FLEET_MAX_AGE_MS, NULL,
                                     &back),
                     L2_E_EXPIRED);
    assert_int_equal(
        l2_purge_decode(c, "pta:purge", blob, len, 1700000000500, FLEET_MAX_AGE_MS, NULL, &back),
        L2_OK);
    assert_int_equal(fleet_selector_from_msg(&back, out), 0);
    free(blob);
    l2_codec_free(c);
}

static void test_value_kinds(void **state)
{
    const enum purge_kind kinds[] = {PURGE_SUB, PURGE_CLIENT_ID, PURGE_SID};
    for (size_t i = 0; i < 3; i++) {
        struct purge_selector sel = {.kind = kinds[i], .value = "alice@example"}, out;
        roundtrip(&sel, &out);
        assert_int_equal(out.kind, kinds[i]);
        assert_string_equal(out.value, "alice@example");
        purge_selector_clear(&out);
    }
}

static void test_token_kinds_and_all(void **state)
{
    struct purge_selector sel = {.kind = PURGE_TOKEN}, out;
    for (int i = 0; i < PURGE_KEY_LEN; i++)
        sel.key[i] = (uint8_t)(i * 7);
    roundtrip(&sel, &out);
    assert_int_equal(out.kind, PURGE_TOKEN);
    assert_memory_equal(out.key, sel.key, PURGE_KEY_LEN);
    assert_null(out.value);

    struct purge_selector h = {.kind = PURGE_TOKEN_HASH,
                               .id = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x23}};
    roundtrip(&h, &out);
    assert_int_equal(out.kind, PURGE_TOKEN_HASH);
    assert_memory_equal(out.id, h.id, PURGE_ID_LEN);

    struct purge_selector all = {.kind = PURGE_ALL};
    roundtrip(&all, &out);
    assert_int_equal(out.kind, PURGE_ALL);
}

static void test_bad_messages(void **state)
{
    struct l2_purge_msg m = {.kind = L2_PURGE_TOKEN_ID, .value_len = 12};
    struct purge_selector out;
    memcpy(m.value, "0123456789AB", 12); /* upper case is not what we send */
    assert_int_equal(fleet_selector_from_msg(&m, &out), -1);
    m.kind = L2_PURGE_SUB;
    m.value_len = 0;
    assert_int_equal(fleet_selector_from_msg(&m, &out), -1);
    m.value_len = 3;
    memcpy(m.value, "a\0b", 3);
    assert_int_equal(fleet_selector_from_msg(&m, &out), -1);
    m.kind = L2_PURGE_ENTRY_KEY;
    assert_int_equal(fleet_selector_from_msg(&m, &out), -1);
    m.kind = L2_PURGE_KIND_COUNT;
    assert_int_equal(fleet_selector_from_msg(&m, &out), -1);
    struct purge_selector empty = {.kind = PURGE_SUB, .value = ""};
    assert_int_equal(fleet_msg_from_selector(&empty, &m), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_kinds),
        cmocka_unit_test(test_token_kinds_and_all),
        cmocka_unit_test(test_bad_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
