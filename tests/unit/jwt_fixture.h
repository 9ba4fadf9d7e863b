/* Builds JWTs for the unit tests of jwt.c and idp_response.c. The agent only ever decodes
 * base64url, so the encoder lives with the tests. Include after <cmocka.h>. */
#ifndef PTA_TEST_JWT_FIXTURE_H
#define PTA_TEST_JWT_FIXTURE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Writes base64url (no padding) of in[0, len) and a NUL to out; returns the chars written. */
static inline size_t b64url_encode(const void *in, size_t len, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const uint8_t *p = in;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = alphabet[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = alphabet[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return o;
}

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
