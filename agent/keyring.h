/* The gateway's signing key set: the key that signs minted JWTs plus the previous keys that stay
 * published during a rotation, and the JWKS document built from them. Immutable and
 * reference-counted: a reload builds a new set and swaps it in, signers holding the old one keep
 * it until they drop it. Used by mint.c/finish.c (signing) and the HTTP server (JWKS). */
#ifndef PTA_KEYRING_H
#define PTA_KEYRING_H

#include <stdbool.h>
#include <stddef.h>

#include "jws.h"

#define KEYRING_MAX_KEYS 16
#define KEYRING_MAX_FILE (64 * 1024) /* a PEM key larger than this is not a key */

struct keyring {
    int refcnt; /* atomic */
    struct jws_key *keys[KEYRING_MAX_KEYS];
    size_t nkeys; /* keys[0] signs; all are published */
    char *jwks;   /* {"keys":[...]}, NUL-terminated */
    size_t jwks_len;
};

/* Reads PEM files; paths[0] is the signing key (a private key), the others may be private or
 * public keys (only their public parts are published). Each file is read by secret_file.c's strict
 * rule: a regular file of at most KEYRING_MAX_FILE bytes, not accessible to other users nor
 * group-writable, owned by the agent's user or root (refused: a signing key is a secret). Two
 * files holding the same key are refused. Returns the set
 * (refcnt 1), or NULL with a message in err that names the file, never key material. */
struct keyring *keyring_load(const char *const *paths, size_t npaths, char *err, size_t errlen);

/* Builds a set from keys already made (taken over, also on failure): for tests and benchmarks. */
struct keyring *keyring_from_keys(struct jws_key **keys, size_t nkeys, char *err, size_t errlen);

struct keyring *keyring_ref(struct keyring *kr);
void keyring_unref(struct keyring *kr); /* NULL is a no-op */

static inline const struct jws_key *keyring_signer(const struct keyring *kr)
{
    return kr && kr->nkeys ? kr->keys[0] : NULL;
}

/* Writes the set's JWKS to path atomically (a temporary file in the same directory, fsync, rename),
 * mode 0644: it holds public keys only, and APIs read it. Returns 0 or -1 with err set. */
int keyring_write_jwks(const struct keyring *kr, const char *path, char *err, size_t errlen);

/* Reads a key file with the checks above into a fresh NUL-terminated buffer (*len bytes), which
 * the caller frees with keyring_free_secret(). Returns 0 or -1 with err set. */
int keyring_read_file(const char *path, char **out, size_t *len, char *err, size_t errlen);
void keyring_free_secret(char *buf, size_t len); /* cleanses, then frees */

#endif
