/* Tests for common/sl_jwt.c (RS256 sign/verify, Google assertion claims)
 * and common/sl_b64.c, which JWT segments are decoded with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "sl_b64.h"
#include "sl_crypto.h"
#include "sl_jwt.h"

#define EMAIL "sluice-test@example-project.iam.gserviceaccount.com"
#define TOKEN_URI "https://oauth2.googleapis.com/token"
#define NOW ((int64_t)1767225600)

typedef struct keys {
    EVP_PKEY *priv;     /* loaded from PEM through the API */
    EVP_PKEY *pub;      /* its public half, from PEM */
    EVP_PKEY *cert_pub; /* its public half, from a self-signed certificate */
    EVP_PKEY *other;    /* an unrelated key */
    char *priv_pem;
} keys_t;

static char *bio_string(BIO *bio)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *s = malloc((size_t)n + 1);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

static char *private_pem(EVP_PKEY *k)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL), 1);
    char *s = bio_string(bio);
    BIO_free(bio);
    return s;
}

static char *public_pem(EVP_PKEY *k)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, k), 1);
    char *s = bio_string(bio);
    BIO_free(bio);
    return s;
}

static char *cert_pem(EVP_PKEY *k)
{
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"sluice-test", -1, -1, 0);
    X509_set_issuer_name(x, name);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(bio, x), 1);
    char *s = bio_string(bio);
    BIO_free(bio);
    X509_free(x);
    return s;
}

static int setup(void **state)
{
    keys_t *k = calloc(1, sizeof(*k));
    EVP_PKEY *gen = EVP_RSA_gen(2048), *gen2 = EVP_RSA_gen(2048);
    assert_non_null(gen);
    assert_non_null(gen2);
    sl_err_t err;
    k->priv_pem = private_pem(gen);
    assert_non_null(strstr(k->priv_pem, "-----BEGIN PRIVATE KEY-----"));
    assert_int_equal(sl_jwt_load_private_pem(k->priv_pem, strlen(k->priv_pem), &k->priv, &err), 0);
    char *pub = public_pem(gen), *cert = cert_pem(gen);
    assert_int_equal(sl_jwt_load_public_pem(pub, strlen(pub), &k->pub, &err), 0);
    assert_int_equal(sl_jwt_load_public_pem(cert, strlen(cert), &k->cert_pub, &err), 0);
    k->other = gen2;
    free(pub);
    free(cert);
    EVP_PKEY_free(gen);
    *state = k;
    return 0;
}

static int teardown(void **state)
{
    keys_t *k = *state;
    EVP_PKEY_free(k->priv);
    EVP_PKEY_free(k->pub);
    EVP_PKEY_free(k->cert_pub);
    EVP_PKEY_free(k->other);
    free(k->priv_pem);
    free(k);
    return 0;
}

/* noinline: gcc 12 at -O2 misreads the out-parameter as a dangling pointer */
__attribute__((noinline)) static char *sign(keys_t *k, const char *kid, const char *claims)
{
    char *tok = NULL;
    sl_err_t err;
    assert_int_equal(sl_jwt_sign_rs256(k->priv, kid, claims, strlen(claims), &tok, &err), 0);
    return tok;
}

/* base64url of s, for hand-made tokens. */
static char *b64(const char *s)
{
    char *out = malloc(4 * (strlen(s) + 2) / 3 + 1);
    sl_b64url_encode((const uint8_t *)s, strlen(s), out);
    return out;
}

static int verify(EVP_PKEY *key, const char *tok, sl_err_t *err)
{
    sl_jwt_t jwt;
    int rc = sl_jwt_verify_rs256(key, tok, strlen(tok), &jwt, err);
    if (rc == 0)
        sl_jwt_free(&jwt);
    return rc;
}

