/* Micro-benchmark of minting: per algorithm (ES256, RS256 2048 and 3072 bits, EdDSA), the time of
 * one raw signature (jws_sign over a typical signing input) and of one whole mint_jwt() (claims
 * filtered, JSON serialized, base64url, signed), from a realistic introspection answer, in CPU
 * microseconds of the calling thread. Minted
 * JWTs are cached with the entry, so this is paid once per token and IdP answer, never per hit.
 * Not a test: run it by hand, from a RelWithDebInfo (-O2) build. Prints one line per algorithm. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "jws.h"
#include "mint.h"

/* CPU time of this thread: on a shared, loaded machine wall time measures the neighbours too,
 * while the signing cost is CPU work. */
static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static struct jws_key *make_key(const char *type, size_t bits)
{
    EVP_PKEY *k = strcmp(type, "RSA") == 0  ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits)
                  : strcmp(type, "EC") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                                            : EVP_PKEY_Q_keygen(NULL, NULL, type);
    char err[160];
    struct jws_key *key = k ? jws_key_from_pkey(k, true, err, sizeof(err)) : NULL;
    if (!key) {
        fprintf(stderr, "cannot make a %s key\n", type);
        exit(1);
    }
    return key;
}

static const char ANSWER[] =
    "{\"active\":true,\"sub\":\"248289761001\",\"client_id\":\"s6BhdRkqt3\",\"scope\":\"openid "
    "profile email orders:read orders:write\",\"exp\":4102444800,\"iat\":1700000000,\"iss\":"
    "\"https://idp.example.com\",\"token_type\":\"Bearer\",\"username\":\"jane.doe\","
    "\"auth_time\":1700000000,\"acr\":\"urn:example:loa:2\",\"amr\":[\"pwd\",\"otp\"],"
    "\"groups\":[\"staff\",\"orders\"]}";

static void run(const char *label, struct jws_key *k, int iters)
{
    static const char input[] =
        "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IjEyMyJ9.eyJpc3MiOiJodHRwczovL2d3Iiwic3"
        "ViIjoiMjQ4Mjg5NzYxMDAxIiwiY2xpZW50X2lkIjoiczZCaGRSa3F0MyIsInNjb3BlIjoib3BlbmlkIHByb2Zp";
    uint8_t sig[JWS_MAX_SIG];
    for (int i = 0; i < iters / 10 + 1; i++) /* warm-up */
        jws_sign(k, (const uint8_t *)input, strlen(input), sig);
    double t0 = now_us();
    for (int i = 0; i < iters; i++)
        if (jws_sign(k, (const uint8_t *)input, strlen(input), sig) < 0)
            exit(1);
    double sign_us = (now_us() - t0) / iters;

    json_t *claims = json_loads(ANSWER, 0, NULL);
    struct mint_settings s = {.issuer = "https://gateway.example.com",
                              .audience = "https://api.example.com",
                              .max_lifetime = 300};
    size_t jwt_len = 0;
    t0 = now_us();
    for (int i = 0; i < iters; i++) {
        struct mint_out out;
        const char *why;
        if (mint_jwt(&s, k, claims, NULL, 1800000000, &out, &why) != MINT_OK) {
            fprintf(stderr, "mint failed: %s\n", why);
            exit(1);
        }
        jwt_len = out.jwt_len;
        free(out.jwt);
    }
    double mint_us = (now_us() - t0) / iters;
    json_decref(claims);
    printf("%-12s sign %8.1f us   mint_jwt %8.1f us   JWT %4zu bytes   (%d iterations)\n", label,
           sign_us, mint_us, jwt_len, iters);
}

int main(int argc, char **argv)
{
    int scale = argc > 1 ? atoi(argv[1]) : 1;
    if (scale < 1)
        scale = 1;
    struct {
        const char *label, *type;
        size_t bits;
        int iters;
    } algs[] = {
        {"ES256", "EC", 256, 5000},
        {"RS256-2048", "RSA", 2048, 1000},
        {"RS256-3072", "RSA", 3072, 300},
        {"EdDSA", "ED25519", 0, 5000},
    };
    printf("bench_sign: %s\n", OpenSSL_version(OPENSSL_VERSION));
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        struct jws_key *k = make_key(algs[i].type, algs[i].bits);
        run(algs[i].label, k, algs[i].iters * scale);
        jws_key_free(k);
    }
    return 0;
}
