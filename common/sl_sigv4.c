/* sl_sigv4.c - AWS Signature Version 4: canonical request, signing key,
 * signature, and the verifier the mock uses. */
#include "sl_sigv4.h"

#include <stdarg.h>
#include <stdio.h>

#include <openssl/evp.h>

#include "sl_crypto.h"

#define MAX_SEGMENTS 256
#define SIGNED_HEADERS_MAX 1536

/* ---- output sink: feeds a digest and/or a capture buffer ---- */

typedef struct sink {
    EVP_MD_CTX *md; /* may be NULL */
    char *buf;      /* may be NULL; cap >= 1 when set */
    size_t cap, len;
    int overflow;
    size_t slen;
    char stage[512];
} sink_t;

static void sink_init(sink_t *s, EVP_MD_CTX *md, char *buf, size_t cap)
{
    s->md = md;
    s->buf = cap ? buf : NULL;
    s->cap = cap;
    s->len = 0;
    s->overflow = 0;
    s->slen = 0;
    if (s->buf)
        s->buf[0] = '\0';
}

static void sink_flush(sink_t *s)
{
    if (s->slen == 0)
        return;
    if (s->md)
        EVP_DigestUpdate(s->md, s->stage, s->slen);
    if (s->buf) {
        size_t room = s->cap - 1 - s->len, n = s->slen <= room ? s->slen : room;
        memcpy(s->buf + s->len, s->stage, n);
        s->len += n;
        s->buf[s->len] = '\0';
        if (n < s->slen)
            s->overflow = 1;
    }
    s->slen = 0;
}

static void sink_putc(sink_t *s, char c)
{
    if (s->slen == sizeof(s->stage))
        sink_flush(s);
    s->stage[s->slen++] = c;
}

static void sink_put(sink_t *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sink_putc(s, p[i]);
}

static void sink_puts(sink_t *s, const char *p)
{
    sink_put(s, p, strlen(p));
}

/* ---- character classes and encoding ---- */

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void put_encoded_byte(sink_t *s, unsigned char b)
{
    static const char hex[] = "0123456789ABCDEF";
    if (unreserved(b)) {
        sink_putc(s, (char)b);
    } else {
        sink_putc(s, '%');
        sink_putc(s, hex[b >> 4]);
        sink_putc(s, hex[b & 15]);
    }
}

/* Yields the encoded form of a wire component, one character at a time:
 * %XX escapes are decoded first, then every byte is encoded afresh, so
 * "a%3ab c" and "a:b%20c" both read as "a%3Ab%20c". */
typedef struct reenc {
    const char *p;
    size_t len, i;
    char pend[2];
    int npend;
} reenc_t;

static void reenc_init(reenc_t *r, const char *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->i = 0;
    r->npend = 0;
}

static int reenc_next(reenc_t *r)
{
    static const char hex[] = "0123456789ABCDEF";
    if (r->npend > 0) {
        int c = (unsigned char)r->pend[2 - r->npend];
        r->npend--;
        return c;
    }
    if (r->i >= r->len)
        return -1;
    unsigned char b;
    const char *p = r->p + r->i;
    if (p[0] == '%' && r->len - r->i >= 3 && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
        b = (unsigned char)(hexval(p[1]) << 4 | hexval(p[2]));
        r->i += 3;
    } else {
        b = (unsigned char)p[0];
        r->i++;
    }
    if (unreserved(b))
        return b;
    r->pend[0] = hex[b >> 4];
    r->pend[1] = hex[b & 15];
    r->npend = 2;
    return '%';
}

static void put_reencoded(sink_t *s, const char *p, size_t len)
{
    reenc_t r;
    int c;
    reenc_init(&r, p, len);
    while ((c = reenc_next(&r)) >= 0)
        sink_putc(s, (char)c);
}

static int cmp_reencoded(const char *a, size_t al, const char *b, size_t bl)
{
    reenc_t x, y;
    reenc_init(&x, a, al);
    reenc_init(&y, b, bl);
    for (;;) {
        int ca = reenc_next(&x), cb = reenc_next(&y);
        if (ca != cb)
            return ca - cb;
        if (ca < 0)
            return 0;
    }
}