static void test_sign_verify_round_trip(void **state)
{
    keys_t *k = *state;
    const char *claims = "{\"iss\":\"a\",\"n\":1}";
    char *tok = sign(k, "key-1", claims);
    sl_jwt_t jwt;
    sl_err_t err;
    assert_int_equal(sl_jwt_verify_rs256(k->pub, tok, strlen(tok), &jwt, &err), 0);
    assert_string_equal(jwt.header, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"key-1\"}");
    assert_string_equal(jwt.claims, claims);
    assert_int_equal(jwt.claims_len, strlen(claims));
    sl_jwt_free(&jwt);
    /* The same token verifies under the certificate's key and the private key. */
    assert_int_equal(verify(k->cert_pub, tok, &err), 0);
    assert_int_equal(verify(k->priv, tok, &err), 0);
    /* Three segments, base64url only. */
    assert_null(strpbrk(tok, "+/= "));
    free(tok);

    tok = sign(k, NULL, claims);
    assert_int_equal(sl_jwt_verify_rs256(k->pub, tok, strlen(tok), &jwt, &err), 0);
    assert_string_equal(jwt.header, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
    sl_jwt_free(&jwt);
    free(tok);
}

static void test_tampered_token_rejected(void **state)
{
    keys_t *k = *state;
    char *tok = sign(k, "key-1", "{\"iss\":\"a\",\"scope\":\"x\"}");
    sl_err_t err;
    /* Offsets, not pointers: tok is modified in place below. */
    size_t d1 = (size_t)(strchr(tok, '.') - tok), d2 = (size_t)(strrchr(tok, '.') - tok);
    /* A changed claims character. */
    char saved = tok[d1 + 3];
    tok[d1 + 3] = saved == 'A' ? 'B' : 'A';
    assert_int_equal(verify(k->pub, tok, &err), SL_EPERM);
    assert_non_null(strstr(err.msg, "signature does not verify"));
    tok[d1 + 3] = saved;
    assert_int_equal(verify(k->pub, tok, &err), 0);
    /* A changed signature character. */
    saved = tok[d2 + 20];
    tok[d2 + 20] = saved == 'A' ? 'B' : 'A';
    assert_int_equal(verify(k->pub, tok, &err), SL_EPERM);
    tok[d2 + 20] = saved;
    assert_int_equal(verify(k->pub, tok, &err), 0);
    /* A truncated signature. */
    char *cut = strndup(tok, strlen(tok) - 4);
    assert_true(verify(k->pub, cut, &err) < 0);
    free(cut);
    /* Claims swapped in from another validly signed token. */
    char *other = sign(k, "key-1", "{\"iss\":\"b\",\"scope\":\"x\"}");
    size_t o1 = (size_t)(strchr(other, '.') - other), o2 = (size_t)(strrchr(other, '.') - other);
    char spliced[2048];
    snprintf(spliced, sizeof(spliced), "%.*s%.*s%s", (int)d1, tok, (int)(o2 - o1), other + o1, tok + d2);
    assert_int_equal(verify(k->pub, spliced, &err), SL_EPERM);
    free(other);
    free(tok);
}

static void test_wrong_key_rejected(void **state)
{
    keys_t *k = *state;
    char *tok = sign(k, "key-1", "{}");
    sl_err_t err;
    assert_int_equal(verify(k->other, tok, &err), SL_EPERM);
    free(tok);
}

static void test_alg_none_and_others_rejected(void **state)
{
    keys_t *k = *state;
    sl_err_t err;
    char *claims = b64("{\"iss\":\"a\"}");
    char tok[1024];
    static const char *headers[] = {
        "{\"alg\":\"none\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"rs256\"}",
        "{\"alg\":\"RS256 \"}",
        "{\"typ\":\"JWT\"}",
        "{\"alg\":[\"RS256\"]}",
        "{\"alg\":\"RS256\",\"crit\":[\"exp\"]}",
        "[\"RS256\"]",
        "not json",
    };
    /* A genuine RS256 signature, to show it is never even looked at. */
    char *real = sign(k, NULL, "{\"iss\":\"a\"}");
    const char *realsig = strrchr(real, '.') + 1;
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char *h = b64(headers[i]);
        snprintf(tok, sizeof(tok), "%s.%s.", h, claims);
        assert_int_equal(verify(k->pub, tok, &err), SL_EINVAL);
        snprintf(tok, sizeof(tok), "%s.%s.%s", h, claims, realsig);
        assert_int_equal(verify(k->pub, tok, &err), SL_EINVAL);
        free(h);
    }
    /* An HS256 token keyed with the public key's PEM (the classic confusion). */
    char *h = b64("{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
    snprintf(tok, sizeof(tok), "%s.%s", h, claims);
    uint8_t mac[32];
    sl_hmac_sha256((const uint8_t *)"key", 3, tok, strlen(tok), mac);
    char macb64[64];
    sl_b64url_encode(mac, 32, macb64);
    strcat(tok, ".");
    strcat(tok, macb64);
    assert_int_equal(verify(k->pub, tok, &err), SL_EINVAL);
    assert_non_null(strstr(err.msg, "alg must be RS256"));
    free(h);
    free(real);
    free(claims);
}

static void test_malformed_tokens_rejected(void **state)
{
    keys_t *k = *state;
    sl_err_t err;
    char *tok = sign(k, "k", "{\"a\":1}");
    char buf[2048];
    static const char *bad[] = {"", "abc", "a.b", "a.b.c.d", "..", "e30.e30.", ".e30.AAAA"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(verify(k->pub, bad[i], &err), SL_EINVAL);
    /* Padding or characters outside base64url in any segment. */
    snprintf(buf, sizeof(buf), "%s=", tok);
    assert_int_equal(verify(k->pub, buf, &err), SL_EINVAL);
    snprintf(buf, sizeof(buf), "%s", tok);
    *strchr(buf, '.') = '+';
    assert_int_equal(verify(k->pub, buf, &err), SL_EINVAL);
    snprintf(buf, sizeof(buf), "%s", tok);
    buf[2] = '/';
    assert_int_equal(verify(k->pub, buf, &err), SL_EINVAL);
    snprintf(buf, sizeof(buf), " %s", tok);
    assert_int_equal(verify(k->pub, buf, &err), SL_EINVAL);
    /* An extra segment. */
    snprintf(buf, sizeof(buf), "%s.e30", tok);
    assert_int_equal(verify(k->pub, buf, &err), SL_EINVAL);
    /* Too long. */
    char *huge = malloc(SL_JWT_MAX_LEN + 2);
    memset(huge, 'A', SL_JWT_MAX_LEN + 1);
    huge[SL_JWT_MAX_LEN + 1] = '\0';
    assert_int_equal(verify(k->pub, huge, &err), SL_EINVAL);
    free(huge);
    free(tok);
}

static void test_sign_rejects_bad_input(void **state)
{
    keys_t *k = *state;
    char *tok = NULL;
    sl_err_t err;
    assert_int_equal(sl_jwt_sign_rs256(k->priv, NULL, "[1]", 3, &tok, &err), SL_EINVAL);
    assert_int_equal(sl_jwt_sign_rs256(k->priv, NULL, "{", 1, &tok, &err), SL_EINVAL);
    /* A public key cannot sign. */
    assert_int_equal(sl_jwt_sign_rs256(k->pub, NULL, "{}", 2, &tok, &err), SL_ECRYPTO);
    assert_null(tok);
    /* kid is escaped into the header. */
    tok = sign(k, "a\"b\\c", "{}");
    sl_jwt_t jwt;
    assert_int_equal(sl_jwt_verify_rs256(k->pub, tok, strlen(tok), &jwt, &err), 0);
    assert_string_equal(jwt.header, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"a\\\"b\\\\c\"}");
    sl_jwt_free(&jwt);
    free(tok);
}

static void test_key_loading(void **state)
{
    keys_t *k = *state;
    sl_err_t err;
    EVP_PKEY *key = NULL;
    assert_int_equal(sl_jwt_load_private_pem("garbage", 7, &key, &err), SL_EINVAL);
    assert_int_equal(sl_jwt_load_public_pem("garbage", 7, &key, &err), SL_EINVAL);
    assert_int_equal(sl_jwt_load_private_pem(NULL, 0, &key, &err), SL_EINVAL);
    /* A private key is not a public key PEM. */
    assert_int_equal(sl_jwt_load_public_pem(k->priv_pem, strlen(k->priv_pem), &key, &err), SL_EINVAL);

    /* Encrypted keys are refused without prompting. */
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, k->other, EVP_aes_256_cbc(), (unsigned char *)"pw", 2, NULL, NULL),
                     1);
    char *enc = bio_string(bio);
    BIO_free(bio);
    assert_int_equal(sl_jwt_load_private_pem(enc, strlen(enc), &key, &err), SL_EINVAL);
    free(enc);

    /* Short RSA keys and non-RSA keys are refused. */
    EVP_PKEY *small = EVP_RSA_gen(1024), *ec = EVP_EC_gen("P-256");
    char *pem = private_pem(small);
    assert_int_equal(sl_jwt_load_private_pem(pem, strlen(pem), &key, &err), SL_EINVAL);
    assert_non_null(strstr(err.msg, "1024 bits"));
    free(pem);
    pem = private_pem(ec);
    assert_int_equal(sl_jwt_load_private_pem(pem, strlen(pem), &key, &err), SL_EINVAL);
    assert_non_null(strstr(err.msg, "not an RSA key"));
    free(pem);
    char *tok = NULL;
    assert_int_equal(sl_jwt_sign_rs256(ec, NULL, "{}", 2, &tok, &err), SL_EINVAL);
    EVP_PKEY_free(small);
    EVP_PKEY_free(ec);
}

