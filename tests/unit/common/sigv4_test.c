/* Tests for common/sl_sigv4.c: AWS's published SigV4 test-suite vectors,
 * Bedrock path encoding, and the verifier (round trip and tampering). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sl_sigv4.h"

/* The test suite's credentials, scope and time (2015-08-30T12:36:00Z). */
#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_TIME ((time_t)1440938160)
#define SUITE_HOST "example.amazonaws.com"

typedef struct vector {
    const char *name;
    const char *method;
    const char *path;
    const char *query; /* NULL: none */
    sl_sigv4_kv_t headers[6];
    size_t nheaders;
    const char *body;
    const char *token;
    const char *signed_headers;
    const char *signature;
} vector_t;

#define KV(n, v)                                                                                                       \
    {                                                                                                                  \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                                             \
    }

/* clang-format off */
static const vector_t suite[] = {
    {"get-vanilla", "GET", "/", NULL, {KV("Host", SUITE_HOST)}, 1, "", NULL, "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"post-vanilla", "POST", "/", NULL, {KV("Host", SUITE_HOST)}, 1, "", NULL, "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-vanilla-query", "POST", "/", "Param1=value1", {KV("Host", SUITE_HOST)}, 1, "", NULL, "host;x-amz-date",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    {"get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1", {KV("Host", SUITE_HOST)}, 1, "",
     NULL, "host;x-amz-date", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"get-vanilla-query-unreserved", "GET", "/",
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     {KV("Host", SUITE_HOST)}, 1, "", NULL, "host;x-amz-date",
     "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
    {"get-vanilla-utf8-query", "GET", "/", "\xe1\x88\xb4=bar", {KV("Host", SUITE_HOST)}, 1, "", NULL,
     "host;x-amz-date", "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
    {"get-vanilla-query-order-encoded", "GET", "/", "Param-3=Value3&Param=Value2&%E1%88%B4=Value1",
     {KV("Host", SUITE_HOST)}, 1, "", NULL, "host;x-amz-date",
     "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac"},
    {"post-header-key-sort", "POST", "/", NULL, {KV("Host", SUITE_HOST), KV("My-Header1", "value1")}, 2, "", NULL,
     "host;my-header1;x-amz-date", "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"},
    {"get-header-value-trim", "GET", "/", NULL,
     {KV("Host", SUITE_HOST), KV("My-Header1", " value1"), KV("My-Header2", " \"a   b   c\"")}, 3, "", NULL,
     "host;my-header1;my-header2;x-amz-date", "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
    {"get-header-key-duplicate", "GET", "/", NULL,
     {KV("Host", SUITE_HOST), KV("My-Header1", "value2"), KV("My-Header1", "value2"), KV("My-Header1", "value1")}, 4,
     "", NULL, "host;my-header1;x-amz-date", "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
    {"get-header-value-order", "GET", "/", NULL,
     {KV("Host", SUITE_HOST), KV("My-Header1", "value4"), KV("My-Header1", "value1"), KV("My-Header1", "value3"),
      KV("My-Header1", "value2")},
     5, "", NULL, "host;my-header1;x-amz-date", "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
    {"get-unreserved", "GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", NULL,
     {KV("Host", SUITE_HOST)}, 1, "", NULL, "host;x-amz-date",
     "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
    {"get-utf8", "GET", "/\xe1\x88\xb4", NULL, {KV("Host", SUITE_HOST)}, 1, "", NULL, "host;x-amz-date",
     "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
    {"get-space-normalized", "GET", "/example space/", NULL, {KV("Host", SUITE_HOST)}, 1, "", NULL,
     "host;x-amz-date", "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
    {"get-slashes-normalized", "GET", "//example//", NULL, {KV("Host", SUITE_HOST)}, 1, "", NULL, "host;x-amz-date",
     "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"},
    {"get-relative-relative-normalized", "GET", "/example1/example2/../..", NULL, {KV("Host", SUITE_HOST)}, 1, "",
     NULL, "host;x-amz-date", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"post-x-www-form-urlencoded", "POST", "/", NULL,
     {KV("Content-Type", "application/x-www-form-urlencoded"), KV("Host", SUITE_HOST)}, 2, "Param1=value1", NULL,
     "content-type;host;x-amz-date", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
    {"get-vanilla-with-session-token", "GET", "/", NULL, {KV("Host", SUITE_HOST)}, 1, "",
     "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267", "host;x-amz-date;x-amz-security-token",
     "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"},
};
/* clang-format on */

static int sign_vector(const vector_t *t, sl_sigv4_result_t *out, char *creq, size_t cap)
{
    char hash[65];
    sl_sigv4_payload_hash(t->body, strlen(t->body), hash);
    sl_sigv4_request_t req = {
        .method = t->method,
        .path = t->path,
        .path_len = strlen(t->path),
        .query = t->query,
        .query_len = t->query ? strlen(t->query) : 0,
        .headers = t->headers,
        .nheaders = t->nheaders,
        .payload_hash = hash,
        .region = "us-east-1",
        .service = "service",
        .time = SUITE_TIME,
    };
    sl_sigv4_creds_t creds = {AKID, SECRET, t->token};
    sl_err_t err = {0};
    int rc = sl_sigv4_sign(&req, &creds, out, creq, cap, &err);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", t->name, err.msg);
    return rc;
}

static void test_suite_vectors(void **state)
{
    int failures = 0;
    for (size_t i = 0; i < sizeof(suite) / sizeof(suite[0]); i++) {
        const vector_t *t = &suite[i];
        sl_sigv4_result_t out;
        char creq[2048], want[SL_SIGV4_AUTH_MAX];
        assert_int_equal(sign_vector(t, &out, creq, sizeof(creq)), 0);
        snprintf(want, sizeof(want),
                 "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                 "SignedHeaders=%s, Signature=%s",
                 t->signed_headers, t->signature);
        if (strcmp(out.authorization, want) != 0) {
            fprintf(stderr, "vector %s:\n  got  %s\n  want %s\ncanonical request:\n%s\n", t->name, out.authorization,
                    want, creq);
            failures++;
        }
        assert_string_equal(out.amz_date, "20150830T123600Z");
    }
    assert_int_equal(failures, 0);
}

static void test_get_vanilla_intermediates(void **state)
{
    sl_sigv4_result_t out;
    char creq[1024];
    assert_int_equal(sign_vector(&suite[0], &out, creq, sizeof(creq)), 0);
    assert_string_equal(creq, "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
                              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_string_equal(out.string_to_sign, "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
                                            "aws4_request\n"
                                            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
}

static void test_post_form_intermediates(void **state)
{
    const vector_t *t = &suite[16];
    sl_sigv4_result_t out;
    char creq[1024];
    assert_string_equal(t->name, "post-x-www-form-urlencoded");
    assert_int_equal(sign_vector(t, &out, creq, sizeof(creq)), 0);
    assert_string_equal(creq, "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
                              "x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
                              "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
    assert_string_equal(out.string_to_sign, "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
                                            "aws4_request\n"
                                            "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281");
}

static void test_canonical_uri_forms(void **state)
{
    char out[256];
    size_t n;
    /* Non-S3: the wire path is encoded again, so %3A becomes %253A. */
    assert_int_equal(sl_sigv4_canonical_uri("/model/a.b-v1%3A0/converse", 26, 0, out, sizeof(out), &n), 0);
    assert_string_equal(out, "/model/a.b-v1%253A0/converse");
    assert_int_equal(n, strlen(out));
    /* S3: decoded and encoded once, not normalized. */
    assert_int_equal(sl_sigv4_canonical_uri("/a%3a//b c", 10, SL_SIGV4_S3, out, sizeof(out), &n), 0);
    assert_string_equal(out, "/a%3A//b%20c");
    assert_int_equal(sl_sigv4_canonical_uri("", 0, 0, out, sizeof(out), &n), 0);
    assert_string_equal(out, "/");
    assert_int_equal(sl_sigv4_canonical_uri("/./a/./b/../c/", 14, 0, out, sizeof(out), &n), 0);
    assert_string_equal(out, "/a/c/");
    assert_int_equal(sl_sigv4_canonical_uri("relative", 8, 0, out, sizeof(out), &n), SL_EINVAL);
    assert_int_equal(sl_sigv4_canonical_uri("/abcdef", 7, 0, out, 4, &n), SL_ETOOBIG);
}

static void test_canonical_query_forms(void **state)
{
    char out[256];
    size_t n;
    const char *q = "b=2&a=z&a=y&c&%41=x+y&&d=%zz";
    assert_int_equal(sl_sigv4_canonical_query(q, strlen(q), out, sizeof(out), &n), 0);
    assert_string_equal(out, "A=x%2By&a=y&a=z&b=2&c=&d=%25zz");
    assert_int_equal(sl_sigv4_canonical_query(NULL, 0, out, sizeof(out), &n), 0);
    assert_string_equal(out, "");
}

static void test_uri_encode_model_id(void **state)
{
    char out[256];
    size_t n;
    const char *arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-v1:0";
    assert_int_equal(sl_sigv4_uri_encode(arn, strlen(arn), 0, out, sizeof(out), &n), 0);
    assert_string_equal(out, "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2F"
                             "us.anthropic.claude-v1%3A0");
    assert_int_equal(sl_sigv4_uri_encode("a/b c", 5, 1, out, sizeof(out), &n), 0);
    assert_string_equal(out, "a/b%20c");
    assert_int_equal(sl_sigv4_uri_encode("::", 2, 0, out, 6, &n), SL_ETOOBIG);
}

static void test_amz_date(void **state)
{
    char s[17];
    time_t t;
    sl_sigv4_amz_date(SUITE_TIME, s);
    assert_string_equal(s, "20150830T123600Z");
    assert_int_equal(sl_sigv4_parse_amz_date(s, 16, &t), 0);
    assert_true(t == SUITE_TIME);
    assert_int_equal(sl_sigv4_parse_amz_date("20150830T123600", 15, &t), SL_EINVAL);
    assert_int_equal(sl_sigv4_parse_amz_date("20151330T123600Z", 16, &t), SL_EINVAL);
    assert_int_equal(sl_sigv4_parse_amz_date("2015083OT123600Z", 16, &t), SL_EINVAL);
}

static void test_sign_rejects_bad_input(void **state)
{
    sl_sigv4_kv_t h[2] = {sl_sigv4_kv("host", SUITE_HOST), sl_sigv4_kv("X-Amz-Date", "20150830T123600Z")};
    sl_sigv4_request_t req = {.method = "GET",
                              .path = "/",
                              .path_len = 1,
                              .headers = h,
                              .nheaders = 2,
                              .payload_hash = SL_SIGV4_EMPTY_SHA256,
                              .region = "us-east-1",
                              .service = "service",
                              .time = SUITE_TIME};
    sl_sigv4_creds_t creds = {AKID, SECRET, NULL};
    sl_sigv4_result_t out;
    sl_err_t err;
    assert_int_equal(sl_sigv4_sign(&req, &creds, &out, NULL, 0, &err), SL_EINVAL); /* x-amz-date is ours */
    req.nheaders = 0;
    assert_int_equal(sl_sigv4_sign(&req, &creds, &out, NULL, 0, &err), SL_EINVAL); /* host missing */
    req.nheaders = 1;
    req.payload_hash = "E3B0";
    assert_int_equal(sl_sigv4_sign(&req, &creds, &out, NULL, 0, &err), SL_EINVAL);
    req.payload_hash = SL_SIGV4_EMPTY_SHA256;
    req.region = "us/east";
    assert_int_equal(sl_sigv4_sign(&req, &creds, &out, NULL, 0, &err), SL_EINVAL);
    req.region = "us-east-1";
    assert_int_equal(sl_sigv4_sign(&req, &creds, &out, NULL, 0, &err), 0);
}

/* ---- verifier ---- */

static const char *lookup(void *ctx, const char *akid, size_t len)
{
    (void)ctx;
    if (len == strlen(AKID) && memcmp(akid, AKID, len) == 0)
        return SECRET;
    if (len == 4 && memcmp(akid, "AKID", 4) == 0)
        return "another-secret";
    return NULL;
}

/* A Bedrock ConverseStream request as the data plane sends it. */
typedef struct bedrock_req {
    char path[256];
    const char *body;
    sl_sigv4_kv_t headers[8];
    size_t nheaders;
    sl_sigv4_result_t sig;
    char token_hdr[64];
} bedrock_req_t;

#define BEDROCK_HOST "bedrock-runtime.us-east-1.amazonaws.com"
#define BEDROCK_MODEL "anthropic.claude-3-5-sonnet-20240620-v1:0"
#define BEDROCK_BODY "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}]}"

static void make_bedrock(bedrock_req_t *r, time_t now, const char *token)
{
    char model[128];
    size_t n;
    assert_int_equal(sl_sigv4_uri_encode(BEDROCK_MODEL, strlen(BEDROCK_MODEL), 0, model, sizeof(model), &n), 0);
    snprintf(r->path, sizeof(r->path), "/model/%s/converse-stream", model);
    r->body = BEDROCK_BODY;
    sl_sigv4_kv_t signed_h[2] = {sl_sigv4_kv("host", BEDROCK_HOST), sl_sigv4_kv("content-type", "application/json")};
    char hash[65];
    sl_sigv4_payload_hash(r->body, strlen(r->body), hash);
    sl_sigv4_request_t req = {.method = "POST",
                              .path = r->path,
                              .path_len = strlen(r->path),
                              .headers = signed_h,
                              .nheaders = 2,
                              .payload_hash = hash,
                              .region = "us-east-1",
                              .service = "bedrock",
                              .time = now};
    sl_sigv4_creds_t creds = {AKID, SECRET, token};
    assert_int_equal(sl_sigv4_sign(&req, &creds, &r->sig, NULL, 0, NULL), 0);
    /* What arrives at the server, in the client's case and order. */
    r->nheaders = 0;
    r->headers[r->nheaders++] = sl_sigv4_kv("Host", BEDROCK_HOST);
    r->headers[r->nheaders++] = sl_sigv4_kv("Content-Type", "application/json");
    r->headers[r->nheaders++] = sl_sigv4_kv("Accept", "application/vnd.amazon.eventstream");
    r->headers[r->nheaders++] = sl_sigv4_kv("X-Amz-Date", r->sig.amz_date);
    r->headers[r->nheaders++] = sl_sigv4_kv("Authorization", r->sig.authorization);
    if (token)
        r->headers[r->nheaders++] = sl_sigv4_kv("X-Amz-Security-Token", token);
}

static int verify_bedrock(const bedrock_req_t *r, time_t now, sl_sigv4_verdict_t *v, char *creq, size_t cap)
{
    sl_sigv4_verify_input_t in = {
        .method = "POST",
        .path = r->path,
        .path_len = strlen(r->path),
        .headers = r->headers,
        .nheaders = r->nheaders,
        .body = r->body,
        .body_len = strlen(r->body),
        .region = "us-east-1",
        .service = "bedrock",
        .now = now,
        .lookup = lookup,
    };
    return sl_sigv4_verify(&in, v, creq, cap);
}

#define NOW ((time_t)1767225600) /* 2026-01-01T00:00:00Z */

static void test_bedrock_round_trip(void **state)
{
    bedrock_req_t r;
    sl_sigv4_verdict_t v;
    char creq[2048];
    make_bedrock(&r, NOW, NULL);
    assert_string_equal(r.path, "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream");
    assert_int_equal(verify_bedrock(&r, NOW + 60, &v, creq, sizeof(creq)), 0);
    assert_int_equal(v.reason, SL_SIGV4_OK);
    assert_string_equal(v.access_key_id, AKID);
    /* The canonical URI double-encodes the colon, as AWS computes it. */
    assert_non_null(strstr(creq, "\n/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse-stream\n"));
    assert_non_null(strstr(creq, "\ncontent-type;host;x-amz-date\n"));
    assert_non_null(strstr(r.sig.authorization, "/20260101/us-east-1/bedrock/aws4_request, "));
}

static void test_bedrock_with_session_token(void **state)
{
    bedrock_req_t r;
    sl_sigv4_verdict_t v;
    make_bedrock(&r, NOW, "FQoGZXIvYXdzEXAMPLETOKEN");
    assert_non_null(strstr(r.sig.authorization, "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"));
    assert_int_equal(verify_bedrock(&r, NOW, &v, NULL, 0), 0);
    /* The token is signed: changing it breaks the signature. */
    r.headers[5] = sl_sigv4_kv("X-Amz-Security-Token", "FQoGZXIvYXdzEXAMPLETOKEX");
    assert_int_equal(verify_bedrock(&r, NOW, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_MISMATCH);
}

static void test_tampered_body_rejected(void **state)
{
    bedrock_req_t r;
    sl_sigv4_verdict_t v;
    make_bedrock(&r, NOW, NULL);
    r.body = "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"ho\"}]}]}";
    assert_int_equal(verify_bedrock(&r, NOW, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_MISMATCH);
    assert_string_equal(sl_sigv4_error_type(v.reason), "InvalidSignatureException");
    assert_int_equal(sl_sigv4_http_status(v.reason), 403);
    assert_non_null(strstr(v.message, "The request signature we calculated does not match the signature you "
                                      "provided."));
}

static void test_tampered_header_rejected(void **state)
{
    bedrock_req_t r;
    sl_sigv4_verdict_t v;
    make_bedrock(&r, NOW, NULL);
    r.headers[1] = sl_sigv4_kv("Content-Type", "text/plain");
    assert_int_equal(verify_bedrock(&r, NOW, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_MISMATCH);
    /* An unsigned header may change freely. */
    make_bedrock(&r, NOW, NULL);
    r.headers[2] = sl_sigv4_kv("Accept", "*/*");
    assert_int_equal(verify_bedrock(&r, NOW, &v, NULL, 0), 0);
    /* So may the path not. */
    make_bedrock(&r, NOW, NULL);
    memcpy(strstr(r.path, "converse-stream"), "converse-strean", 15);
    assert_int_equal(verify_bedrock(&r, NOW, &v, NULL, 0), SL_EPERM);
}

static void test_signed_header_removed_rejected(void **state)
{
    bedrock_req_t r;
    sl_sigv4_verdict_t v;
    make_bedrock(&r, NOW, NULL);
    r.headers[1] = sl_sigv4_kv("X-Other", "application/json");
    assert_int_equal(verify_bedrock(&r, NOW, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_INCOMPLETE);
    assert_int_equal(sl_sigv4_http_status(v.reason), 400);
}

static void test_wrong_key_rejected(void **state)
{
    bedrock_req_t r;
    sl_sigv4_verdict_t v;
    /* Unknown access key id. */
    make_bedrock(&r, NOW, NULL);
    char auth[SL_SIGV4_AUTH_MAX];
    const char *cred = strstr(r.sig.authorization, "Credential=AKIDEXAMPLE/");
    assert_non_null(cred);
    snprintf(auth, sizeof(auth), "AWS4-HMAC-SHA256 Credential=AKIDUNKNOWN/%s",
             cred + strlen("Credential=AKIDEXAMPLE/"));
    r.headers[4] = sl_sigv4_kv("Authorization", auth);
    assert_int_equal(verify_bedrock(&r, NOW, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_UNKNOWN_KEY);
    assert_string_equal(sl_sigv4_error_type(v.reason), "UnrecognizedClientException");
    /* A known key id whose secret is not the one that signed. */
    snprintf(auth, sizeof(auth), "AWS4-HMAC-SHA256 Credential=AKID/%s", cred + strlen("Credential=AKIDEXAMPLE/"));
    r.headers[4] = sl_sigv4_kv("Authorization", auth);
    assert_int_equal(verify_bedrock(&r, NOW, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_MISMATCH);
}

static void test_expired_date_rejected(void **state)
{
    bedrock_req_t r;
    sl_sigv4_verdict_t v;
    make_bedrock(&r, NOW, NULL);
    assert_int_equal(verify_bedrock(&r, NOW + 15 * 60, &v, NULL, 0), 0);
    assert_int_equal(verify_bedrock(&r, NOW + 15 * 60 + 1, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_EXPIRED);
    assert_non_null(strstr(v.message, "Signature expired: 20260101T000000Z is now earlier than"));
    assert_int_equal(verify_bedrock(&r, NOW - 15 * 60 - 1, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_EXPIRED);
    assert_non_null(strstr(v.message, "Signature not yet current"));
}

static void test_scope_and_format_rejected(void **state)
{
    bedrock_req_t r;
    sl_sigv4_verdict_t v;
    make_bedrock(&r, NOW, NULL);
    sl_sigv4_verify_input_t in = {.method = "POST",
                                  .path = r.path,
                                  .path_len = strlen(r.path),
                                  .headers = r.headers,
                                  .nheaders = r.nheaders,
                                  .body = r.body,
                                  .body_len = strlen(r.body),
                                  .region = "eu-west-1",
                                  .service = "bedrock",
                                  .now = NOW,
                                  .lookup = lookup};
    assert_int_equal(sl_sigv4_verify(&in, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_BAD_SCOPE);
    in.region = NULL; /* any region */
    assert_int_equal(sl_sigv4_verify(&in, &v, NULL, 0), 0);
    in.service = "s3";
    assert_int_equal(sl_sigv4_verify(&in, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_BAD_SCOPE);
    in.service = "bedrock";

    /* No Authorization at all. */
    in.nheaders = 4;
    assert_int_equal(sl_sigv4_verify(&in, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_MISSING_AUTH);
    assert_string_equal(sl_sigv4_error_type(v.reason), "MissingAuthenticationTokenException");

    /* Malformed Authorization values. */
    static const char *bad[] = {
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA1 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=host, "
        "Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=host",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, "
        "Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws5_request, "
        "SignedHeaders=host;x-amz-date, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=host, "
        "Signature=00",
        "AWS4-HMAC-SHA256 Credential, SignedHeaders=host, Signature=00",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r.headers[4] = sl_sigv4_kv("Authorization", bad[i]);
        in.nheaders = r.nheaders;
        assert_int_equal(sl_sigv4_verify(&in, &v, NULL, 0), SL_EPERM);
        assert_int_equal(v.reason, SL_SIGV4_INCOMPLETE);
    }

    /* Scope date that is not the request's date. */
    make_bedrock(&r, NOW, NULL);
    char auth[SL_SIGV4_AUTH_MAX];
    snprintf(auth, sizeof(auth), "%s", r.sig.authorization);
    memcpy(strstr(auth, "/20260101/"), "/20251231/", 10);
    r.headers[4] = sl_sigv4_kv("Authorization", auth);
    in.headers = r.headers;
    assert_int_equal(sl_sigv4_verify(&in, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_BAD_SCOPE);
}

static void test_content_sha256_must_match_body(void **state)
{
    bedrock_req_t r;
    sl_sigv4_verdict_t v;
    make_bedrock(&r, NOW, NULL);
    r.headers[r.nheaders++] = sl_sigv4_kv("x-amz-content-sha256", SL_SIGV4_EMPTY_SHA256);
    assert_int_equal(verify_bedrock(&r, NOW, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_MISMATCH);
}

static void test_suite_vector_verifies(void **state)
{
    /* get-vanilla as received, with the suite's Authorization. */
    sl_sigv4_kv_t h[3] = {
        sl_sigv4_kv("Host", SUITE_HOST),
        sl_sigv4_kv("X-Amz-Date", "20150830T123600Z"),
        sl_sigv4_kv("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                                     "aws4_request, SignedHeaders=host;x-amz-date, "
                                     "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    };
    sl_sigv4_verify_input_t in = {.method = "GET",
                                  .path = "/",
                                  .path_len = 1,
                                  .headers = h,
                                  .nheaders = 3,
                                  .body = "",
                                  .body_len = 0,
                                  .region = "us-east-1",
                                  .service = "service",
                                  .now = SUITE_TIME + 30,
                                  .lookup = lookup};
    sl_sigv4_verdict_t v;
    assert_int_equal(sl_sigv4_verify(&in, &v, NULL, 0), 0);
    in.method = "POST";
    assert_int_equal(sl_sigv4_verify(&in, &v, NULL, 0), SL_EPERM);
    assert_int_equal(v.reason, SL_SIGV4_MISMATCH);
    assert_string_equal(v.string_to_sign, "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
                                          "aws4_request\n"
                                          "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suite_vectors),
        cmocka_unit_test(test_get_vanilla_intermediates),
        cmocka_unit_test(test_post_form_intermediates),
        cmocka_unit_test(test_canonical_uri_forms),
        cmocka_unit_test(test_canonical_query_forms),
        cmocka_unit_test(test_uri_encode_model_id),
        cmocka_unit_test(test_amz_date),
        cmocka_unit_test(test_sign_rejects_bad_input),
        cmocka_unit_test(test_bedrock_round_trip),
        cmocka_unit_test(test_bedrock_with_session_token),
        cmocka_unit_test(test_tampered_body_rejected),
        cmocka_unit_test(test_tampered_header_rejected),
        cmocka_unit_test(test_signed_header_removed_rejected),
        cmocka_unit_test(test_wrong_key_rejected),
        cmocka_unit_test(test_expired_date_rejected),
        cmocka_unit_test(test_scope_and_format_rejected),
        cmocka_unit_test(test_content_sha256_must_match_body),
        cmocka_unit_test(test_suite_vector_verifies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
