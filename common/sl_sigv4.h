/*
 * sl_sigv4.h - AWS Signature Version 4 (header-based, AWS4-HMAC-SHA256):
 * signing requests to AWS (Bedrock) and verifying them as AWS does (the
 * mock).
 *
 * Paths. A request's path is given as sent on the wire: already
 * percent-encoded, without the query. Build it with sl_sigv4_uri_encode(),
 * so a Bedrock model id such as "anthropic.claude-3-5-sonnet-20240620-v1:0"
 * goes out as ".../model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/...".
 * For every service but S3 the canonical URI is that wire path normalized
 * (empty, "." and ".." segments removed) and URI-encoded once more, so the
 * signature covers "...-v1%253A0": encoding the model id once is what makes
 * the two steps agree with AWS. SL_SIGV4_S3 selects S3's rules instead (no
 * normalization, the path encoded once).
 *
 * Query. The wire query (without '?') is split on '&', each name and value
 * percent-decoded and re-encoded with only A-Z a-z 0-9 - _ . ~ left bare,
 * and sorted by name then value. '+' is taken literally (it becomes %2B).
 *
 * Headers. Names are compared case-insensitively and signed lower-cased;
 * values are trimmed and inner runs of whitespace collapse to one space;
 * repeated headers join with ',' in the order given.
 *
 * Memory: nothing here keeps state; results go to caller structs and
 * buffers. The only allocation is OpenSSL's digest context per call.
 * Threads: every function is thread-safe.
 */
#ifndef SL_SIGV4_H
#define SL_SIGV4_H

#include <stddef.h>
#include <string.h>
#include <time.h>

#include "sl_err.h"

#define SL_SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SL_SIGV4_MAX_HEADERS 64 /* signed header lines per request */
#define SL_SIGV4_MAX_QUERY 64   /* query parameters per request */
#define SL_SIGV4_AUTH_MAX 2048  /* Authorization value, NUL included */
#define SL_SIGV4_STS_MAX 512    /* string to sign, NUL included */
#define SL_SIGV4_MAX_SKEW 900   /* seconds a request's date may be off */
/* Hex SHA-256 of an empty payload. */
#define SL_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Flags */
#define SL_SIGV4_S3 1u /* S3 rules: path encoded once, not normalized */

/* A header (or any name/value pair). Borrowed; need not be NUL-terminated. */
typedef struct sl_sigv4_kv {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} sl_sigv4_kv_t;

static inline sl_sigv4_kv_t sl_sigv4_kv(const char *name, const char *value)
{
    return (sl_sigv4_kv_t){name, strlen(name), value, strlen(value)};
}

typedef struct sl_sigv4_request {
    const char *method; /* "POST" */
    const char *path;   /* wire form, see above; "" means "/" */
    size_t path_len;
    const char *query; /* wire form without '?'; NULL when none */
    size_t query_len;
    /* Headers to sign; must include host. Signing adds x-amz-date and, with a
     * session token, x-amz-security-token: do not list those. */
    const sl_sigv4_kv_t *headers;
    size_t nheaders;
    const char *payload_hash; /* 64 lower-case hex chars: SHA-256 of the body */
    const char *region;       /* "us-east-1" */
    const char *service;      /* "bedrock" */
    time_t time;              /* signing time (UTC seconds) */
    unsigned flags;           /* SL_SIGV4_S3 */
} sl_sigv4_request_t;

typedef struct sl_sigv4_creds {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL without temporary credentials */
} sl_sigv4_creds_t;

typedef struct sl_sigv4_result {
    char amz_date[17];                     /* send as X-Amz-Date */
    char authorization[SL_SIGV4_AUTH_MAX]; /* send as Authorization */
    char signature[65];
    char string_to_sign[SL_SIGV4_STS_MAX];
} sl_sigv4_result_t;

/* Signs req. The caller then sends X-Amz-Date: out->amz_date,
 * Authorization: out->authorization and, with a session token,
 * X-Amz-Security-Token: creds->session_token, besides the headers it listed.
 * When creq is not NULL it receives the canonical request (truncated to
 * creq_cap - 1 bytes, NUL-terminated). Returns 0, SL_EINVAL (bad input,
 * with err) or SL_ETOOBIG (too many headers or query parameters, or an
 * Authorization value above SL_SIGV4_AUTH_MAX). */
int sl_sigv4_sign(const sl_sigv4_request_t *req, const sl_sigv4_creds_t *creds, sl_sigv4_result_t *out, char *creq,
                  size_t creq_cap, sl_err_t *err);