static void test_google_claims(void **state)
{
    char *claims;
    sl_err_t err;
    assert_int_equal(sl_jwt_google_claims(EMAIL, NULL, TOKEN_URI, NOW, &claims, &err), 0);
    assert_string_equal(claims, "{\"iss\":\"" EMAIL "\",\"scope\":\"https://www.googleapis.com/auth/cloud-platform\","
                                "\"aud\":\"https://oauth2.googleapis.com/token\",\"iat\":1767225600,"
                                "\"exp\":1767229200}");
    free(claims);
    assert_int_equal(sl_jwt_google_claims("a\"b", "s1 s2", "https://t/", NOW, &claims, &err), 0);
    assert_string_equal(claims, "{\"iss\":\"a\\\"b\",\"scope\":\"s1 s2\",\"aud\":\"https://t/\",\"iat\":1767225600,"
                                "\"exp\":1767229200}");
    free(claims);
    assert_int_equal(sl_jwt_google_claims("", NULL, TOKEN_URI, NOW, &claims, &err), SL_EINVAL);
    assert_int_equal(sl_jwt_google_claims(EMAIL, NULL, "", NOW, &claims, &err), SL_EINVAL);
}

static void test_google_assertion_verified_by_token_endpoint(void **state)
{
    keys_t *k = *state;
    char *tok;
    sl_err_t err;
    assert_int_equal(sl_jwt_google_assertion(k->priv, "0123abcd", EMAIL, NULL, TOKEN_URI, NOW, &tok, &err), 0);
    /* The token endpoint's side. */
    sl_jwt_t jwt;
    sl_jwt_google_t g;
    assert_int_equal(sl_jwt_verify_rs256(k->pub, tok, strlen(tok), &jwt, &err), 0);
    assert_non_null(strstr(jwt.header, "\"kid\":\"0123abcd\""));
    assert_int_equal(sl_jwt_check_google_claims(jwt.claims, jwt.claims_len, TOKEN_URI, NOW + 10, 60, &g, &err), 0);
    assert_string_equal(g.iss, EMAIL);
    assert_string_equal(g.scope, SL_JWT_GOOGLE_SCOPE);
    assert_true(g.iat == NOW);
    assert_true(g.exp == NOW + 3600);
    /* Wrong audience, expired, not yet valid. */
    assert_int_equal(sl_jwt_check_google_claims(jwt.claims, jwt.claims_len, "https://other/token", NOW, 60, &g, &err),
                     SL_EINVAL);
    assert_int_equal(sl_jwt_check_google_claims(jwt.claims, jwt.claims_len, TOKEN_URI, NOW + 3600 + 61, 60, &g, &err),
                     SL_EPERM);
    assert_int_equal(sl_jwt_check_google_claims(jwt.claims, jwt.claims_len, TOKEN_URI, NOW - 61, 60, &g, &err),
                     SL_EPERM);
    sl_jwt_free(&jwt);
    free(tok);
}

