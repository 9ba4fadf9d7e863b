/* The fast path's pure part: which decisions may be published into HAProxy's decision map, the map
 * key (identical to the converter chain of haproxy-conf/haproxy.cfg), the runtime-API command lines
 * that write and remove entries, and the bounded table of live entries. No I/O, clock injected.
 * Used by the agent's fast-path writer; haproxy_cli.c carries the command lines. */
#ifndef PTA_FASTPATH_H
#define PTA_FASTPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The map key: SHA-256(<Authorization value> "|" <required scopes> "|" <audience> "|" <shared key
 * text>), the first 16 bytes in upper-case hex: everything a positive decision depends on (the
 * route's scopes, and the route's audience, which picks the minted JWT). haproxy.cfg computes it
 * with req.fhdr(Authorization),concat(|,txn.phantom_scopes,|),concat(,txn.phantom_audience,|),
 *   concat(,proc.pta_fp_key),sha2(256),bytes(0,16),hex
 * (sha2, not hmac: HAProxy's hmac converter costs ~4 us per request, sha2 ~0.3 us). The shared key
 * is secret and ends the message, and the digest is truncated, so neither length extension nor a
 * dump of the map's keys reveals or forges anything without it. */
#define FP_KEY_HEX 32
#define FP_SECRET_MIN 43  /* base64 text of >= 32 random bytes */
#define FP_SECRET_MAX 128 /* base64 text */
#define FP_MAP_NAME_MAX 255
#define FP_PREFIX_MAX 24 /* "@!<pid> " for the master CLI */
#define FP_JWT_MAX 16384 /* an entry's JWT; HAProxy's CLI line must hold it (tune.bufsize) */
#define FP_TOKEN_ID_LEN 32
/* The fixed-width head of an FP_VALUE_HDRS_BIN value, before the JWT (see below). */
#define FP_HDRS_BIN_HEAD 41
/* The longest command line fp_cmd_put() writes. */
#define FP_CMD_MAX                                                                                 \
    (FP_PREFIX_MAX + 16 + FP_MAP_NAME_MAX + FP_KEY_HEX + 12 + FP_JWT_MAX + FP_HDRS_BIN_HEAD + 2)

/* Why a decision is not published. FP_OK: it may be. */
enum fp_refusal {
    FP_OK,
    FP_NOT_200,       /* negative and error decisions never enter the map */
    FP_NO_JWT,        /* a 200 must carry the JWT HAProxy forwards */
    FP_BAD_JWT,       /* longer than the limit, or a byte outside base64url and '.' */
    FP_MULTI_AUTH,    /* not exactly one Authorization header: the agent's 400 must stand */
    FP_BAD_AUTH,      /* empty, too long, or a byte that would make the key ambiguous ('|', CTL) */
    FP_BAD_SCOPES,    /* the route's requirement holds '|' or a control byte */
    FP_BAD_AUDIENCE,  /* the route's audience holds '|' or a control byte */
    FP_SHORT_LIFETIME /* the token expires (minus the skew) before the next second */
};

const char *fp_refusal_name(enum fp_refusal r);

/* One decision the agent just made, as the agent saw the request. Byte ranges, not C strings. */
struct fp_candidate {
    int status;
    const char *jwt;
    size_t jwt_len;
    unsigned auth_count;
    const char *auth; /* the Authorization value exactly as HAProxy sent it (req.fhdr) */
    size_t auth_len;
    const char *scopes; /* txn.phantom_scopes as sent; NULL = unset, hashed as "" */
    size_t scopes_len;
    const char *audience; /* the SPOE "audience" argument (txn.phantom_audience); NULL = "" */
    size_t audience_len;
    int64_t token_exp; /* the token's exp (seconds), 0 when the IdP gave none */
    int64_t not_after; /* the agent's own cache entry's end (seconds), 0 when unknown */
};

struct fp_limits {
    uint32_t ttl;    /* fast-path lifetime, seconds (short: it bounds the revocation lag) */
    uint32_t skew;   /* subtracted from the token's exp */
    size_t max_jwt;  /* <= FP_JWT_MAX */
    size_t max_auth; /* longest Authorization value published */
};

/* Decides whether c may be published; on FP_OK *expires is the entry's end in seconds:
 * min(now + ttl, token_exp - skew, not_after), at least now + 1. */
enum fp_refusal fp_admit(const struct fp_candidate *c, const struct fp_limits *l, int64_t now,
                         int64_t *expires);

/* The shared key file: HAProxy reads it as a map file (haproxy.cfg: str(fastpath-key),map(file)),
 * so it is "fastpath-key <base64>" on one line; blank lines and '#' comments are allowed. Writes
 * the base64 text (NUL-terminated) to out. Returns 0, or -1 with a reason in err. */
int fp_secret_parse(const char *text, size_t len, char out[FP_SECRET_MAX + 1], char *err,
                    size_t errlen);

/* The map key of (auth, scopes, audience) under secret; out gets FP_KEY_HEX digits and a NUL.
 * Returns 0, -1 when a digest fails. The caller has checked the bytes with fp_admit(). */
int fp_map_key(const char *secret, size_t secret_len, const char *auth, size_t auth_len,
               const char *scopes, size_t scopes_len, const char *audience, size_t audience_len,
               char out[FP_KEY_HEX + 1]);

/* A map identifier the runtime API will take as one word: a path, "#<id>", or 3.x "virt@name".
 * 1..FP_MAP_NAME_MAX bytes of [A-Za-z0-9._/#@:+-], not starting with '@' (that is a version or a
 * master-CLI route). Nothing that splits a command (space, ';', '\', newline) can pass. */
bool fp_map_name_valid(const char *name);
/* A master-CLI route: "" (a worker's own socket), "@<n>" or "@!<pid>" (digits only). */
bool fp_route_valid(const char *route);

/* How a map value carries the JWT after "<exp>:", chosen per HAProxy process by its version.
 * FP_VALUE_JWT: the JWT itself; haproxy.cfg writes it with set-header "Bearer %[...]" (2.6 to 3.3).
 * FP_VALUE_HDRS_BIN (3.4+): FP_HDRS_BIN_HEAD characters, then the JWT as it is. The head is
 *   the start of set-headers-bin's encoding, percent-encoded (url_dec turns it back): a filler
 *   record (a 1, 4 or 7-byte name "x..." and an empty value; the rule's "prefix Authorization"
 *   skips it) that keeps the head's width fixed whatever the length varint takes, then the
 *   varint 13, "Authorization", the varint length of "Bearer <JWT>", and "Bearer ". haproxy.cfg
 *   decodes only the head, appends the JWT and a 0,0 end mark (a proc variable), and hands the
 *   record to set-headers-bin. On 3.x, set-header HTTP-encodes its log-format value byte by byte
 *   (~40 instructions a byte: 37k for an 850-byte JWT); this costs about 5k. */
enum fp_value_format { FP_VALUE_JWT, FP_VALUE_HDRS_BIN };

/* The format a process of that version (major * 100 + minor; 0 = unknown) reads. */
enum fp_value_format fp_value_format_for(int haproxy_version);

/* Command lines: exactly one command and one '\n' each (HAProxy 2.6 answers a ';'-chained line
 * with a prompt per command, 3.x with one per line, so the CLI client never chains). route may be
 * "" or a valid master-CLI route. Return the length written (NUL-terminated), or -1 when an
 * argument is invalid or cap is too small: nothing that fails validation is ever written, so no
 * command can be injected. fp_cmd_put() writes "add map" for an entry HAProxy does not hold yet
 * (add never replaces: HAProxy would keep both) and "set map" (which updates every copy) for one
 * it holds; the table's FP_PUT_NEW / FP_PUT_REPLACED say which. */
long fp_cmd_put(char *buf, size_t cap, bool replace, const char *route, const char *map,
                const char *key, int64_t expires, enum fp_value_format fmt, const char *jwt,
                size_t jwt_len);
long fp_cmd_del(char *buf, size_t cap, const char *route, const char *map, const char *key);
long fp_cmd_clear(char *buf, size_t cap, const char *route, const char *map);

/* ---- the table of live entries: what the agent has published, to remove and re-publish ---- */

struct fp_entry {
    char key[FP_KEY_HEX + 1];
    uint8_t token_id[FP_TOKEN_ID_LEN]; /* the agent's cache key of the token, for purges */
    int64_t expires;
    char *jwt; /* owned, for a re-fill after an HAProxy reload */
    size_t jwt_len;
};

enum fp_put_result {
    FP_PUT_NEW,       /* publish it */
    FP_PUT_REPLACED,  /* publish it (same key, other JWT or later expiry) */
    FP_PUT_UNCHANGED, /* the same entry is live: nothing to send */
    FP_PUT_NOMEM
};

/* Called for every entry that leaves the table (expiry, eviction, purge): the caller sends the
 * "del map" for e->key. e is valid during the call only. */
typedef void (*fp_removed_fn)(void *ud, const struct fp_entry *e);

struct fp_table;

struct fp_table *fp_table_new(size_t max_entries); /* max_entries >= 1; NULL on failure */
void fp_table_free(struct fp_table *t);            /* no callbacks */
size_t fp_table_count(const struct fp_table *t);
size_t fp_table_capacity(const struct fp_table *t);

/* Inserts or refreshes key. A full table first evicts the entry that expires first (removed() is
 * called for it). An existing key with the same JWT whose expiry is no more than a second earlier
 * is FP_PUT_UNCHANGED: concurrent misses of one token publish it once. */
enum fp_put_result fp_table_put(struct fp_table *t, const char *key,
                                const uint8_t token_id[FP_TOKEN_ID_LEN], int64_t expires,
                                const char *jwt, size_t jwt_len, fp_removed_fn removed, void *ud);
/* The live entry for key, or NULL. */
const struct fp_entry *fp_table_get(const struct fp_table *t, const char *key);
/* Removes what expires at or before now; returns how many. */
size_t fp_table_expire(struct fp_table *t, int64_t now, fp_removed_fn removed, void *ud);
/* Removes every entry of a token (every route it was published for); returns how many. */
size_t fp_table_purge_token(struct fp_table *t, const uint8_t token_id[FP_TOKEN_ID_LEN],
                            fp_removed_fn removed, void *ud);
size_t fp_table_purge_all(struct fp_table *t, fp_removed_fn removed, void *ud);
/* The earliest expiry in the table, or 0 when empty (for the expiry timer). */
int64_t fp_table_next_expiry(const struct fp_table *t);
/* Calls fn for every live entry (a re-fill). fn must not change the table. */
void fp_table_foreach(const struct fp_table *t, void (*fn)(void *ud, const struct fp_entry *e),
                      void *ud);

#endif
