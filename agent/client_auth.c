/* Client authentication encodings: every byte of id and secret goes through the form encoding, as
 * RFC 6749 2.3.1 requires for both methods. */
#include "client_auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

size_t client_auth_form_encode(const char *s, size_t len, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out[o++] = (char)c;
        } else if (c == ' ') {
            out[o++] = '+';
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    return o;
}

char *client_auth_form_encode_dup(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(3 * len + 1);
    if (out)
        out[client_auth_form_encode(s, len, out)] = '\0';
    return out;
}

void client_auth_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

char *client_auth_basic_header(const char *id, const char *secret)
{
    static const char prefix[] = "Authorization: Basic ";
    char *eid = client_auth_form_encode_dup(id);
    char *esecret = client_auth_form_encode_dup(secret ? secret : "");
    char *plain = NULL, *hdr = NULL;
    if (!eid || !esecret)
        goto out;
    size_t plen = strlen(eid) + 1 + strlen(esecret);
    plain = malloc(plen + 1);
    hdr = malloc(sizeof(prefix) + 4 * ((plen + 2) / 3));
    if (!plain || !hdr) {
        free(hdr);
        hdr = NULL;
        goto out;
    }
    snprintf(plain, plen + 1, "%s:%s", eid, esecret);
    memcpy(hdr, prefix, sizeof(prefix) - 1);
    EVP_EncodeBlock((unsigned char *)hdr + sizeof(prefix) - 1, (const unsigned char *)plain,
                    (int)plen);
out:
    client_auth_free(plain);
    client_auth_free(eid);
    client_auth_free(esecret);
    return hdr;
}

char *client_auth_post_fields(const char *id, const char *secret)
{
    char *eid = client_auth_form_encode_dup(id);
    char *esecret = secret ? client_auth_form_encode_dup(secret) : NULL;
    char *out = NULL;
    if (eid && (!secret || esecret)) {
        size_t n = strlen("&client_id=") + strlen(eid) +
                   (esecret ? strlen("&client_secret=") + strlen(esecret) : 0) + 1;
        out = malloc(n);
        if (out)
            snprintf(out, n, "&client_id=%s%s%s", eid, esecret ? "&client_secret=" : "",
                     esecret ? esecret : "");
    }
    client_auth_free(eid);
    client_auth_free(esecret);
    return out;
}