static void test_google_claims_checks(void **state)
{
    sl_jwt_google_t g;
    sl_err_t err;
    static const struct {
        const char *claims;
        int rc;
    } cases[] = {
        {"{\"iss\":\"a\",\"scope\":\"s\",\"aud\":\"" TOKEN_URI "\",\"iat\":1767225600,\"exp\":1767229200}", 0},
        /* lifetime above one hour */
        {"{\"iss\":\"a\",\"scope\":\"s\",\"aud\":\"" TOKEN_URI "\",\"iat\":1767225600,\"exp\":1767229201}", SL_EPERM},
        /* exp not after iat */
        {"{\"iss\":\"a\",\"scope\":\"s\",\"aud\":\"" TOKEN_URI "\",\"iat\":1767225600,\"exp\":1767225600}", SL_EPERM},
        {"{\"scope\":\"s\",\"aud\":\"" TOKEN_URI "\",\"iat\":1767225600,\"exp\":1767229200}", SL_EINVAL},
        {"{\"iss\":\"\",\"scope\":\"s\",\"aud\":\"" TOKEN_URI "\",\"iat\":1767225600,\"exp\":1767229200}", SL_EINVAL},
        {"{\"iss\":\"a\",\"aud\":\"" TOKEN_URI "\",\"iat\":1767225600,\"exp\":1767229200}", SL_EINVAL},
        {"{\"iss\":\"a\",\"scope\":\"s\",\"iat\":1767225600,\"exp\":1767229200}", SL_EINVAL},
        {"{\"iss\":\"a\",\"scope\":\"s\",\"aud\":[\"" TOKEN_URI "\"],\"iat\":1767225600,\"exp\":1767229200}",
         SL_EINVAL},
        {"{\"iss\":\"a\",\"scope\":\"s\",\"aud\":\"" TOKEN_URI "\",\"iat\":\"1767225600\",\"exp\":1767229200}",
         SL_EINVAL},
        {"{\"iss\":\"a\",\"scope\":\"s\",\"aud\":\"" TOKEN_URI "\",\"iat\":1767225600.5,\"exp\":1767229200}",
         SL_EINVAL},
        {"{\"iss\":\"a\",\"scope\":\"s\",\"aud\":\"" TOKEN_URI "\",\"exp\":1767229200}", SL_EINVAL},
        {"[1]", SL_EINVAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = sl_jwt_check_google_claims(cases[i].claims, strlen(cases[i].claims), TOKEN_URI, NOW, 60, &g, &err);
        if (rc != cases[i].rc)
            fprintf(stderr, "case %zu: got %d want %d (%s)\n", i, rc, cases[i].rc, err.msg);
        assert_int_equal(rc, cases[i].rc);
    }
}

/* ---- sl_b64 ---- */

static void test_b64_rfc4648_vectors(void **state)
{
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char out[16];
        uint8_t dec[16];
        size_t n;
        assert_int_equal(sl_b64_encode((const uint8_t *)plain[i], strlen(plain[i]), out), strlen(enc[i]));
        assert_string_equal(out, enc[i]);
        assert_int_equal(sl_b64_decode(enc[i], strlen(enc[i]), dec, sizeof(dec), &n), 0);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(dec, plain[i], n);
        /* base64url is the same text without padding here. */
        size_t ulen = strcspn(enc[i], "=");
        assert_int_equal(sl_b64url_decode(enc[i], ulen, dec, sizeof(dec), &n), 0);
        assert_int_equal(n, strlen(plain[i]));
    }
}

