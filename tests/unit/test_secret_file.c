/* Unit tests for secret_file.c: mode and owner checks (warning or refusal), size bound, trailing
 * newline, single-line and PEM contents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "secret_file.h"

static char dir[64];
static char path[128];

static void write_file(const char *text, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/test_secret.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/secret", dir);
    log_init(LOG_LVL_ERROR, false); /* the mode warnings are expected */
    return 0;
}

static int teardown(void **state)
{
    unlink(path);
    return rmdir(dir);
}

static const struct secret_spec one_line = {.what = "test secret"};
static const struct secret_spec strict = {.what = "admin token", .strict = true};
static const struct secret_spec pem = {.what = "signing key", .multi_line = true, .max = 64};

static char *read_ok(const struct secret_spec *spec, size_t *len)
{
    char *s = NULL, err[256];
    if (secret_file_read(path, spec, &s, len, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return s;
}

static void read_fails(const struct secret_spec *spec, const char *needle)
{
    char *s = NULL, err[256] = "";
    assert_int_equal(secret_file_read(path, spec, &s, NULL, err, sizeof(err)), -1);
    assert_null(s);
    if (!strstr(err, needle))
        fail_msg("'%s' lacks '%s'", err, needle);
}

static void test_one_line(void **state)
{
    size_t len = 0;
    write_file("s3cret\n", 7, 0640);
    char *s = read_ok(&one_line, &len);
    assert_string_equal(s, "s3cret");
    assert_int_equal(len, 6);
    secret_free(&s);
    assert_null(s);
    secret_free(&s); /* harmless */

    write_file("crlf\r\n", 6, 0600);
    s = read_ok(&one_line, NULL);
    assert_string_equal(s, "crlf");
    secret_free(&s);

    write_file("no-newline", 10, 0400);
    s = read_ok(&one_line, NULL);
    assert_string_equal(s, "no-newline");
    secret_free(&s);

    write_file("two\n\n", 5, 0600);
    read_fails(&one_line, "holds more than one line");
    write_file("a\nb", 3, 0600);
    read_fails(&one_line, "holds more than one line");
    write_file("a\0b", 3, 0600);
    read_fails(&one_line, "NUL byte");
    write_file("\n", 1, 0600);
    read_fails(&one_line, "test secret file '");
    read_fails(&one_line, "is empty");
}

static void test_modes(void **state)
{
    write_file("x\n", 2, 0644);
    char *s = read_ok(&one_line, NULL); /* lenient: a warning only */
    assert_string_equal(s, "x");
    secret_free(&s);
    read_fails(&strict, "accessible to other users (mode 0644)");
    write_file("x\n", 2, 0660);
    read_fails(&strict, "mode 0660");
    write_file("x\n", 2, 0640);
    s = read_ok(&strict, NULL);
    assert_string_equal(s, "x");
    secret_free(&s);
}

static void test_pem_and_size(void **state)
{
    const char *key = "-----BEGIN KEY-----\nabc\n-----END KEY-----\n";
    write_file(key, strlen(key), 0600);
    char *s = read_ok(&pem, NULL);
    assert_string_equal(s, "-----BEGIN KEY-----\nabc\n-----END KEY-----");
    secret_free(&s);

    char big[80];
    memset(big, 'k', sizeof(big));
    write_file(big, 64, 0600);
    s = read_ok(&pem, NULL);
    assert_int_equal(strlen(s), 64);
    secret_free(&s);
    write_file(big, 65, 0600);
    read_fails(&pem, "is too large");
    big[63] = '\n'; /* the bound counts the file, trailing newline included */
    write_file(big, 64, 0600);
    s = read_ok(&pem, NULL);
    assert_int_equal(strlen(s), 63);
    secret_free(&s);
}

static void test_not_a_file(void **state)
{
    char *s = NULL, err[256];
    assert_int_equal(secret_file_read(dir, &one_line, &s, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is not a regular file"));
    assert_int_equal(secret_file_read("/nonexistent/x", &one_line, &s, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot read test secret file '/nonexistent/x'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_line),
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_pem_and_size),
        cmocka_unit_test(test_not_a_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
