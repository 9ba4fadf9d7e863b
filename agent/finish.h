/* The finishing stage of the resolver: after classification, decides per deployment mode whether
 * the API gets the IdP's own JWT or one the gateway mints (mint.h), and builds the final entry.
 * Pure (the clock and the key set come in); called by the resolver pipeline. */
#ifndef PTA_FINISH_H
#define PTA_FINISH_H

#include <stdint.h>

#include "keyring.h"
#include "mint.h"
#include "token.h"

/* jwt-source: where the forwarded JWT comes from. */
enum jwt_source {
    JWT_SOURCE_AUTO, /* forward an IdP access-token JWT; mint for plain JSON and RFC 9701 */
    JWT_SOURCE_IDP,  /* forward what the IdP gave; plain JSON is an IdP error (502) */
    JWT_SOURCE_MINT, /* always mint, even when the IdP sent a JWT */
};

/* "auto", "idp", "mint" (case-sensitive). Returns 0 or -1. */
int jwt_source_parse(const char *s, enum jwt_source *out);
const char *jwt_source_name(enum jwt_source m);

/* Whether classification must keep the introspected claims (idp_settings.keep_claims). */
static inline bool jwt_source_needs_claims(enum jwt_source m)
{
    return m != JWT_SOURCE_IDP;
}

struct minter {
    struct mint_settings settings;
    struct keyring *keys; /* borrowed; may be NULL (then nothing can be minted) */
    /* Keep ti->introspection on minted entries (needed to re-mint for another audience later);
     * off, the entry drops it to save memory. */
    bool keep_introspection;
    /* Other audiences routes may ask for (SPOE argument audience), NULL-terminated or NULL: each
     * gets its own minted JWT in the entry (token_jwt_for()), so a hit never signs. */
    const char *const *extra_audiences;
};

/* Takes over ti (the classified answer) and returns the entry to store and answer with, or NULL
 * only when ti is NULL or out of memory. Entries that are not TOKEN_ACTIVE pass through. An
 * active entry:
 *   mode idp:  IDP_KIND_CLAIMS -> TOKEN_IDP_ERROR "IdP said active but returned no JWT"; the rest
 *              is forwarded as it is.
 *   mode auto: IDP_KIND_JWT forwarded; IDP_KIND_CLAIMS and IDP_KIND_INTROSPECTION minted.
 *   mode mint: always minted.
 * Minting needs ti->introspection and m with a signing key, else TOKEN_IDP_ERROR (fail closed).
 * A minted entry is a new token_info: jwt = the minted JWT, minted = true, claims copied with
 * exp = the minted JWT's exp (so the cache never serves it past its own expiry), kind and cache
 * hints kept. A token whose exp is already past becomes TOKEN_INACTIVE. audience overrides the
 * configured one (may be NULL). */
struct token_info *finish(struct token_info *ti, enum jwt_source mode, const struct minter *m,
                          const char *audience, int64_t now);

/* What --check-config says about minting: 0 when the mode's needs are met (or it needs nothing),
 * 1 when mode auto cannot mint (plain JSON and RFC 9701 answers will be 502; msg says what is
 * missing), -1 when mode mint lacks something (a configuration error; msg says what). has_key:
 * at least one signing-key-file is configured. */
int finish_check(enum jwt_source mode, const struct mint_settings *s, bool has_key, char *msg,
                 size_t msglen);

/* Whether finish() would mint for this entry in this mode. */
bool finish_would_mint(const struct token_info *ti, enum jwt_source mode);

#endif