int sl_sigv4_uri_encode(const char *in, size_t len, int keep_slash, char *out, size_t cap, size_t *outlen)
{
    sink_t s;
    if (cap == 0)
        return SL_ETOOBIG;
    sink_init(&s, NULL, out, cap);
    for (size_t i = 0; i < len; i++) {
        if (keep_slash && in[i] == '/')
            sink_putc(&s, '/');
        else
            put_encoded_byte(&s, (unsigned char)in[i]);
    }
    sink_flush(&s);
    if (s.overflow)
        return SL_ETOOBIG;
    *outlen = s.len;
    return 0;
}

/* ---- canonical URI ---- */

static int put_canonical_uri(sink_t *s, const char *path, size_t len, unsigned flags)
{
    if (len == 0) {
        sink_putc(s, '/');
        return 0;
    }
    if (path[0] != '/')
        return SL_EINVAL;
    if (flags & SL_SIGV4_S3) {
        size_t start = 0;
        for (size_t i = 0; i <= len; i++) {
            if (i == len || path[i] == '/') {
                put_reencoded(s, path + start, i - start);
                if (i < len)
                    sink_putc(s, '/');
                start = i + 1;
            }
        }
        return 0;
    }
    /* RFC 3986 dot-segment removal, plus dropping empty segments. */
    struct {
        size_t off, len;
    } seg[MAX_SEGMENTS];
    size_t n = 0, start = 1;
    int trailing = 0;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && path[i] != '/')
            continue;
        size_t sl = i - start;
        const char *sp = path + start;
        int last = i == len;
        if (sl == 0 || (sl == 1 && sp[0] == '.')) {
            trailing = last;
        } else if (sl == 2 && sp[0] == '.' && sp[1] == '.') {
            if (n > 0)
                n--;
            trailing = last;
        } else {
            if (n == MAX_SEGMENTS)
                return SL_ETOOBIG;
            seg[n].off = start;
            seg[n].len = sl;
            n++;
            trailing = 0;
        }
        start = i + 1;
    }
    sink_putc(s, '/');
    for (size_t k = 0; k < n; k++) {
        if (k > 0)
            sink_putc(s, '/');
        for (size_t j = 0; j < seg[k].len; j++)
            put_encoded_byte(s, (unsigned char)path[seg[k].off + j]);
    }
    if (n > 0 && trailing)
        sink_putc(s, '/');
    return 0;
}

int sl_sigv4_canonical_uri(const char *path, size_t len, unsigned flags, char *out, size_t cap, size_t *outlen)
{
    sink_t s;
    if (cap == 0)
        return SL_ETOOBIG;
    sink_init(&s, NULL, out, cap);
    int rc = put_canonical_uri(&s, path, len, flags);
    sink_flush(&s);
    if (rc < 0)
        return rc;
    if (s.overflow)
        return SL_ETOOBIG;
    *outlen = s.len;
    return 0;
}

/* ---- canonical query ---- */

typedef struct qparam {
    const char *name, *value;
    size_t nlen, vlen;
} qparam_t;

static int qparam_cmp(const qparam_t *a, const qparam_t *b)
{
    int c = cmp_reencoded(a->name, a->nlen, b->name, b->nlen);
    return c ? c : cmp_reencoded(a->value, a->vlen, b->value, b->vlen);
}

static int put_canonical_query(sink_t *s, const char *q, size_t len)
{
    qparam_t qp[SL_SIGV4_MAX_QUERY];
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && q[i] != '&')
            continue;
        if (i > start) {
            if (n == SL_SIGV4_MAX_QUERY)
                return SL_ETOOBIG;
            const char *eq = memchr(q + start, '=', i - start);
            qparam_t p = {.name = q + start};
            if (eq) {
                p.nlen = (size_t)(eq - (q + start));
                p.value = eq + 1;
                p.vlen = (size_t)(q + i - p.value);
            } else {
                p.nlen = i - start;
                p.value = "";
                p.vlen = 0;
            }
            /* insertion sort: stable, small n, no allocation */
            size_t k = n++;
            while (k > 0 && qparam_cmp(&qp[k - 1], &p) > 0) {
                qp[k] = qp[k - 1];
                k--;
            }
            qp[k] = p;
        }
        start = i + 1;
    }
    for (size_t k = 0; k < n; k++) {
        if (k > 0)
            sink_putc(s, '&');
        put_reencoded(s, qp[k].name, qp[k].nlen);
        sink_putc(s, '=');
        put_reencoded(s, qp[k].value, qp[k].vlen);
    }
    return 0;
}