/* Hex SHA-256 of a body, for sl_sigv4_request_t.payload_hash. */
void sl_sigv4_payload_hash(const void *body, size_t len, char hex[65]);

/* Percent-encodes in[0..len) for a URI: bytes other than A-Z a-z 0-9 - _ . ~
 * become %XX (upper-case hex); '/' is kept when keep_slash. Writes a
 * NUL-terminated string to out and its length to *outlen. Returns 0 or
 * SL_ETOOBIG (cap too small; 3 * len + 1 always suffices). */
int sl_sigv4_uri_encode(const char *in, size_t len, int keep_slash, char *out, size_t cap, size_t *outlen);

/* The canonical URI and canonical query string of a wire path / query, as
 * signing computes them. Same returns as sl_sigv4_uri_encode, plus
 * SL_EINVAL (path not starting with '/') and SL_ETOOBIG (more than
 * SL_SIGV4_MAX_QUERY parameters or 256 path segments). */
int sl_sigv4_canonical_uri(const char *path, size_t len, unsigned flags, char *out, size_t cap, size_t *outlen);
int sl_sigv4_canonical_query(const char *query, size_t len, char *out, size_t cap, size_t *outlen);

/* ---- verification (the mock's side) ---- */

/* Why a request was refused. */
enum {
    SL_SIGV4_OK = 0,
    SL_SIGV4_MISSING_AUTH, /* no Authorization header */
    SL_SIGV4_INCOMPLETE,   /* malformed Authorization, missing X-Amz-Date or a signed header */
    SL_SIGV4_UNKNOWN_KEY,  /* access key id not known */
    SL_SIGV4_BAD_SCOPE,    /* wrong region or service, scope date not the request's */
    SL_SIGV4_EXPIRED,      /* X-Amz-Date more than 15 minutes from now */
    SL_SIGV4_MISMATCH,     /* signature (or x-amz-content-sha256) does not match */
};

/* Returns the secret access key of akid (NUL-terminated, borrowed until the
 * verification returns), or NULL when the key is unknown. */
typedef const char *(*sl_sigv4_secret_fn)(void *ctx, const char *akid, size_t akid_len);

typedef struct sl_sigv4_verify_input {
    const char *method;
    const char *path; /* raw, as received */
    size_t path_len;
    const char *query; /* raw, without '?'; NULL when none */
    size_t query_len;
    const sl_sigv4_kv_t *headers; /* every header received, any case */
    size_t nheaders;
    const void *body;
    size_t body_len;
    const char *region;  /* expected region; NULL accepts any */
    const char *service; /* expected service; NULL accepts any */
    time_t now;
    unsigned flags; /* SL_SIGV4_S3 */
    sl_sigv4_secret_fn lookup;
    void *lookup_ctx;
} sl_sigv4_verify_input_t;

typedef struct sl_sigv4_verdict {
    int reason;                            /* SL_SIGV4_* */
    char access_key_id[129];               /* from the credential, when parsed */
    char string_to_sign[SL_SIGV4_STS_MAX]; /* what the signature should cover, when computed */
    char message[1024];                    /* AWS-style message for the error body */
} sl_sigv4_verdict_t;

/* Verifies a received request: parses Authorization, looks the secret up,
 * checks scope and date (within SL_SIGV4_MAX_SKEW of now), recomputes the
 * signature over the headers named in SignedHeaders (host and x-amz-date
 * must be among them) and compares in constant time. When creq is not NULL
 * it receives the canonical request computed (as sl_sigv4_sign). Returns 0
 * when the request is authentic, otherwise SL_EPERM with v->reason and
 * v->message set. */
int sl_sigv4_verify(const sl_sigv4_verify_input_t *in, sl_sigv4_verdict_t *v, char *creq, size_t creq_cap);

/* AWS's error type for a reason ("InvalidSignatureException",
 * "UnrecognizedClientException", "IncompleteSignatureException",
 * "MissingAuthenticationTokenException"), for x-amzn-ErrorType; and the
 * HTTP status AWS answers with (403; 400 for SL_SIGV4_INCOMPLETE). */
const char *sl_sigv4_error_type(int reason);
int sl_sigv4_http_status(int reason);

/* Formats t as YYYYMMDDTHHMMSSZ (out: 17 bytes) / parses it back. */
void sl_sigv4_amz_date(time_t t, char out[17]);
int sl_sigv4_parse_amz_date(const char *s, size_t len, time_t *t);

#endif