static void test_b64_strict(void **state)
{
    uint8_t out[16];
    size_t n;
    static const char *bad_std[] = {"Zg=", "Zg", "Zh==", "Zm9=", "Z===", "====", "Zm9v\n", "Zm 9", "Zg==Zg==", "-_-_"};
    for (size_t i = 0; i < sizeof(bad_std) / sizeof(bad_std[0]); i++)
        assert_int_equal(sl_b64_decode(bad_std[i], strlen(bad_std[i]), out, sizeof(out), &n), SL_EINVAL);
    static const char *bad_url[] = {"Z", "Zg==", "Zh", "+/+/", "Zm9vY"};
    for (size_t i = 0; i < sizeof(bad_url) / sizeof(bad_url[0]); i++)
        assert_int_equal(sl_b64url_decode(bad_url[i], strlen(bad_url[i]), out, sizeof(out), &n), SL_EINVAL);
    assert_int_equal(sl_b64url_decode("-_-_", 4, out, sizeof(out), &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "\xfb\xff\xbf", 3);
    assert_int_equal(sl_b64_decode("+/+/", 4, out, sizeof(out), &n), 0);
    assert_memory_equal(out, "\xfb\xff\xbf", 3);
    assert_int_equal(sl_b64_decode("Zm9vYmFy", 8, out, 5, &n), SL_ETOOBIG);
    /* Binary round trip through both alphabets. */
    uint8_t bin[256], back[256];
    char txt[SL_B64_ENCODED_SIZE(256)];
    for (int i = 0; i < 256; i++)
        bin[i] = (uint8_t)i;
    for (size_t len = 0; len <= 256; len += 37) {
        sl_b64_encode(bin, len, txt);
        assert_int_equal(sl_b64_decode(txt, strlen(txt), back, sizeof(back), &n), 0);
        assert_int_equal(n, len);
        assert_memory_equal(back, bin, len);
        sl_b64url_encode(bin, len, txt);
        assert_int_equal(sl_b64url_decode(txt, strlen(txt), back, sizeof(back), &n), 0);
        assert_int_equal(n, len);
        assert_memory_equal(back, bin, len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify_round_trip),
        cmocka_unit_test(test_tampered_token_rejected),
        cmocka_unit_test(test_wrong_key_rejected),
        cmocka_unit_test(test_alg_none_and_others_rejected),
        cmocka_unit_test(test_malformed_tokens_rejected),
        cmocka_unit_test(test_sign_rejects_bad_input),
        cmocka_unit_test(test_key_loading),
        cmocka_unit_test(test_google_claims),
        cmocka_unit_test(test_google_assertion_verified_by_token_endpoint),
        cmocka_unit_test(test_google_claims_checks),
        cmocka_unit_test(test_b64_rfc4648_vectors),
        cmocka_unit_test(test_b64_strict),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
