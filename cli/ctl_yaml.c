/*
 * ctl_yaml.c - YAML (libyaml document API) to the Admin.Apply Document.
 *
 * Each file is parsed into a scratch document, then merged into the caller's
 * one, so a failing file leaves the caller's document untouched. Messages
 * are built with the field path of the node being read (`path`), kept in the
 * parse context and extended/truncated as the walk descends.
 *
 * Scalars follow the YAML 1.2 core schema for plain (unquoted) text: `~`,
 * `null` and the empty value are null (treated as "field absent"),
 * true/false are booleans, the rest is taken as text. Numbers are always read
 * from the text, quoted or not, so `2.50` is exactly 2.50.
 *
 * Every protobuf object built here is malloc'd field by field, the same
 * ownership protobuf_c_message_unpack() gives, so one
 * protobuf_c_message_free_unpacked() call frees a whole Document.
 */
#include "ctl_yaml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "sl_buf.h"
#include "sl_duration.h"
#include "sl_json.h"
#include "sl_money.h"

#define MAX_FILE_BYTES (16u << 20)
#define MAX_META_BYTES (64u << 10)
#define MAX_META_DEPTH 32

typedef Sluice__Config__V1__Tenant tenant_t;
typedef Sluice__Config__V1__Provider provider_t;
typedef Sluice__Config__V1__Credential cred_t;
typedef Sluice__Config__V1__ModelPrice model_t;
typedef Sluice__Config__V1__VirtualKey vkey_t;
typedef Sluice__Config__V1__Quota quota_t;
typedef Sluice__Config__V1__Target target_t;

typedef struct pctx {
    yaml_document_t *y;
    const char *source;
    ctl_env_fn env;
    void *env_ud;
    sl_err_t *err;
    ctl_doc_t *doc; /* the scratch document being filled */
    char path[512];
    size_t plen;
} pctx_t;

/* ---- memory --------------------------------------------------------------- */

static void *xrealloc(void *p, size_t n)
{
    void *r = realloc(p, n != 0 ? n : 1);
    if (r == NULL)
        abort(); /* a CLI cannot do better than stop */
    return r;
}

static char *xstrndup(const char *s, size_t n)
{
    char *r = xrealloc(NULL, n + 1);
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

static char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

#define PUSH(arr, n, v)                                                                                                \
    do {                                                                                                               \
        (arr) = xrealloc((arr), ((n) + 1) * sizeof(*(arr)));                                                           \
        (arr)[(n)++] = (v);                                                                                            \
    } while (0)

/* NEW(type, TYPE__INIT): a heap object set to its protobuf initializer */
#define NEW(type, ...)                                                                                                 \
    ({                                                                                                                 \
        type *o_ = xrealloc(NULL, sizeof(type));                                                                       \
        *o_ = (type)__VA_ARGS__;                                                                                       \
        o_;                                                                                                            \
    })

/* ---- paths and errors ------------------------------------------------------ */

static size_t path_key(pctx_t *c, const char *key)
{
    size_t mark = c->plen;
    int n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "%s%s", c->plen ? "." : "", key);
    if (n > 0)
        c->plen = c->plen + (size_t)n < sizeof(c->path) ? c->plen + (size_t)n : sizeof(c->path) - 1;
    return mark;
}

static size_t path_index(pctx_t *c, size_t i)
{
    size_t mark = c->plen;
    int n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "[%zu]", i);
    if (n > 0)
        c->plen = c->plen + (size_t)n < sizeof(c->path) ? c->plen + (size_t)n : sizeof(c->path) - 1;
    return mark;
}

static void path_pop(pctx_t *c, size_t mark)
{
    c->plen = mark;
    c->path[mark] = '\0';
}

/* Quotes a value for a message: escapes quotes, backslashes and control
 * characters, and shortens long values. out holds at least 80 bytes. */
static const char *show(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    const size_t limit = cap - 8;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (o >= limit - 4) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    return out;
}

static void vfail_at(pctx_t *c, size_t line, const char *fmt, va_list ap)
{
    char msg[400];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (c->plen > 0)
        sl_err_set(c->err, SL_EINVAL, "%s:%zu: %s: %s", c->source, line, c->path, msg);
    else
        sl_err_set(c->err, SL_EINVAL, "%s:%zu: %s", c->source, line, msg);
}

/* Records an error with the path of the current field, located at node n.
 * Used through fail(), whose value is SL_EINVAL, so `return fail(...)` is
 * visibly an error return (also to static analysis). */
static void __attribute__((format(printf, 3, 4))) failf(pctx_t *c, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail_at(c, n != NULL ? n->start_mark.line + 1 : 1, fmt, ap);
    va_end(ap);
}

#define fail(...) (failf(__VA_ARGS__), SL_EINVAL)

/* ---- scalars ---------------------------------------------------------------- */

typedef enum { SK_STR, SK_NULL, SK_BOOL, SK_INT, SK_FLOAT } skind_t;

static const char *sval(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static size_t slen(const yaml_node_t *n)
{
    return n->data.scalar.length;
}

static int all_in(const char *s, size_t len, const char *set)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\0' || strchr(set, s[i]) == NULL)
            return 0;
    return 1;
}

static int is_float_text(const char *s, size_t len)
{
    size_t i = 0, digits = 0;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        i++;
    const char *rest = s + i;
    size_t rlen = len - i;
    if ((rlen == 4 && (!memcmp(rest, ".inf", 4) || !memcmp(rest, ".Inf", 4) || !memcmp(rest, ".INF", 4))) ||
        (i == 0 && len == 4 && (!memcmp(s, ".nan", 4) || !memcmp(s, ".NaN", 4) || !memcmp(s, ".NAN", 4))))
        return 1;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++, digits++;
    }
    if (digits == 0)
        return 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t ed = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++, ed++;
        if (ed == 0)
            return 0;
    }
    return i == len;
}

/* Resolves a scalar by the YAML 1.2 core schema; quoted scalars are text. */
static skind_t scalar_kind(const yaml_node_t *n)
{
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return SK_STR;
    const char *s = sval(n);
    size_t len = slen(n);
    if (len == 0 || (len == 1 && s[0] == '~') ||
        (len == 4 && (!strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"))))
        return SK_NULL;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") || !strcmp(s, "false") || !strcmp(s, "False") ||
        !strcmp(s, "FALSE"))
        return SK_BOOL;
    size_t sign = (s[0] == '+' || s[0] == '-') ? 1 : 0;
    if (all_in(s + sign, len - sign, "0123456789") ||
        (len > 2 && s[0] == '0' && s[1] == 'x' && all_in(s + 2, len - 2, "0123456789abcdefABCDEF")) ||
        (len > 2 && s[0] == '0' && s[1] == 'o' && all_in(s + 2, len - 2, "01234567")))
        return SK_INT;
    if (is_float_text(s, len))
        return SK_FLOAT;
    return SK_STR;
}

static int is_null(const yaml_node_t *n)
{
    return n == NULL || (n->type == YAML_SCALAR_NODE && scalar_kind(n) == SK_NULL);
}

/* Describes what a node is, for "expected X, got Y" messages. */
static const char *got(const yaml_node_t *n, char *buf, size_t cap)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    char q[96];
    snprintf(buf, cap, "\"%s\"", show(sval(n), slen(n), q, sizeof(q)));
    return buf;
}

/* ---- typed readers -------------------------------------------------------- */

/* Reads a text scalar (numbers allowed as text, booleans and null not). */
static int read_text(pctx_t *c, const yaml_node_t *n, char **out)
{
    char g[128];
    if (n->type != YAML_SCALAR_NODE)
        return fail(c, n, "expected a string, got %s", got(n, g, sizeof(g)));
    skind_t k = scalar_kind(n);
    if (k == SK_BOOL)
        return fail(c, n, "expected a string, got the boolean %s (quote it to use it as text)", sval(n));
    if (k == SK_NULL)
        return fail(c, n, "expected a string, got null");
    if (memchr(sval(n), '\0', slen(n)) != NULL)
        return fail(c, n, "must not contain a NUL character");
    *out = xstrndup(sval(n), slen(n));
    return 0;
}

/* Replaces a protobuf string field (initially protobuf_c_empty_string). */
static void set_str(char **field, char *v)
{
    if (*field != NULL && *field != protobuf_c_empty_string)
        free(*field);
    *field = v;
}

static int read_int(pctx_t *c, const yaml_node_t *n, int64_t min, int64_t max, int64_t *out)
{
    char g[128], q[96];
    if (n->type != YAML_SCALAR_NODE)
        return fail(c, n, "expected a whole number, got %s", got(n, g, sizeof(g)));
    const char *s = sval(n);
    size_t len = slen(n), i = 0;
    int neg = 0;
    if (len > 0 && (s[0] == '-' || s[0] == '+'))
        neg = s[0] == '-', i = 1;
    if (i == len || !all_in(s + i, len - i, "0123456789"))
        return fail(c, n, "\"%s\" is not a whole number", show(s, len, q, sizeof(q)));
    int64_t v = 0;
    for (; i < len; i++) {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, neg ? -(s[i] - '0') : s[i] - '0', &v))
            return fail(c, n, "\"%s\" is too large", show(s, len, q, sizeof(q)));
    }
    if (v < min || v > max)
        return fail(c, n, "%s is out of range (%lld to %lld)", show(s, len, q, sizeof(q)), (long long)min,
                    (long long)max);
    *out = v;
    return 0;
}

/* Reads a USD amount into units of 10^-scale USD, from the scalar's text. */
static int read_usd(pctx_t *c, const yaml_node_t *n, int scale, int64_t *out)
{
    char g[128], q[96];
    if (n->type != YAML_SCALAR_NODE)
        return fail(c, n, "expected a USD amount, got %s", got(n, g, sizeof(g)));
    const char *s = sval(n);
    size_t len = slen(n);
    if (sl_usd_parse(s, len, scale, out) == 0)
        return 0;
    /* say why when the text is a decimal number that does not fit */
    show(s, len, q, sizeof(q));
    int64_t ignored;
    if (len > 1 && s[0] == '-' && sl_usd_parse(s + 1, len - 1, scale, &ignored) == 0)
        return fail(c, n, "\"%s\" is not a USD amount: it must not be negative", q);
    size_t dots = 0, frac = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.')
            dots++;
        else if (dots == 1)
            frac++;
    }
    if (all_in(s, len, "0123456789.") && dots <= 1 && len > dots) {
        if (frac > (size_t)scale)
            return fail(c, n, "\"%s\" is not a USD amount: at most %d decimal places", q, scale);
        return fail(c, n, "\"%s\" is not a USD amount: too large", q);
    }
    return fail(c, n, "\"%s\" is not a USD amount", q);
}

/* ---- mappings ----------------------------------------------------------- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    size_t row[41];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Checks that n is a mapping with string keys, no key twice, and only keys
 * listed in allowed (NULL-terminated). what names the thing ("field",
 * "section") in messages. */
