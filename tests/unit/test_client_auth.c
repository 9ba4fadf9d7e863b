/* Unit tests for client_auth.c: RFC 6749 appendix B form encoding, the Basic header of 2.3.1 (id
 * and secret form-encoded before base64) and the client_secret_post fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "client_auth.h"

static void test_form_encode(void **state)
{
    char out[64];
    size_t n = client_auth_form_encode("aZ09-._~ +&=:%/\xff", 16, out);
    out[n] = '\0';
    assert_string_equal(out, "aZ09-._~+%2B%26%3D%3A%25%2F%FF");
    assert_int_equal(client_auth_form_encode("", 0, out), 0);
    char nul[3] = {'a', '\0', 'b'};
    n = client_auth_form_encode(nul, 3, out);
    out[n] = '\0';
    assert_string_equal(out, "a%00b");

    char *d = client_auth_form_encode_dup("s3cret:with&odd=chars+and spaces");
    assert_string_equal(d, "s3cret%3Awith%26odd%3Dchars%2Band+spaces");
    client_auth_free(d);
    client_auth_free(NULL);
}

/* Decodes the base64 part of a Basic header. */
static void basic_plain(const char *hdr, char *out, size_t cap)
{
    static const char prefix[] = "Authorization: Basic ";
    assert_int_equal(strncmp(hdr, prefix, sizeof(prefix) - 1), 0);
    const char *b64 = hdr + sizeof(prefix) - 1;
    assert_true(strlen(b64) / 4 * 3 < cap);
    int n = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)b64, (int)strlen(b64));
    assert_true(n >= 0);
    while (n > 0 && out[n - 1] == '\0') /* EVP_DecodeBlock counts the padding */
        n--;
    out[n] = '\0';
}

static void test_basic_header(void **state)
{
    char plain[256];
    char *h = client_auth_basic_header("phantom-agent", "s3cret:with&odd=chars+and spaces");
    basic_plain(h, plain, sizeof(plain));
    assert_string_equal(plain, "phantom-agent:s3cret%3Awith%26odd%3Dchars%2Band+spaces");
    client_auth_free(h);

    /* RFC 6749 2.3.1's own example credentials */
    h = client_auth_basic_header("s6BhdRkqt3", "7Fjfp0ZBr1KtDRbnfVdmIw");
    assert_string_equal(h, "Authorization: Basic czZCaGRSa3F0Mzo3RmpmcDBaQnIxS3REUmJuZlZkbUl3");
    client_auth_free(h);

    h = client_auth_basic_header("id:with colon", NULL); /* no secret: empty */
    basic_plain(h, plain, sizeof(plain));
    assert_string_equal(plain, "id%3Awith+colon:");
    client_auth_free(h);
}

static void test_post_fields(void **state)
{
    char *f = client_auth_post_fields("my client", "p&ss=");
    assert_string_equal(f, "&client_id=my+client&client_secret=p%26ss%3D");
    client_auth_free(f);
    f = client_auth_post_fields("public-client", NULL);
    assert_string_equal(f, "&client_id=public-client");
    client_auth_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form_encode),
        cmocka_unit_test(test_basic_header),
        cmocka_unit_test(test_post_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
