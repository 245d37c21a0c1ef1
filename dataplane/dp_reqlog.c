/* dp_reqlog.c - request log lines, sampling and opt-in content (see
 * dp_reqlog.h). */
#include "dp_reqlog.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sl_err.h"
#include "sl_json.h"
#include "sl_log.h"
#include "sl_money.h"

#define FIELD_MAX 200   /* bytes kept of ids, names, paths and error messages */
#define CACHE_SLOTS 256 /* per worker: content opt-in by (key record, snapshot version) */
#define STACK_LINE 2048 /* a line without content fits here */

static double sample_rate = 1.0;
static int nworkers;

struct cslot {
    const dp_key_t *key;
    int64_t version;
    int on;
};
static struct cslot *cache;

int dp_reqlog_init(int n, double rate)
{
    sample_rate = rate;
    nworkers = n;
    free(cache); /* a second init (tests) starts afresh */
    cache = calloc((size_t)n * CACHE_SLOTS, sizeof(*cache));
    return cache != NULL ? 0 : SL_ENOMEM;
}

int dp_reqlog_parse_rate(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0.0 && v <= 1.0))
        return SL_EINVAL;
    *out = v;
    return 0;
}

int dp_reqlog_sampled(uint64_t r, int error)
{
    if (error || sample_rate >= 1.0)
        return 1;
    if (sample_rate <= 0.0)
        return 0;
    return (double)(r >> 11) * 0x1.0p-53 < sample_rate;
}

/* Whether metadata (a JSON object) has "log_content": true. */
static int opts_in(const char *md, size_t len)
{
    sl_json_tok_t stack[64], *t = stack;
    int n = sl_json_parse(md, len, t, 64, NULL);
    if (n == SL_ETOOBIG) {
        size_t cap = len / 2 + 2;
        if ((t = malloc(cap * sizeof(*t))) == NULL)
            return 0;
        n = sl_json_parse(md, len, t, cap, NULL);
    }
    int on = 0;
    if (n >= 1) {
        int v = sl_json_find(md, t, 0, "log_content", 11);
        on = v > 0 && t[v].type == SL_JSON_TRUE;
    }
    if (t != stack)
        free(t);
    return on;
}

int dp_reqlog_content_enabled(int worker, const dp_snapshot_t *s, const dp_key_t *key)
{
    if (key == NULL || key->pb == NULL || s == NULL || worker < 0 || worker >= nworkers)
        return 0;
    /* key records live as long as the snapshots holding them, and a record
     * address is unique within one version: (record, version) names one
     * key's metadata for good */
    int64_t version = dp_snapshot_version(s);
    struct cslot *c = &cache[(size_t)worker * CACHE_SLOTS + (((uintptr_t)key >> 4) % CACHE_SLOTS)];
    if (c->key == key && c->version == version)
        return c->on;
    const char *md = key->pb->metadata_json;
    size_t len = md != NULL ? strlen(md) : 0;
    c->key = key;
    c->version = version;
    c->on = len != 0 && memmem(md, len, "log_content", 11) != NULL && opts_in(md, len);
    return c->on;
}

void dp_reqlog_capture(dp_reqlog_capture_t **capp, h2o_mem_pool_t *pool, const void *bytes, size_t len)
{
    dp_reqlog_capture_t *c = *capp;
    if (c == NULL) {
        c = h2o_mem_alloc_pool(pool, sizeof(*c));
        memset(c, 0, sizeof(*c));
        *capp = c;
    }
    if (len > DP_REQLOG_CAPTURE_MAX - c->len) {
        len = DP_REQLOG_CAPTURE_MAX - c->len;
        c->truncated = 1;
    }
    if (len == 0)
        return;
    if (c->len + len > c->cap) {
        size_t cap = c->cap != 0 ? c->cap * 2 : 4096;
        while (cap < c->len + len)
            cap *= 2;
        if (cap > DP_REQLOG_CAPTURE_MAX)
            cap = DP_REQLOG_CAPTURE_MAX;
        char *d = h2o_mem_alloc_pool(pool, cap);
        if (c->len != 0)
            memcpy(d, c->data, c->len);
        c->data = d;
        c->cap = cap;
    }
    memcpy(c->data + c->len, bytes, len);
    c->len += len;
}

/* ---- completion text ------------------------------------------------------ */

/* The longest prefix of s[0..n) of at most max bytes that ends on a UTF-8
 * character boundary. */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    return k;
}

typedef struct text {
    char *out;
    size_t len, cap;
    int truncated;
} text_t;

