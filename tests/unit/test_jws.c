/* jws.c and keyring.c: keys of the three algorithms sign, and the published JWK (rebuilt into an
 * OpenSSL key here) verifies; RFC 7638's example thumbprint; refused keys; key files and sets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "jose_fixture.h"
#include "jws.h"
#include "jwt.h"
#include "keyring.h"
#include "memdup.h"

/* RFC 7638 section 3.1. */
static const char RFC7638_N[] =
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPeb"
    "WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368Q"
    "QMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2"
    "NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
static const char RFC7638_KID[] = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

static void test_thumbprint_rfc7638(void **state)
{
    (void)state;
    json_t *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "n", RFC7638_N, "e", "AQAB",
                            "alg", "RS256", "kid", "2011-04-29");
    char kid[JWS_KID_LEN];
    assert_int_equal(jwk_thumbprint(jwk, kid), 0);
    assert_string_equal(kid, RFC7638_KID);
    json_decref(jwk);
}

/* The same key as an OpenSSL public key: the agent's own JWK export gives the RFC's kid. */
static void test_kid_of_rfc7638_key(void **state)
{
    (void)state;
    json_t *jwk = json_pack("{s:s, s:s, s:s}", "kty", "RSA", "n", RFC7638_N, "e", "AQAB");
    EVP_PKEY *pk = fx_pkey_from_jwk(jwk);
    json_decref(jwk);
    char err[200];
    struct jws_key *k = jws_key_from_pkey(pk, false, err, sizeof(err));
    assert_non_null(k);
    assert_string_equal(k->kid, RFC7638_KID);
    assert_false(k->has_private);
    assert_string_equal(json_string_value(json_object_get(k->jwk, "n")), RFC7638_N);
    assert_string_equal(json_string_value(json_object_get(k->jwk, "e")), "AQAB");
    /* A public-only key cannot sign. */
    uint8_t sig[JWS_MAX_SIG];
    assert_int_equal(jws_sign(k, (const uint8_t *)"x", 1, sig), -1);
    jws_key_free(k);
}

static void test_thumbprint_incomplete(void **state)
{
    (void)state;
    char kid[JWS_KID_LEN];
    json_t *jwk = json_pack("{s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "x", "AAAA");
    assert_int_equal(jwk_thumbprint(jwk, kid), -1); /* no y */
    json_decref(jwk);
    jwk = json_pack("{s:s}", "kty", "oct");
    assert_int_equal(jwk_thumbprint(jwk, kid), -1);
    json_decref(jwk);
}

/* Only public members; the kid is the thumbprint of exactly those. */
static void check_public_jwk(const struct jws_key *k, const char *kty, const char *alg)
{
    assert_string_equal(json_string_value(json_object_get(k->jwk, "kty")), kty);
    assert_string_equal(json_string_value(json_object_get(k->jwk, "alg")), alg);
    assert_string_equal(json_string_value(json_object_get(k->jwk, "use")), "sig");
    assert_string_equal(json_string_value(json_object_get(k->jwk, "kid")), k->kid);
    static const char *const priv[] = {"d", "p", "q", "dp", "dq", "qi", NULL};
    for (size_t i = 0; priv[i]; i++)
        assert_null(json_object_get(k->jwk, priv[i]));
    char kid[JWS_KID_LEN];
    assert_int_equal(jwk_thumbprint(k->jwk, kid), 0);
    assert_string_equal(kid, k->kid);
    assert_int_equal(strlen(k->kid), 43);
}

static void round_trip(const char *type, int bits, const char *kty, const char *alg, long sig_len)
{
    struct jws_key *k = fx_key(type, bits);
    assert_true(k->has_private);
    assert_string_equal(jws_alg_name(k->alg), alg);
    check_public_jwk(k, kty, alg);

    static const char msg[] = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
    uint8_t sig[JWS_MAX_SIG];
    long n = jws_sign(k, (const uint8_t *)msg, strlen(msg), sig);
    assert_int_equal(n, sig_len);
    EVP_PKEY *pub = fx_pkey_from_jwk(k->jwk);
    assert_non_null(pub);
    assert_int_equal(fx_verify(pub, alg, msg, strlen(msg), sig, (size_t)n), 1);
    /* One flipped bit in the message or the signature: refused. */
    assert_int_equal(fx_verify(pub, alg, "x", 1, sig, (size_t)n), 0);
    sig[n / 2] ^= 1;
    assert_int_equal(fx_verify(pub, alg, msg, strlen(msg), sig, (size_t)n), 0);
    EVP_PKEY_free(pub);

    /* The compact form verifies as a whole. */
    static const char h[] = "{\"alg\":\"x\",\"typ\":\"at+jwt\"}", p[] = "{\"sub\":\"alice\"}";
    size_t len;
    char *jws = jws_compact(k, h, strlen(h), p, strlen(p), &len);
    assert_non_null(jws);
    assert_int_equal(len, strlen(jws));
    /* fx_verify_jws takes the alg from the header: rewrite it through a real header. */
    free(jws);
    char hdr[64];
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"at+jwt\"}", alg);
    jws = jws_compact(k, hdr, strlen(hdr), p, strlen(p), &len);
    json_t *jh, *jp;
    fx_verify_jws(jws, k->jwk, &jh, &jp);
    assert_string_equal(json_string_value(json_object_get(jp, "sub")), "alice");
    json_decref(jh);
    json_decref(jp);
    free(jws);
    jws_key_free(k);
}

