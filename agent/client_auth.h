/* OAuth client authentication as the introspection request carries it (RFC 6749 2.3.1): the
 * form encoding of appendix B, the "Authorization: Basic" header built from the form-encoded id
 * and secret, and the client_id/client_secret body fields. Pure. Used by introspect.c (and by any
 * later client of the identity server). */
#ifndef PTA_CLIENT_AUTH_H
#define PTA_CLIENT_AUTH_H

#include <stddef.h>

enum client_auth { CLIENT_AUTH_BASIC, CLIENT_AUTH_POST, CLIENT_AUTH_NONE };

/* application/x-www-form-urlencoded as RFC 6749 appendix B uses it: unreserved characters stay,
 * space becomes '+', every other byte %XX. out needs 3 * len bytes; returns the length written
 * (no NUL). */
size_t client_auth_form_encode(const char *s, size_t len, char *out);
/* A malloc'd, NUL-terminated form encoding of s; NULL when out of memory. */
char *client_auth_form_encode_dup(const char *s);

/* "Authorization: Basic base64(urlencode(id) ':' urlencode(secret))" (a NULL secret counts as
 * empty). Not CURLOPT_USERPWD, which would send id and secret without the form encoding.
 * malloc'd; free with client_auth_free(). */
char *client_auth_basic_header(const char *id, const char *secret);
/* "&client_id=...[&client_secret=...]" for client_secret_post; the secret is optional there
 * (public clients). malloc'd; free with client_auth_free(). */
char *client_auth_post_fields(const char *id, const char *secret);

/* Wipes and frees a string that held a secret; NULL is fine. */
void client_auth_free(char *s);

#endif