static void text_add(text_t *t, const char *s, size_t n)
{
    if (t->truncated || n == 0)
        return;
    if (n > t->cap - t->len) {
        n = utf8_cut(s, n, t->cap - t->len);
        t->truncated = 1;
    }
    memcpy(t->out + t->len, s, n);
    t->len += n;
}

/* Appends the unescaped value of string token tok. */
static void text_add_str(text_t *t, const char *js, const sl_json_tok_t *tok)
{
    if (tok->type != SL_JSON_STRING || t->truncated)
        return;
    if (!tok->escaped) {
        text_add(t, js + tok->start, tok->end - tok->start);
        return;
    }
    size_t n = sl_json_str_len(js, tok);
    char *tmp = malloc(n + 1);
    if (tmp == NULL)
        return;
    if (sl_json_str_copy(js, tok, tmp, n + 1) == n)
        text_add(t, tmp, n);
    free(tmp);
}

/* The content of one JSON document: an OpenAI completion or chunk
 * (choices[0].message.content, choices[0].delta.content) or an Anthropic
 * message or stream event (content[].text, delta.text). */
static void collect_doc(text_t *t, const char *js, size_t len, sl_json_tok_t **toks, size_t *tcap)
{
    size_t need = len / 2 + 2;
    if (need > *tcap) {
        sl_json_tok_t *n = realloc(*toks, need * sizeof(**toks));
        if (n == NULL)
            return;
        *toks = n;
        *tcap = need;
    }
    sl_json_tok_t *k = *toks;
    if (sl_json_parse(js, len, k, *tcap, NULL) < 1 || k[0].type != SL_JSON_OBJECT)
        return;
    int choices = sl_json_find(js, k, 0, "choices", 7);
    if (choices > 0) {
        int c0 = sl_json_array_at(k, choices, 0);
        int m = sl_json_find(js, k, c0, "message", 7);
        if (m < 0)
            m = sl_json_find(js, k, c0, "delta", 5);
        int content = sl_json_find(js, k, m, "content", 7);
        if (content > 0)
            text_add_str(t, js, &k[content]);
        return;
    }
    int delta = sl_json_find(js, k, 0, "delta", 5);
    if (delta > 0) {
        int text = sl_json_find(js, k, delta, "text", 4);
        if (text > 0)
            text_add_str(t, js, &k[text]);
        return;
    }
    int content = sl_json_find(js, k, 0, "content", 7);
    if (content > 0 && k[content].type == SL_JSON_ARRAY) {
        for (uint32_t i = 0; i < k[content].size; i++) {
            int block = sl_json_array_at(k, content, i);
            int text = sl_json_find(js, k, block, "text", 4);
            if (text > 0)
                text_add_str(t, js, &k[text]);
        }
    }
}

size_t dp_reqlog_completion_text(const char *bytes, size_t len, char *out, size_t cap, int *truncated)
{
    text_t t = {out, 0, cap, 0};
    sl_json_tok_t *toks = NULL;
    size_t tcap = 0;
    size_t i = 0;
    while (i < len && (bytes[i] == ' ' || bytes[i] == '\n' || bytes[i] == '\r' || bytes[i] == '\t'))
        i++;
    if (i < len && bytes[i] == '{') {
        collect_doc(&t, bytes + i, len - i, &toks, &tcap);
    } else {
        /* SSE: the data: lines of each event (one line per event here) */
        for (size_t pos = 0; pos < len && !t.truncated;) {
            const char *line = bytes + pos;
            const char *nl = memchr(line, '\n', len - pos);
            size_t ll = nl != NULL ? (size_t)(nl - line) : len - pos;
            pos += ll + 1;
            if (ll > 0 && line[ll - 1] == '\r')
                ll--;
            if (ll < 5 || memcmp(line, "data:", 5) != 0)
                continue;
            const char *d = line + 5;
            size_t dl = ll - 5;
            if (dl > 0 && *d == ' ') {
                d++;
                dl--;
            }
            if (dl > 0 && *d == '{')
                collect_doc(&t, d, dl, &toks, &tcap);
        }
    }
    free(toks);
    *truncated = t.truncated;
    return t.len;
}

/* ---- line formatting ------------------------------------------------------ */

typedef struct wr {
    char *p;
    size_t len, cap;
    int heap, oom;
} wr_t;