int sl_sigv4_canonical_query(const char *query, size_t len, char *out, size_t cap, size_t *outlen)
{
    sink_t s;
    if (cap == 0)
        return SL_ETOOBIG;
    sink_init(&s, NULL, out, cap);
    int rc = put_canonical_query(&s, query, query ? len : 0);
    sink_flush(&s);
    if (rc < 0)
        return rc;
    if (s.overflow)
        return SL_ETOOBIG;
    *outlen = s.len;
    return 0;
}

/* ---- headers ---- */

static int name_cmp(const sl_sigv4_kv_t *a, const sl_sigv4_kv_t *b)
{
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    for (size_t i = 0; i < n; i++) {
        int c = lower((unsigned char)a->name[i]) - lower((unsigned char)b->name[i]);
        if (c)
            return c;
    }
    return (a->name_len > b->name_len) - (a->name_len < b->name_len);
}

/* Whether the header's name is lname (lower case, NUL-terminated). */
static int name_is(const char *name, size_t len, const char *lname)
{
    size_t n = strlen(lname);
    if (len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)name[i]) != lname[i])
            return 0;
    return 1;
}

static void put_trimmed(sink_t *s, const char *v, size_t n)
{
    size_t a = 0, b = n;
    while (a < b && is_ws(v[a]))
        a++;
    while (b > a && is_ws(v[b - 1]))
        b--;
    int in_ws = 0;
    for (size_t i = a; i < b; i++) {
        if (is_ws(v[i])) {
            if (!in_ws)
                sink_putc(s, ' ');
            in_ws = 1;
        } else {
            sink_putc(s, v[i]);
            in_ws = 0;
        }
    }
}

/* ---- the signature ---- */

