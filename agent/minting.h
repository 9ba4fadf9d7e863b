/* The daemon's side of minting (issue 11): the jwt-* options turned into what the finishing stage,
 * the classification and the JWKS route use: the jwt-source mode, the signing key set, the mint
 * settings, the inactive statuses. Built by config_finalize() with the rest of the configuration,
 * so a reload builds a new one and swaps it with the configuration. Used by config*.c, agent.c
 * (finish stage), introspect.c (classification settings) and main.c (JWKS). */
#ifndef PTA_MINTING_H
#define PTA_MINTING_H

#include <stdbool.h>
#include <stddef.h>

#include "finish.h"
#include "idp_response.h"
#include "keyring.h"

#define CONFIG_MINT_ERR 256
#define MINTING_MAX_AUDIENCES 8
#define MINTING_MAX_AUDIENCE 256

/* The option values, as config.c holds them (borrowed; NULL: unset). */
struct minting_options {
    const char *jwt_source;        /* "auto" (default), "idp", "mint" */
    const char *signing_key_files; /* "a.pem, b.pem": the first signs */
    const char *jwt_issuer;
    const char *jwt_audience; /* "aud1, aud2": the first is the default, the others are the
                                 audiences routes may ask for (SPOE argument audience) */
    unsigned jwt_max_lifetime_s;
    const char *jwt_claims;        /* allow-list of extra claims; NULL: the default list */
    const char *inactive_statuses; /* "400, 404"; NULL: none */
};

struct minting {
    enum jwt_source mode;
    struct minter minter; /* settings borrow the option strings; keys owned (may be NULL) */
    bool can_mint;        /* keys, issuer and audience are all there */
    char **claims;        /* owned allow-list, or NULL (the default) */
    char **audiences;     /* jwt-audience split, NULL-terminated, owned; [0] is the default */
    struct idp_status_set inactive;
    struct idp_settings classify; /* for introspect.c: keep_claims, &inactive */
};

/* Builds *m from o: parses the mode, the statuses and the claim list, loads the key files (modes
 * checked, see keyring.h). Returns 0, or -1 with err set (m left empty). When mode auto cannot
 * mint, returns 0 and logs what is missing once (see finish_check()). m must not move afterwards
 * (m->classify points into it). */
int minting_load(struct minting *m, const struct minting_options *o, char *err, size_t errlen);
void minting_clear(struct minting *m);

/* The JWKS document of m's keys ({"keys":[]} without keys): static or owned by m. */
const char *minting_jwks(const struct minting *m, size_t *len);

#endif
