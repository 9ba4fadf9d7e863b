/* Finishing: pass-through or mint. Every failure to mint is an IdP error for the request (502),
 * never a pass-through of what the IdP gave: a deployment that asked for minted tokens must not
 * forward an RFC 9701 answer or nothing at all by accident. */
#include "finish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int jwt_source_parse(const char *s, enum jwt_source *out)
{
    static const struct {
        const char *name;
        enum jwt_source m;
    } names[] = {{"auto", JWT_SOURCE_AUTO}, {"idp", JWT_SOURCE_IDP}, {"mint", JWT_SOURCE_MINT}};
    for (size_t i = 0; s && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].m;
            return 0;
        }
    }
    return -1;
}

const char *jwt_source_name(enum jwt_source m)
{
    switch (m) {
    case JWT_SOURCE_AUTO:
        return "auto";
    case JWT_SOURCE_IDP:
        return "idp";
    case JWT_SOURCE_MINT:
        return "mint";
    }
    return "?";
}

int finish_check(enum jwt_source mode, const struct mint_settings *s, bool has_key, char *msg,
                 size_t msglen)
{
    if (mode == JWT_SOURCE_IDP)
        return 0;
    char missing[160] = "";
    size_t o = 0;
    if (!has_key)
        o += (size_t)snprintf(missing + o, sizeof(missing) - o, " signing-key-file");
    if (!s->issuer || !*s->issuer)
        o += (size_t)snprintf(missing + o, sizeof(missing) - o, " jwt-issuer");
    if (!s->audience || !*s->audience)
        snprintf(missing + o, sizeof(missing) - o, " jwt-audience");
    if (!missing[0])
        return 0;
    if (mode == JWT_SOURCE_MINT) {
        snprintf(msg, msglen, "jwt-source mint needs:%s", missing);
        return -1;
    }
    snprintf(msg, msglen,
             "jwt-source auto cannot mint (missing:%s): identity servers that answer plain RFC "
             "7662 JSON or RFC 9701 JWTs will get 502",
             missing);
    return 1;
}

bool finish_would_mint(const struct token_info *ti, enum jwt_source mode)
{
    if (!ti || ti->outcome != TOKEN_ACTIVE)
        return false;
    switch (mode) {
    case JWT_SOURCE_IDP:
        return false;
    case JWT_SOURCE_MINT:
        return true;
    case JWT_SOURCE_AUTO:
        return ti->kind != IDP_KIND_JWT;
    }
    return false;
}

/* A non-active entry replacing ti, keeping its cache hints. Consumes ti. */
static struct token_info *replace(struct token_info *ti, enum token_outcome o, const char *why)
{
    struct token_info *r = token_info_new(o, why);
    if (r) {
        r->max_age = ti->max_age;
        r->no_store = ti->no_store;
    }
    token_unref(ti);
    return r;
}

static int dup_opt(const char *s, char **out)
{
    *out = s ? strdup(s) : NULL;
    return s && !*out ? -1 : 0;
}

static int copy_claims(const struct token_claims *from, struct token_claims *to)
{
    memset(to, 0, sizeof(*to));
    to->exp = from->exp;
    to->has_exp = from->has_exp;
    if (dup_opt(from->sub, &to->sub) < 0 || dup_opt(from->client_id, &to->client_id) < 0 ||
        dup_opt(from->scope, &to->scope) < 0 || dup_opt(from->sid, &to->sid) < 0) {
        token_claims_clear(to);
        return -1;
    }
    return 0;
}

/* One JWT per extra audience, into r->alts. Returns NULL on success, else the reason. */
static const char *mint_alts(struct token_info *r, const struct token_info *ti,
                             const struct minter *m, const struct jws_key *k, int64_t now)
{
    size_t n = 0;
    while (m->extra_audiences && m->extra_audiences[n])
        n++;
    if (!n)
        return NULL;
    if (!(r->alts = calloc(n, sizeof(*r->alts))))
        return "out of memory";
    for (size_t i = 0; i < n; i++) {
        struct mint_out out;
        const char *why = "minting failed";
        if (mint_jwt(&m->settings, k, ti->introspection, m->extra_audiences[i], now, &out, &why) !=
            MINT_OK)
            return why;
        struct token_alt_jwt *a = &r->alts[r->nalts++];
        a->jwt = out.jwt;
        a->jwt_len = out.jwt_len;
        if (!(a->aud = strdup(m->extra_audiences[i])))
            return "out of memory";
    }
    return NULL;
}

/* The minted entry: out's JWT (taken over) with ti's claims and hints. NULL on ENOMEM. */
static struct token_info *minted_entry(const struct token_info *ti, struct mint_out *out,
                                       const char *aud, bool keep_introspection)
{
    struct token_info *r = token_info_new(TOKEN_ACTIVE, "gateway minted the JWT");
    if (!r || copy_claims(&ti->claims, &r->claims) < 0 || (aud && !(r->aud = strdup(aud)))) {
        token_unref(r);
        free(out->jwt);
        return NULL;
    }
    r->jwt = out->jwt;
    r->jwt_len = out->jwt_len;
    r->claims.exp = out->exp;
    r->claims.has_exp = true;
    r->kind = ti->kind;
    r->minted = true;
    r->max_age = ti->max_age;
    r->no_store = ti->no_store;
    if (keep_introspection)
        token_info_set_introspection(r, json_incref(ti->introspection));
    return r;
}

struct token_info *finish(struct token_info *ti, enum jwt_source mode, const struct minter *m,
                          const char *audience, int64_t now)
{
    if (!ti || ti->outcome != TOKEN_ACTIVE)
        return ti;
    if (!finish_would_mint(ti, mode)) {
        if (!ti->jwt)
            return replace(ti, TOKEN_IDP_ERROR, "IdP said active but returned no JWT");
        /* Forwarded as it is: the claims kept for minting are not needed, unless asked for. The
         * entry is still ours alone (finish takes it over before anyone shares it). */
        if (!(m && m->keep_introspection) && __atomic_load_n(&ti->refcnt, __ATOMIC_ACQUIRE) == 1)
            token_info_set_introspection(ti, NULL);
        return ti;
    }
    const struct jws_key *k = m ? keyring_signer(m->keys) : NULL;
    if (!k)
        return replace(ti, TOKEN_IDP_ERROR, "minting needed but no signing key is loaded");
    if (!ti->introspection)
        return replace(ti, TOKEN_IDP_ERROR, "no introspected claims kept to mint from");
    struct mint_out out;
    const char *why = "minting failed";
    enum mint_result r = mint_jwt(&m->settings, k, ti->introspection, audience, now, &out, &why);
    if (r == MINT_EXPIRED)
        return replace(ti, TOKEN_INACTIVE, "token expired");
    if (r != MINT_OK)
        return replace(ti, TOKEN_IDP_ERROR, why);
    const char *aud = audience && *audience ? audience : m->settings.audience;
    struct token_info *fin = minted_entry(ti, &out, aud, m->keep_introspection);
    const char *alt_why = fin ? mint_alts(fin, ti, m, k, now) : NULL;
    if (alt_why) {
        token_unref(fin);
        return replace(ti, TOKEN_IDP_ERROR, alt_why);
    }
    token_unref(ti);
    return fin;
}