static int valid_scope_part(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || is_ws(s[i]) || (unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static void put_digits(char *out, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

void sl_sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    put_digits(out, (unsigned)(tm.tm_year + 1900) % 10000, 4);
    put_digits(out + 4, (unsigned)tm.tm_mon + 1, 2);
    put_digits(out + 6, (unsigned)tm.tm_mday, 2);
    out[8] = 'T';
    put_digits(out + 9, (unsigned)tm.tm_hour, 2);
    put_digits(out + 11, (unsigned)tm.tm_min, 2);
    put_digits(out + 13, (unsigned)tm.tm_sec, 2);
    out[15] = 'Z';
    out[16] = '\0';
}

int sl_sigv4_parse_amz_date(const char *s, size_t len, time_t *t)
{
    int v[6];
    static const int pos[6] = {0, 4, 6, 9, 11, 13}, width[6] = {4, 2, 2, 2, 2, 2};
    if (len != 16 || s[8] != 'T' || s[15] != 'Z')
        return SL_EINVAL;
    for (int k = 0; k < 6; k++) {
        v[k] = 0;
        for (int j = 0; j < width[k]; j++) {
            char c = s[pos[k] + j];
            if (c < '0' || c > '9')
                return SL_EINVAL;
            v[k] = v[k] * 10 + (c - '0');
        }
    }
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
        return SL_EINVAL;
    struct tm tm = {
        .tm_year = v[0] - 1900, .tm_mon = v[1] - 1, .tm_mday = v[2], .tm_hour = v[3], .tm_min = v[4], .tm_sec = v[5]};
    *t = timegm(&tm);
    return 0;
}

void sl_sigv4_payload_hash(const void *body, size_t len, char hex[65])
{
    uint8_t h[SL_HASH_LEN];
    sl_sha256(body ? body : "", len, h);
    sl_hex_encode(h, SL_HASH_LEN, hex);
}

static int valid_hash_hex(const char *h)
{
    if (h == NULL || strlen(h) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return 0;
    return 1;
}

typedef struct computed {
    char amz_date[17];
    char signature[65];
    char string_to_sign[SL_SIGV4_STS_MAX];
    char signed_headers[SIGNED_HEADERS_MAX];
} computed_t;

/* Computes the signature of req over hdrs (which must include x-amz-date
 * and whatever else is signed). */
static int compute(const sl_sigv4_request_t *req, const sl_sigv4_kv_t *hdrs, size_t n, const char *secret,
                   computed_t *c, char *creq, size_t creq_cap, sl_err_t *err)
{
    if (req->method == NULL || req->method[0] == '\0')
        return sl_err_set(err, SL_EINVAL, "sigv4: missing method");
    if (req->region == NULL || !valid_scope_part(req->region))
        return sl_err_set(err, SL_EINVAL, "sigv4: invalid region \"%s\"", req->region ? req->region : "");
    if (req->service == NULL || !valid_scope_part(req->service))
        return sl_err_set(err, SL_EINVAL, "sigv4: invalid service \"%s\"", req->service ? req->service : "");
    if (!valid_hash_hex(req->payload_hash) &&
        !((req->flags & SL_SIGV4_S3) && req->payload_hash && strcmp(req->payload_hash, "UNSIGNED-PAYLOAD") == 0))
        return sl_err_set(err, SL_EINVAL, "sigv4: payload hash is not 64 lower-case hex characters");
    if (n > SL_SIGV4_MAX_HEADERS)
        return sl_err_set(err, SL_ETOOBIG, "sigv4: more than %d signed headers", SL_SIGV4_MAX_HEADERS);

    const sl_sigv4_kv_t *sorted[SL_SIGV4_MAX_HEADERS];
    int has_host = 0;
    for (size_t i = 0; i < n; i++) {
        const sl_sigv4_kv_t *h = &hdrs[i];
        if (h->name_len == 0)
            return sl_err_set(err, SL_EINVAL, "sigv4: empty header name");
        if (name_is(h->name, h->name_len, "host"))
            has_host = 1;
        size_t k = i;
        while (k > 0 && name_cmp(sorted[k - 1], h) > 0) {
            sorted[k] = sorted[k - 1];
            k--;
        }
        sorted[k] = h;
    }
    if (!has_host)
        return sl_err_set(err, SL_EINVAL, "sigv4: the host header must be signed");

    /* Signed headers: unique lower-case names in order. */
    size_t shl = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && name_cmp(sorted[i - 1], sorted[i]) == 0)
            continue;
        if (shl + sorted[i]->name_len + 2 > sizeof(c->signed_headers))
            return sl_err_set(err, SL_ETOOBIG, "sigv4: signed header names too long");
        if (shl > 0)
            c->signed_headers[shl++] = ';';
        for (size_t j = 0; j < sorted[i]->name_len; j++)
            c->signed_headers[shl++] = (char)lower((unsigned char)sorted[i]->name[j]);
    }
    c->signed_headers[shl] = '\0';

    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return sl_err_set(err, SL_ENOMEM, "sigv4: cannot create a digest context");
    }
    sink_t s;
    sink_init(&s, md, creq, creq ? creq_cap : 0);
    sink_puts(&s, req->method);
    sink_putc(&s, '\n');
    int rc = put_canonical_uri(&s, req->path ? req->path : "", req->path ? req->path_len : 0, req->flags);
    if (rc == 0) {
        sink_putc(&s, '\n');
        rc = put_canonical_query(&s, req->query ? req->query : "", req->query ? req->query_len : 0);
    }
    if (rc < 0) {
        EVP_MD_CTX_free(md);
        return sl_err_set(err, rc,
                          rc == SL_EINVAL ? "sigv4: path must start with '/'"
                                          : "sigv4: too many path segments or query parameters");
    }
    sink_putc(&s, '\n');
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && name_cmp(sorted[i], sorted[j]) == 0)
            j++;
        for (size_t k = 0; k < sorted[i]->name_len; k++)
            sink_putc(&s, (char)lower((unsigned char)sorted[i]->name[k]));
        sink_putc(&s, ':');
        for (size_t k = i; k < j; k++) {
            if (k > i)
                sink_putc(&s, ',');
            put_trimmed(&s, sorted[k]->value, sorted[k]->value_len);
        }
        sink_putc(&s, '\n');
        i = j;
    }
    sink_putc(&s, '\n');
    sink_put(&s, c->signed_headers, shl);
    sink_putc(&s, '\n');
    sink_puts(&s, req->payload_hash);
    sink_flush(&s);

    uint8_t digest[SL_HASH_LEN];
    unsigned int dlen = 0;
    int ok = EVP_DigestFinal_ex(md, digest, &dlen) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return sl_err_set(err, SL_EINTERNAL, "sigv4: digest failed");
    char creq_hex[65];
    sl_hex_encode(digest, SL_HASH_LEN, creq_hex);

    sl_sigv4_amz_date(req->time, c->amz_date);
    int sn = snprintf(c->string_to_sign, sizeof(c->string_to_sign), "%s\n%s\n%.8s/%s/%s/aws4_request\n%s",
                      SL_SIGV4_ALGORITHM, c->amz_date, c->amz_date, req->region, req->service, creq_hex);
    if (sn < 0 || (size_t)sn >= sizeof(c->string_to_sign))
        return sl_err_set(err, SL_ETOOBIG, "sigv4: string to sign too long");

    /* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
    char kseed[4 + 256];
    size_t slen = strlen(secret);
    if (slen > 256)
        return sl_err_set(err, SL_EINVAL, "sigv4: secret access key too long");
    memcpy(kseed, "AWS4", 4);
    memcpy(kseed + 4, secret, slen);
    uint8_t k1[SL_HASH_LEN], k2[SL_HASH_LEN], sig[SL_HASH_LEN];
    sl_hmac_sha256((const uint8_t *)kseed, 4 + slen, c->amz_date, 8, k1);
    sl_hmac_sha256(k1, SL_HASH_LEN, req->region, strlen(req->region), k2);
    sl_hmac_sha256(k2, SL_HASH_LEN, req->service, strlen(req->service), k1);
    sl_hmac_sha256(k1, SL_HASH_LEN, "aws4_request", 12, k2);
    sl_hmac_sha256(k2, SL_HASH_LEN, c->string_to_sign, (size_t)sn, sig);
    sl_hex_encode(sig, SL_HASH_LEN, c->signature);
    memset(kseed, 0, sizeof(kseed));
    memset(k1, 0, sizeof(k1));
    memset(k2, 0, sizeof(k2));
    return 0;
}

int sl_sigv4_sign(const sl_sigv4_request_t *req, const sl_sigv4_creds_t *creds, sl_sigv4_result_t *out, char *creq,
                  size_t creq_cap, sl_err_t *err)
{
    sl_sigv4_kv_t hdrs[SL_SIGV4_MAX_HEADERS];
    computed_t c;
    if (creds == NULL || creds->access_key_id == NULL || creds->access_key_id[0] == '\0' ||
        creds->secret_access_key == NULL)
        return sl_err_set(err, SL_EINVAL, "sigv4: missing credentials");
    if (strchr(creds->access_key_id, '/') != NULL || strlen(creds->access_key_id) > 128)
        return sl_err_set(err, SL_EINVAL, "sigv4: invalid access key id");
    size_t extra = creds->session_token ? 2 : 1;
    if (req->nheaders + extra > SL_SIGV4_MAX_HEADERS)
        return sl_err_set(err, SL_ETOOBIG, "sigv4: more than %d signed headers", SL_SIGV4_MAX_HEADERS);
    for (size_t i = 0; i < req->nheaders; i++) {
        const sl_sigv4_kv_t *h = &req->headers[i];
        if (name_is(h->name, h->name_len, "x-amz-date") || name_is(h->name, h->name_len, "authorization") ||
            name_is(h->name, h->name_len, "x-amz-security-token"))
            return sl_err_set(err, SL_EINVAL, "sigv4: header \"%.*s\" is added by the signer", (int)h->name_len,
                              h->name);
        hdrs[i] = *h;
    }
    char amz_date[17];
    sl_sigv4_amz_date(req->time, amz_date);
    size_t n = req->nheaders;
    hdrs[n++] = (sl_sigv4_kv_t){"x-amz-date", 10, amz_date, 16};
    if (creds->session_token)
        hdrs[n++] = sl_sigv4_kv("x-amz-security-token", creds->session_token);

    int rc = compute(req, hdrs, n, creds->secret_access_key, &c, creq, creq_cap, err);
    if (rc < 0)
        return rc;
    int an = snprintf(out->authorization, sizeof(out->authorization),
                      "%s Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s", SL_SIGV4_ALGORITHM,
                      creds->access_key_id, c.amz_date, req->region, req->service, c.signed_headers, c.signature);
    if (an < 0 || (size_t)an >= sizeof(out->authorization))
        return sl_err_set(err, SL_ETOOBIG, "sigv4: authorization value too long");
    memcpy(out->amz_date, c.amz_date, sizeof(out->amz_date));
    memcpy(out->signature, c.signature, sizeof(out->signature));
    memcpy(out->string_to_sign, c.string_to_sign, sizeof(out->string_to_sign));
    return 0;
}

/* ---- verification ---- */

