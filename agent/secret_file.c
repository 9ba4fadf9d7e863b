/* Secret files: checked before they are read, wiped after. */
#include "secret_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"

#define SECRET_DEFAULT_MAX 4096
/* 0640 root:<service group> is the recommended mode: group write and any access by others are
 * what make a secret file unsafe. */
#define LOOSE_BITS (S_IWGRP | S_IRWXO)

static int check_file(int fd, const char *path, const struct secret_spec *spec, char *err,
                      size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s file '%s' is not a regular file", spec->what, path);
        return -1;
    }
    unsigned mode = (unsigned)(st.st_mode & 07777);
    if ((st.st_mode & LOOSE_BITS) && spec->strict) {
        snprintf(err, errlen,
                 "%s file '%s' is accessible to other users (mode %04o); use 0640 or "
                 "stricter",
                 spec->what, path, mode);
        return -1;
    }
    if (st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP))
        log_warn("%s file %s is accessible to other users (mode %04o); use 0640 or stricter",
                 spec->what, path, mode);
    if (spec->strict && st.st_uid != geteuid() && st.st_uid != 0) {
        snprintf(err, errlen, "%s file '%s' belongs to uid %u, neither the agent's user nor root",
                 spec->what, path, (unsigned)st.st_uid);
        return -1;
    }
    return 0;
}

/* Reads at most max + 1 bytes, so that "too large" is seen without reading the whole file. */
static ssize_t read_bounded(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t r;
    while (n < cap && (r = read(fd, buf + n, cap - n)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        n += (size_t)r;
    }
    return (ssize_t)n;
}

static const char *check_content(const char *buf, size_t n, const struct secret_spec *spec)
{
    if (n == 0)
        return "is empty";
    if (memchr(buf, '\0', n))
        return "holds a NUL byte";
    if (!spec->multi_line && (memchr(buf, '\n', n) || memchr(buf, '\r', n)))
        return "holds more than one line";
    return NULL;
}

int secret_file_read(const char *path, const struct secret_spec *spec, char **out, size_t *len_out,
                     char *err, size_t errlen)
{
    size_t max = spec->max ? spec->max : SECRET_DEFAULT_MAX;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read %s file '%s': %s", spec->what, path, strerror(errno));
        return -1;
    }
    if (check_file(fd, path, spec, err, errlen) < 0) {
        close(fd);
        return -1;
    }
    char *buf = malloc(max + 1);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ssize_t got = read_bounded(fd, buf, max + 1);
    close(fd);
    int rc = -1;
    size_t n = got > 0 ? (size_t)got : 0;
    const char *why = NULL;
    if (got < 0)
        why = "cannot be read";
    else if (n > max)
        why = "is too large";
    if (!why && n && buf[n - 1] == '\n')
        n--;
    if (!why && n && buf[n - 1] == '\r')
        n--;
    if (!why)
        why = check_content(buf, n, spec);
    if (why) {
        snprintf(err, errlen, "%s file '%s' %s", spec->what, path, why);
    } else if (!(*out = malloc(n + 1))) {
        snprintf(err, errlen, "out of memory");
    } else {
        memcpy(*out, buf, n);
        (*out)[n] = '\0';
        if (len_out)
            *len_out = n;
        rc = 0;
    }
    OPENSSL_cleanse(buf, max + 1);
    free(buf);
    return rc;
}

void secret_free(char **s)
{
    if (!*s)
        return;
    OPENSSL_cleanse(*s, strlen(*s));
    free(*s);
    *s = NULL;
}
