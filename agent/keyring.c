/* Key set construction. The only I/O is reading the PEM files; everything else goes through
 * jws.c. The JWKS text is rendered once per set, so serving it costs a memcpy. */
#include "keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "secret_file.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void keyring_free_secret(char *buf, size_t len)
{
    if (!buf)
        return;
    OPENSSL_cleanse(buf, len);
    free(buf);
}

/* A signing key is a secret: the strict rule of secret_file.c (mode 0640 or stricter, owned by
 * the agent's user or root), refused rather than warned about, since a key others can read lets
 * them mint tokens every API accepts. */
static const struct secret_spec key_spec = {
    .what = "signing key", .max = KEYRING_MAX_FILE, .multi_line = true, .strict = true};

int keyring_read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    return secret_file_read(path, &key_spec, out, len, err, errlen);
}

/* {"keys":[jwk...]} in the set's order (the signing key first). */
static int render_jwks(struct keyring *kr)
{
    json_t *doc = json_object(), *arr = json_array();
    int bad = !doc || !arr;
    for (size_t i = 0; !bad && i < kr->nkeys; i++)
        bad = json_array_append(arr, kr->keys[i]->jwk) < 0;
    if (!bad && json_object_set(doc, "keys", arr) == 0)
        kr->jwks = json_dumps(doc, JSON_COMPACT);
    json_decref(arr);
    json_decref(doc);
    if (!kr->jwks)
        return -1;
    kr->jwks_len = strlen(kr->jwks);
    return 0;
}

void keyring_unref(struct keyring *kr)
{
    if (!kr || __atomic_sub_fetch(&kr->refcnt, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < kr->nkeys; i++)
        jws_key_free(kr->keys[i]);
    free(kr->jwks);
    free(kr);
}

struct keyring *keyring_ref(struct keyring *kr)
{
    if (kr)
        __atomic_add_fetch(&kr->refcnt, 1, __ATOMIC_RELAXED);
    return kr;
}

static int check_set(struct jws_key **keys, size_t nkeys, char *err, size_t errlen)
{
    if (nkeys == 0)
        return fail(err, errlen, "no signing key");
    if (nkeys > KEYRING_MAX_KEYS)
        return fail(err, errlen, "more than %d keys", KEYRING_MAX_KEYS);
    if (!keys[0]->has_private)
        return fail(err, errlen, "the first key signs and must be a private key");
    for (size_t i = 0; i < nkeys; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(keys[i]->kid, keys[j]->kid) == 0)
                return fail(err, errlen, "key %zu is the same key as key %zu (kid %s)", i + 1,
                            j + 1, keys[i]->kid);
    return 0;
}

struct keyring *keyring_from_keys(struct jws_key **keys, size_t nkeys, char *err, size_t errlen)
{
    struct keyring *kr = NULL;
    if (check_set(keys, nkeys, err, errlen) == 0 && !(kr = calloc(1, sizeof(*kr))))
        fail(err, errlen, "out of memory");
    if (!kr) {
        for (size_t i = 0; i < nkeys; i++)
            jws_key_free(keys[i]);
        return NULL;
    }
    kr->refcnt = 1;
    for (size_t i = 0; i < nkeys; i++)
        kr->keys[kr->nkeys++] = keys[i];
    if (render_jwks(kr) < 0) {
        fail(err, errlen, "out of memory");
        keyring_unref(kr);
        return NULL;
    }
    return kr;
}

static struct jws_key *load_one(const char *path, bool allow_public, char *err, size_t errlen)
{
    char *pem;
    size_t len;
    if (keyring_read_file(path, &pem, &len, err, errlen) < 0)
        return NULL;
    char why[160];
    struct jws_key *k = jws_key_from_pem(pem, len, allow_public, why, sizeof(why));
    keyring_free_secret(pem, len);
    if (!k)
        fail(err, errlen, "key file '%s': %s", path, why);
    return k;
}

struct keyring *keyring_load(const char *const *paths, size_t npaths, char *err, size_t errlen)
{
    struct jws_key *keys[KEYRING_MAX_KEYS];
    if (npaths == 0) {
        fail(err, errlen, "no signing key");
        return NULL;
    }
    if (npaths > KEYRING_MAX_KEYS) {
        fail(err, errlen, "more than %d signing-key-file entries", KEYRING_MAX_KEYS);
        return NULL;
    }
    for (size_t i = 0; i < npaths; i++) {
        keys[i] = load_one(paths[i], i > 0, err, errlen);
        if (!keys[i]) {
            for (size_t j = 0; j < i; j++)
                jws_key_free(keys[j]);
            return NULL;
        }
    }
    return keyring_from_keys(keys, npaths, err, errlen);
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int keyring_write_jwks(const struct keyring *kr, const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return fail(err, errlen, "jwks-file path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return fail(err, errlen, "cannot write jwks-file '%s': %s", tmp, strerror(errno));
    /* The umask may have narrowed the mode: APIs running as other users must read it. */
    int bad = fchmod(fd, 0644) < 0 || write_all(fd, kr->jwks, kr->jwks_len) < 0 ||
              write_all(fd, "\n", 1) < 0 || fsync(fd) < 0;
    int saved = errno;
    if (close(fd) < 0 && !bad) {
        bad = 1;
        saved = errno;
    }
    if (bad || rename(tmp, path) < 0) {
        if (!bad)
            saved = errno;
        unlink(tmp);
        return fail(err, errlen, "cannot write jwks-file '%s': %s", path, strerror(saved));
    }
    return 0;
}
