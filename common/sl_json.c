/*
 * sl_json.c - one-pass validating JSON tokenizer (see sl_json.h).
 *
 * The parser is iterative: containers being filled are kept on a small
 * stack on the C stack (SL_JSON_MAX_DEPTH entries), so hostile nesting costs
 * no recursion. With toks == NULL it only validates and counts.
 */
#include "sl_json.h"
#include "sl_err.h"

#include <string.h>

enum { ST_VALUE, ST_FIRST_ELEM, ST_FIRST_KEY, ST_KEY, ST_COLON, ST_AFTER_VALUE };

static inline int is_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Validates a UTF-8 sequence starting at s[i] (a byte >= 0x80). Returns its
 * length, or 0 when it is malformed (overlong, surrogate, > U+10FFFF,
 * truncated). */
static size_t utf8_seq(const unsigned char *s, size_t i, size_t len)
{
    unsigned char c = s[i];
    if (c >= 0xc2 && c <= 0xdf) {
        if (i + 1 < len && (s[i + 1] & 0xc0) == 0x80)
            return 2;
        return 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        if (i + 2 >= len || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && s[i + 1] < 0xa0)
            return 0; /* overlong */
        if (c == 0xed && s[i + 1] >= 0xa0)
            return 0; /* UTF-16 surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (i + 3 >= len || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80 || (s[i + 3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && s[i + 1] < 0x90)
            return 0; /* overlong */
        if (c == 0xf4 && s[i + 1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

/* Scans a string whose opening quote is at js[*pos]. On success *pos is at
 * the closing quote; returns 1 when the string has escapes, 0 when not, -1
 * when invalid. */
static int scan_string(const unsigned char *s, size_t len, size_t *pos)
{
    size_t i = *pos + 1;
    int escaped = 0;
    for (;;) {
        /* fast path: plain printable ASCII */
        while (i < len && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
            i++;
        if (i >= len)
            break;
        unsigned char c = s[i];
        if (c == '"') {
            *pos = i;
            return escaped;
        }
        if (c < 0x20)
            break;
        if (c == '\\') {
            escaped = 1;
            if (i + 1 >= len)
                break;
            switch (s[i + 1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                i += 2;
                continue;
            case 'u':
                if (i + 5 >= len || hexval(s[i + 2]) < 0 || hexval(s[i + 3]) < 0 || hexval(s[i + 4]) < 0 ||
                    hexval(s[i + 5]) < 0)
                    goto Error;
                i += 6;
                continue;
            default:
                goto Error;
            }
        }
        size_t n = utf8_seq(s, i, len);
        if (n == 0)
            break;
        i += n;
    }
Error:
    *pos = i;
    return -1;
}

/* Scans a number starting at s[*pos]; leaves *pos past it. 0 or -1. */
static int scan_number(const unsigned char *s, size_t len, size_t *pos)
{
    size_t i = *pos;
    if (i < len && s[i] == '-')
        i++;
    if (i >= len)
        goto Error;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        goto Error;
    }
    if (i < len && s[i] == '.') {
        i++;
        if (i >= len || s[i] < '0' || s[i] > '9')
            goto Error;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= len || s[i] < '0' || s[i] > '9')
            goto Error;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    *pos = i;
    return 0;
Error:
    *pos = i;
    return -1;
}

int sl_json_parse(const char *js, size_t len, sl_json_tok_t *toks, size_t cap, size_t *errpos)
{
    const unsigned char *s = (const unsigned char *)js;
    uint32_t stack[SL_JSON_MAX_DEPTH];
    uint8_t stype[SL_JSON_MAX_DEPTH];
    size_t depth = 0, pos = 0, n = 0;
    int state = ST_VALUE;

    if (toks == NULL)
        cap = 0;
    if (len > SL_JSON_MAX_LEN)
        goto Error;

#define NEW_TOK(t, st, en)                                                                                             \
    do {                                                                                                               \
        if (n < cap) {                                                                                                 \
            toks[n] = (sl_json_tok_t){.start = (uint32_t)(st), .end = (uint32_t)(en), .type = (t)};                    \
            toks[n].next = (uint32_t)n + 1;                                                                            \
        }                                                                                                              \
        n++;                                                                                                           \
    } while (0)

    for (;;) {
        while (pos < len && is_ws(s[pos]))
            pos++;
        if (state == ST_AFTER_VALUE && depth == 0)
            break;
        if (pos >= len)
            goto Error;
        unsigned char c = s[pos];
        switch (state) {
        case ST_FIRST_ELEM:
            if (c == ']')
                goto Close;
            state = ST_VALUE;
            /* fallthrough */
        case ST_VALUE:
            switch (c) {
            case '{':
            case '[':
                if (depth == SL_JSON_MAX_DEPTH)
                    goto Error;
                stack[depth] = (uint32_t)n;
                stype[depth] = c == '{' ? SL_JSON_OBJECT : SL_JSON_ARRAY;
                NEW_TOK(stype[depth], pos, pos);
                depth++;
                state = c == '{' ? ST_FIRST_KEY : ST_FIRST_ELEM;
                pos++;
                continue;
            case '"': {
                size_t st = pos + 1;
                int esc = scan_string(s, len, &pos);
                if (esc < 0)
                    goto Error;
                NEW_TOK(SL_JSON_STRING, st, pos);
                if (n <= cap)
                    toks[n - 1].escaped = (uint8_t)esc;
                pos++;
                state = ST_AFTER_VALUE;
                continue;
            }
            case 't':
            case 'f':
            case 'n': {
                const char *lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
                size_t ll = strlen(lit);
                if (len - pos < ll || memcmp(s + pos, lit, ll) != 0)
                    goto Error;
                NEW_TOK(c == 't' ? SL_JSON_TRUE : c == 'f' ? SL_JSON_FALSE : SL_JSON_NULL, pos, pos + ll);
                pos += ll;
                state = ST_AFTER_VALUE;
                continue;
            }
            default: {
                size_t st = pos;
                if (c != '-' && (c < '0' || c > '9'))
                    goto Error;
                if (scan_number(s, len, &pos) != 0)
                    goto Error;
                NEW_TOK(SL_JSON_NUMBER, st, pos);
                state = ST_AFTER_VALUE;
                continue;
            }
            }
        case ST_FIRST_KEY:
            if (c == '}')
                goto Close;
            /* fallthrough */
        case ST_KEY: {
            if (c != '"')
                goto Error;
            size_t st = pos + 1;
            int esc = scan_string(s, len, &pos);
            if (esc < 0)
                goto Error;
            NEW_TOK(SL_JSON_STRING, st, pos);
            if (n <= cap)
                toks[n - 1].escaped = (uint8_t)esc;
            pos++;
            state = ST_COLON;
            continue;
        }
        case ST_COLON:
            if (c != ':')
                goto Error;
            pos++;
            state = ST_VALUE;
            continue;
        case ST_AFTER_VALUE: {
            uint32_t top = stack[depth - 1];
            if (c == ',') {
                if (top < cap)
                    toks[top].size++;
                pos++;
                state = stype[depth - 1] == SL_JSON_OBJECT ? ST_KEY : ST_VALUE;
                continue;
            }
            if ((c == ']' && stype[depth - 1] == SL_JSON_ARRAY) || (c == '}' && stype[depth - 1] == SL_JSON_OBJECT)) {
                if (top < cap)
                    toks[top].size++;
                goto Close;
            }
            goto Error;
        }
        }
    Close: {
        uint32_t top = stack[depth - 1];
        if ((c == ']') != (stype[depth - 1] == SL_JSON_ARRAY))
            goto Error;
        if (top < cap) {
            toks[top].end = (uint32_t)pos + 1;
            toks[top].next = (uint32_t)n;
        }
        depth--;
        pos++;
        state = ST_AFTER_VALUE;
    }
    }
#undef NEW_TOK
    if (pos != len)
        goto Error;
    if (n > (size_t)INT32_MAX)
        return SL_ETOOBIG;
    if (toks != NULL && n > cap)
        return SL_ETOOBIG;
    if (errpos != NULL)
        *errpos = pos;
    return (int)n;
Error:
    if (errpos != NULL)
        *errpos = pos;
    return SL_EINVAL;
}

/* Decodes one unit of an escaped string at js[*i] (i < end) into out (up to
 * 4 bytes), advancing *i. Returns the number of bytes written. Input was
 * validated by the parser. */
static size_t decode_unit(const unsigned char *s, size_t *i, size_t end, unsigned char out[4])
{
    size_t p = *i;
    if (s[p] != '\\') {
        out[0] = s[p];
        *i = p + 1;
        return 1;
    }
    unsigned char e = s[p + 1];
    *i = p + 2;
    switch (e) {
    case 'b': out[0] = '\b'; return 1;
    case 'f': out[0] = '\f'; return 1;
    case 'n': out[0] = '\n'; return 1;
    case 'r': out[0] = '\r'; return 1;
    case 't': out[0] = '\t'; return 1;
    case 'u': break;
    default: out[0] = e; return 1;
    }
    uint32_t cp = (uint32_t)(hexval(s[p + 2]) << 12 | hexval(s[p + 3]) << 8 | hexval(s[p + 4]) << 4 | hexval(s[p + 5]));
    *i = p + 6;
    if (cp >= 0xd800 && cp <= 0xdbff && p + 12 <= end && s[p + 6] == '\\' && s[p + 7] == 'u') {
        int h0 = hexval(s[p + 8]), h1 = hexval(s[p + 9]), h2 = hexval(s[p + 10]), h3 = hexval(s[p + 11]);
        uint32_t lo = (uint32_t)(h0 << 12 | h1 << 8 | h2 << 4 | h3);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            *i = p + 12;
        }
    }
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        /* a lone surrogate comes out as its 3-byte form */
        out[0] = (unsigned char)(0xe0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

int sl_json_str_eq(const char *js, const sl_json_tok_t *t, const char *str, size_t len)
{
    if (t->type != SL_JSON_STRING)
        return 0;
    if (!t->escaped)
        return t->end - t->start == len && memcmp(js + t->start, str, len) == 0;
    const unsigned char *s = (const unsigned char *)js;
    size_t i = t->start, j = 0;
    unsigned char u[4];
    while (i < t->end) {
        size_t n = decode_unit(s, &i, t->end, u);
        if (j + n > len || memcmp(str + j, u, n) != 0)
            return 0;
        j += n;
    }
    return j == len;
}

size_t sl_json_str_len(const char *js, const sl_json_tok_t *t)
{
    if (!t->escaped)
        return t->end - t->start;
    size_t i = t->start, n = 0;
    unsigned char u[4];
    while (i < t->end)
        n += decode_unit((const unsigned char *)js, &i, t->end, u);
    return n;
}

size_t sl_json_str_copy(const char *js, const sl_json_tok_t *t, char *out, size_t cap)
{
    if (t->type != SL_JSON_STRING)
        return SIZE_MAX;
    size_t n = 0, i = t->start;
    if (!t->escaped) {
        n = t->end - t->start;
        if (n > cap)
            return SIZE_MAX;
        memcpy(out, js + t->start, n);
    } else {
        unsigned char u[4];
        while (i < t->end) {
            size_t k = decode_unit((const unsigned char *)js, &i, t->end, u);
            if (n + k > cap)
                return SIZE_MAX;
            memcpy(out + n, u, k);
            n += k;
        }
    }
    if (n < cap)
        out[n] = '\0';
    return n;
}

int sl_json_find(const char *js, const sl_json_tok_t *toks, int obj, const char *name, size_t len)
{
    if (obj < 0 || toks[obj].type != SL_JSON_OBJECT)
        return -1;
    int found = -1;
    uint32_t i = (uint32_t)obj + 1;
    for (uint32_t m = 0; m < toks[obj].size; m++) {
        if (sl_json_str_eq(js, &toks[i], name, len))
            found = (int)i + 1;
        i = toks[i + 1].next;
    }
    return found;
}

int sl_json_array_at(const sl_json_tok_t *toks, int arr, uint32_t idx)
{
    if (arr < 0 || toks[arr].type != SL_JSON_ARRAY || idx >= toks[arr].size)
        return -1;
    uint32_t i = (uint32_t)arr + 1;
    while (idx-- > 0)
        i = toks[i].next;
    return (int)i;
}

int sl_json_int64(const char *js, const sl_json_tok_t *t, int64_t *out)
{
    if (t->type != SL_JSON_NUMBER)
        return SL_EINVAL;
    const char *p = js + t->start, *e = js + t->end;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    uint64_t v = 0;
    const uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return SL_EINVAL; /* fraction or exponent */
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (lim - d) / 10)
            return SL_EINVAL;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int sl_json_bool(const sl_json_tok_t *t, int *out)
{
    if (t->type == SL_JSON_TRUE)
        *out = 1;
    else if (t->type == SL_JSON_FALSE)
        *out = 0;
    else
        return SL_EINVAL;
    return 0;
}

size_t sl_json_escaped_len(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t')
            n += 2;
        else if (c < 0x20)
            n += 6;
        else
            n += 1;
    }
    return n;
}

char *sl_json_escape(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *p++ = (char)c;
            continue;
        }
        *p++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *p++ = (char)c;
            break;
        case '\n':
            *p++ = 'n';
            break;
        case '\r':
            *p++ = 'r';
            break;
        case '\t':
            *p++ = 't';
            break;
        default:
            memcpy(p, "u00", 3);
            p[3] = hex[c >> 4];
            p[4] = hex[c & 15];
            p += 5;
        }
    }
    return p;
}