static int reserve(wr_t *w, size_t n)
{
    if (w->oom)
        return -1;
    if (w->len + n <= w->cap)
        return 0;
    size_t cap = w->cap * 2;
    while (cap < w->len + n)
        cap *= 2;
    char *p = w->heap ? realloc(w->p, cap) : malloc(cap);
    if (p == NULL) {
        w->oom = 1;
        return -1;
    }
    if (!w->heap)
        memcpy(p, w->p, w->len);
    w->p = p;
    w->cap = cap;
    w->heap = 1;
    return 0;
}

static void put(wr_t *w, const char *s, size_t n)
{
    if (reserve(w, n) == 0) {
        memcpy(w->p + w->len, s, n);
        w->len += n;
    }
}

static void puts_(wr_t *w, const char *s)
{
    put(w, s, strlen(s));
}

/* Decimal digits of v. */
static void put_u64(wr_t *w, uint64_t v)
{
    char tmp[24], *p = tmp + sizeof(tmp);
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(w, p, (size_t)(tmp + sizeof(tmp) - p));
}

static void put_i64(wr_t *w, int64_t v)
{
    if (v < 0) {
        put(w, "-", 1);
        put_u64(w, (uint64_t)0 - (uint64_t)v);
    } else {
        put_u64(w, (uint64_t)v);
    }
}

/* ,"name": */
static void put_key(wr_t *w, const char *name)
{
    put(w, ",\"", 2);
    puts_(w, name);
    put(w, "\":", 2);
}

static void field_i64(wr_t *w, const char *name, int64_t v)
{
    put_key(w, name);
    put_i64(w, v);
}

static void field_bool(wr_t *w, const char *name, int v)
{
    put_key(w, name);
    puts_(w, v ? "true" : "false");
}

/* "2026-11-28T01:02:03.456Z" (24 bytes) for now; the part up to the
 * seconds is formatted once per second per thread. */
