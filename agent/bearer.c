/* RFC 6750 section 2.1 credentials:  "Bearer" 1*SP b64token, with the scheme matched
 * case-insensitively (RFC 9110 section 11.1). Everything is bounded by len, never by a NUL, so an
 * embedded NUL is just another bad character. */
#include "bearer.h"

#include <stdbool.h>
#include <strings.h>

static const char SCHEME[] = "Bearer";
#define SCHEME_LEN (sizeof(SCHEME) - 1)

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static bool is_b64token_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

/* Scheme names are tokens ended by whitespace or the end of the value; comparing the whole word
 * keeps "Bearerx" a different scheme rather than a malformed Bearer credential. */
static size_t scheme_end(const char *hdr, size_t len)
{
    size_t i = 0;
    while (i < len && !is_ows(hdr[i]))
        i++;
    return i;
}

/* Validates hdr[start, len) as b64token followed only by optional spaces/tabs. Returns the token
 * length, or 0 when the token is empty or has a character outside the grammar. */
static size_t b64token_len(const char *hdr, size_t start, size_t len)
{
    size_t i = start;
    while (i < len && is_b64token_char(hdr[i]))
        i++;
    if (i == start)
        return 0; /* "=" alone, or a bad first character: the token needs at least one char */
    while (i < len && hdr[i] == '=')
        i++;
    size_t tok_end = i;
    while (i < len && is_ows(hdr[i]))
        i++;
    return i == len ? tok_end - start : 0;
}

static bool only_ows(const char *hdr, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_ows(hdr[i]))
            return false;
    return true;
}

static enum bearer_result fail(enum bearer_result r, const char **tok, size_t *tok_len)
{
    if (tok)
        *tok = NULL;
    if (tok_len)
        *tok_len = 0;
    return r;
}

enum bearer_result bearer_parse(const char *hdr, size_t len, const char **tok, size_t *tok_len)
{
    if (!hdr || only_ows(hdr, len))
        return fail(BEARER_MISSING, tok, tok_len);

    size_t s = scheme_end(hdr, len);
    if (s != SCHEME_LEN || strncasecmp(hdr, SCHEME, SCHEME_LEN) != 0)
        return fail(BEARER_NOT_BEARER, tok, tok_len);

    /* RFC 6750 allows only SP between scheme and token; a tab there is a malformed credential. */
    size_t i = SCHEME_LEN;
    if (i == len || hdr[i] != ' ')
        return fail(BEARER_MALFORMED, tok, tok_len);
    while (i < len && hdr[i] == ' ')
        i++;

    size_t n = b64token_len(hdr, i, len);
    if (n == 0 || n > BEARER_MAX_TOKEN)
        return fail(BEARER_MALFORMED, tok, tok_len);
    if (tok)
        *tok = hdr + i;
    if (tok_len)
        *tok_len = n;
    return BEARER_OK;
}