const char *sl_sigv4_error_type(int reason)
{
    switch (reason) {
    case SL_SIGV4_OK:
        return "";
    case SL_SIGV4_MISSING_AUTH:
        return "MissingAuthenticationTokenException";
    case SL_SIGV4_INCOMPLETE:
        return "IncompleteSignatureException";
    case SL_SIGV4_UNKNOWN_KEY:
        return "UnrecognizedClientException";
    default:
        return "InvalidSignatureException";
    }
}

int sl_sigv4_http_status(int reason)
{
    if (reason == SL_SIGV4_OK)
        return 200;
    return reason == SL_SIGV4_INCOMPLETE ? 400 : 403;
}

static int refuse(sl_sigv4_verdict_t *v, int reason, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(sl_sigv4_verdict_t *v, int reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof(v->message), fmt, ap);
    va_end(ap);
    v->reason = reason;
    return SL_EPERM;
}

static const sl_sigv4_kv_t *find_header(const sl_sigv4_verify_input_t *in, const char *lname)
{
    for (size_t i = 0; i < in->nheaders; i++)
        if (name_is(in->headers[i].name, in->headers[i].name_len, lname))
            return &in->headers[i];
    return NULL;
}

typedef struct span {
    const char *p;
    size_t len;
} span_t;

static int span_is(span_t s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* Whether name (any case) is in the ';'-separated lower-case list. */
static int in_list(span_t list, const char *name, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= list.len; i++) {
        if (i < list.len && list.p[i] != ';')
            continue;
        if (i - start == len) {
            size_t k = 0;
            while (k < len && lower((unsigned char)name[k]) == list.p[start + k])
                k++;
            if (k == len)
                return 1;
        }
        start = i + 1;
    }
    return 0;
}

