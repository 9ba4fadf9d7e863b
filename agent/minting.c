/* Building the minting settings from the options. Everything is checked here, at load time, so
 * that --check-config reports it and a reload with a bad key keeps the running configuration. */
#include "minting.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "memdup.h"

static const char EMPTY_JWKS[] = "{\"keys\":[]}";

void minting_clear(struct minting *m)
{
    keyring_unref(m->minter.keys);
    mint_claims_free(m->claims);
    mint_claims_free(m->audiences); /* the same shape: a NULL-terminated array of strings */
    memset(m, 0, sizeof(*m));
}

/* Splits "a.pem, b.pem" (commas and/or spaces) into paths[] (pointers into buf). */
static int split_paths(char *buf, const char **paths, size_t max, size_t *n, char *err,
                       size_t errlen)
{
    *n = 0;
    for (char *save = NULL, *p = strtok_r(buf, ", \t", &save); p;
         p = strtok_r(NULL, ", \t", &save)) {
        if (*n == max) {
            snprintf(err, errlen, "signing-key-file: more than %d files", KEYRING_MAX_KEYS);
            return -1;
        }
        paths[(*n)++] = p;
    }
    return 0;
}

static int load_keys(struct minting *m, const char *files, char *err, size_t errlen)
{
    if (!files || !*files)
        return 0;
    char *buf = strdup(files);
    const char *paths[KEYRING_MAX_KEYS];
    size_t n;
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = split_paths(buf, paths, KEYRING_MAX_KEYS, &n, err, errlen);
    if (rc == 0 && n > 0) {
        char why[CONFIG_MINT_ERR];
        m->minter.keys = keyring_load(paths, n, why, sizeof(why));
        if (!m->minter.keys) {
            snprintf(err, errlen, "signing-key-file: %s", why);
            rc = -1;
        }
    }
    free(buf);
    return rc;
}

/* jwt-audience: a list, the first is the default. Audiences are printable ASCII without spaces. */
static int parse_audiences(struct minting *m, const char *list, char *err, size_t errlen)
{
    if (!list || !*list)
        return 0;
    m->audiences = calloc(MINTING_MAX_AUDIENCES + 1, sizeof(*m->audiences));
    if (!m->audiences) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t n = 0;
    for (const char *p = list; *p;) {
        p += strspn(p, ", \t");
        size_t len = strcspn(p, ", \t");
        if (!len)
            continue;
        bool ok = len <= MINTING_MAX_AUDIENCE && n < MINTING_MAX_AUDIENCES;
        for (size_t i = 0; ok && i < len; i++)
            ok = (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f && p[i] != '"';
        if (!ok) {
            snprintf(err, errlen,
                     "bad value for jwt-audience: at most %d audiences of at most %d printable "
                     "characters",
                     MINTING_MAX_AUDIENCES, MINTING_MAX_AUDIENCE);
            return -1;
        }
        if (!(m->audiences[n++] = mem_strdup(p, len))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        p += len;
    }
    return 0;
}

static int parse_lists(struct minting *m, const struct minting_options *o, char *err, size_t errlen)
{
    if (o->jwt_source && jwt_source_parse(o->jwt_source, &m->mode) < 0) {
        snprintf(err, errlen, "bad value for jwt-source: '%.32s' (expected auto, idp or mint)",
                 o->jwt_source);
        return -1;
    }
    char why[CONFIG_MINT_ERR];
    if (o->inactive_statuses &&
        idp_parse_statuses(o->inactive_statuses, &m->inactive, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    if (o->jwt_claims && mint_parse_claims(o->jwt_claims, &m->claims, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "bad value for jwt-claims: %s", why);
        return -1;
    }
    return parse_audiences(m, o->jwt_audience, err, errlen);
}

int minting_load(struct minting *m, const struct minting_options *o, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    m->mode = JWT_SOURCE_AUTO;
    if (parse_lists(m, o, err, errlen) < 0 || load_keys(m, o->signing_key_files, err, errlen) < 0) {
        minting_clear(m);
        return -1;
    }
    m->minter.settings = (struct mint_settings){
        .issuer = o->jwt_issuer,
        .audience = m->audiences ? m->audiences[0] : NULL,
        .max_lifetime = o->jwt_max_lifetime_s ? o->jwt_max_lifetime_s : MINT_DEFAULT_MAX_LIFETIME,
        .claims = (const char *const *)m->claims,
    };
    char msg[CONFIG_MINT_ERR];
    int r = finish_check(m->mode, &m->minter.settings, m->minter.keys != NULL, msg, sizeof(msg));
    if (r < 0) {
        snprintf(err, errlen, "%s", msg);
        minting_clear(m);
        return -1;
    }
    if (r > 0)
        log_warn("%s", msg);
    m->can_mint = r == 0 && m->mode != JWT_SOURCE_IDP;
    if (m->audiences && m->audiences[0])
        m->minter.extra_audiences = (const char *const *)m->audiences + 1;
    /* Kept whenever the mode may mint, even when it cannot: finish() then says precisely what is
     * missing for each answer that needed it (502), instead of a vaguer classification error. */
    m->classify.keep_claims = jwt_source_needs_claims(m->mode);
    m->classify.inactive = &m->inactive;
    return 0;
}

const char *minting_jwks(const struct minting *m, size_t *len)
{
    if (m->minter.keys) {
        *len = m->minter.keys->jwks_len;
        return m->minter.keys->jwks;
    }
    *len = sizeof(EMPTY_JWKS) - 1;
    return EMPTY_JWKS;
}
