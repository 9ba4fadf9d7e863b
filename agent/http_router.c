/* Routing and the checks before a handler: pure, so that every status is unit-tested. */
#include "http_router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define JSON_TYPE "application/json"
#define ADMIN_CHALLENGE "Bearer realm=\"phantom-token-agent admin\""
#define ADMIN_CHALLENGE_BAD ADMIN_CHALLENGE ", error=\"invalid_token\""

void http_router_init(struct http_router *r)
{
    memset(r, 0, sizeof(*r));
}

static bool same_route(const struct http_route *a, const struct http_route *b)
{
    return strcmp(a->method, b->method) == 0 && strcmp(a->path, b->path) == 0;
}

int http_router_add(struct http_router *r, const struct http_route *route)
{
    if (r->n >= HTTP_ROUTES_MAX || !route->method || !route->path || !route->fn)
        return -1;
    for (size_t i = 0; i < r->n; i++)
        if (same_route(&r->routes[i], route))
            return -1;
    r->routes[r->n++] = *route;
    return 0;
}

void http_response_free(struct http_response *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

void http_response_text(struct http_response *resp, unsigned status, const char *type, char *body)
{
    http_response_free(resp);
    resp->status = body ? status : 500;
    resp->content_type = type;
    resp->body = body;
    resp->body_len = body ? strlen(body) : 0;
}

/* JSON documents end with a newline, like the text answers, for people reading them in a shell. */
void http_response_json(struct http_response *resp, unsigned status, const char *json)
{
    size_t n = strlen(json);
    char *body = malloc(n + 2);
    if (body) {
        memcpy(body, json, n);
        memcpy(body + n, "\n", 2);
    }
    http_response_text(resp, status, JSON_TYPE, body);
}

void http_response_error(struct http_response *resp, unsigned status, const char *message)
{
    json_t *doc = json_pack("{ss}", "error", message);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text)
        http_response_json(resp, status, text);
    else
        http_response_text(resp, 500, NULL, NULL);
    free(text); /* jansson's default allocator is malloc */
}

static bool visible(const struct http_route *route, enum http_origin origin, bool admin_enabled)
{
    if (origin == HTTP_ORIGIN_ADMIN_SOCKET)
        return route->auth == HTTP_AUTH_ADMIN;
    return route->auth != HTTP_AUTH_ADMIN || admin_enabled;
}

static bool method_matches(const struct http_route *route, const char *method)
{
    return strcmp(route->method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(route->method, "GET") == 0);
}

static void add_allowed(char *allow, size_t cap, const char *method)
{
    size_t used = strlen(allow);
    snprintf(allow + used, cap - used, "%s%s", used ? ", " : "", method);
    if (strcmp(method, "GET") == 0)
        add_allowed(allow, cap, "HEAD");
}

const struct http_route *http_router_match(const struct http_router *r, const char *method,
                                           const char *path, enum http_origin origin,
                                           bool admin_enabled, struct http_response *resp)
{
    bool path_known = false;
    resp->allow[0] = '\0';
    for (size_t i = 0; i < r->n; i++) {
        const struct http_route *route = &r->routes[i];
        if (strcmp(route->path, path) != 0 || !visible(route, origin, admin_enabled))
            continue;
        if (method_matches(route, method))
            return route;
        path_known = true;
        add_allowed(resp->allow, sizeof(resp->allow), route->method);
    }
    if (path_known)
        http_response_error(resp, 405, "method not allowed");
    else
        http_response_error(resp, 404, "not found");
    return NULL;
}

/* Hashing both sides first makes the comparison independent of the lengths as well. */
static bool token_equal(const char *given, size_t given_len, const char *token)
{
    unsigned char a[32], b[32];
    unsigned alen = 0, blen = 0;
    if (!EVP_Digest(given, given_len, a, &alen, EVP_sha256(), NULL) ||
        !EVP_Digest(token, strlen(token), b, &blen, EVP_sha256(), NULL))
        return false;
    return alen == blen && CRYPTO_memcmp(a, b, alen) == 0;
}

int http_router_authorize(const struct http_route *route, enum http_origin origin,
                          const char *authorization, const char *token, struct http_response *resp)
{
    if (route->auth == HTTP_AUTH_NONE || origin == HTTP_ORIGIN_ADMIN_SOCKET)
        return 0;
    static const char scheme[] = "Bearer ";
    const size_t slen = sizeof(scheme) - 1;
    bool has_bearer = authorization && strncasecmp(authorization, scheme, slen) == 0 &&
                      authorization[slen] != '\0';
    if (has_bearer && token) {
        const char *given = authorization + slen;
        if (token_equal(given, strlen(given), token))
            return 0;
    }
    http_response_error(resp, 401, has_bearer ? "invalid admin token" : "admin token required");
    resp->www_authenticate = has_bearer ? ADMIN_CHALLENGE_BAD : ADMIN_CHALLENGE;
    return -1;
}

int http_router_check_body(const struct http_route *route, unsigned long long len,
                           struct http_response *resp)
{
    if (len <= route->max_body)
        return 0;
    http_response_error(resp, 413, "request body too large");
    return -1;
}
