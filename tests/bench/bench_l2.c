/* Micro-benchmark of the L2 wire format: the time to encode and to decode one entry carrying a
 * 900-byte JWT and realistic claims, the blob's size, and, given the port of a running
 * redis-server on loopback, what Redis spends per entry: MEMORY USAGE of one key and the growth
 * of used_memory over N entries stored with SET PX. Not a test: run it by hand from a
 * RelWithDebInfo build, e.g. bench_l2 [redis-port [entries]]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "l2_codec.h"
#include "token.h"

#define JWT_LEN 900
#define ROUNDS 200000
#define NOW_MS 1700000000000LL

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static struct token_info *entry(void)
{
    struct token_info *ti = token_info_new(TOKEN_ACTIVE, "bench");
    ti->jwt = malloc(JWT_LEN + 1);
    memset(ti->jwt, 'J', JWT_LEN);
    ti->jwt[JWT_LEN] = '\0';
    ti->jwt_len = JWT_LEN;
    ti->claims.exp = NOW_MS / 1000 + 3600;
    ti->claims.has_exp = true;
    ti->claims.sub = strdup("5f0c8e1e-8a7b-4f3c-9d2e-1b6a7c8d9e0f");
    ti->claims.client_id = strdup("orders-web-client");
    ti->claims.scope = strdup("openid profile orders:read orders:write");
    return ti;
}

static long long used_memory(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO memory");
    long long v = -1;
    const char *p = r && r->str ? strstr(r->str, "used_memory:") : NULL;
    if (p)
        v = atoll(p + 12);
    freeReplyObject(r);
    return v;
}

static int redis_part(struct l2_codec *c, const struct token_info *ti, int port, int n)
{
    struct timeval tv = {2, 0};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!rc || rc->err) {
        fprintf(stderr, "cannot connect to 127.0.0.1:%d\n", port);
        return 1;
    }
    freeReplyObject(redisCommand(rc, "FLUSHALL"));
    long long before = used_memory(rc);
    char key[128], tok[32];
    long long one = -1;
    for (int i = 0; i < n; i++) {
        uint8_t ek[L2_KEY_LEN], *blob;
        size_t len;
        snprintf(tok, sizeof(tok), "token-%d", i);
        l2_entry_key(c, tok, strlen(tok), ek);
        l2_redis_key("pta:", ek, key, sizeof(key));
        l2_value_encode(c, ek, ti, NOW_MS + 3600000, &blob, &len);
        freeReplyObject(redisCommand(rc, "SET %s %b PX %d", key, blob, len, 3600000));
        free(blob);
        if (i == 0) {
            redisReply *r = redisCommand(rc, "MEMORY USAGE %s", key);
            one = r ? r->integer : -1;
            freeReplyObject(r);
        }
    }
    long long after = used_memory(rc);
    printf("redis MEMORY USAGE of one key: %lld bytes\n", one);
    printf("redis used_memory growth over %d entries: %.0f bytes/entry\n", n,
           (double)(after - before) / n);
    freeReplyObject(redisCommand(rc, "FLUSHALL"));
    redisFree(rc);
    return 0;
}

int main(int argc, char **argv)
{
    static const uint8_t fleet[] = "bench-fleet-key-bench-fleet-key-0123456789";
    struct l2_codec *c = l2_codec_new(fleet, sizeof(fleet) - 1);
    struct token_info *ti = entry();
    uint8_t ek[L2_KEY_LEN];
    l2_entry_key(c, "opaque", 6, ek);

    uint8_t *blob = NULL;
    size_t len = 0;
    double t0 = now_ns();
    for (int i = 0; i < ROUNDS; i++) {
        free(blob);
        l2_value_encode(c, ek, ti, NOW_MS + 3600000, &blob, &len);
    }
    double t1 = now_ns();
    for (int i = 0; i < ROUNDS; i++) {
        struct token_info *got;
        int64_t e;
        if (l2_value_decode(c, ek, blob, len, NOW_MS, &got, &e) != L2_OK)
            return 1;
        token_unref(got);
    }
    double t2 = now_ns();
    for (int i = 0; i < ROUNDS; i++)
        l2_entry_key(c, "opaque-token-of-forty-characters-or-so", 38, ek);
    double t3 = now_ns();
    printf("blob for a %d-byte JWT: %zu bytes (key: prefix + 64 hex)\n", JWT_LEN, len);
    printf("encode %.2f us, decode %.2f us, entry key %.2f us\n", (t1 - t0) / ROUNDS / 1e3,
           (t2 - t1) / ROUNDS / 1e3, (t3 - t2) / ROUNDS / 1e3);
    free(blob);
    int rc = argc > 1 ? redis_part(c, ti, atoi(argv[1]), argc > 2 ? atoi(argv[2]) : 10000) : 0;
    token_unref(ti);
    l2_codec_free(c);
    return rc;
}