static void put_ts(wr_t *w)
{
    static __thread time_t last_sec = -1;
    static __thread char prefix[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != last_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(prefix, sizeof(prefix), "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        last_sec = ts.tv_sec;
    }
    int ms = (int)(ts.tv_nsec / 1000000);
    char frac[5] = {(char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', '"'};
    put(w, "\"", 1);
    put(w, prefix, 20);
    put(w, frac, 5);
}

static void putf(wr_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(wr_t *w, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        put(w, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t k;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        k = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (k > n)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return k;
}

/* s[0..n) as a JSON string (cut at max bytes on a character boundary);
 * DEL is escaped too, and bytes that are not UTF-8 become U+FFFD. Sets *cut
 * when cut. */
static void put_str(wr_t *w, const char *s, size_t n, size_t max, int *cut)
{
    size_t m = utf8_cut(s, n, max);
    if (cut != NULL)
        *cut = m < n;
    if (reserve(w, m * 6 + 2) != 0)
        return;
    char *p = w->p + w->len;
    *p++ = '"';
    for (size_t i = 0; i < m;) {
        size_t j = i;
        while (j < m && (unsigned char)s[j] < 0x7f)
            j++;
        p = sl_json_escape(p, s + i, j - i);
        if (j == m)
            break;
        /* DEL, or a byte from 0x80: a UTF-8 sequence copied as it is */
        size_t k = (unsigned char)s[j] == 0x7f ? 0 : utf8_seq((const unsigned char *)s + j, m - j);
        if (k == 0) {
            memcpy(p, (unsigned char)s[j] == 0x7f ? "\\u007f" : "\\ufffd", 6);
            p += 6;
            k = 1;
        } else {
            memcpy(p, s + j, k);
            p += k;
        }
        i = j + k;
    }
    *p++ = '"';
    w->len = (size_t)(p - w->p);
}

/* ,"name":"value" or ,"name":null */
static void field_str(wr_t *w, const char *name, const char *s, size_t n)
{
    put_key(w, name);
    if (s == NULL)
        puts_(w, "null");
    else
        put_str(w, s, n, FIELD_MAX, NULL);
}

static void field_cstr(wr_t *w, const char *name, const char *s)
{
    field_str(w, name, s, s != NULL ? strlen(s) : 0);
}

/* The raw JSON of the request's messages (chat) or input (embeddings). */
static h2o_iovec_t prompt_of(const dp_chat_req_t *ch)
{
    if (ch == NULL || ch->toks == NULL || ch->ntoks < 1)
        return h2o_iovec_init(NULL, 0);
    int v = sl_json_find(ch->body, ch->toks, 0, "messages", 8);
    if (v < 0)
        v = sl_json_find(ch->body, ch->toks, 0, "input", 5);
    if (v < 0)
        return h2o_iovec_init(NULL, 0);
    const sl_json_tok_t *t = &ch->toks[v];
    /* string tokens exclude their quotes: take them too, so the text is JSON */
    size_t start = t->type == SL_JSON_STRING ? t->start - 1 : t->start;
    size_t end = t->type == SL_JSON_STRING ? t->end + 1 : t->end;
    return h2o_iovec_init(ch->body + start, end - start);
}

static void format_line(wr_t *w, const dp_reqlog_rec_t *r)
{
    puts_(w, "{\"ts\":");
    put_ts(w);
    puts_(w, ",\"level\":\"info\",\"module\":\"request\"");
    field_cstr(w, "request_id", r->request_id);
    field_str(w, "method", r->method.base, r->method.len);
    field_str(w, "path", r->path.base, r->path.len);
    field_cstr(w, "key_id", r->key_id);
    field_cstr(w, "tenant_id", r->tenant_id);
    field_str(w, "model", r->requested_model.base, r->requested_model.len);
    field_cstr(w, "requested_provider", r->requested_provider);
    field_cstr(w, "provider", r->provider);
    field_str(w, "served_model", r->served_model.base, r->served_model.len);
    field_bool(w, "stream", r->stream);
    field_i64(w, "status", r->status);
    field_i64(w, "upstream_status", r->upstream_status);
    field_i64(w, "attempts", r->attempts);
    field_cstr(w, "outcome", r->outcome);
    char usd[40];
    sl_usd_format(r->cost_nano, 9, usd, sizeof(usd));
    field_i64(w, "input_tokens", r->input_tokens);
    field_i64(w, "cached_input_tokens", r->cached_input_tokens);
    field_i64(w, "output_tokens", r->output_tokens);
    field_i64(w, "cost_nano", r->cost_nano);
    put_key(w, "cost_usd");
    put(w, "\"", 1);
    puts_(w, usd);
    put(w, "\"", 1);
    uint64_t up = r->upstream_ns <= r->total_ns ? r->upstream_ns : r->total_ns;
    put_key(w, "overhead_us");
    put_u64(w, (r->total_ns - up) / 1000);
    put_key(w, "upstream_ms");
    put_u64(w, up / 1000000);
    put_key(w, "duration_ms");
    put_u64(w, r->total_ns / 1000000);
    put_key(w, "ttft_ms");
    if (r->ttft_ns != 0) {
        uint64_t us = r->ttft_ns / 1000;
        char frac[4] = {'.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10), (char)('0' + us % 10)};
        put_u64(w, us / 1000);
        put(w, frac, 4);
    } else {
        puts_(w, "null");
    }
    field_cstr(w, "error", r->error);
    if (sample_rate < 1.0)
        putf(w, ",\"sample_rate\":%g", sample_rate);
    if (r->chat != NULL || r->capture != NULL) {
        int cut = 0;
        h2o_iovec_t p = prompt_of(r->chat);
        puts_(w, ",\"prompt\":");
        if (p.base != NULL)
            put_str(w, p.base, p.len, DP_REQLOG_CONTENT_MAX, &cut);
        else
            puts_(w, "null");
        field_bool(w, "prompt_truncated", cut);
        puts_(w, ",\"completion\":");
        cut = 0;
        if (r->capture != NULL && r->capture->len != 0) {
            char *text = malloc(DP_REQLOG_CONTENT_MAX);
            if (text != NULL) {
                size_t n =
                    dp_reqlog_completion_text(r->capture->data, r->capture->len, text, DP_REQLOG_CONTENT_MAX, &cut);
                put_str(w, text, n, DP_REQLOG_CONTENT_MAX, NULL);
                cut |= r->capture->truncated;
                free(text);
            } else {
                puts_(w, "null");
            }
        } else {
            puts_(w, "null");
        }
        field_bool(w, "completion_truncated", cut);
    }
    put(w, "}", 1);
}

size_t dp_reqlog_format(const dp_reqlog_rec_t *r, char **out)
{
    wr_t w = {malloc(STACK_LINE), 0, STACK_LINE, 1, 0};
    if (w.p == NULL)
        return 0;
    format_line(&w, r);
    if (w.oom) {
        free(w.p);
        return 0;
    }
    *out = w.p;
    return w.len;
}

void dp_reqlog_write(const dp_reqlog_rec_t *r)
{
    char stack[STACK_LINE];
    wr_t w = {stack, 0, sizeof(stack), 0, 0};
    format_line(&w, r);
    if (!w.oom)
        sl_log_json_line(w.p, w.len);
    if (w.heap)
        free(w.p);
}
