/* bearer_parse(): RFC 6750 credentials, one case per rule of the grammar. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bearer.h"

/* Parses a NUL-terminated header (the length is strlen) and returns the result. */
static enum bearer_result parse(const char *hdr, const char **tok, size_t *tok_len)
{
    return bearer_parse(hdr, hdr ? strlen(hdr) : 0, tok, tok_len);
}

static void expect_ok(const char *hdr, const char *token)
{
    const char *tok = NULL;
    size_t n = 0;
    assert_int_equal(parse(hdr, &tok, &n), BEARER_OK);
    assert_non_null(tok);
    assert_int_equal(n, strlen(token));
    assert_memory_equal(tok, token, n);
    /* The token is borrowed from the header, never copied. */
    assert_true(tok >= hdr && tok + n <= hdr + strlen(hdr));
}

static void expect(const char *hdr, enum bearer_result want)
{
    const char *tok = (const char *)1;
    size_t n = 99;
    assert_int_equal(parse(hdr, &tok, &n), want);
    assert_null(tok);
    assert_int_equal(n, 0);
}

static void test_simple(void **state)
{
    expect_ok("Bearer abc", "abc");
    expect_ok("Bearer mF_9.B5f-4.1JqM", "mF_9.B5f-4.1JqM");
    expect_ok("Bearer a~b+c/d", "a~b+c/d");
    expect_ok("Bearer x", "x");
}

static void test_scheme_case_insensitive(void **state)
{
    expect_ok("bearer abc", "abc");
    expect_ok("BEARER abc", "abc");
    expect_ok("bEaReR abc", "abc");
}

static void test_many_spaces(void **state)
{
    expect_ok("Bearer  abc", "abc");
    expect_ok("Bearer               abc", "abc"); /* 15 spaces */
}

static void test_trailing_whitespace(void **state)
{
    expect_ok("Bearer abc ", "abc");
    expect_ok("Bearer abc \t \t", "abc");
    expect_ok("Bearer abc\t", "abc");
}

static void test_padding(void **state)
{
    expect_ok("Bearer abc=", "abc=");
    expect_ok("Bearer abc==", "abc==");
    expect_ok("Bearer abc=== ", "abc===");
    expect("Bearer abc=def", BEARER_MALFORMED); /* "=" only at the end */
    expect("Bearer =", BEARER_MALFORMED);       /* at least one token char first */
    expect("Bearer ==abc", BEARER_MALFORMED);
}

static void test_missing(void **state)
{
    expect(NULL, BEARER_MISSING);
    expect("", BEARER_MISSING);
    expect(" ", BEARER_MISSING);
    expect(" \t  ", BEARER_MISSING);
    /* A NULL header with a non-zero length is still absent. */
    assert_int_equal(bearer_parse(NULL, 12, NULL, NULL), BEARER_MISSING);
}

static void test_other_scheme(void **state)
{
    expect("Basic dXNlcjpwYXNz", BEARER_NOT_BEARER);
    expect("Bearerx", BEARER_NOT_BEARER);
    expect("Bearerx abc", BEARER_NOT_BEARER);
    expect("Bear", BEARER_NOT_BEARER);
    expect("Bear abc", BEARER_NOT_BEARER);
    expect("DPoP abc", BEARER_NOT_BEARER);
    expect("abc", BEARER_NOT_BEARER);
    /* Anchored: HAProxy strips leading whitespace, so anything before the scheme is another one. */
    expect(" Bearer abc", BEARER_NOT_BEARER);
}

static void test_no_token(void **state)
{
    expect("Bearer", BEARER_MALFORMED);
    expect("bearer", BEARER_MALFORMED);
    expect("Bearer ", BEARER_MALFORMED);
    expect("Bearer   ", BEARER_MALFORMED);
    expect("Bearer \t", BEARER_MALFORMED);
}

static void test_bad_separator(void **state)
{
    expect("Bearer\tabc", BEARER_MALFORMED); /* RFC 6750: 1*SP, not a tab */
}

static void test_bad_chars(void **state)
{
    expect("Bearer abc,def", BEARER_MALFORMED);
    expect("Bearer abc def", BEARER_MALFORMED);
    expect("Bearer \"abc\"", BEARER_MALFORMED);
    expect("Bearer abc\"", BEARER_MALFORMED);
    expect("Bearer ab\xc3\xa9", BEARER_MALFORMED); /* UTF-8 é */
    expect("Bearer ab\x80", BEARER_MALFORMED);
    expect("Bearer ab\x01z", BEARER_MALFORMED);
    expect("Bearer abc\r\nX-Evil: 1", BEARER_MALFORMED);
    expect("Bearer abc\x7f", BEARER_MALFORMED);
    expect("Bearer abc;", BEARER_MALFORMED);
    expect("Bearer a%62", BEARER_MALFORMED);
    expect("Bearer abc, Basic x", BEARER_MALFORMED);
}

static void test_embedded_nul(void **state)
{
    static const char hdr[] = "Bearer ab\0cd";
    const char *tok;
    size_t n;
    assert_int_equal(bearer_parse(hdr, sizeof(hdr) - 1, &tok, &n), BEARER_MALFORMED);
}

static void test_len_bounds_the_parse(void **state)
{
    /* Bytes past len are not looked at, whatever they are. */
    const char *hdr = "Bearer abc,,,";
    const char *tok;
    size_t n;
    assert_int_equal(bearer_parse(hdr, 10, &tok, &n), BEARER_OK);
    assert_int_equal(n, 3);
    assert_int_equal(bearer_parse(hdr, 6, &tok, &n), BEARER_MALFORMED);
    assert_int_equal(bearer_parse(hdr, 4, &tok, &n), BEARER_NOT_BEARER);
}

static char *header_with_token(size_t toklen)
{
    char *h = malloc(7 + toklen + 1);
    assert_non_null(h);
    memcpy(h, "Bearer ", 7);
    memset(h + 7, 'a', toklen);
    h[7 + toklen] = '\0';
    return h;
}

static void test_max_length(void **state)
{
    char *h = header_with_token(BEARER_MAX_TOKEN);
    const char *tok;
    size_t n;
    assert_int_equal(parse(h, &tok, &n), BEARER_OK);
    assert_int_equal(n, BEARER_MAX_TOKEN);
    free(h);

    h = header_with_token(BEARER_MAX_TOKEN + 1);
    expect(h, BEARER_MALFORMED);
    free(h);
}

static void test_null_out_pointers(void **state)
{
    assert_int_equal(bearer_parse("Bearer abc", 10, NULL, NULL), BEARER_OK);
    assert_int_equal(bearer_parse("Basic abc", 9, NULL, NULL), BEARER_NOT_BEARER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),        cmocka_unit_test(test_scheme_case_insensitive),
        cmocka_unit_test(test_many_spaces),   cmocka_unit_test(test_trailing_whitespace),
        cmocka_unit_test(test_padding),       cmocka_unit_test(test_missing),
        cmocka_unit_test(test_other_scheme),  cmocka_unit_test(test_no_token),
        cmocka_unit_test(test_bad_separator), cmocka_unit_test(test_bad_chars),
        cmocka_unit_test(test_embedded_nul),  cmocka_unit_test(test_len_bounds_the_parse),
        cmocka_unit_test(test_max_length),    cmocka_unit_test(test_null_out_pointers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