int sl_sigv4_verify(const sl_sigv4_verify_input_t *in, sl_sigv4_verdict_t *v, char *creq, size_t creq_cap)
{
    memset(v, 0, sizeof(*v));
    if (creq && creq_cap)
        creq[0] = '\0';
    const sl_sigv4_kv_t *auth = find_header(in, "authorization");
    if (auth == NULL)
        return refuse(v, SL_SIGV4_MISSING_AUTH, "Missing Authentication Token");

    /* AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex */
    const char *p = auth->value, *end = auth->value + auth->value_len;
    size_t alen = strlen(SL_SIGV4_ALGORITHM);
    if ((size_t)(end - p) <= alen || memcmp(p, SL_SIGV4_ALGORITHM, alen) != 0 || p[alen] != ' ')
        return refuse(v, SL_SIGV4_INCOMPLETE, "Authorization header requires the %s algorithm", SL_SIGV4_ALGORITHM);
    p += alen;
    span_t cred = {0}, signed_list = {0}, sig = {0};
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ','))
            p++;
        const char *q = p;
        while (q < end && *q != ',')
            q++;
        span_t part = {p, (size_t)(q - p)};
        while (part.len > 0 && part.p[part.len - 1] == ' ')
            part.len--;
        const char *eq = memchr(part.p, '=', part.len);
        if (part.len > 0) {
            if (eq == NULL)
                return refuse(v, SL_SIGV4_INCOMPLETE, "Authorization header parameter \"%.*s\" has no value",
                              (int)part.len, part.p);
            span_t key = {part.p, (size_t)(eq - part.p)}, val = {eq + 1, (size_t)(part.p + part.len - eq - 1)};
            if (span_is(key, "Credential"))
                cred = val;
            else if (span_is(key, "SignedHeaders"))
                signed_list = val;
            else if (span_is(key, "Signature"))
                sig = val;
        }
        p = q;
    }
    if (cred.p == NULL || signed_list.p == NULL || sig.p == NULL)
        return refuse(v, SL_SIGV4_INCOMPLETE, "Authorization header requires %s%s%sparameters",
                      cred.p ? "" : "'Credential' ", signed_list.p ? "" : "'SignedHeaders' ",
                      sig.p ? "" : "'Signature' ");

    /* The credential splits from the right: the key id is what is left. */
    span_t part[5];
    size_t cend = cred.len;
    for (int k = 4; k >= 1; k--) {
        size_t i = cend;
        while (i > 0 && cred.p[i - 1] != '/')
            i--;
        if (i == 0)
            return refuse(v, SL_SIGV4_INCOMPLETE,
                          "Credential should have the form "
                          "key-id/date/region/service/aws4_request");
        part[k] = (span_t){cred.p + i, cend - i};
        cend = i - 1;
    }
    part[0] = (span_t){cred.p, cend};
    if (part[0].len == 0 || part[0].len >= sizeof(v->access_key_id) || part[1].len != 8 || part[2].len == 0 ||
        part[2].len > 63 || part[3].len == 0 || part[3].len > 63 || !span_is(part[4], "aws4_request"))
        return refuse(v, SL_SIGV4_INCOMPLETE,
                      "Credential should have the form "
                      "key-id/date/region/service/aws4_request");
    memcpy(v->access_key_id, part[0].p, part[0].len);
    char region[64], service[64];
    memcpy(region, part[2].p, part[2].len);
    region[part[2].len] = '\0';
    memcpy(service, part[3].p, part[3].len);
    service[part[3].len] = '\0';
    if (in->region && strcmp(in->region, region) != 0)
        return refuse(v, SL_SIGV4_BAD_SCOPE, "Credential should be scoped to a valid region. ");
    if (in->service && strcmp(in->service, service) != 0)
        return refuse(v, SL_SIGV4_BAD_SCOPE, "Credential should be scoped to correct service: '%s'. ", in->service);

    const char *secret = in->lookup ? in->lookup(in->lookup_ctx, part[0].p, part[0].len) : NULL;
    if (secret == NULL)
        return refuse(v, SL_SIGV4_UNKNOWN_KEY, "The security token included in the request is invalid.");

    const sl_sigv4_kv_t *date = find_header(in, "x-amz-date");
    time_t t;
    if (date == NULL || sl_sigv4_parse_amz_date(date->value, date->value_len, &t) < 0)
        return refuse(v, SL_SIGV4_INCOMPLETE,
                      "Authorization header requires existence of either a 'X-Amz-Date' "
                      "or a 'Date' header.");
    if (memcmp(date->value, part[1].p, 8) != 0)
        return refuse(v, SL_SIGV4_BAD_SCOPE,
                      "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                      "'%.8s' != '%.8s', from '%.16s'.",
                      part[1].p, date->value, date->value);
    char now_s[17], edge_s[17];
    sl_sigv4_amz_date(in->now, now_s);
    if (in->now - t > SL_SIGV4_MAX_SKEW) {
        sl_sigv4_amz_date(in->now - SL_SIGV4_MAX_SKEW, edge_s);
        return refuse(v, SL_SIGV4_EXPIRED, "Signature expired: %.16s is now earlier than %s (%s - 15 min.)",
                      date->value, edge_s, now_s);
    }
    if (t - in->now > SL_SIGV4_MAX_SKEW) {
        sl_sigv4_amz_date(in->now + SL_SIGV4_MAX_SKEW, edge_s);
        return refuse(v, SL_SIGV4_EXPIRED, "Signature not yet current: %.16s is still later than %s (%s + 15 min.)",
                      date->value, edge_s, now_s);
    }

    if (!in_list(signed_list, "host", 4) || !in_list(signed_list, "x-amz-date", 10))
        return refuse(v, SL_SIGV4_INCOMPLETE, "SignedHeaders must include host and x-amz-date");
    const sl_sigv4_kv_t *token = find_header(in, "x-amz-security-token");
    if (token && !in_list(signed_list, "x-amz-security-token", 20))
        return refuse(v, SL_SIGV4_INCOMPLETE, "SignedHeaders must include x-amz-security-token");

    /* The headers named in SignedHeaders, each of which must be present. */
    sl_sigv4_kv_t hdrs[SL_SIGV4_MAX_HEADERS];
    size_t n = 0;
    for (size_t i = 0; i < in->nheaders; i++) {
        if (!in_list(signed_list, in->headers[i].name, in->headers[i].name_len))
            continue;
        if (n == SL_SIGV4_MAX_HEADERS)
            return refuse(v, SL_SIGV4_INCOMPLETE, "more than %d signed headers", SL_SIGV4_MAX_HEADERS);
        hdrs[n++] = in->headers[i];
    }
    size_t start = 0;
    for (size_t i = 0; i <= signed_list.len; i++) {
        if (i < signed_list.len && signed_list.p[i] != ';')
            continue;
        int found = 0;
        for (size_t k = 0; k < n && !found; k++) {
            span_t one = {signed_list.p + start, i - start};
            found = in_list(one, hdrs[k].name, hdrs[k].name_len);
        }
        if (!found)
            return refuse(v, SL_SIGV4_INCOMPLETE, "signed header \"%.*s\" is not in the request", (int)(i - start),
                          signed_list.p + start);
        start = i + 1;
    }

    char body_hash[65];
    sl_sigv4_payload_hash(in->body, in->body_len, body_hash);
    const char *payload_hash = body_hash;
    const sl_sigv4_kv_t *csha = find_header(in, "x-amz-content-sha256");
    if (csha) {
        int unsigned_payload = csha->value_len == 16 && memcmp(csha->value, "UNSIGNED-PAYLOAD", 16) == 0;
        if ((in->flags & SL_SIGV4_S3) && unsigned_payload)
            payload_hash = "UNSIGNED-PAYLOAD";
        else if (csha->value_len != 64 || memcmp(csha->value, body_hash, 64) != 0)
            return refuse(v, SL_SIGV4_MISMATCH,
                          "The provided 'x-amz-content-sha256' header does not match what "
                          "was computed.");
    }

    sl_sigv4_request_t req = {
        .method = in->method,
        .path = in->path,
        .path_len = in->path_len,
        .query = in->query,
        .query_len = in->query_len,
        .payload_hash = payload_hash,
        .region = region,
        .service = service,
        .time = t,
        .flags = in->flags,
    };
    computed_t c;
    sl_err_t err;
    if (compute(&req, hdrs, n, secret, &c, creq, creq_cap, &err) < 0)
        return refuse(v, SL_SIGV4_INCOMPLETE, "%s", err.msg);
    memcpy(v->string_to_sign, c.string_to_sign, sizeof(v->string_to_sign));
    int match = sig.len == 64 && sl_ct_equal(sig.p, c.signature, 64);
    memset(&c.signature, 0, sizeof(c.signature));
    if (!match)
        return refuse(v, SL_SIGV4_MISMATCH,
                      "The request signature we calculated does not match the signature you provided. Check your "
                      "AWS Secret Access Key and signing method. Consult the service documentation for details.");
    return 0;
}