static int check_map(pctx_t *c, const yaml_node_t *n, const char *const *allowed, const char *what)
{
    char g[128], q[96];
    if (n->type != YAML_MAPPING_NODE)
        return fail(c, n, "expected a mapping, got %s", got(n, g, sizeof(g)));
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->y, p->key);
        if (k->type != YAML_SCALAR_NODE || scalar_kind(k) == SK_NULL)
            return fail(c, k, "a %s name must be a plain string", what);
        const char *name = sval(k);
        size_t i;
        for (i = 0; allowed[i] != NULL; i++)
            if (strlen(allowed[i]) == slen(k) && memcmp(allowed[i], name, slen(k)) == 0)
                break;
        if (allowed[i] == NULL) {
            size_t mark = path_key(c, show(name, slen(k), q, sizeof(q)));
            const char *near = NULL;
            size_t best = 3;
            for (size_t j = 0; allowed[j] != NULL; j++) {
                size_t d = edit_distance(name, allowed[j]);
                if (d < best)
                    best = d, near = allowed[j];
            }
            sl_buf_t list = {0};
            for (size_t j = 0; allowed[j] != NULL; j++)
                sl_buf_printf(&list, "%s%s", j ? ", " : "", allowed[j]);
            int rc = near != NULL ? fail(c, k, "unknown %s (did you mean \"%s\"?)", what, near)
                                  : fail(c, k, "unknown %s (expected one of: %s)", what, list.data);
            sl_buf_free(&list);
            path_pop(c, mark);
            return rc;
        }
        for (yaml_node_pair_t *o = n->data.mapping.pairs.start; o < p; o++) {
            yaml_node_t *ok = yaml_document_get_node(c->y, o->key);
            if (ok->type == YAML_SCALAR_NODE && slen(ok) == slen(k) && memcmp(sval(ok), name, slen(k)) == 0) {
                size_t mark = path_key(c, name);
                int rc = fail(c, k, "duplicate %s (first given on line %zu)", what, (size_t)ok->start_mark.line + 1);
                path_pop(c, mark);
                return rc;
            }
        }
    }
    return 0;
}

/* The value of key in a checked mapping, or NULL when absent or null. */
static yaml_node_t *get(pctx_t *c, const yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->y, p->key);
        if (strlen(key) == slen(k) && memcmp(sval(k), key, slen(k)) == 0) {
            yaml_node_t *v = yaml_document_get_node(c->y, p->value);
            return is_null(v) ? NULL : v;
        }
    }
    return NULL;
}

/* Reads optional text field key of map into *field (left alone when absent). */
static int opt_text(pctx_t *c, const yaml_node_t *map, const char *key, char **field)
{
    yaml_node_t *v = get(c, map, key);
    if (v == NULL)
        return 0;
    size_t mark = path_key(c, key);
    char *s = NULL;
    int rc = read_text(c, v, &s);
    if (rc == 0)
        set_str(field, s);
    path_pop(c, mark);
    return rc;
}

/* Reads required, non-empty text field key. */
static int req_text(pctx_t *c, const yaml_node_t *map, const char *key, char **field)
{
    yaml_node_t *v = get(c, map, key);
    size_t mark = path_key(c, key);
    int rc;
    if (v == NULL)
        rc = fail(c, map, "is required");
    else if ((rc = read_text(c, v, field)) == 0 && (*field)[0] == '\0')
        rc = fail(c, v, "must not be empty");
    path_pop(c, mark);
    return rc;
}

static int opt_int(pctx_t *c, const yaml_node_t *map, const char *key, int64_t min, int64_t max, int64_t *out,
                   int *present)
{
    yaml_node_t *v = get(c, map, key);
    if (present != NULL)
        *present = v != NULL;
    if (v == NULL)
        return 0;
    size_t mark = path_key(c, key);
    int rc = read_int(c, v, min, max, out);
    path_pop(c, mark);
    return rc;
}

static int opt_usd(pctx_t *c, const yaml_node_t *map, const char *key, int scale, int64_t *out, int *present)
{
    yaml_node_t *v = get(c, map, key);
    if (present != NULL)
        *present = v != NULL;
    if (v == NULL)
        return 0;
    size_t mark = path_key(c, key);
    int rc = read_usd(c, v, scale, out);
    path_pop(c, mark);
    return rc;
}

/* ---- identifiers ----------------------------------------------------------- */

/* Tenant and key ids: [A-Za-z0-9][A-Za-z0-9_.:-]{0,127} (the schema's check). */
static int valid_id(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len > max)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && (i == 0 || strchr("_.:-", ch) == NULL))
            return 0;
    }
    return 1;
}

/* Provider names: [a-z0-9][a-z0-9_.-]{0,63}. */
static int valid_provider_name(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!alnum && (i == 0 || strchr("_.-", ch) == NULL))
            return 0;
    }
    return 1;
}

/* Model names: 1..256 printable characters without spaces. */
static int valid_model_name(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 256)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int req_id(pctx_t *c, const yaml_node_t *map, const char *key, char **field)
{
    int rc = req_text(c, map, key, field);
    if (rc == 0 && !valid_id(*field, 128)) {
        char q[96];
        size_t mark = path_key(c, key);
        rc = fail(c, get(c, map, key),
                  "\"%s\" is not a valid id (letters, digits and _ . : -, starting with a letter or digit, at most 128 "
                  "characters)",
                  show(*field, strlen(*field), q, sizeof(q)));
        path_pop(c, mark);
    }
    return rc;
}

static int check_provider_ref(pctx_t *c, const yaml_node_t *n, const char *name)
{
    char q[96];
    if (!valid_provider_name(name))
        return fail(c, n,
                    "\"%s\" is not a valid provider name (lower-case letters, digits and _ . -, at most 64 characters)",
                    show(name, strlen(name), q, sizeof(q)));
    return 0;
}

static int check_model_ref(pctx_t *c, const yaml_node_t *n, const char *name)
{
    char q[96];
    if (!valid_model_name(name))
        return fail(c, n, "\"%s\" is not a valid model name (no spaces or control characters, at most 256 characters)",
                    show(name, strlen(name), q, sizeof(q)));
    return 0;
}

/* ---- metadata: a YAML mapping as a JSON object --------------------------------- */

/* Appends a plain scalar resolved as a number in JSON syntax, or returns 0
 * when the text has no exact JSON form (then it is kept as a string). */
static int json_number(sl_buf_t *b, const yaml_node_t *n, skind_t k)
{
    const char *s = sval(n);
    size_t len = slen(n);
    if (k == SK_INT) {
        if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
            errno = 0;
            unsigned long long v = strtoull(s + 2, NULL, s[1] == 'x' ? 16 : 8);
            if (errno != 0 || v > INT64_MAX)
                return 0;
            sl_buf_printf(b, "%llu", v);
            return 1;
        }
        size_t i = 0;
        int neg = s[0] == '-';
        if (s[0] == '+' || s[0] == '-')
            i = 1;
        while (i + 1 < len && s[i] == '0')
            i++;
        if (neg)
            sl_buf_puts(b, "-");
        sl_buf_append(b, s + i, len - i);
        return 1;
    }
    /* floats: JSON wants digits on both sides of the point and no '+' */
    if (memchr(s, 'n', len) != NULL || memchr(s, 'N', len) != NULL || memchr(s, 'i', len) != NULL ||
        memchr(s, 'I', len) != NULL)
        return 0; /* .inf, .nan */
    size_t i = 0;
    if (s[0] == '-')
        sl_buf_puts(b, "-");
    if (s[0] == '+' || s[0] == '-')
        i = 1;
    size_t int_start = i;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    size_t int_end = i;
    while (int_start + 1 < int_end && s[int_start] == '0')
        int_start++;
    if (int_start == int_end)
        sl_buf_puts(b, "0");
    else
        sl_buf_append(b, s + int_start, int_end - int_start);
    if (i < len && s[i] == '.') {
        i++;
        size_t fs = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        sl_buf_puts(b, ".");
        if (i == fs)
            sl_buf_puts(b, "0");
        else
            sl_buf_append(b, s + fs, i - fs);
    }
    if (i < len) /* exponent, already validated */
        sl_buf_append(b, s + i, len - i);
    return 1;
}

static int to_json(pctx_t *c, const yaml_node_t *n, sl_buf_t *b, int depth)
{
    if (depth > MAX_META_DEPTH)
        return fail(c, n, "nested too deeply (more than %d levels)", MAX_META_DEPTH);
    if (b->len > MAX_META_BYTES)
        return fail(c, n, "too large (more than %u bytes as JSON)", MAX_META_BYTES);
    switch (n->type) {
    case YAML_SCALAR_NODE: {
        skind_t k = scalar_kind(n);
        if (k == SK_NULL)
            sl_buf_puts(b, "null");
        else if (k == SK_BOOL)
            sl_buf_puts(b, (sval(n)[0] == 't' || sval(n)[0] == 'T') ? "true" : "false");
        else if ((k == SK_INT || k == SK_FLOAT) && json_number(b, n, k))
            ;
        else if (memchr(sval(n), '\0', slen(n)) != NULL)
            return fail(c, n, "must not contain a NUL character");
        else
            sl_buf_json_str(b, sval(n), slen(n));
        return 0;
    }
    case YAML_SEQUENCE_NODE: {
        sl_buf_puts(b, "[");
        size_t i = 0;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
            if (i)
                sl_buf_puts(b, ",");
            size_t mark = path_index(c, i);
            int rc = to_json(c, yaml_document_get_node(c->y, *it), b, depth + 1);
            path_pop(c, mark);
            if (rc != 0)
                return rc;
        }
        sl_buf_puts(b, "]");
        return 0;
    }
    case YAML_MAPPING_NODE: {
        sl_buf_puts(b, "{");
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(c->y, p->key);
            if (k->type != YAML_SCALAR_NODE || scalar_kind(k) == SK_NULL)
                return fail(c, k, "keys must be strings");
            if (memchr(sval(k), '\0', slen(k)) != NULL)
                return fail(c, k, "keys must not contain a NUL character");
            for (yaml_node_pair_t *o = n->data.mapping.pairs.start; o < p; o++) {
                yaml_node_t *ok = yaml_document_get_node(c->y, o->key);
                if (ok->type == YAML_SCALAR_NODE && slen(ok) == slen(k) && !memcmp(sval(ok), sval(k), slen(k))) {
                    char q[96];
                    return fail(c, k, "duplicate key \"%s\"", show(sval(k), slen(k), q, sizeof(q)));
                }
            }
            if (p != n->data.mapping.pairs.start)
                sl_buf_puts(b, ",");
            sl_buf_json_str(b, sval(k), slen(k));
            sl_buf_puts(b, ":");
            size_t mark = path_key(c, sval(k));
            int rc = to_json(c, yaml_document_get_node(c->y, p->value), b, depth + 1);
            path_pop(c, mark);
            if (rc != 0)
                return rc;
        }
        sl_buf_puts(b, "}");
        return 0;
    }
    default: return fail(c, n, "unsupported YAML node");
    }
}

/* Reads optional field "metadata" (a mapping) into *field as a JSON object. */
static int opt_metadata(pctx_t *c, const yaml_node_t *map, char **field)
{
    yaml_node_t *v = get(c, map, "metadata");
    if (v == NULL)
        return 0;
    size_t mark = path_key(c, "metadata");
    int rc;
    char g[128];
    if (v->type != YAML_MAPPING_NODE) {
        rc = fail(c, v, "expected a mapping, got %s", got(v, g, sizeof(g)));
    } else {
        sl_buf_t b = {0};
        rc = to_json(c, v, &b, 0);
        if (rc == 0 && b.len > MAX_META_BYTES)
            rc = fail(c, v, "too large (more than %u bytes as JSON)", MAX_META_BYTES);
        if (rc == 0)
            set_str(field, xstrndup(b.data, b.len));
        sl_buf_free(&b);
    }
    path_pop(c, mark);
    return rc;
}

/* ---- lists -------------------------------------------------------------------------- */

