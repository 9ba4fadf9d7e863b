/* Parses an HTTP Authorization header value as RFC 6750 Bearer credentials. Pure; used by the
 * decision path in agent.c and by the unit tests. */
#ifndef PTA_BEARER_H
#define PTA_BEARER_H

#include <stddef.h>

/* Longer credentials are refused as malformed, never introspected. */
#define BEARER_MAX_TOKEN 4096

enum bearer_result {
    BEARER_OK,         /* *tok and *tok_len give the b64token inside hdr */
    BEARER_MISSING,    /* absent or empty header: 401 without an error attribute */
    BEARER_NOT_BEARER, /* another scheme (Basic, ...): 401 without an error attribute */
    BEARER_MALFORMED,  /* "Bearer" but no token, bad characters, too long: 400 invalid_request */
};

/* hdr may be NULL (header absent); len bounds it (no NUL needed). The scheme is case-insensitive
 * and anchored at the start, followed by one or more spaces (a tab there is MALFORMED); the token
 * is 1*b64token chars then optional trailing spaces/tabs. A value of only spaces/tabs is MISSING.
 * On anything but BEARER_OK, *tok is NULL and *tok_len 0. tok and tok_len may be NULL. */
enum bearer_result bearer_parse(const char *hdr, size_t len, const char **tok, size_t *tok_len);

#endif