static void test_es256_round_trip(void **state)
{
    (void)state;
    /* Many signatures: r or s with leading zero bytes must still give 64 bytes (left padding). */
    for (int i = 0; i < 8; i++)
        round_trip("EC", 256, "EC", "ES256", 64);
}

static void test_rs256_round_trip(void **state)
{
    (void)state;
    round_trip("RSA", 2048, "RSA", "RS256", 256);
    round_trip("RSA", 3072, "RSA", "RS256", 384);
}

static void test_eddsa_round_trip(void **state)
{
    (void)state;
    round_trip("ED25519", 0, "OKP", "EdDSA", 64);
}

static void refused(const char *pem, const char *expect_in_err)
{
    char err[200] = "";
    assert_null(jws_key_from_pem(pem, strlen(pem), true, err, sizeof(err)));
    if (!strstr(err, expect_in_err))
        fail_msg("error '%s' lacks '%s'", err, expect_in_err);
}

static void test_refused_keys(void **state)
{
    (void)state;
    char *pem = fx_keygen_pem("RSA", 1024);
    refused(pem, "1024 bits");
    free(pem);
    pem = fx_keygen_pem("EC", 384);
    refused(pem, "P-256");
    free(pem);
    pem = fx_keygen_pem("ED448", 0);
    refused(pem, "unsupported key type");
    free(pem);
    refused("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a PEM");
    refused("", "not a PEM");
}