/* Fetches an optional list field; *seq NULL when absent. */
static int opt_seq(pctx_t *c, const yaml_node_t *map, const char *key, yaml_node_t **seq)
{
    char g[128];
    *seq = get(c, map, key);
    if (*seq != NULL && (*seq)->type != YAML_SEQUENCE_NODE) {
        size_t mark = path_key(c, key);
        int rc = fail(c, *seq, "expected a list, got %s", got(*seq, g, sizeof(g)));
        path_pop(c, mark);
        return rc;
    }
    return 0;
}

static size_t seq_len(const yaml_node_t *seq)
{
    return seq == NULL ? 0 : (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

static yaml_node_t *seq_at(pctx_t *c, const yaml_node_t *seq, size_t i)
{
    return yaml_document_get_node(c->y, seq->data.sequence.items.start[i]);
}

/* Reads a list of names (kind: "provider" or "model") without duplicates. */
static int opt_names(pctx_t *c, const yaml_node_t *map, const char *key, int providers, char ***arr, size_t *n)
{
    yaml_node_t *seq;
    int rc = opt_seq(c, map, key, &seq);
    if (rc != 0 || seq == NULL)
        return rc;
    size_t mark = path_key(c, key);
    for (size_t i = 0; i < seq_len(seq) && rc == 0; i++) {
        yaml_node_t *it = seq_at(c, seq, i);
        size_t im = path_index(c, i);
        char *s = NULL;
        if (is_null(it))
            rc = fail(c, it, "expected a %s name, got null", providers ? "provider" : "model");
        else if ((rc = read_text(c, it, &s)) == 0)
            rc = providers ? check_provider_ref(c, it, s) : check_model_ref(c, it, s);
        for (size_t j = 0; rc == 0 && j < *n; j++)
            if (strcmp((*arr)[j], s) == 0)
                rc = fail(c, it, "\"%s\" is listed twice", s);
        if (rc == 0)
            PUSH(*arr, *n, s);
        else
            free(s);
        path_pop(c, im);
    }
    path_pop(c, mark);
    return rc;
}

/* ---- quotas: budget and rate_limit ---------------------------------------------- */

static void add_quota(quota_t ***arr, size_t *n, Sluice__Config__V1__QuotaMetric metric,
                      Sluice__Config__V1__QuotaWindow window, int64_t limit)
{
    quota_t *q = NEW(quota_t, SLUICE__CONFIG__V1__QUOTA__INIT);
    q->metric = metric;
    q->window = window;
    q->limit = limit;
    PUSH(*arr, *n, q);
}

static const struct {
    const char *field;
    const char *reset; /* the matching reset_duration */
    Sluice__Config__V1__QuotaWindow window;
} budget_fields[] = {
    {"max_per_day_usd", "daily", SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_DAY},
    {"max_per_week_usd", "weekly", SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_WEEK},
    {"max_per_month_usd", "monthly", SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MONTH},
    {"max_total_usd", NULL, SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_TOTAL},
};

static const struct {
    const char *field;
    Sluice__Config__V1__QuotaMetric metric;
    Sluice__Config__V1__QuotaWindow window;
} rate_fields[] = {
    {"requests_per_minute", SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_REQUESTS,
     SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MINUTE},
    {"requests_per_hour", SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_REQUESTS,
     SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_HOUR},
    {"requests_per_day", SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_REQUESTS,
     SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_DAY},
    {"tokens_per_minute", SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_TOKENS,
     SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_MINUTE},
    {"tokens_per_hour", SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_TOKENS,
     SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_HOUR},
    {"tokens_per_day", SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_TOKENS,
     SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_DAY},
    /* a concurrency limit never resets: its window is "total" */
    {"max_concurrent_requests", SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_CONCURRENT,
     SLUICE__CONFIG__V1__QUOTA_WINDOW__QUOTA_WINDOW_TOTAL},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

int ctl_quota_field(const Sluice__Config__V1__Quota *q, const char **section, const char **field)
{
    if (q->provider != NULL && q->provider[0] != '\0')
        return 0;
    if (q->metric == SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO) {
        for (size_t i = 0; i < NELEM(budget_fields); i++)
            if (budget_fields[i].window == q->window) {
                *section = "budget";
                *field = budget_fields[i].field;
                return 1;
            }
        return 0;
    }
    for (size_t i = 0; i < NELEM(rate_fields); i++)
        if (rate_fields[i].metric == q->metric && rate_fields[i].window == q->window) {
            *section = "rate_limit";
            *field = rate_fields[i].field;
            return 1;
        }
    return 0;
}

/* on_unavailable: closed|open for every quota a budget or rate_limit section
 * added (from index `from` on). Absent: the metric's default. */
static int opt_on_unavailable(pctx_t *c, const yaml_node_t *sec, quota_t **arr, size_t from, size_t n)
{
    char *v = NULL;
    int rc = opt_text(c, sec, "on_unavailable", &v);
    if (rc != 0 || v == NULL)
        return rc;
    Sluice__Config__V1__OnUnavailable p;
    if (strcmp(v, "closed") == 0) {
        p = SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_CLOSED;
    } else if (strcmp(v, "open") == 0) {
        p = SLUICE__CONFIG__V1__ON_UNAVAILABLE__ON_UNAVAILABLE_OPEN;
    } else {
        char q[96];
        size_t m = path_key(c, "on_unavailable");
        rc = fail(c, get(c, sec, "on_unavailable"), "\"%s\" is not a policy (expected closed or open)",
                  show(v, strlen(v), q, sizeof(q)));
        path_pop(c, m);
        free(v);
        return rc;
    }
    for (size_t i = from; i < n; i++)
        arr[i]->on_unavailable = p;
    free(v);
    return 0;
}

/* budget: {max_per_<period>_usd..., reset_duration} -> cost quotas; the
 * declared reset_duration goes to *reset when not NULL. */
static int opt_budget(pctx_t *c, const yaml_node_t *map, quota_t ***arr, size_t *n, char **reset)
{
    static const char *const allowed[] = {"max_per_day_usd", "max_per_week_usd", "max_per_month_usd",
                                          "max_total_usd",   "reset_duration",   "on_unavailable", NULL};
    yaml_node_t *b = get(c, map, "budget");
    if (b == NULL)
        return 0;
    size_t mark = path_key(c, "budget");
    size_t first = *n;
    int rc = check_map(c, b, allowed, "field");
    int present[NELEM(budget_fields)] = {0};
    for (size_t i = 0; rc == 0 && i < NELEM(budget_fields); i++) {
        int64_t v;
        rc = opt_usd(c, b, budget_fields[i].field, 9, &v, &present[i]);
        if (rc == 0 && present[i])
            add_quota(arr, n, SLUICE__CONFIG__V1__QUOTA_METRIC__QUOTA_METRIC_COST_NANO, budget_fields[i].window, v);
    }
    char *rd = NULL;
    if (rc == 0 && (rc = opt_text(c, b, "reset_duration", &rd)) == 0 && rd != NULL) {
        size_t rm = path_key(c, "reset_duration");
        size_t i;
        for (i = 0; i < NELEM(budget_fields); i++)
            if (budget_fields[i].reset != NULL && strcmp(budget_fields[i].reset, rd) == 0)
                break;
        char q[96];
        if (i == NELEM(budget_fields))
            rc =
                fail(c, get(c, b, "reset_duration"), "\"%s\" is not a reset period (expected daily, weekly or monthly)",
                     show(rd, strlen(rd), q, sizeof(q)));
        else if (!present[i])
            rc = fail(c, get(c, b, "reset_duration"), "\"%s\" needs budget.%s", rd, budget_fields[i].field);
        else if (reset != NULL)
            set_str(reset, xstrdup(rd));
        path_pop(c, rm);
    }
    free(rd);
    if (rc == 0)
        rc = opt_on_unavailable(c, b, *arr, first, *n);
    path_pop(c, mark);
    return rc;
}

static int opt_rate_limit(pctx_t *c, const yaml_node_t *map, quota_t ***arr, size_t *n)
{
    static const char *const allowed[] = {
        "requests_per_minute", "requests_per_hour", "requests_per_day",        "tokens_per_minute",
        "tokens_per_hour",     "tokens_per_day",    "max_concurrent_requests", "on_unavailable", NULL};
    yaml_node_t *r = get(c, map, "rate_limit");
    if (r == NULL)
        return 0;
    size_t mark = path_key(c, "rate_limit");
    size_t first = *n;
    int rc = check_map(c, r, allowed, "field");
    for (size_t i = 0; rc == 0 && i < NELEM(rate_fields); i++) {
        int64_t v;
        int present;
        rc = opt_int(c, r, rate_fields[i].field, 0, INT64_MAX, &v, &present);
        if (rc == 0 && present)
            add_quota(arr, n, rate_fields[i].metric, rate_fields[i].window, v);
    }
    if (rc == 0)
        rc = opt_on_unavailable(c, r, *arr, first, *n);
    path_pop(c, mark);
    return rc;
}

/* ---- string maps (params) ---------------------------------------------------- */

typedef struct {
    char **keys;
    char **values;
    size_t n;
} strmap_t;

static int opt_params(pctx_t *c, const yaml_node_t *map, strmap_t *out)
{
    char g[128];
    yaml_node_t *m = get(c, map, "params");
    if (m == NULL)
        return 0;
    size_t mark = path_key(c, "params");
    int rc = 0;
    if (m->type != YAML_MAPPING_NODE)
        rc = fail(c, m, "expected a mapping, got %s", got(m, g, sizeof(g)));
    for (yaml_node_pair_t *p = rc ? NULL : m->data.mapping.pairs.start; rc == 0 && p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->y, p->key);
        yaml_node_t *v = yaml_document_get_node(c->y, p->value);
        char *ks = NULL, *vs = NULL;
        if ((rc = read_text(c, k, &ks)) != 0)
            break;
        size_t km = path_key(c, ks);
        if (ks[0] == '\0')
            rc = fail(c, k, "a parameter name must not be empty");
        for (size_t j = 0; rc == 0 && j < out->n; j++)
            if (strcmp(out->keys[j], ks) == 0)
                rc = fail(c, k, "duplicate parameter");
        if (rc == 0)
            rc = read_text(c, v, &vs);
        path_pop(c, km);
        if (rc != 0) {
            free(ks);
            free(vs);
            break;
        }
        out->keys = xrealloc(out->keys, (out->n + 1) * sizeof(char *));
        out->values = xrealloc(out->values, (out->n + 1) * sizeof(char *));
        out->keys[out->n] = ks;
        out->values[out->n++] = vs;
    }
    path_pop(c, mark);
    return rc;
}

/* Moves a strmap into protobuf map entries (entry type given by the macro). */
#define MOVE_PARAMS(sm_, entry_t_, arr_, n_, ...)                                                                      \
    do {                                                                                                               \
        for (size_t i_ = 0; i_ < (sm_).n; i_++) {                                                                      \
            entry_t_ *e_ = NEW(entry_t_, __VA_ARGS__);                                                                 \
            e_->key = (sm_).keys[i_];                                                                                  \
            e_->value = (sm_).values[i_];                                                                              \
            PUSH(arr_, n_, e_);                                                                                        \
        }                                                                                                              \
        free((sm_).keys);                                                                                              \
        free((sm_).values);                                                                                            \
        (sm_).n = 0;                                                                                                   \
        (sm_).keys = (sm_).values = NULL;                                                                              \
    } while (0)

static void strmap_free(strmap_t *sm)
{
    for (size_t i = 0; i < sm->n; i++) {
        free(sm->keys[i]);
        free(sm->values[i]);
    }
    free(sm->keys);
    free(sm->values);
    memset(sm, 0, sizeof(*sm));
}

/* ---- entities ---------------------------------------------------------------------- */

static char *origin(pctx_t *c, const yaml_node_t *n)
{
    char buf[600];
    snprintf(buf, sizeof(buf), "%s:%zu", c->source, (size_t)n->start_mark.line + 1);
    return xstrdup(buf);
}

static int parse_tenant(pctx_t *c, const yaml_node_t *n)
{
    static const char *const allowed[] = {"id", "name", "metadata", "time_zone", "budget", "rate_limit", NULL};
    ctl_doc_t *d = c->doc;
    int rc = check_map(c, n, allowed, "field");
    if (rc != 0)
        return rc;
    tenant_t *t = NEW(tenant_t, SLUICE__CONFIG__V1__TENANT__INIT);
    PUSH(d->pb->tenants, d->pb->n_tenants, t);
    d->tenant_at = xrealloc(d->tenant_at, d->pb->n_tenants * sizeof(char *));
    d->tenant_at[d->pb->n_tenants - 1] = origin(c, n);
    if ((rc = req_id(c, n, "id", &t->id)) != 0 || (rc = opt_text(c, n, "name", &t->name)) != 0 ||
        (rc = opt_metadata(c, n, &t->metadata_json)) != 0 || (rc = opt_text(c, n, "time_zone", &t->time_zone)) != 0 ||
        (rc = opt_budget(c, n, &t->quotas, &t->n_quotas, NULL)) != 0 ||
        (rc = opt_rate_limit(c, n, &t->quotas, &t->n_quotas)) != 0)
        return rc;
    return 0;
}

static const char *const provider_kinds[] = {
    "openai", "azure_openai", "openai_compatible", "anthropic", "bedrock", "vertex", NULL};

/* ---- credential secrets ------------------------------------------------------ */

#define MAX_SA_BYTES (64u << 10)

static void wipe_free(char *s, size_t n)
{
    if (s != NULL) {
        explicit_bzero(s, n);
        free(s);
    }
}

static void set_secret(cred_t *cr, const char *v, size_t n)
{
    cr->secret.data = xrealloc(NULL, n);
    memcpy(cr->secret.data, v, n);
    cr->secret.len = n;
}

/* Reads the variable named by field key of n (the name checked, the value
 * set and not empty). *name receives the name (malloc'd) and *val a copy of
 * the value (malloc'd; wipe_free it). Messages name the field, never the
 * value. */
static int env_field(pctx_t *c, const yaml_node_t *n, const char *key, char **name, char **val)
{
    char q[96];
    *name = NULL;
    *val = NULL;
    int rc = req_text(c, n, key, name);
    if (rc != 0) {
        free(*name);
        *name = NULL;
        return rc;
    }
    size_t mark = path_key(c, key);
    const char *var = *name, *v = NULL;
    int valid_var = var[0] != '\0' && !(var[0] >= '0' && var[0] <= '9');
    for (const char *s = var; *s != '\0'; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            valid_var = 0;
    if (!valid_var)
        rc =
            fail(c, get(c, n, key), "\"%s\" is not an environment variable name", show(var, strlen(var), q, sizeof(q)));
    else if ((v = c->env(var, c->env_ud)) == NULL)
        rc = fail(c, get(c, n, key), "environment variable %s is not set", var);
    else if (v[0] == '\0')
        rc = fail(c, get(c, n, key), "environment variable %s is empty", var);
    path_pop(c, mark);
    if (rc != 0) {
        free(*name);
        *name = NULL;
        return rc;
    }
    *val = xstrdup(v);
    return 0;
}

/* Why text is not a usable secret for kind (NULL when it is): Bedrock's
 * {"access_key_id","secret_access_key","session_token"?} object, or a
 * Google service-account JSON (type service_account, client_email,
 * private_key, token_uri). Never quotes the text. */
static const char *secret_shape_error(const char *kind, const char *text, size_t len)
{
    int bedrock = strcmp(kind, "bedrock") == 0;
    size_t cap = len / 2 + 2;
    sl_json_tok_t *t = xrealloc(NULL, cap * sizeof(*t));
    const char *why = NULL;
    int n = sl_json_parse(text, len, t, cap, NULL);
    if (n < 1 || t[0].type != SL_JSON_OBJECT) {
        why = bedrock ? "is not a JSON object {\"access_key_id\", \"secret_access_key\", \"session_token\"?}"
                      : "is not JSON (expected a Google service-account key file)";
    } else if (bedrock) {
        static const char *const req[] = {"access_key_id", "secret_access_key"};
        for (size_t i = 0; why == NULL && i < 2; i++) {
            int v = sl_json_find(text, t, 0, req[i], strlen(req[i]));
            if (v < 0 || t[v].type != SL_JSON_STRING || t[v].end == t[v].start)
                why = i == 0 ? "has no access_key_id string" : "has no secret_access_key string";
        }
        int st = sl_json_find(text, t, 0, "session_token", 13);
        if (why == NULL && st > 0 && t[st].type != SL_JSON_STRING && t[st].type != SL_JSON_NULL)
            why = "has a session_token that is not a string";
    } else {
        int ty = sl_json_find(text, t, 0, "type", 4);
        if (ty < 0 || t[ty].type != SL_JSON_STRING || !sl_json_str_eq(text, &t[ty], "service_account", 15)) {
            why = "is not a service-account key (its \"type\" is not \"service_account\")";
        } else {
            static const char *const req[] = {"client_email", "private_key", "token_uri"};
            static const char *const whys[] = {"has no client_email", "has no private_key", "has no token_uri"};
            for (size_t i = 0; why == NULL && i < 3; i++) {
                int v = sl_json_find(text, t, 0, req[i], strlen(req[i]));
                if (v < 0 || t[v].type != SL_JSON_STRING || t[v].end == t[v].start)
                    why = whys[i];
            }
        }
    }
    free(t);
    return why;
}

/* Reads a service-account file: a relative path is taken from the directory
 * of the YAML file naming it. *out is malloc'd (wipe_free it). */
static int read_sa_file(pctx_t *c, const yaml_node_t *n, const char *path, char **out, size_t *outlen)
{
    char full[4096];
    const char *slash = strrchr(c->source, '/');
    if (path[0] != '/' && slash != NULL && strcmp(c->source, "<stdin>") != 0)
        snprintf(full, sizeof(full), "%.*s/%s", (int)(slash - c->source), c->source, path);
    else
        snprintf(full, sizeof(full), "%s", path);
    char q[96];
    FILE *f = fopen(full, "rb");
    if (f == NULL)
        return fail(c, n, "could not open \"%s\": %s", show(full, strlen(full), q, sizeof(q)), strerror(errno));
    char *buf = xrealloc(NULL, MAX_SA_BYTES + 1);
    size_t len = fread(buf, 1, MAX_SA_BYTES + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || len > MAX_SA_BYTES || len == 0) {
        wipe_free(buf, MAX_SA_BYTES + 1);
        if (bad)
            return fail(c, n, "could not read \"%s\"", show(full, strlen(full), q, sizeof(q)));
        return fail(c, n, "\"%s\" is %s", show(full, strlen(full), q, sizeof(q)),
                    len == 0 ? "empty" : "larger than 64 KiB");
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
}

/* The secret of a credential: secret_env for every kind; for bedrock also
 * access_key_id_env + secret_access_key_env [+ session_token_env]
 * assembled into Bedrock's JSON; for vertex also service_account_file or
 * service_account_env (the key file's JSON). */
static int read_secret(pctx_t *c, const yaml_node_t *n, const provider_t *p, cred_t *cr)
{
    static const char *const aws[] = {"access_key_id_env", "secret_access_key_env", "session_token_env"};
    static const char *const sa[] = {"service_account_file", "service_account_env"};
    int bedrock = strcmp(p->kind, "bedrock") == 0, vertex = strcmp(p->kind, "vertex") == 0;
    const char *given[4];
    size_t ngiven = 0, mark;
    int rc;
    if (get(c, n, "secret_env") != NULL)
        given[ngiven++] = "secret_env";
    for (size_t i = 0; i < 3; i++) {
        if (get(c, n, aws[i]) == NULL)
            continue;
        if (!bedrock) {
            mark = path_key(c, aws[i]);
            rc = fail(c, get(c, n, aws[i]), "is only for providers of kind bedrock");
            path_pop(c, mark);
            return rc;
        }
        if (i == 0 || ngiven == 0 || strcmp(given[ngiven - 1], "access_key_id_env") != 0)
            given[ngiven++] = "access_key_id_env";
    }
    for (size_t i = 0; i < 2; i++) {
        if (get(c, n, sa[i]) == NULL)
            continue;
        if (!vertex) {
            mark = path_key(c, sa[i]);
            rc = fail(c, get(c, n, sa[i]), "is only for providers of kind vertex");
            path_pop(c, mark);
            return rc;
        }
        given[ngiven++] = sa[i];
    }
    if (ngiven > 1)
        return fail(c, n, "give one secret source, not both %s and %s", given[0], given[1]);

    char *name = NULL, *val = NULL;
    const char *shape_error = NULL;
    const char *field = ngiven == 1 ? given[0] : "secret_env";
    if (ngiven == 0 && bedrock)
        return fail(c, n,
                    "a bedrock key needs access_key_id_env and secret_access_key_env (or secret_env holding the "
                    "credential JSON)");
    if (ngiven == 0 && vertex)
        return fail(c, n, "a vertex key needs service_account_file or service_account_env (or secret_env)");

    if (strcmp(field, "access_key_id_env") == 0) {
        char *names[3] = {NULL, NULL, NULL}, *vals[3] = {NULL, NULL, NULL};
        rc = 0;
        for (size_t i = 0; rc == 0 && i < 3; i++) {
            if (i == 2 && get(c, n, aws[i]) == NULL)
                break;
            rc = env_field(c, n, aws[i], &names[i], &vals[i]);
        }
        if (rc == 0) {
            size_t total = strlen(vals[0]) + strlen(vals[1]) + (vals[2] != NULL ? strlen(vals[2]) : 0);
            sl_buf_t b = {0};
            sl_buf_reserve(&b, 6 * total + 128); /* no reallocation: no stray copies */
            sl_buf_puts(&b, "{\"access_key_id\":");
            sl_buf_json_str(&b, vals[0], strlen(vals[0]));
            sl_buf_puts(&b, ",\"secret_access_key\":");
            sl_buf_json_str(&b, vals[1], strlen(vals[1]));
            if (vals[2] != NULL) {
                sl_buf_puts(&b, ",\"session_token\":");
                sl_buf_json_str(&b, vals[2], strlen(vals[2]));
            }
            sl_buf_puts(&b, "}");
            set_secret(cr, b.data, b.len);
            explicit_bzero(b.data, b.cap);
            sl_buf_free(&b);
            sl_buf_t envs = {0};
            sl_buf_printf(&envs, "%s,%s%s%s", names[0], names[1], names[2] != NULL ? "," : "",
                          names[2] != NULL ? names[2] : "");
            set_str(&cr->secret_env, xstrdup(envs.data));
            sl_buf_free(&envs);
        }
        for (size_t i = 0; i < 3; i++) {
            free(names[i]);
            wipe_free(vals[i], vals[i] != NULL ? strlen(vals[i]) : 0);
        }
        return rc;
    }
    if (strcmp(field, "service_account_file") == 0) {
        char *path = NULL, *text = NULL;
        size_t len = 0;
        if ((rc = req_text(c, n, field, &path)) != 0) {
            free(path);
            return rc;
        }
        mark = path_key(c, field);
        rc = read_sa_file(c, get(c, n, field), path, &text, &len);
        if (rc == 0 && (shape_error = secret_shape_error(p->kind, text, len)) != NULL) {
            char q[96];
            rc = fail(c, get(c, n, field), "\"%s\" %s", show(path, strlen(path), q, sizeof(q)), shape_error);
        }
        path_pop(c, mark);
        if (rc == 0)
            set_secret(cr, text, len);
        free(path);
        wipe_free(text, MAX_SA_BYTES + 1);
        return rc;
    }
    /* secret_env or service_account_env: one variable holds the secret */
    if ((rc = env_field(c, n, field, &name, &val)) != 0)
        return rc;
    if ((bedrock || vertex) && (shape_error = secret_shape_error(p->kind, val, strlen(val))) != NULL) {
        mark = path_key(c, field);
        rc = fail(c, get(c, n, field), "the value of %s %s", name, shape_error);
        path_pop(c, mark);
    }
    if (rc == 0) {
        set_secret(cr, val, strlen(val));
        set_str(&cr->secret_env, name);
        name = NULL;
    }
    free(name);
    wipe_free(val, strlen(val));
    return rc;
}

static int parse_credential(pctx_t *c, const yaml_node_t *n, provider_t *p, size_t index)
{
    static const char *const allowed[] = {"id",
                                          "secret_env",
                                          "weight",
                                          "params",
                                          "access_key_id_env",
                                          "secret_access_key_env",
                                          "session_token_env",
                                          "service_account_file",
                                          "service_account_env",
                                          NULL};
    int rc = check_map(c, n, allowed, "field");
    if (rc != 0)
        return rc;
    cred_t *cr = NEW(cred_t, SLUICE__CONFIG__V1__CREDENTIAL__INIT);
    PUSH(p->credentials, p->n_credentials, cr);
    char q[96];
    if (get(c, n, "id") != NULL) {
        if ((rc = req_id(c, n, "id", &cr->id)) != 0)
            return rc;
    } else {
        char buf[32];
        snprintf(buf, sizeof(buf), "key%zu", index + 1);
        set_str(&cr->id, xstrdup(buf));
    }
    for (size_t j = 0; j + 1 < p->n_credentials; j++) {
        if (strcmp(p->credentials[j]->id, cr->id) == 0) {
            size_t mark = path_key(c, "id");
            rc = fail(c, n, "duplicate credential id \"%s\"", show(cr->id, strlen(cr->id), q, sizeof(q)));
            path_pop(c, mark);
            return rc;
        }
    }
    int64_t weight = 1;
    if ((rc = opt_int(c, n, "weight", 1, 1000000, &weight, NULL)) != 0)
        return rc;
    cr->weight = (int32_t)weight;
    if ((rc = read_secret(c, n, p, cr)) != 0)
        return rc;
    strmap_t sm = {0};
    if ((rc = opt_params(c, n, &sm)) != 0) {
        strmap_free(&sm);
        return rc;
    }
    MOVE_PARAMS(sm, Sluice__Config__V1__Credential__ParamsEntry, cr->params, cr->n_params,
                SLUICE__CONFIG__V1__CREDENTIAL__PARAMS_ENTRY__INIT);
    return 0;
}

static const char *provider_param(const provider_t *p, const char *key)
{
    for (size_t i = 0; i < p->n_params; i++)
        if (strcmp(p->params[i]->key, key) == 0)
            return p->params[i]->value;
    return NULL;
}

/* A DNS label's worth of [a-z0-9-]: safe to put in a host name. */
static int host_label(const char *s)
{
    if (s[0] == '\0' || strlen(s) > 63)
        return 0;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return 0;
    return 1;
}

/* Kind-specific rules once a provider is read: bedrock needs params.region
 * (it signs requests) and defaults base_url to the region's Bedrock Runtime
 * endpoint; vertex defaults base_url to the endpoint of params.location
 * (us-central1 when absent). */
static int provider_defaults(pctx_t *c, const yaml_node_t *n, provider_t *p)
{
    char q[96], url[160];
    int rc = 0;
    size_t mark;
    if (strcmp(p->kind, "bedrock") == 0) {
        const char *region = provider_param(p, "region");
        int every_key_has_one = p->n_credentials > 0;
        for (size_t i = 0; i < p->n_credentials; i++) {
            int found = 0;
            for (size_t j = 0; j < p->credentials[i]->n_params; j++)
                found |= strcmp(p->credentials[i]->params[j]->key, "region") == 0;
            every_key_has_one &= found;
        }
        mark = path_key(c, "params");
        size_t m2 = path_key(c, "region");
        if (region == NULL && !every_key_has_one)
            rc = fail(c, n, "is required for kind bedrock (e.g. params: {region: us-east-1})");
        else if (region != NULL && !host_label(region))
            rc = fail(c, n, "\"%s\" is not an AWS region name", show(region, strlen(region), q, sizeof(q)));
        path_pop(c, m2);
        path_pop(c, mark);
        if (rc != 0)
            return rc;
        if (p->base_url[0] == '\0') {
            if (region == NULL) {
                mark = path_key(c, "base_url");
                rc = fail(c, n, "is required when the provider has no params.region");
                path_pop(c, mark);
                return rc;
            }
            snprintf(url, sizeof(url), "https://bedrock-runtime.%s.amazonaws.com", region);
            set_str(&p->base_url, xstrdup(url));
        }
    } else if (strcmp(p->kind, "vertex") == 0 && p->base_url[0] == '\0') {
        const char *loc = provider_param(p, "location");
        if (loc == NULL)
            loc = "us-central1"; /* the data plane's default location too */
        if (strcmp(loc, "global") == 0) {
            set_str(&p->base_url, xstrdup("https://aiplatform.googleapis.com"));
        } else if (host_label(loc)) {
            snprintf(url, sizeof(url), "https://%s-aiplatform.googleapis.com", loc);
            set_str(&p->base_url, xstrdup(url));
        } else {
            mark = path_key(c, "base_url");
            rc = fail(c, n, "is required: params.location is not a location name");
            path_pop(c, mark);
        }
    }
    return rc;
}

static int parse_provider(pctx_t *c, const yaml_node_t *n)
{
    static const char *const allowed[] = {"name",
                                          "kind",
                                          "base_url",
                                          "keys",
                                          "params",
                                          "connect_timeout_ms",
                                          "first_byte_timeout_ms",
                                          "idle_timeout_ms",
                                          "total_timeout_ms",
                                          NULL};
    ctl_doc_t *d = c->doc;
    int rc = check_map(c, n, allowed, "field");
    if (rc != 0)
        return rc;
    provider_t *p = NEW(provider_t, SLUICE__CONFIG__V1__PROVIDER__INIT);
    PUSH(d->pb->providers, d->pb->n_providers, p);
    d->provider_at = xrealloc(d->provider_at, d->pb->n_providers * sizeof(char *));
    d->provider_at[d->pb->n_providers - 1] = origin(c, n);
    char q[96];
    size_t mark;

    if ((rc = req_text(c, n, "name", &p->name)) != 0)
        return rc;
    mark = path_key(c, "name");
    rc = check_provider_ref(c, get(c, n, "name"), p->name);
    path_pop(c, mark);
    if (rc != 0)
        return rc;

    if ((rc = req_text(c, n, "kind", &p->kind)) != 0)
        return rc;
    size_t k;
    for (k = 0; provider_kinds[k] != NULL; k++)
        if (strcmp(provider_kinds[k], p->kind) == 0)
            break;
    if (provider_kinds[k] == NULL) {
        mark = path_key(c, "kind");
        rc = fail(c, get(c, n, "kind"),
                  "\"%s\" is not a provider kind (expected openai, azure_openai, openai_compatible, anthropic, bedrock "
                  "or vertex)",
                  show(p->kind, strlen(p->kind), q, sizeof(q)));
        path_pop(c, mark);
        return rc;
    }

    if ((rc = opt_text(c, n, "base_url", &p->base_url)) != 0)
        return rc;
    if (p->base_url[0] != '\0' && strncmp(p->base_url, "http://", 7) != 0 && strncmp(p->base_url, "https://", 8) != 0) {
        mark = path_key(c, "base_url");
        rc = fail(c, get(c, n, "base_url"), "\"%s\" is not an http:// or https:// URL",
                  show(p->base_url, strlen(p->base_url), q, sizeof(q)));
        path_pop(c, mark);
        return rc;
    }

    static const char *const timeouts[] = {"connect_timeout_ms", "first_byte_timeout_ms", "idle_timeout_ms",
                                           "total_timeout_ms"};
    int32_t *tfield[] = {&p->connect_timeout_ms, &p->first_byte_timeout_ms, &p->idle_timeout_ms, &p->total_timeout_ms};
    for (size_t i = 0; i < NELEM(timeouts); i++) {
        int64_t v = 0;
        if ((rc = opt_int(c, n, timeouts[i], 0, INT64_C(86400000), &v, NULL)) != 0)
            return rc;
        *tfield[i] = (int32_t)v;
    }

    strmap_t sm = {0};
    if ((rc = opt_params(c, n, &sm)) != 0) {
        strmap_free(&sm);
        return rc;
    }
    MOVE_PARAMS(sm, Sluice__Config__V1__Provider__ParamsEntry, p->params, p->n_params,
                SLUICE__CONFIG__V1__PROVIDER__PARAMS_ENTRY__INIT);

    yaml_node_t *keys;
    if ((rc = opt_seq(c, n, "keys", &keys)) != 0)
        return rc;
    mark = path_key(c, "keys");
    for (size_t i = 0; rc == 0 && i < seq_len(keys); i++) {
        size_t im = path_index(c, i);
        rc = parse_credential(c, seq_at(c, keys, i), p, i);
        path_pop(c, im);
    }
    path_pop(c, mark);
    if (rc == 0)
        rc = provider_defaults(c, n, p);
    return rc;
}

static int parse_model(pctx_t *c, const yaml_node_t *n)
{
    static const char *const allowed[] = {
        "provider",          "model", "input_usd_per_mtok", "output_usd_per_mtok", "cached_input_usd_per_mtok",
        "max_output_tokens", NULL};
    ctl_doc_t *d = c->doc;
    int rc = check_map(c, n, allowed, "field");
    if (rc != 0)
        return rc;
    model_t *m = NEW(model_t, SLUICE__CONFIG__V1__MODEL_PRICE__INIT);
    PUSH(d->pb->models, d->pb->n_models, m);
    d->model_at = xrealloc(d->model_at, d->pb->n_models * sizeof(char *));
    d->model_at[d->pb->n_models - 1] = origin(c, n);
    size_t mark;

    if ((rc = req_text(c, n, "provider", &m->provider)) != 0)
        return rc;
    mark = path_key(c, "provider");
    rc = check_provider_ref(c, get(c, n, "provider"), m->provider);
    path_pop(c, mark);
    if (rc != 0 || (rc = req_text(c, n, "model", &m->model)) != 0)
        return rc;
    mark = path_key(c, "model");
    rc = check_model_ref(c, get(c, n, "model"), m->model);
    path_pop(c, mark);
    if (rc != 0)
        return rc;

    static const char *const required[] = {"input_usd_per_mtok", "output_usd_per_mtok"};
    int64_t *price[] = {&m->input_micro_per_mtok, &m->output_micro_per_mtok};
    for (size_t i = 0; i < NELEM(required); i++) {
        int present;
        if ((rc = opt_usd(c, n, required[i], 6, price[i], &present)) != 0)
            return rc;
        if (!present) {
            mark = path_key(c, required[i]);
            rc = fail(c, n, "is required");
            path_pop(c, mark);
            return rc;
        }
    }
    if ((rc = opt_usd(c, n, "cached_input_usd_per_mtok", 6, &m->cached_input_micro_per_mtok, NULL)) != 0 ||
        (rc = opt_int(c, n, "max_output_tokens", 0, INT32_MAX, &m->max_output_tokens, NULL)) != 0)
        return rc;
    return 0;
}

static int parse_fallback(pctx_t *c, const yaml_node_t *n, vkey_t *k)
{
    static const char *const allowed[] = {"provider", "model", NULL};
    target_t *t = NEW(target_t, SLUICE__CONFIG__V1__TARGET__INIT);
    PUSH(k->fallbacks, k->n_fallbacks, t);
    int rc;
    if (n->type == YAML_SCALAR_NODE && !is_null(n)) {
        /* short form "provider/model" */
        char *s = NULL;
        if ((rc = read_text(c, n, &s)) != 0)
            return rc;
        char *slash = strchr(s, '/');
        char q[96];
        if (slash == NULL || slash == s || slash[1] == '\0') {
            rc = fail(c, n, "\"%s\" is not provider/model (or use {provider: ..., model: ...})",
                      show(s, strlen(s), q, sizeof(q)));
            free(s);
            return rc;
        }
        set_str(&t->provider, xstrndup(s, (size_t)(slash - s)));
        set_str(&t->model, xstrdup(slash + 1));
        free(s);
        if ((rc = check_provider_ref(c, n, t->provider)) != 0 || (rc = check_model_ref(c, n, t->model)) != 0)
            return rc;
    } else {
        if ((rc = check_map(c, n, allowed, "field")) != 0 || (rc = req_text(c, n, "provider", &t->provider)) != 0)
            return rc;
        size_t mark = path_key(c, "provider");
        rc = check_provider_ref(c, get(c, n, "provider"), t->provider);
        path_pop(c, mark);
        if (rc != 0 || (rc = req_text(c, n, "model", &t->model)) != 0)
            return rc;
        mark = path_key(c, "model");
        rc = check_model_ref(c, get(c, n, "model"), t->model);
        path_pop(c, mark);
        if (rc != 0)
            return rc;
    }
    for (size_t j = 0; j + 1 < k->n_fallbacks; j++)
        if (!strcmp(k->fallbacks[j]->provider, t->provider) && !strcmp(k->fallbacks[j]->model, t->model))
            return fail(c, n, "%s/%s is listed twice", t->provider, t->model);
    return 0;
}

/* provider_limits: {PROVIDER: {budget: {...}, rate_limit: {...}}} -> key x
 * provider quotas (Quota.provider set): they count only the requests the
 * key sends to that provider. */
static int opt_provider_limits(pctx_t *c, const yaml_node_t *map, vkey_t *k)
{
    static const char *const allowed[] = {"budget", "rate_limit", NULL};
    char g[128];
    yaml_node_t *m = get(c, map, "provider_limits");
    if (m == NULL)
        return 0;
    size_t mark = path_key(c, "provider_limits");
    int rc = 0;
    if (m->type != YAML_MAPPING_NODE)
        rc = fail(c, m, "expected a mapping of provider names, got %s", got(m, g, sizeof(g)));
    for (yaml_node_pair_t *p = rc ? NULL : m->data.mapping.pairs.start; rc == 0 && p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->y, p->key);
        yaml_node_t *vn = yaml_document_get_node(c->y, p->value);
        if (kn == NULL || kn->type != YAML_SCALAR_NODE) {
            rc = fail(c, m, "expected provider names as keys");
            break;
        }
        char *prov = xstrndup((const char *)kn->data.scalar.value, kn->data.scalar.length);
        size_t pm = path_key(c, prov);
        if ((rc = check_provider_ref(c, kn, prov)) == 0 && (rc = check_map(c, vn, allowed, "field")) == 0) {
            size_t first = k->n_quotas;
            if ((rc = opt_budget(c, vn, &k->quotas, &k->n_quotas, NULL)) == 0 &&
                (rc = opt_rate_limit(c, vn, &k->quotas, &k->n_quotas)) == 0) {
                for (size_t i = first; i < k->n_quotas; i++)
                    set_str(&k->quotas[i]->provider, xstrdup(prov));
                if (k->n_quotas == first)
                    rc = fail(c, vn, "gives no budget or rate limit");
            }
        }
        path_pop(c, pm);
        free(prov);
    }
    path_pop(c, mark);
    return rc;
}

static int parse_vkey(pctx_t *c, const yaml_node_t *n)
{
    static const char *const allowed[] = {
        "id",        "customer_id", "tenant_id", "budget", "rate_limit", "allowed_providers", "allowed_models",
        "fallbacks", "metadata",    "provider_limits", NULL};
    ctl_doc_t *d = c->doc;
    int rc = check_map(c, n, allowed, "field");
    if (rc != 0)
        return rc;
    vkey_t *k = NEW(vkey_t, SLUICE__CONFIG__V1__VIRTUAL_KEY__INIT);
    PUSH(d->pb->virtual_keys, d->pb->n_virtual_keys, k);
    d->key_at = xrealloc(d->key_at, d->pb->n_virtual_keys * sizeof(char *));
    d->key_at[d->pb->n_virtual_keys - 1] = origin(c, n);

    if ((rc = req_id(c, n, "id", &k->id)) != 0)
        return rc;
    /* tenant_id is accepted as another spelling of customer_id */
    int has_c = get(c, n, "customer_id") != NULL, has_t = get(c, n, "tenant_id") != NULL;
    if (has_c && has_t) {
        size_t mark = path_key(c, "tenant_id");
        rc = fail(c, get(c, n, "tenant_id"), "give customer_id or tenant_id, not both");
        path_pop(c, mark);
        return rc;
    }
    if ((rc = req_id(c, n, has_t ? "tenant_id" : "customer_id", &k->tenant_id)) != 0 ||
        (rc = opt_budget(c, n, &k->quotas, &k->n_quotas, &k->budget_reset)) != 0 ||
        (rc = opt_rate_limit(c, n, &k->quotas, &k->n_quotas)) != 0 ||
        (rc = opt_provider_limits(c, n, k)) != 0 ||
        (rc = opt_names(c, n, "allowed_providers", 1, &k->allowed_providers, &k->n_allowed_providers)) != 0 ||
        (rc = opt_names(c, n, "allowed_models", 0, &k->allowed_models, &k->n_allowed_models)) != 0 ||
        (rc = opt_metadata(c, n, &k->metadata_json)) != 0)
        return rc;
    yaml_node_t *fb;
    if ((rc = opt_seq(c, n, "fallbacks", &fb)) != 0)
        return rc;
    size_t mark = path_key(c, "fallbacks");
    for (size_t i = 0; rc == 0 && i < seq_len(fb); i++) {
        size_t im = path_index(c, i);
        rc = parse_fallback(c, seq_at(c, fb, i), k);
        path_pop(c, im);
    }
    path_pop(c, mark);
    return rc;
}

/* ---- alerts: sinks and rules ------------------------------------------------------ */

typedef Sluice__Config__V1__AlertSink sink_t;
typedef Sluice__Config__V1__AlertRule rule_t;

/* Reads the variable named by field key (an *_env field) into *secret and
 * the name into *env_name. Never shows the value. */
static int read_env_secret(pctx_t *c, const yaml_node_t *map, const char *key, ProtobufCBinaryData *secret,
                           char **env_name)
{
    int rc = req_text(c, map, key, env_name);
    if (rc != 0)
        return rc;
    size_t mark = path_key(c, key);
    const char *var = *env_name;
    char q[96];
    int valid = var[0] != '\0' && !(var[0] >= '0' && var[0] <= '9');
    for (const char *s = var; *s != '\0'; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            valid = 0;
    const char *val = NULL;
    if (!valid)
        rc = fail(c, get(c, map, key), "\"%s\" is not an environment variable name",
                  show(var, strlen(var), q, sizeof(q)));
    else if ((val = c->env(var, c->env_ud)) == NULL)
        rc = fail(c, get(c, map, key), "environment variable %s is not set", var);
    else if (val[0] == '\0')
        rc = fail(c, get(c, map, key), "environment variable %s is empty", var);
    path_pop(c, mark);
    if (rc != 0)
        return rc;
    size_t vlen = strlen(val);
    secret->data = xrealloc(NULL, vlen);
    memcpy(secret->data, val, vlen);
    secret->len = vlen;
    return 0;
}

static int parse_alert_sink(pctx_t *c, const yaml_node_t *n)
{
    static const char *const allowed[] = {"name", "kind", "url", "secret_env", "routing_key_env", "url_env", NULL};
    static const char *const kinds[] = {"webhook", "slack", "pagerduty", "alertmanager", NULL};
    /* the one variable each kind reads its secret from (NULL: none) */
    static const char *const env_field[] = {"secret_env", "url_env", "routing_key_env", NULL};
    ctl_doc_t *d = c->doc;
    int rc = check_map(c, n, allowed, "field");
    if (rc != 0)
        return rc;
    sink_t *s = NEW(sink_t, SLUICE__CONFIG__V1__ALERT_SINK__INIT);
    PUSH(d->pb->alert_sinks, d->pb->n_alert_sinks, s);
    d->sink_at = xrealloc(d->sink_at, d->pb->n_alert_sinks * sizeof(char *));
    d->sink_at[d->pb->n_alert_sinks - 1] = origin(c, n);
    if ((rc = req_id(c, n, "name", &s->name)) != 0 || (rc = req_text(c, n, "kind", &s->kind)) != 0)
        return rc;
    size_t k;
    for (k = 0; kinds[k] != NULL; k++)
        if (strcmp(kinds[k], s->kind) == 0)
            break;
    char q[96];
    if (kinds[k] == NULL) {
        size_t mark = path_key(c, "kind");
        rc =
            fail(c, get(c, n, "kind"), "\"%s\" is not a sink kind (expected webhook, slack, pagerduty or alertmanager)",
                 show(s->kind, strlen(s->kind), q, sizeof(q)));
        path_pop(c, mark);
        return rc;
    }
    for (size_t e = 0; e < 3; e++) {
        if (e == k || get(c, n, env_field[e]) == NULL)
            continue;
        size_t mark = path_key(c, env_field[e]);
        rc = fail(c, get(c, n, env_field[e]), "not used by a %s sink", s->kind);
        path_pop(c, mark);
        return rc;
    }
    if ((rc = opt_text(c, n, "url", &s->url)) != 0)
        return rc;
    const char *u = s->url;
    if (u[0] != '\0' && strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) {
        size_t mark = path_key(c, "url");
        rc = fail(c, get(c, n, "url"), "\"%s\" is not an http(s) URL", show(u, strlen(u), q, sizeof(q)));
        path_pop(c, mark);
        return rc;
    }
    if (k == 1 && u[0] != '\0') { /* slack */
        size_t mark = path_key(c, "url");
        rc = fail(c, get(c, n, "url"), "a Slack webhook URL is a secret: put it in a variable and give url_env");
        path_pop(c, mark);
        return rc;
    }
    if ((k == 0 || k == 3) && u[0] == '\0') {
        size_t mark = path_key(c, "url");
        rc = fail(c, n, "is required for a %s sink", s->kind);
        path_pop(c, mark);
        return rc;
    }
    if (k < 3 && (k != 0 || get(c, n, "secret_env") != NULL)) /* a webhook may go unsigned */
        rc = read_env_secret(c, n, env_field[k], &s->secret, &s->secret_env);
    return rc;
}

/* A non-negative decimal with at most six fraction digits, in millionths. */
static int read_micro(pctx_t *c, const yaml_node_t *n, int64_t *out)
{
    char g[128], q[96];
    if (n->type != YAML_SCALAR_NODE)
        return fail(c, n, "expected a number, got %s", got(n, g, sizeof(g)));
    if (sl_usd_parse(sval(n), slen(n), 6, out) != 0)
        return fail(c, n, "\"%s\" is not a decimal number (at most 6 decimal places, not negative)",
                    show(sval(n), slen(n), q, sizeof(q)));
    return 0;
}

static int opt_micro(pctx_t *c, const yaml_node_t *map, const char *key, int64_t *out)
{
    yaml_node_t *v = get(c, map, key);
    if (v == NULL)
        return 0;
    size_t mark = path_key(c, key);
    int rc = read_micro(c, v, out);
    if (rc == 0 && *out == 0)
        rc = fail(c, v, "must be greater than 0");
    path_pop(c, mark);
    return rc;
}

static int parse_alert_scope(pctx_t *c, const yaml_node_t *map, rule_t *r)
{
    static const char *const allowed[] = {"virtual_key", "tenant", "all_tenants", "provider", NULL};
    yaml_node_t *n = get(c, map, "scope");
    size_t mark = path_key(c, "scope");
    int rc = 0;
    Sluice__Config__V1__AlertScope *s = NEW(Sluice__Config__V1__AlertScope, SLUICE__CONFIG__V1__ALERT_SCOPE__INIT);
    r->scope = s;
    if (n == NULL)
        rc = fail(c, map, "is required ({virtual_key: ID}, {tenant: ID}, {all_tenants: true} or {provider: NAME})");
    else if ((rc = check_map(c, n, allowed, "field")) == 0 &&
             n->data.mapping.pairs.top - n->data.mapping.pairs.start != 1)
        rc = fail(c, n, "give exactly one of virtual_key, tenant, all_tenants, provider");
    if (rc == 0 && get(c, n, "virtual_key") != NULL)
        rc = req_id(c, n, "virtual_key", &s->virtual_key);
    if (rc == 0 && get(c, n, "tenant") != NULL)
        rc = req_id(c, n, "tenant", &s->tenant);
    if (rc == 0 && get(c, n, "provider") != NULL && (rc = req_text(c, n, "provider", &s->provider)) == 0) {
        size_t pm = path_key(c, "provider");
        rc = check_provider_ref(c, get(c, n, "provider"), s->provider);
        path_pop(c, pm);
    }
    yaml_node_t *all = rc == 0 ? get(c, n, "all_tenants") : NULL;
    if (all != NULL) {
        size_t am = path_key(c, "all_tenants");
        if (all->type != YAML_SCALAR_NODE || scalar_kind(all) != SK_BOOL ||
            (sval(all)[0] != 't' && sval(all)[0] != 'T'))
            rc = fail(c, all, "must be true");
        else
            s->all_tenants = 1;
        path_pop(c, am);
    } else if (rc == 0 && n != NULL && s->virtual_key[0] == '\0' && s->tenant[0] == '\0' && s->provider[0] == '\0') {
        rc = fail(c, n, "give exactly one of virtual_key, tenant, all_tenants, provider");
    }
    path_pop(c, mark);
    return rc;
}

static int parse_alert_rule(pctx_t *c, const yaml_node_t *n)
{
    static const char *const allowed[] = {"name",         "kind",           "scope",     "thresholds",
                                          "sensitivity",  "min_hourly_usd", "threshold", "window",
                                          "min_requests", "severity",       "sinks",     NULL};
    static const char *const kinds[] = {"budget_threshold", "spend_anomaly", "error_rate", "circuit_open", NULL};
    ctl_doc_t *d = c->doc;
    int rc = check_map(c, n, allowed, "field");
    if (rc != 0)
        return rc;
    rule_t *r = NEW(rule_t, SLUICE__CONFIG__V1__ALERT_RULE__INIT);
    PUSH(d->pb->alert_rules, d->pb->n_alert_rules, r);
    d->rule_at = xrealloc(d->rule_at, d->pb->n_alert_rules * sizeof(char *));
    d->rule_at[d->pb->n_alert_rules - 1] = origin(c, n);
    if ((rc = req_id(c, n, "name", &r->name)) != 0 || (rc = req_text(c, n, "kind", &r->kind)) != 0)
        return rc;
    size_t k;
    for (k = 0; kinds[k] != NULL; k++)
        if (strcmp(kinds[k], r->kind) == 0)
            break;
    char q[96];
    if (kinds[k] == NULL) {
        size_t mark = path_key(c, "kind");
        rc = fail(c, get(c, n, "kind"),
                  "\"%s\" is not a rule kind (expected budget_threshold, spend_anomaly, error_rate or circuit_open)",
                  show(r->kind, strlen(r->kind), q, sizeof(q)));
        path_pop(c, mark);
        return rc;
    }
    /* which fields each kind takes */
    static const char *const only[][2] = {{"thresholds", "budget_threshold"},
                                          {"sensitivity", "spend_anomaly"},
                                          {"min_hourly_usd", "spend_anomaly"},
                                          {"threshold", "error_rate"},
                                          {"min_requests", "error_rate"}};
    for (size_t i = 0; i < NELEM(only); i++) {
        if (get(c, n, only[i][0]) == NULL || strcmp(only[i][1], r->kind) == 0)
            continue;
        size_t mark = path_key(c, only[i][0]);
        rc = fail(c, get(c, n, only[i][0]), "applies only to %s rules", only[i][1]);
        path_pop(c, mark);
        return rc;
    }
    if (get(c, n, "window") != NULL && k != 2 && k != 3) {
        size_t mark = path_key(c, "window");
        rc = fail(c, get(c, n, "window"), "applies only to error_rate and circuit_open rules");
        path_pop(c, mark);
        return rc;
    }
    if ((rc = parse_alert_scope(c, n, r)) != 0)
        return rc;
    yaml_node_t *th;
    if ((rc = opt_seq(c, n, "thresholds", &th)) != 0)
        return rc;
    if (k == 0 && seq_len(th) == 0) {
        size_t mark = path_key(c, "thresholds");
        rc = fail(c, n, "is required: fractions of the budget, e.g. [0.5, 0.8, 1.0]");
        path_pop(c, mark);
        return rc;
    }
    size_t mark = path_key(c, "thresholds");
    for (size_t i = 0; rc == 0 && i < seq_len(th); i++) {
        size_t im = path_index(c, i);
        int64_t v;
        yaml_node_t *it = seq_at(c, th, i);
        if ((rc = read_micro(c, it, &v)) == 0 && (v == 0 || v > 10000000))
            rc = fail(c, it, "must be above 0 and at most 10 (a fraction of the budget: 0.8 is 80%%)");
        for (size_t j = 0; rc == 0 && j < r->n_thresholds_micro; j++)
            if (r->thresholds_micro[j] == v)
                rc = fail(c, it, "is listed twice");
        if (rc == 0)
            PUSH(r->thresholds_micro, r->n_thresholds_micro, v);
        path_pop(c, im);
    }
    path_pop(c, mark);
    if (rc != 0 || (rc = opt_micro(c, n, "sensitivity", &r->sensitivity_micro)) != 0 ||
        (rc = opt_micro(c, n, "threshold", &r->threshold_micro)) != 0 ||
        (rc = opt_usd(c, n, "min_hourly_usd", 9, &r->min_hourly_nano, NULL)) != 0 ||
        (rc = opt_int(c, n, "min_requests", 1, 1000000000, &r->min_requests, NULL)) != 0 ||
        (rc = opt_text(c, n, "severity", &r->severity)) != 0)
        return rc;
    if (k == 2 && r->threshold_micro == 0) {
        mark = path_key(c, "threshold");
        rc = fail(c, n, "is required: the fraction of failed requests that fires, e.g. 0.2");
        path_pop(c, mark);
        return rc;
    }
    if (k == 2 && r->threshold_micro >= 1000000) {
        mark = path_key(c, "threshold");
        rc = fail(c, get(c, n, "threshold"), "must be below 1 (a fraction of requests)");
        path_pop(c, mark);
        return rc;
    }
    const char *sev = r->severity;
    if (sev[0] != '\0' && strcmp(sev, "critical") && strcmp(sev, "error") && strcmp(sev, "warning") &&
        strcmp(sev, "info")) {
        mark = path_key(c, "severity");
        rc = fail(c, get(c, n, "severity"), "\"%s\" is not one of critical, error, warning, info",
                  show(sev, strlen(sev), q, sizeof(q)));
        path_pop(c, mark);
        return rc;
    }
    char *w = NULL;
    if ((rc = opt_text(c, n, "window", &w)) != 0)
        return rc;
    if (w != NULL) {
        int64_t ms;
        mark = path_key(c, "window");
        if (sl_duration_parse_ms(w, strlen(w), &ms) != 0 || ms % 1000 != 0 || ms > 7 * 86400000LL)
            rc = fail(c, get(c, n, "window"),
                      "\"%s\" is not a duration in whole seconds of at most 7 days (e.g. 5m, 90s, 1h)",
                      show(w, strlen(w), q, sizeof(q)));
        else if (k == 2 && ms < 60000)
            rc = fail(c, get(c, n, "window"), "must be at least 1m (the ledger counts per minute)");
        else
            r->window_seconds = ms / 1000;
        path_pop(c, mark);
        free(w);
        if (rc != 0)
            return rc;
    }
    yaml_node_t *sinks;
    if ((rc = opt_seq(c, n, "sinks", &sinks)) != 0)
        return rc;
    mark = path_key(c, "sinks");
    for (size_t i = 0; rc == 0 && i < seq_len(sinks); i++) {
        size_t im = path_index(c, i);
        yaml_node_t *it = seq_at(c, sinks, i);
        char *s = NULL;
        if (is_null(it))
            rc = fail(c, it, "expected a sink name, got null");
        else if ((rc = read_text(c, it, &s)) == 0 && !valid_id(s, 128))
            rc = fail(c, it, "\"%s\" is not a valid sink name", show(s, strlen(s), q, sizeof(q)));
        for (size_t j = 0; rc == 0 && j < r->n_sinks; j++)
            if (strcmp(r->sinks[j], s) == 0)
                rc = fail(c, it, "\"%s\" is listed twice", s);
        if (rc == 0)
            PUSH(r->sinks, r->n_sinks, s);
        else
            free(s);
        path_pop(c, im);
    }
    path_pop(c, mark);
    return rc;
}

/* alerts: {sinks: [...], rules: [...]} */
static int parse_alerts(pctx_t *c, const yaml_node_t *n)
{
    static const char *const allowed[] = {"sinks", "rules", NULL};
    if (n == NULL)
        return 0;
    size_t mark = path_key(c, "alerts");
    int rc = check_map(c, n, allowed, "field");
    static const char *const lists[] = {"sinks", "rules"};
    static int (*const parsers[])(pctx_t *, const yaml_node_t *) = {parse_alert_sink, parse_alert_rule};
    for (size_t l = 0; rc == 0 && l < 2; l++) {
        yaml_node_t *seq;
        if ((rc = opt_seq(c, n, lists[l], &seq)) != 0)
            break;
        size_t lm = path_key(c, lists[l]);
        for (size_t i = 0; rc == 0 && i < seq_len(seq); i++) {
            size_t im = path_index(c, i);
            rc = parsers[l](c, seq_at(c, seq, i));
            path_pop(c, im);
        }
        path_pop(c, lm);
    }
    path_pop(c, mark);
    return rc;
}

/* ---- duplicates ------------------------------------------------------------------- */

/* Index of a tenant/provider/model/key in doc equal to the one given, or -1. */
static long find_tenant(const ctl_doc_t *d, const char *id, size_t upto)
{
    for (size_t i = 0; i < upto; i++)
        if (strcmp(d->pb->tenants[i]->id, id) == 0)
            return (long)i;
    return -1;
}

static long find_provider(const ctl_doc_t *d, const char *name, size_t upto)
{
    for (size_t i = 0; i < upto; i++)
        if (strcmp(d->pb->providers[i]->name, name) == 0)
            return (long)i;
    return -1;
}

static long find_model(const ctl_doc_t *d, const model_t *m, size_t upto)
{
    for (size_t i = 0; i < upto; i++)
        if (strcmp(d->pb->models[i]->provider, m->provider) == 0 && strcmp(d->pb->models[i]->model, m->model) == 0)
            return (long)i;
    return -1;
}

static long find_key(const ctl_doc_t *d, const char *id, size_t upto)
{
    for (size_t i = 0; i < upto; i++)
        if (strcmp(d->pb->virtual_keys[i]->id, id) == 0)
            return (long)i;
    return -1;
}

/* Checks the entities of `add` against those of `into` (into == add: each
 * against the ones before it). Returns 0 or SL_EINVAL with err set. */
static int check_duplicates(const ctl_doc_t *into, const ctl_doc_t *add, sl_err_t *err)
{
    const Sluice__Admin__V1__Document *a = add->pb;
    int self = into == add;
    long j;
    for (size_t i = 0; i < a->n_tenants; i++)
        if ((j = find_tenant(into, a->tenants[i]->id, self ? i : into->pb->n_tenants)) >= 0)
            return sl_err_set(err, SL_EINVAL, "%s: duplicate tenant \"%s\" (also defined at %s)", add->tenant_at[i],
                              a->tenants[i]->id, into->tenant_at[j]);
    for (size_t i = 0; i < a->n_providers; i++)
        if ((j = find_provider(into, a->providers[i]->name, self ? i : into->pb->n_providers)) >= 0)
            return sl_err_set(err, SL_EINVAL, "%s: duplicate provider \"%s\" (also defined at %s)", add->provider_at[i],
                              a->providers[i]->name, into->provider_at[j]);
    for (size_t i = 0; i < a->n_models; i++)
        if ((j = find_model(into, a->models[i], self ? i : into->pb->n_models)) >= 0)
            return sl_err_set(err, SL_EINVAL, "%s: duplicate model \"%s/%s\" (also defined at %s)", add->model_at[i],
                              a->models[i]->provider, a->models[i]->model, into->model_at[j]);
    for (size_t i = 0; i < a->n_virtual_keys; i++)
        if ((j = find_key(into, a->virtual_keys[i]->id, self ? i : into->pb->n_virtual_keys)) >= 0)
            return sl_err_set(err, SL_EINVAL, "%s: duplicate virtual key \"%s\" (also defined at %s)", add->key_at[i],
                              a->virtual_keys[i]->id, into->key_at[j]);
    for (size_t i = 0; i < a->n_alert_sinks; i++)
        for (size_t k = 0; k < (self ? i : into->pb->n_alert_sinks); k++)
            if (strcmp(into->pb->alert_sinks[k]->name, a->alert_sinks[i]->name) == 0)
                return sl_err_set(err, SL_EINVAL, "%s: duplicate alert sink \"%s\" (also defined at %s)",
                                  add->sink_at[i], a->alert_sinks[i]->name, into->sink_at[k]);
    for (size_t i = 0; i < a->n_alert_rules; i++)
        for (size_t k = 0; k < (self ? i : into->pb->n_alert_rules); k++)
            if (strcmp(into->pb->alert_rules[k]->name, a->alert_rules[i]->name) == 0)
                return sl_err_set(err, SL_EINVAL, "%s: duplicate alert rule \"%s\" (also defined at %s)",
                                  add->rule_at[i], a->alert_rules[i]->name, into->rule_at[k]);
    return 0;
}

/* ---- documents ------------------------------------------------------------------ */

static int parse_root(pctx_t *c, const yaml_node_t *root)
{
    static const char *const sections[] = {"tenants", "providers", "models", "virtual_keys", NULL};
    static int (*const parsers[])(pctx_t *, const yaml_node_t *) = {parse_tenant, parse_provider, parse_model,
                                                                    parse_vkey};
    static const char *const allowed[] = {"tenants", "providers", "models", "virtual_keys", "alerts", NULL};
    if (is_null(root))
        return 0; /* an empty document contributes nothing */
    if (root->type != YAML_MAPPING_NODE) {
        char g[128];
        return fail(c, root,
                    "expected a mapping of sections (tenants, providers, models, virtual_keys, alerts), got %s",
                    got(root, g, sizeof(g)));
    }
    int rc = check_map(c, root, allowed, "section");
    for (size_t s = 0; rc == 0 && sections[s] != NULL; s++) {
        yaml_node_t *seq;
        if ((rc = opt_seq(c, root, sections[s], &seq)) != 0)
            break;
        size_t mark = path_key(c, sections[s]);
        for (size_t i = 0; rc == 0 && i < seq_len(seq); i++) {
            size_t im = path_index(c, i);
            rc = parsers[s](c, seq_at(c, seq, i));
            path_pop(c, im);
        }
        path_pop(c, mark);
    }
    if (rc == 0)
        rc = parse_alerts(c, get(c, root, "alerts"));
    return rc;
}

const char *ctl_env_getenv(const char *name, void *ud)
{
    return getenv(name);
}

void ctl_doc_init(ctl_doc_t *doc)
{
    memset(doc, 0, sizeof(*doc));
    doc->pb = NEW(Sluice__Admin__V1__Document, SLUICE__ADMIN__V1__DOCUMENT__INIT);
}

size_t ctl_doc_count(const ctl_doc_t *doc)
{
    const Sluice__Admin__V1__Document *p = doc->pb;
    return p == NULL ? 0
                     : p->n_tenants + p->n_providers + p->n_models + p->n_virtual_keys + p->n_alert_sinks +
                           p->n_alert_rules;
}

static void free_origins(char **at, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(at[i]);
    free(at);
}

void ctl_doc_free(ctl_doc_t *doc)
{
    Sluice__Admin__V1__Document *p = doc->pb;
    if (p != NULL) {
        free_origins(doc->tenant_at, p->n_tenants);
        free_origins(doc->provider_at, p->n_providers);
        free_origins(doc->model_at, p->n_models);
        free_origins(doc->key_at, p->n_virtual_keys);
        free_origins(doc->sink_at, p->n_alert_sinks);
        free_origins(doc->rule_at, p->n_alert_rules);
        for (size_t i = 0; i < p->n_alert_sinks; i++) {
            ProtobufCBinaryData *s = &p->alert_sinks[i]->secret;
            if (s->data != NULL)
                explicit_bzero(s->data, s->len);
        }
        for (size_t i = 0; i < p->n_providers; i++)
            for (size_t j = 0; j < p->providers[i]->n_credentials; j++) {
                ProtobufCBinaryData *s = &p->providers[i]->credentials[j]->secret;
                if (s->data != NULL)
                    explicit_bzero(s->data, s->len);
            }
        protobuf_c_message_free_unpacked(&p->base, NULL);
    }
    memset(doc, 0, sizeof(*doc));
}

/* Appends src's list (and origins) to dst's and empties src's. */
#define MOVE_LIST(dst, src, field, at)                                                                                 \
    do {                                                                                                               \
        size_t n0_ = (dst)->pb->n_##field, add_ = (src)->pb->n_##field;                                                \
        if (add_ == 0)                                                                                                 \
            break;                                                                                                     \
        (dst)->pb->field = xrealloc((dst)->pb->field, (n0_ + add_) * sizeof(*(dst)->pb->field));                       \
        (dst)->at = xrealloc((dst)->at, (n0_ + add_) * sizeof(char *));                                                \
        memcpy((dst)->pb->field + n0_, (src)->pb->field, add_ * sizeof(*(dst)->pb->field));                            \
        memcpy((dst)->at + n0_, (src)->at, add_ * sizeof(char *));                                                     \
        (dst)->pb->n_##field = n0_ + add_;                                                                             \
        (src)->pb->n_##field = 0;                                                                                      \
    } while (0)

int ctl_doc_add_yaml(ctl_doc_t *doc, const char *source, const char *text, size_t len, ctl_env_fn env, void *ud,
                     sl_err_t *err)
{
    ctl_doc_t tmp;
    ctl_doc_init(&tmp);
    pctx_t c = {.source = source, .env = env != NULL ? env : ctl_env_getenv, .env_ud = ud, .err = err, .doc = &tmp};
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = 0;
    for (;;) {
        yaml_document_t y;
        if (!yaml_parser_load(&parser, &y)) {
            const char *what = parser.problem != NULL ? parser.problem : "malformed YAML";
            if (parser.context != NULL)
                rc = sl_err_set(err, SL_EINVAL, "%s:%zu:%zu: invalid YAML: %s (%s started on line %zu)", source,
                                (size_t)parser.problem_mark.line + 1, (size_t)parser.problem_mark.column + 1, what,
                                parser.context, (size_t)parser.context_mark.line + 1);
            else
                rc = sl_err_set(err, SL_EINVAL, "%s:%zu:%zu: invalid YAML: %s", source,
                                (size_t)parser.problem_mark.line + 1, (size_t)parser.problem_mark.column + 1, what);
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&y);
        if (root == NULL) { /* end of stream */
            yaml_document_delete(&y);
            break;
        }
        c.y = &y;
        rc = parse_root(&c, root);
        yaml_document_delete(&y);
        if (rc != 0)
            break;
    }
    yaml_parser_delete(&parser);
    if (rc == 0)
        rc = check_duplicates(&tmp, &tmp, err);
    if (rc == 0)
        rc = check_duplicates(doc, &tmp, err);
    if (rc == 0) {
        MOVE_LIST(doc, &tmp, tenants, tenant_at);
        MOVE_LIST(doc, &tmp, providers, provider_at);
        MOVE_LIST(doc, &tmp, models, model_at);
        MOVE_LIST(doc, &tmp, virtual_keys, key_at);
        MOVE_LIST(doc, &tmp, alert_sinks, sink_at);
        MOVE_LIST(doc, &tmp, alert_rules, rule_at);
    }
    ctl_doc_free(&tmp);
    return rc;
}

int ctl_doc_add_file(ctl_doc_t *doc, const char *path, ctl_env_fn env, void *ud, sl_err_t *err)
{
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (f == NULL)
        return sl_err_set(err, SL_EIO, "could not open \"%s\": %s", path, strerror(errno));
    sl_buf_t b = {0};
    char chunk[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + n > MAX_FILE_BYTES) {
            rc = sl_err_set(err, SL_ETOOBIG, "\"%s\" is larger than %u MiB", path, MAX_FILE_BYTES >> 20);
            break;
        }
        sl_buf_append(&b, chunk, n);
    }
    if (rc == 0 && ferror(f))
        rc = sl_err_set(err, SL_EIO, "could not read \"%s\": %s", path, strerror(errno));
    if (!is_stdin)
        fclose(f);
    if (rc == 0)
        rc = ctl_doc_add_yaml(doc, is_stdin ? "<stdin>" : path, b.data != NULL ? b.data : "", b.len, env, ud, err);
    sl_buf_free(&b);
    return rc;
}
