/* Builds JWTs for the unit tests of jwt.c and idp_response.c (with jwt.c's own encoder, which the
 * signing code uses too). Include after <cmocka.h>. */
#ifndef PTA_TEST_JWT_FIXTURE_H
#define PTA_TEST_JWT_FIXTURE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"

/* header.payload.signature from two JSON texts and a fake signature; free() the result. */
static inline char *make_jwt(const char *header, const char *payload, const char *sig)
{
    size_t cap = (strlen(header) + strlen(payload) + strlen(sig)) * 2 + 8;
    char *j = malloc(cap);
    assert_non_null(j);
    size_t o = b64url_encode(header, strlen(header), j);
    j[o++] = '.';
    o += b64url_encode(payload, strlen(payload), j + o);
    j[o++] = '.';
    b64url_encode(sig, strlen(sig), j + o);
    return j;
}

#endif