/* An encrypted key is refused, never prompts for a passphrase. */
static void test_encrypted_key_refused(void **state)
{
    (void)state;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(
        PEM_write_bio_PrivateKey(b, k, EVP_aes_256_cbc(), (unsigned char *)"pw", 2, NULL, NULL), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char err[200];
    assert_null(jws_key_from_pem(data, (size_t)n, false, err, sizeof(err)));
    BIO_free(b);
    EVP_PKEY_free(k);
}

/* A public key is accepted only where publishing is all that is asked. */
static void test_public_pem(void **state)
{
    (void)state;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char err[200];
    assert_null(jws_key_from_pem(data, (size_t)n, false, err, sizeof(err)));
    struct jws_key *pk = jws_key_from_pem(data, (size_t)n, true, err, sizeof(err));
    assert_non_null(pk);
    assert_false(pk->has_private);
    jws_key_free(pk);
    BIO_free(b);
    EVP_PKEY_free(k);
}

/* ---- keyring ---- */

static char tmpdir[64];

static int make_dir(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/pta-test-jws-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static void write_file(const char *name, const char *text, mode_t mode, char *path)
{
    sprintf(path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_keyring_load(void **state)
{
    (void)state;
    char p1[128], p2[128], p3[128];
    char *a = fx_keygen_pem("EC", 256), *b = fx_keygen_pem("RSA", 2048),
         *c = fx_keygen_pem("ED25519", 0);
    write_file("a.pem", a, 0600, p1);
    write_file("b.pem", b, 0640, p2);
    write_file("c.pem", c, 0400, p3);
    const char *paths[] = {p1, p2, p3};
    char err[256];
    struct keyring *kr = keyring_load(paths, 3, err, sizeof(err));
    if (!kr)
        fail_msg("%s", err);
    assert_int_equal(kr->nkeys, 3);
    assert_int_equal(keyring_signer(kr)->alg, JWS_ES256);

    json_t *doc = json_loads(kr->jwks, 0, NULL);
    assert_non_null(doc);
    assert_int_equal(strlen(kr->jwks), kr->jwks_len);
    json_t *keys = json_object_get(doc, "keys");
    assert_int_equal(json_array_size(keys), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *jwk = json_array_get(keys, i);
        assert_string_equal(json_string_value(json_object_get(jwk, "kid")), kr->keys[i]->kid);
        assert_null(json_object_get(jwk, "d"));
    }
    assert_null(strstr(kr->jwks, "\"d\""));
    json_decref(doc);

    struct keyring *r = keyring_ref(kr);
    keyring_unref(kr);
    assert_int_equal(r->nkeys, 3); /* still alive through the second reference */
    keyring_unref(r);
    free(a);
    free(b);
    free(c);
}

static void load_fails(const char *const *paths, size_t n, const char *expect)
{
    char err[256] = "";
    assert_null(keyring_load(paths, n, err, sizeof(err)));
    if (!strstr(err, expect))
        fail_msg("error '%s' lacks '%s'", err, expect);
}

static void test_keyring_refusals(void **state)
{
    (void)state;
    char p1[128], p2[128], p3[128], p4[128], p5[128];
    char *a = fx_keygen_pem("EC", 256);
    write_file("open.pem", a, 0644, p1);
    write_file("gw.pem", a, 0660, p2);
    write_file("ok.pem", a, 0600, p3);
    write_file("empty.pem", "", 0600, p4);
    write_file("junk.pem", "not a key\n", 0600, p5);
    const char *one[] = {p1};
    load_fails(one, 1, "accessible to other users");
    one[0] = p2;
    load_fails(one, 1, "accessible to other users");
    one[0] = p4;
    load_fails(one, 1, "empty");
    one[0] = p5;
    load_fails(one, 1, "junk.pem");
    one[0] = "/nonexistent/key.pem";
    load_fails(one, 1, "cannot read signing key file");
    one[0] = tmpdir;
    load_fails(one, 1, "not a regular file");
    const char *twice[] = {p3, p3};
    load_fails(twice, 2, "same key");
    load_fails(twice, 0, "no signing key");

    /* The signer must be private; a previous key may be public. */
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char pub[128];
    char *text = mem_strdup(data, (size_t)n);
    write_file("pub.pem", text, 0600, pub);
    const char *pub_first[] = {pub, p3};
    load_fails(pub_first, 2, "not a PEM private key");
    const char *pub_second[] = {p3, pub};
    char err[256];
    struct keyring *kr = keyring_load(pub_second, 2, err, sizeof(err));
    assert_non_null(kr);
    assert_false(kr->keys[1]->has_private);
    keyring_unref(kr);
    free(text);
    BIO_free(b);
    EVP_PKEY_free(k);
    free(a);
}

/* Too large a file is refused before parsing. */
static void test_keyring_large_file(void **state)
{
    (void)state;
    char *big = malloc(KEYRING_MAX_FILE + 2);
    memset(big, 'A', KEYRING_MAX_FILE + 1);
    big[KEYRING_MAX_FILE + 1] = '\0';
    char p[128];
    write_file("big.pem", big, 0600, p);
    const char *one[] = {p};
    load_fails(one, 1, "too large");
    free(big);
}

static void test_keyring_write_jwks(void **state)
{
    (void)state;
    struct jws_key *k[] = {fx_key("EC", 256), fx_key("ED25519", 0)};
    char err[256];
    struct keyring *kr = keyring_from_keys(k, 2, err, sizeof(err));
    assert_non_null(kr);
    char path[128];
    snprintf(path, sizeof(path), "%s/jwks.json", tmpdir);
    mode_t old = umask(077);
    assert_int_equal(keyring_write_jwks(kr, path, err, sizeof(err)), 0);
    umask(old);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    json_t *doc = json_load_file(path, 0, NULL);
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "keys")), 2);
    json_decref(doc);
    /* Rewriting replaces it; nothing temporary is left behind. */
    assert_int_equal(keyring_write_jwks(kr, path, err, sizeof(err)), 0);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "ls %s | grep -c tmp >/dev/null", tmpdir);
    assert_int_not_equal(system(cmd), 0);
    /* An unwritable directory: an error naming the file. */
    assert_int_equal(keyring_write_jwks(kr, "/nonexistent/dir/jwks.json", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "jwks"));
    keyring_unref(kr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thumbprint_rfc7638),
        cmocka_unit_test(test_kid_of_rfc7638_key),
        cmocka_unit_test(test_thumbprint_incomplete),
        cmocka_unit_test(test_es256_round_trip),
        cmocka_unit_test(test_rs256_round_trip),
        cmocka_unit_test(test_eddsa_round_trip),
        cmocka_unit_test(test_refused_keys),
        cmocka_unit_test(test_encrypted_key_refused),
        cmocka_unit_test(test_public_pem),
        cmocka_unit_test(test_keyring_load),
        cmocka_unit_test(test_keyring_refusals),
        cmocka_unit_test(test_keyring_large_file),
        cmocka_unit_test(test_keyring_write_jwks),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
