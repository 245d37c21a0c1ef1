/*
 * anthropic.c - the Anthropic Messages API translator (provider kind
 * `anthropic`), plus the Anthropic-format ingress translations (see
 * anthropic.h).
 *
 * Requests: the client's OpenAI chat request is read once from its tokens
 * and a Messages body is written with the pool JSON writer. Roles map as
 * Anthropic wants them: system and developer messages become `system`,
 * tool messages become user messages of tool_result blocks, and consecutive
 * messages of one role are merged so roles alternate.
 *
 * Responses: a complete message becomes one chat.completion; a stream's
 * named events become chat.completion.chunk events written straight into
 * the output buffer (no pool allocation per event, so a long stream does
 * not grow the request's pool). The per-stream state (token counts, which
 * content block is which tool call) lives in ctx->state.
 */
#include "anthropic.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dp_error.h"
#include "dp_jw.h"
#include "dp_snapshot.h"
#include "sl_err.h"
#include "sl_json.h"

#define FIND(js, t, obj, lit) sl_json_find((js), (t), (obj), (lit), sizeof(lit) - 1)
#define IS(js, tok, lit) ((tok)->type == SL_JSON_STRING && sl_json_str_eq((js), (tok), (lit), sizeof(lit) - 1))
#define TLEN(tok) ((size_t)((tok)->end - (tok)->start))

/* Block indexes a stream may use; events naming others are not mapped. */
#define MAX_STREAM_BLOCKS 1024

/* ---- small helpers ------------------------------------------------------- */

/* A value token copied as it is (strings with their escapes). */
static void jw_value(dp_jw_t *w, const char *js, const sl_json_tok_t *t)
{
    if (t->type == SL_JSON_STRING)
        dp_jw_str_verbatim(w, js + t->start, TLEN(t));
    else
        dp_jw_raw(w, js + t->start, TLEN(t));
}

/* Keeps the cache_control object of the object at t[obj] (-1: none): both
 * APIs mark cache breakpoints alike on content blocks and tools. */
static void jw_cache_control(dp_jw_t *w, const char *js, const sl_json_tok_t *t, int obj)
{
    int cc = obj > 0 ? FIND(js, t, obj, "cache_control") : -1;
    if (cc > 0 && t[cc].type == SL_JSON_OBJECT) {
        dp_jw_lit(w, ",\"cache_control\":");
        jw_value(w, js, &t[cc]);
    }
}

/* A text block {"type":"text","text":...} (the same in both APIs) from the
 * string token t[s], keeping the cache_control of t[obj] (-1: none). */
static void jw_text_part(dp_jw_t *w, const char *js, const sl_json_tok_t *t, int s, int obj)
{
    dp_jw_lit(w, "{\"type\":\"text\",\"text\":");
    jw_value(w, js, &t[s]);
    jw_cache_control(w, js, t, obj);
    dp_jw_lit(w, "}");
}

/* Appends valid JSON text s without the whitespace between tokens. */
static void jw_compact(dp_jw_t *w, const char *s, size_t n)
{
    size_t from = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            dp_jw_raw(w, s + from, i - from);
            from = i + 1;
        }
    }
    dp_jw_raw(w, s + from, n - from);
}

/* Appends the JSON value s (valid JSON text) as a JSON string of its compact
 * form: an object `input` becomes OpenAI's `arguments`. */
static void jw_json_as_string(dp_jw_t *w, const char *s, size_t n)
{
    dp_jw_t tmp;
    dp_jw_init(&tmp, w->pool, n + 16);
    jw_compact(&tmp, s, n);
    dp_jw_str(w, tmp.buf, tmp.len);
}

/* Whether s is one JSON object (whitespace around allowed). */
static int is_json_object(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i < n && s[i] == '{' && sl_json_parse(s, n, NULL, 0, NULL) > 0;
}

/* Copies the root's temperature and top_p (numbers under the same names in
 * both APIs) as members appended to w. Returns NULL, or the name of one
 * that is there but not a number. */
static const char *jw_sampling(dp_jw_t *w, const char *js, const sl_json_tok_t *t)
{
    static const char *const names[] = {"temperature", "top_p"};
    for (size_t k = 0; k < 2; k++) {
        int i = sl_json_find(js, t, 0, names[k], strlen(names[k]));
        if (dp_json_absent(t, i))
            continue;
        if (t[i].type != SL_JSON_NUMBER)
            return names[k];
        dp_jw_lit(w, ",\"");
        dp_jw_raw(w, names[k], strlen(names[k]));
        dp_jw_lit(w, "\":");
        jw_value(w, js, &t[i]);
    }
    return NULL;
}

static void read_i64(const char *js, const sl_json_tok_t *t, int obj, const char *name, int64_t *v)
{
    int i = sl_json_find(js, t, obj, name, strlen(name));
    int64_t x;
    if (i > 0 && sl_json_int64(js, &t[i], &x) == 0 && x >= 0)
        *v = x;
}

/* ---- output buffer writer (stream events) -------------------------------- */

static void ob_raw(h2o_buffer_t **b, const char *s, size_t n)
{
    if (n == 0)
        return;
    h2o_iovec_t d = h2o_buffer_reserve(b, n);
    if (d.base == NULL)
        return;
    memcpy(d.base, s, n);
    (*b)->size += n;
}
#define OB_LIT(b, s) ob_raw((b), (s), sizeof(s) - 1)

/* A JSON string literal of raw bytes, escaped. */
static void ob_str(h2o_buffer_t **b, const char *s, size_t n)
{
    h2o_iovec_t d = h2o_buffer_reserve(b, n * 6 + 2);
    if (d.base == NULL)
        return;
    (*b)->size += dp_json_escape(d.base, s, n);
}

/* A JSON string whose escaped body is a token's text. */
static void ob_verbatim(h2o_buffer_t **b, const char *s, size_t n)
{
    OB_LIT(b, "\"");
    ob_raw(b, s, n);
    OB_LIT(b, "\"");
}

static void ob_int(h2o_buffer_t **b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    ob_raw(b, tmp, (size_t)n);
}

/* ---- OpenAI chat request -> Messages body -------------------------------- */

enum { ROLE_NONE, ROLE_USER, ROLE_ASSISTANT };

typedef struct bctx {
    h2o_mem_pool_t *pool;
    const char *js;
    const sl_json_tok_t *t;
    const char *err, *param;
    /* messages */
    dp_jw_t msgs; /* elements of "messages" so far */
    int nmsgs;
    int role;       /* of the message being collected */
    int want;       /* role of the next block (a message with no block changes nothing) */
    dp_jw_t blocks; /* its content blocks, comma-separated */
    int nblocks;
    int plain;              /* its only block is a string content: write it as a string */
    h2o_iovec_t plain_text; /* that string's escaped body */
    /* system */
    dp_jw_t sys;
    int nsys;
    int sys_plain;
    h2o_iovec_t sys_text;
} bctx_t;

__attribute__((format(printf, 3, 4))) static int bad(bctx_t *b, const char *param, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(tmp))
        n = sizeof(tmp) - 1;
    b->err = h2o_strdup(b->pool, tmp, (size_t)n).base;
    b->param = param;
    return SL_EINVAL;
}

static void flush_message(bctx_t *b)
{
    if (b->role != ROLE_NONE && b->nblocks > 0) {
        if (b->nmsgs++ > 0)
            dp_jw_lit(&b->msgs, ",");
        if (b->role == ROLE_USER)
            dp_jw_lit(&b->msgs, "{\"role\":\"user\",\"content\":");
        else
            dp_jw_lit(&b->msgs, "{\"role\":\"assistant\",\"content\":");
        if (b->nblocks == 1 && b->plain) {
            dp_jw_str_verbatim(&b->msgs, b->plain_text.base, b->plain_text.len);
        } else {
            dp_jw_lit(&b->msgs, "[");
            dp_jw_raw(&b->msgs, b->blocks.buf, b->blocks.len);
            dp_jw_lit(&b->msgs, "]");
        }
        dp_jw_lit(&b->msgs, "}");
    }
    b->blocks.len = 0;
    b->nblocks = 0;
    b->plain = 0;
}

/* Blocks that follow belong to a message of this role: the same message as
 * the blocks before when the role is the same (consecutive messages of one
 * role merge, also across messages that had no block at all). */
static void begin_message(bctx_t *b, int role)
{
    b->want = role;
}

/* Starts a new block of the message being collected (the separator). */
static void next_block(bctx_t *b)
{
    if (b->want != b->role) {
        flush_message(b);
        b->role = b->want;
    }
    if (b->nblocks++ > 0)
        dp_jw_lit(&b->blocks, ",");
    b->plain = 0;
}

static int is_space_only(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            return 0;
    return 1;
}

/* An image block from an image_url part's URL: data: URLs become base64
 * sources, http(s) URLs url sources. */
static int image_block(bctx_t *b, dp_jw_t *w, int part, const char *where)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    int iu = FIND(js, t, part, "image_url");
    int u = -1;
    if (iu > 0 && t[iu].type == SL_JSON_OBJECT)
        u = FIND(js, t, iu, "url");
    else if (iu > 0 && t[iu].type == SL_JSON_STRING)
        u = iu;
    if (u < 0 || t[u].type != SL_JSON_STRING)
        return bad(b, "messages", "%s: image_url.url must be a string", where);
    h2o_iovec_t url = dp_json_unescape(b->pool, js, &t[u]);
    if (url.len > 5 && strncasecmp(url.base, "data:", 5) == 0) {
        const char *comma = memchr(url.base, ',', url.len);
        if (comma == NULL)
            return bad(b, "messages", "%s: malformed data URL", where);
        const char *meta = url.base + 5;
        size_t mlen = (size_t)(comma - meta);
        if (mlen < 7 || strncasecmp(meta + mlen - 7, ";base64", 7) != 0)
            return bad(b, "messages", "%s: data URLs must be base64-encoded", where);
        mlen -= 7;
        const char *semi = memchr(meta, ';', mlen); /* parameters such as charset */
        if (semi != NULL)
            mlen = (size_t)(semi - meta);
        if (mlen == 0 || memchr(meta, '/', mlen) == NULL)
            return bad(b, "messages", "%s: data URL without a media type", where);
        const char *data = comma + 1;
        dp_jw_lit(w, "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":");
        dp_jw_str(w, meta, mlen);
        dp_jw_lit(w, ",\"data\":");
        dp_jw_str(w, data, (size_t)(url.base + url.len - data));
        dp_jw_lit(w, "}");
    } else if ((url.len > 7 && strncasecmp(url.base, "http://", 7) == 0) ||
               (url.len > 8 && strncasecmp(url.base, "https://", 8) == 0)) {
        dp_jw_lit(w, "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":");
        jw_value(w, js, &t[u]);
        dp_jw_lit(w, "}");
    } else {
        return bad(b, "messages", "%s: image_url.url must be a data: URL or an http(s) URL", where);
    }
    jw_cache_control(w, js, t, part);
    dp_jw_lit(w, "}");
    return 0;
}

static void separate(bctx_t *b, dp_jw_t *w, int *count)
{
    if (w == NULL)
        next_block(b);
    else if ((*count)++ > 0)
        dp_jw_lit(w, ",");
}

/* Converts the content parts array at toks[arr] into blocks appended to w
 * (comma-separated, *count of them so far), or with w NULL to the message
 * being collected. images: whether image parts are allowed here. */
static int parts_to_blocks(bctx_t *b, dp_jw_t *w, int *count, int arr, int mi, int images)
{
    dp_jw_t *out = w != NULL ? w : &b->blocks;
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    char where[64];
    int p = arr + 1;
    for (uint32_t k = 0; k < t[arr].size; k++, p = (int)t[p].next) {
        snprintf(where, sizeof(where), "messages[%d].content[%u]", mi, k);
        if (t[p].type != SL_JSON_OBJECT)
            return bad(b, "messages", "%s: a content part must be an object", where);
        int ty = FIND(js, t, p, "type");
        if (ty < 0 || t[ty].type != SL_JSON_STRING)
            return bad(b, "messages", "%s: the content part has no type", where);
        if (IS(js, &t[ty], "text") || IS(js, &t[ty], "refusal")) {
            int s = IS(js, &t[ty], "text") ? FIND(js, t, p, "text") : FIND(js, t, p, "refusal");
            if (s < 0 || t[s].type != SL_JSON_STRING)
                return bad(b, "messages", "%s: the text part has no text", where);
            if (t[s].end == t[s].start)
                continue; /* Anthropic refuses empty text blocks */
            separate(b, w, count);
            jw_text_part(out, js, t, s, p);
        } else if (IS(js, &t[ty], "image_url") && images) {
            separate(b, w, count);
            if (image_block(b, out, p, where) != 0)
                return SL_EINVAL;
        } else {
            h2o_iovec_t name = dp_json_unescape(b->pool, js, &t[ty]);
            return bad(b, "messages", "%s: content parts of type \"%.*s\" are not supported by anthropic providers",
                       where, (int)(name.len > 40 ? 40 : name.len), name.base);
        }
    }
    return 0;
}

/* The content of a user or assistant message (string, parts or null). */
static int message_content(bctx_t *b, int c, int mi)
{
    const sl_json_tok_t *t = b->t;
    if (dp_json_absent(t, c))
        return 0;
    if (t[c].type == SL_JSON_STRING) {
        if (is_space_only(b->js + t[c].start, TLEN(&t[c])))
            return 0;
        next_block(b);
        jw_text_part(&b->blocks, b->js, t, c, -1);
        if (b->nblocks == 1) {
            b->plain = 1;
            b->plain_text = h2o_iovec_init(b->js + t[c].start, TLEN(&t[c]));
        }
        return 0;
    }
    if (t[c].type != SL_JSON_ARRAY)
        return bad(b, "messages", "messages[%d].content must be a string or an array of content parts", mi);
    return parts_to_blocks(b, NULL, NULL, c, mi, b->want == ROLE_USER);
}

/* An assistant message's tool_calls as tool_use blocks. */
static int tool_calls(bctx_t *b, int tc, int mi)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    if (dp_json_absent(t, tc))
        return 0;
    if (t[tc].type != SL_JSON_ARRAY)
        return bad(b, "messages", "messages[%d].tool_calls must be an array", mi);
    int p = tc + 1;
    for (uint32_t k = 0; k < t[tc].size; k++, p = (int)t[p].next) {
        int id = t[p].type == SL_JSON_OBJECT ? FIND(js, t, p, "id") : -1;
        int fn = t[p].type == SL_JSON_OBJECT ? FIND(js, t, p, "function") : -1;
        int name = fn > 0 && t[fn].type == SL_JSON_OBJECT ? FIND(js, t, fn, "name") : -1;
        int args = fn > 0 && t[fn].type == SL_JSON_OBJECT ? FIND(js, t, fn, "arguments") : -1;
        if (id < 0 || t[id].type != SL_JSON_STRING || name < 0 || t[name].type != SL_JSON_STRING)
            return bad(b, "messages", "messages[%d].tool_calls[%u] needs an id and a function name", mi, k);
        h2o_iovec_t input = h2o_iovec_init(H2O_STRLIT("{}"));
        if (!dp_json_absent(t, args)) {
            if (t[args].type != SL_JSON_STRING)
                return bad(b, "messages", "messages[%d].tool_calls[%u].function.arguments must be a string", mi, k);
            h2o_iovec_t a = dp_json_unescape(b->pool, js, &t[args]);
            if (!is_space_only(a.base, a.len)) {
                if (!is_json_object(a.base, a.len))
                    return bad(b, "messages", "messages[%d].tool_calls[%u].function.arguments is not a JSON object", mi,
                               k);
                input = a;
            }
        }
        next_block(b);
        dp_jw_lit(&b->blocks, "{\"type\":\"tool_use\",\"id\":");
        jw_value(&b->blocks, js, &t[id]);
        dp_jw_lit(&b->blocks, ",\"name\":");
        jw_value(&b->blocks, js, &t[name]);
        dp_jw_lit(&b->blocks, ",\"input\":");
        jw_compact(&b->blocks, input.base, input.len);
        dp_jw_lit(&b->blocks, "}");
    }
    return 0;
}

/* A tool message: a tool_result block of the next user message. */
static int tool_result(bctx_t *b, int m, int mi)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    int id = FIND(js, t, m, "tool_call_id");
    if (id < 0 || t[id].type != SL_JSON_STRING)
        return bad(b, "messages", "messages[%d].tool_call_id must be a string", mi);
    begin_message(b, ROLE_USER);
    next_block(b);
    dp_jw_lit(&b->blocks, "{\"type\":\"tool_result\",\"tool_use_id\":");
    jw_value(&b->blocks, js, &t[id]);
    int c = FIND(js, t, m, "content");
    if (!dp_json_absent(t, c)) {
        if (t[c].type == SL_JSON_STRING) {
            dp_jw_lit(&b->blocks, ",\"content\":");
            jw_value(&b->blocks, js, &t[c]);
        } else if (t[c].type == SL_JSON_ARRAY) {
            int n = 0;
            dp_jw_lit(&b->blocks, ",\"content\":[");
            if (parts_to_blocks(b, &b->blocks, &n, c, mi, 1) != 0)
                return SL_EINVAL;
            dp_jw_lit(&b->blocks, "]");
        } else {
            return bad(b, "messages", "messages[%d].content must be a string or an array of content parts", mi);
        }
    }
    dp_jw_lit(&b->blocks, "}");
    return 0;
}

/* A system or developer message, appended to `system`. */
static int system_message(bctx_t *b, int c, int mi)
{
    const sl_json_tok_t *t = b->t;
    if (dp_json_absent(t, c))
        return 0;
    if (t[c].type == SL_JSON_STRING) {
        if (t[c].end == t[c].start)
            return 0;
        if (b->nsys++ > 0)
            dp_jw_lit(&b->sys, ",");
        jw_text_part(&b->sys, b->js, t, c, -1);
        b->sys_plain = b->nsys == 1;
        b->sys_text = h2o_iovec_init(b->js + t[c].start, TLEN(&t[c]));
        return 0;
    }
    if (t[c].type != SL_JSON_ARRAY)
        return bad(b, "messages", "messages[%d].content must be a string or an array of text parts", mi);
    b->sys_plain = 0;
    return parts_to_blocks(b, &b->sys, &b->nsys, c, mi, 0);
}

static int convert_messages(bctx_t *b, int msgs)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    int m = msgs + 1;
    for (uint32_t i = 0; i < t[msgs].size; i++, m = (int)t[m].next) {
        int mi = (int)i;
        if (t[m].type != SL_JSON_OBJECT)
            return bad(b, "messages", "messages[%d] must be an object", mi);
        int r = FIND(js, t, m, "role");
        int c = FIND(js, t, m, "content");
        if (r < 0 || t[r].type != SL_JSON_STRING)
            return bad(b, "messages", "messages[%d].role must be a string", mi);
        int rc;
        if (IS(js, &t[r], "system") || IS(js, &t[r], "developer")) {
            rc = system_message(b, c, mi);
        } else if (IS(js, &t[r], "user")) {
            begin_message(b, ROLE_USER);
            rc = message_content(b, c, mi);
        } else if (IS(js, &t[r], "assistant")) {
            begin_message(b, ROLE_ASSISTANT);
            rc = message_content(b, c, mi);
            if (rc == 0)
                rc = tool_calls(b, FIND(js, t, m, "tool_calls"), mi);
            if (rc == 0 && !dp_json_absent(t, FIND(js, t, m, "function_call")))
                rc = bad(b, "messages", "messages[%d].function_call is not supported; use tool_calls", mi);
        } else if (IS(js, &t[r], "tool")) {
            rc = tool_result(b, m, mi);
        } else {
            h2o_iovec_t name = dp_json_unescape(b->pool, js, &t[r]);
            rc = bad(b, "messages", "messages[%d].role \"%.*s\" is not supported by anthropic providers", mi,
                     (int)(name.len > 40 ? 40 : name.len), name.base);
        }
        if (rc != 0)
            return rc;
    }
    flush_message(b);
    if (b->nmsgs == 0)
        return bad(b, "messages", "at least one user or assistant message with content is required");
    return 0;
}

/* tools: [{type: function, function: {name, description, parameters}}] */
static int convert_tools(bctx_t *b, dp_jw_t *w, int tools, int *ntools)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    *ntools = 0;
    if (dp_json_absent(t, tools))
        return 0;
    if (t[tools].type != SL_JSON_ARRAY)
        return bad(b, "tools", "tools must be an array");
    if (t[tools].size == 0)
        return 0;
    dp_jw_lit(w, ",\"tools\":[");
    int p = tools + 1;
    for (uint32_t k = 0; k < t[tools].size; k++, p = (int)t[p].next) {
        int ty = t[p].type == SL_JSON_OBJECT ? FIND(js, t, p, "type") : -1;
        int fn = t[p].type == SL_JSON_OBJECT ? FIND(js, t, p, "function") : -1;
        if (ty < 0 || !IS(js, &t[ty], "function") || fn < 0 || t[fn].type != SL_JSON_OBJECT)
            return bad(b, "tools", "tools[%u]: only function tools are supported by anthropic providers", k);
        int name = FIND(js, t, fn, "name"), desc = FIND(js, t, fn, "description"),
            params = FIND(js, t, fn, "parameters");
        if (name < 0 || t[name].type != SL_JSON_STRING)
            return bad(b, "tools", "tools[%u].function.name must be a string", k);
        if (!dp_json_absent(t, params) && t[params].type != SL_JSON_OBJECT)
            return bad(b, "tools", "tools[%u].function.parameters must be an object", k);
        if (k > 0)
            dp_jw_lit(w, ",");
        dp_jw_lit(w, "{\"name\":");
        jw_value(w, js, &t[name]);
        if (desc > 0 && t[desc].type == SL_JSON_STRING) {
            dp_jw_lit(w, ",\"description\":");
            jw_value(w, js, &t[desc]);
        }
        dp_jw_lit(w, ",\"input_schema\":");
        if (dp_json_absent(t, params))
            dp_jw_lit(w, "{\"type\":\"object\",\"properties\":{}}");
        else
            jw_compact(w, js + t[params].start, TLEN(&t[params]));
        jw_cache_control(w, js, t, p);
        dp_jw_lit(w, "}");
    }
    dp_jw_lit(w, "]");
    *ntools = (int)t[tools].size;
    return 0;
}

/* tool_choice: auto | none | required | {type: function, function: {name}};
 * parallel_tool_calls: false -> disable_parallel_tool_use. */
static int convert_tool_choice(bctx_t *b, dp_jw_t *w, int tc, int ptc)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    int no_parallel = ptc > 0 && t[ptc].type == SL_JSON_FALSE;
    const char *type = "auto";
    int name = -1;
    if (!dp_json_absent(t, tc)) {
        if (IS(js, &t[tc], "auto")) {
            type = "auto";
        } else if (IS(js, &t[tc], "none")) {
            type = "none";
        } else if (IS(js, &t[tc], "required")) {
            type = "any";
        } else if (t[tc].type == SL_JSON_OBJECT) {
            int fn = FIND(js, t, tc, "function");
            name = fn > 0 && t[fn].type == SL_JSON_OBJECT ? FIND(js, t, fn, "name") : -1;
            if (name < 0 || t[name].type != SL_JSON_STRING)
                return bad(b, "tool_choice", "tool_choice.function.name must be a string");
            type = "tool";
        } else {
            return bad(b, "tool_choice", "tool_choice must be \"auto\", \"none\", \"required\" or a function");
        }
    } else if (!no_parallel) {
        return 0; /* Anthropic's default is auto */
    }
    dp_jw_lit(w, ",\"tool_choice\":{\"type\":");
    dp_jw_str(w, type, strlen(type));
    if (name > 0) {
        dp_jw_lit(w, ",\"name\":");
        jw_value(w, js, &t[name]);
    }
    if (no_parallel && strcmp(type, "none") != 0)
        dp_jw_lit(w, ",\"disable_parallel_tool_use\":true");
    dp_jw_lit(w, "}");
    return 0;
}

/* Fields OpenAI clients may send whose meaning Anthropic cannot honour. */
static int check_unsupported(bctx_t *b)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    int i;
    int64_t v;
    if ((i = FIND(js, t, 0, "n")) > 0 && !dp_json_absent(t, i) && (sl_json_int64(js, &t[i], &v) != 0 || v != 1))
        return bad(b, "n", "n other than 1 is not supported by anthropic providers");
    if ((i = FIND(js, t, 0, "logprobs")) > 0 && t[i].type == SL_JSON_TRUE)
        return bad(b, "logprobs", "logprobs are not supported by anthropic providers");
    if ((i = FIND(js, t, 0, "top_logprobs")) > 0 && !dp_json_absent(t, i) &&
        !(sl_json_int64(js, &t[i], &v) == 0 && v == 0))
        return bad(b, "top_logprobs", "top_logprobs are not supported by anthropic providers");
    if ((i = FIND(js, t, 0, "response_format")) > 0 && !dp_json_absent(t, i)) {
        int ty = t[i].type == SL_JSON_OBJECT ? FIND(js, t, i, "type") : -1;
        if (ty < 0 || !IS(js, &t[ty], "text"))
            return bad(b, "response_format", "response_format other than text is not supported by anthropic providers");
    }
    if ((i = FIND(js, t, 0, "functions")) > 0 && !dp_json_absent(t, i))
        return bad(b, "functions", "functions is not supported; use tools");
    return 0;
}

int dp_anthropic_chat_body(h2o_mem_pool_t *pool, const dp_chat_req_t *in, h2o_iovec_t model, const char *version,
                           int64_t default_max_tokens, h2o_iovec_t *out, const char **errmsg, const char **errparam)
{
    bctx_t b = {.pool = pool, .js = in->body, .t = in->toks};
    const char *js = in->body;
    const sl_json_tok_t *t = in->toks;
    int rc = 0, i;
    *errmsg = NULL;
    if (errparam != NULL)
        *errparam = NULL;
    if (in->ntoks < 1 || t[0].type != SL_JSON_OBJECT) {
        rc = bad(&b, NULL, "the request body must be a JSON object");
        goto done;
    }
    if ((rc = check_unsupported(&b)) != 0)
        goto done;

    int64_t max_tokens = default_max_tokens > 0 ? default_max_tokens : DP_ANTHROPIC_DEFAULT_MAX_TOKENS;
    i = FIND(js, t, 0, "max_completion_tokens");
    if (dp_json_absent(t, i))
        i = FIND(js, t, 0, "max_tokens");
    if (!dp_json_absent(t, i)) {
        int64_t v;
        if (sl_json_int64(js, &t[i], &v) != 0 || v < 1) {
            rc = bad(&b, "max_tokens", "max_tokens must be a positive integer");
            goto done;
        }
        max_tokens = v;
    }

    int msgs = FIND(js, t, 0, "messages");
    if (msgs < 0 || t[msgs].type != SL_JSON_ARRAY) {
        rc = bad(&b, "messages", "messages must be an array");
        goto done;
    }
    dp_jw_init(&b.msgs, pool, in->len + 256);
    dp_jw_init(&b.blocks, pool, 256);
    dp_jw_init(&b.sys, pool, 128);
    if ((rc = convert_messages(&b, msgs)) != 0)
        goto done;

    dp_jw_t w;
    dp_jw_init(&w, pool, b.msgs.len + b.sys.len + in->len / 4 + 256);
    dp_jw_lit(&w, "{");
    if (version != NULL) {
        dp_jw_lit(&w, "\"anthropic_version\":");
        dp_jw_str(&w, version, strlen(version));
        dp_jw_lit(&w, ",");
    }
    if (model.base != NULL) {
        dp_jw_lit(&w, "\"model\":");
        dp_jw_str(&w, model.base, model.len);
        dp_jw_lit(&w, ",");
    }
    dp_jw_lit(&w, "\"max_tokens\":");
    dp_jw_int(&w, max_tokens);
    if (b.nsys > 0) {
        dp_jw_lit(&w, ",\"system\":");
        if (b.nsys == 1 && b.sys_plain) {
            dp_jw_str_verbatim(&w, b.sys_text.base, b.sys_text.len);
        } else {
            dp_jw_lit(&w, "[");
            dp_jw_raw(&w, b.sys.buf, b.sys.len);
            dp_jw_lit(&w, "]");
        }
    }
    dp_jw_lit(&w, ",\"messages\":[");
    dp_jw_raw(&w, b.msgs.buf, b.msgs.len);
    dp_jw_lit(&w, "]");

    int ntools;
    if ((rc = convert_tools(&b, &w, FIND(js, t, 0, "tools"), &ntools)) != 0)
        goto done;
    if (ntools > 0 &&
        (rc = convert_tool_choice(&b, &w, FIND(js, t, 0, "tool_choice"), FIND(js, t, 0, "parallel_tool_calls"))) != 0)
        goto done;

    i = FIND(js, t, 0, "stop");
    if (!dp_json_absent(t, i)) {
        if (t[i].type == SL_JSON_STRING) {
            dp_jw_lit(&w, ",\"stop_sequences\":[");
            jw_value(&w, js, &t[i]);
            dp_jw_lit(&w, "]");
        } else if (t[i].type == SL_JSON_ARRAY) {
            if (t[i].size > 0)
                dp_jw_lit(&w, ",\"stop_sequences\":[");
            int s = i + 1;
            for (uint32_t k = 0; k < t[i].size; k++, s = (int)t[s].next) {
                if (t[s].type != SL_JSON_STRING) {
                    rc = bad(&b, "stop", "stop must be a string or an array of strings");
                    goto done;
                }
                if (k > 0)
                    dp_jw_lit(&w, ",");
                jw_value(&w, js, &t[s]);
            }
            if (t[i].size > 0)
                dp_jw_lit(&w, "]");
        } else {
            rc = bad(&b, "stop", "stop must be a string or an array of strings");
            goto done;
        }
    }
    const char *not_number = jw_sampling(&w, js, t);
    if (not_number != NULL) {
        rc = bad(&b, not_number, "%s must be a number", not_number);
        goto done;
    }
    i = FIND(js, t, 0, "user");
    if (i > 0 && t[i].type == SL_JSON_STRING && t[i].end > t[i].start) {
        dp_jw_lit(&w, ",\"metadata\":{\"user_id\":");
        jw_value(&w, js, &t[i]);
        dp_jw_lit(&w, "}");
    }
    if (in->stream)
        dp_jw_lit(&w, ",\"stream\":true");
    dp_jw_lit(&w, "}");
    *out = dp_jw_iov(&w);
done:
    if (rc != 0) {
        *errmsg = b.err;
        if (errparam != NULL)
            *errparam = b.param;
    }
    return rc;
}

int64_t dp_anthropic_default_max_tokens(const char *provider, h2o_iovec_t model)
{
    int64_t v = DP_ANTHROPIC_DEFAULT_MAX_TOKENS;
    dp_snapshot_t *s = dp_snapshot_acquire();
    if (s == NULL)
        return v;
    const dp_model_t *m = dp_snapshot_find_model(s, provider, strlen(provider), model.base, model.len);
    if (m != NULL && m->max_output_tokens > 0)
        v = m->max_output_tokens;
    dp_snapshot_release(s);
    return v;
}

/* ---- the upstream request -------------------------------------------------- */

static int header_safe(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static int build_chat(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                      h2o_iovec_t served_model, const dp_chat_req_t *in, const h2o_headers_t *client_headers,
                      h2o_iovec_t request_id, dp_upstream_req_t *out)
{
    out->error = NULL;
    out->error_status = 0;
    if (prov->host == NULL || prov->host[0] == '\0' || prov->port == 0 || cred->secret_len == 0 ||
        !header_safe(cred->secret, cred->secret_len))
        return SL_EINVAL;
    int64_t dflt = in->max_tokens >= 0 ? DP_ANTHROPIC_DEFAULT_MAX_TOKENS
                                       : dp_anthropic_default_max_tokens(prov->name, served_model);
    h2o_iovec_t body;
    const char *msg, *param;
    if (dp_anthropic_chat_body(pool, in, served_model, NULL, dflt, &body, &msg, &param) != 0) {
        out->error = msg;
        out->error_status = 400;
        return SL_EINVAL;
    }

    dp_jw_t w;
    dp_jw_init(&w, pool, 512 + cred->secret_len);
    dp_jw_lit(&w, "POST ");
    size_t plen = strlen(prov->path_prefix);
    dp_jw_raw(&w, prov->path_prefix, plen);
    /* base_url is the bare origin by Anthropic's convention; tolerate a "/v1" */
    if (plen >= 3 && memcmp(prov->path_prefix + plen - 3, "/v1", 3) == 0)
        dp_jw_lit(&w, "/messages");
    else
        dp_jw_lit(&w, "/v1/messages");
    dp_jw_lit(&w, " HTTP/1.1\r\nhost: ");
    dp_jw_raw(&w, prov->authority, prov->authority_len);
    dp_jw_lit(&w, "\r\nx-api-key: ");
    dp_jw_raw(&w, cred->secret, cred->secret_len);
    dp_jw_lit(&w, "\r\nanthropic-version: " DP_ANTHROPIC_VERSION "\r\n");
    dp_upstream_json_headers(&w, in->stream ? "text/event-stream" : "application/json", request_id);
    for (size_t i = 0; i < client_headers->size; i++) {
        const h2o_header_t *h = &client_headers->entries[i];
        if (dp_provider_drop_request_header(h) ||
            h2o_memis(h->name->base, h->name->len, H2O_STRLIT("anthropic-version")))
            continue;
        dp_jw_raw(&w, h->name->base, h->name->len);
        dp_jw_lit(&w, ": ");
        dp_jw_raw(&w, h->value.base, h->value.len);
        dp_jw_lit(&w, "\r\n");
    }
    dp_upstream_finish(&w, body, out);
    return 0;
}

/* ---- usage and stop reasons ---------------------------------------------- */

typedef struct usage {
    int64_t input, cache_read, cache_write, output;
} usage_t;

static void read_usage(const char *js, const sl_json_tok_t *t, int u, usage_t *us)
{
    if (u < 0 || t[u].type != SL_JSON_OBJECT)
        return;
    read_i64(js, t, u, "input_tokens", &us->input);
    read_i64(js, t, u, "cache_read_input_tokens", &us->cache_read);
    read_i64(js, t, u, "cache_creation_input_tokens", &us->cache_write);
    read_i64(js, t, u, "output_tokens", &us->output);
}

/* Anthropic's input_tokens excludes cache reads and writes; OpenAI's
 * prompt_tokens counts everything read. */
static void fill_tokens(const usage_t *us, dp_tokens_t *tk)
{
    tk->input = us->input + us->cache_read + us->cache_write;
    tk->cached_input = us->cache_read;
    tk->output = us->output;
}

static const char *finish_reason(const char *js, const sl_json_tok_t *t)
{
    if (t == NULL || t->type != SL_JSON_STRING)
        return "stop";
    if (IS(js, t, "max_tokens") || IS(js, t, "model_context_window_exceeded"))
        return "length";
    if (IS(js, t, "tool_use"))
        return "tool_calls";
    if (IS(js, t, "refusal"))
        return "content_filter";
    return "stop"; /* end_turn, stop_sequence, pause_turn */
}

/* ---- complete responses --------------------------------------------------- */

int dp_anthropic_translate_response(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const char *body, size_t len,
                                    h2o_iovec_t *out, dp_tokens_t *tokens)
{
    sl_json_tok_t stack[256], *t;
    int n = dp_provider_parse_pool(pool, body, len, stack, 256, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return SL_EINVAL;
    int content = FIND(body, t, 0, "content");
    if (content < 0 || t[content].type != SL_JSON_ARRAY)
        return SL_EINVAL;

    dp_jw_t text, calls;
    dp_jw_init(&text, pool, len / 2 + 64);
    dp_jw_init(&calls, pool, 64);
    int ntext = 0, ncalls = 0;
    int b = content + 1;
    for (uint32_t k = 0; k < t[content].size; k++, b = (int)t[b].next) {
        if (t[b].type != SL_JSON_OBJECT)
            return SL_EINVAL;
        int ty = FIND(body, t, b, "type");
        if (ty < 0)
            return SL_EINVAL;
        if (IS(body, &t[ty], "text")) {
            int s = FIND(body, t, b, "text");
            if (s < 0 || t[s].type != SL_JSON_STRING)
                return SL_EINVAL;
            /* escaped bodies concatenate into the escaped concatenation */
            dp_jw_raw(&text, body + t[s].start, TLEN(&t[s]));
            ntext++;
        } else if (IS(body, &t[ty], "tool_use")) {
            int id = FIND(body, t, b, "id"), name = FIND(body, t, b, "name"), input = FIND(body, t, b, "input");
            if (id < 0 || t[id].type != SL_JSON_STRING || name < 0 || t[name].type != SL_JSON_STRING)
                return SL_EINVAL;
            if (ncalls++ > 0)
                dp_jw_lit(&calls, ",");
            dp_jw_lit(&calls, "{\"id\":");
            jw_value(&calls, body, &t[id]);
            dp_jw_lit(&calls, ",\"type\":\"function\",\"function\":{\"name\":");
            jw_value(&calls, body, &t[name]);
            dp_jw_lit(&calls, ",\"arguments\":");
            if (input < 0)
                dp_jw_lit(&calls, "\"{}\"");
            else
                jw_json_as_string(&calls,
                                  body + (t[input].type == SL_JSON_STRING ? t[input].start - 1 : t[input].start),
                                  TLEN(&t[input]) + (t[input].type == SL_JSON_STRING ? 2 : 0));
            dp_jw_lit(&calls, "}}");
        }
        /* thinking, redacted_thinking and server tool blocks have no OpenAI form */
    }
    int sr = FIND(body, t, 0, "stop_reason");
    usage_t us = {0};
    int u = FIND(body, t, 0, "usage");
    read_usage(body, t, u, &us);
    fill_tokens(&us, tokens);
    tokens->seen = u > 0 && t[u].type == SL_JSON_OBJECT;

    dp_jw_t w;
    dp_jw_init(&w, pool, text.len + calls.len + ctx->id.len + ctx->model.len + 384);
    dp_xlate_open(&w, ctx, 0);
    dp_jw_lit(&w, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    if (ntext == 0 && ncalls > 0)
        dp_jw_lit(&w, "null");
    else
        dp_jw_str_verbatim(&w, text.buf, text.len);
    if (ncalls > 0) {
        dp_jw_lit(&w, ",\"tool_calls\":[");
        dp_jw_raw(&w, calls.buf, calls.len);
        dp_jw_lit(&w, "]");
    }
    dp_jw_lit(&w, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"");
    const char *fr = finish_reason(body, sr > 0 ? &t[sr] : NULL);
    dp_jw_raw(&w, fr, strlen(fr));
    dp_jw_lit(&w, "\"}],\"usage\":");
    dp_xlate_usage(&w, tokens, 0);
    dp_jw_lit(&w, "}");
    *out = dp_jw_iov(&w);
    return 0;
}

int dp_anthropic_parse_usage(h2o_mem_pool_t *pool, const char *body, size_t len, dp_tokens_t *out)
{
    sl_json_tok_t stack[256], *t;
    int n = dp_provider_parse_pool(pool, body, len, stack, 256, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return SL_EINVAL;
    int u = FIND(body, t, 0, "usage");
    if (u > 0 && t[u].type == SL_JSON_OBJECT) {
        usage_t us = {0};
        read_usage(body, t, u, &us);
        fill_tokens(&us, out);
        out->seen = 1;
    }
    return 0;
}

/* ---- errors ---------------------------------------------------------------- */

typedef struct err_map {
    const char *anthropic; /* error.type */
    int status;            /* answered to the client; 0: the upstream's */
    const char *type, *code;
    int show_message;
} err_map_t;

static const err_map_t err_table[] = {
    {"invalid_request_error", 400, "invalid_request_error", NULL, 1},
    {"authentication_error", 502, "api_error", "upstream_auth_failed", 0},
    {"permission_error", 502, "api_error", "upstream_auth_failed", 0},
    {"not_found_error", 404, "invalid_request_error", "model_not_found", 1},
    {"request_too_large", 413, "invalid_request_error", "request_too_large", 1},
    {"rate_limit_error", 429, "rate_limit_error", "rate_limit_exceeded", 1},
    {"api_error", 0, "server_error", "upstream_error", 1},
    {"overloaded_error", 503, "server_error", "upstream_overloaded", 1},
};

/* The error object's type and message tokens of an Anthropic error body. */
static int error_parts(h2o_mem_pool_t *pool, const char *body, size_t len, sl_json_tok_t *stack, size_t cap,
                       sl_json_tok_t **t, int *ty, int *msg)
{
    *ty = *msg = -1;
    if (body == NULL || len == 0)
        return -1;
    int n = pool != NULL ? dp_provider_parse_pool(pool, body, len, stack, cap, t)
                         : sl_json_parse(body, len, stack, cap, NULL);
    if (pool == NULL)
        *t = stack;
    if (n < 1 || (*t)[0].type != SL_JSON_OBJECT)
        return -1;
    int e = FIND(body, *t, 0, "error");
    if (e < 0 || (*t)[e].type != SL_JSON_OBJECT)
        return -1;
    *ty = FIND(body, *t, e, "type");
    *msg = FIND(body, *t, e, "message");
    return 0;
}

/* Unescapes the string token into out (cap bytes, NUL-terminated), cut at
 * a character boundary when too long; "" when it cannot be read. */
static void copy_message(const char *js, const sl_json_tok_t *t, char *out, size_t cap)
{
    char tmp[4096];
    size_t full = sl_json_str_len(js, t);
    out[0] = '\0';
    if (full < cap) {
        sl_json_str_copy(js, t, out, cap);
        return;
    }
    if (full >= sizeof(tmp) || sl_json_str_copy(js, t, tmp, sizeof(tmp)) == SIZE_MAX)
        return;
    size_t n = cap - 1;
    while (n > 0 && ((unsigned char)tmp[n] & 0xc0) == 0x80)
        n--;
    memcpy(out, tmp, n);
    out[n] = '\0';
}

static const err_map_t *lookup_error(const char *js, const sl_json_tok_t *t, int ty)
{
    if (ty < 0 || t[ty].type != SL_JSON_STRING)
        return NULL;
    for (size_t i = 0; i < sizeof(err_table) / sizeof(err_table[0]); i++)
        if (sl_json_str_eq(js, &t[ty], err_table[i].anthropic, strlen(err_table[i].anthropic)))
            return &err_table[i];
    return NULL;
}

void dp_anthropic_map_error(int status, const char *body, size_t len, dp_upstream_error_t *out)
{
    sl_json_tok_t toks[64], *t = toks;
    int ty, msg;
    if (dp_upstream_error_begin(status, out))
        return;
    /* error bodies are small; one too big for the stack is not read */
    error_parts(NULL, body, len, toks, 64, &t, &ty, &msg);
    const err_map_t *m = lookup_error(body, t, ty);
    if (m != NULL) {
        out->status = m->status != 0 ? m->status : (status >= 500 && status <= 599 ? status : 502);
        out->type = m->type;
        out->code = m->code;
    } else if (status == 429) {
        out->status = 429;
        out->type = "rate_limit_error";
        out->code = "rate_limit_exceeded";
    } else if (status >= 400 && status < 500) {
        out->status = status;
        out->type = "invalid_request_error";
        out->code = NULL;
    } else {
        out->status = status >= 500 && status <= 599 && status != 529 ? status : (status == 529 ? 503 : 502);
        out->type = "server_error";
    }
    if (status == 529)
        out->status = 503;
    if ((m == NULL || m->show_message) && msg > 0 && t[msg].type == SL_JSON_STRING)
        copy_message(body, &t[msg], out->message, sizeof(out->message));
}

/* ---- streams ---------------------------------------------------------------- */

typedef struct xstate {
    usage_t us;
    int ntools;          /* tool calls announced so far */
    int16_t *block_tool; /* per content block: OpenAI tool index, -1 text, -2 ignored */
    uint32_t nblocks;
    int ended;
} xstate_t;

static void chunk_head(h2o_buffer_t **out, const dp_xlate_ctx_t *ctx)
{
    OB_LIT(out, "data: {\"id\":");
    ob_str(out, ctx->id.base, ctx->id.len);
    OB_LIT(out, ",\"object\":\"chat.completion.chunk\",\"created\":");
    ob_int(out, ctx->created);
    OB_LIT(out, ",\"model\":");
    ob_str(out, ctx->model.base, ctx->model.len);
}

/* Opens a chunk whose choice's delta follows. */
static void delta_open(h2o_buffer_t **out, const dp_xlate_ctx_t *ctx)
{
    chunk_head(out, ctx);
    OB_LIT(out, ",\"choices\":[{\"index\":0,\"delta\":");
}

static void delta_close(h2o_buffer_t **out, const char *finish)
{
    OB_LIT(out, ",\"logprobs\":null,\"finish_reason\":");
    if (finish == NULL) {
        OB_LIT(out, "null");
    } else {
        OB_LIT(out, "\"");
        ob_raw(out, finish, strlen(finish));
        OB_LIT(out, "\"");
    }
    OB_LIT(out, "}]}\n\n");
}

/* A content chunk for the string member at t[s] (from FIND); none for a
 * missing or empty text. Returns DP_EV_* flags. */
static int text_chunk(h2o_buffer_t **out, const dp_xlate_ctx_t *ctx, const char *js, const sl_json_tok_t *t, int s)
{
    if (s < 0 || t[s].type != SL_JSON_STRING || t[s].end == t[s].start)
        return 0;
    delta_open(out, ctx);
    OB_LIT(out, "{\"content\":");
    ob_verbatim(out, js + t[s].start, TLEN(&t[s]));
    OB_LIT(out, "}");
    delta_close(out, NULL);
    return DP_EV_CONTENT;
}

static void set_block(h2o_mem_pool_t *pool, xstate_t *st, int64_t index, int16_t v)
{
    if (index < 0 || index >= MAX_STREAM_BLOCKS)
        return;
    if ((uint32_t)index >= st->nblocks) {
        uint32_t cap = st->nblocks == 0 ? 8 : st->nblocks;
        while (cap <= (uint32_t)index)
            cap *= 2;
        int16_t *nb = h2o_mem_alloc_pool(pool, cap * sizeof(*nb));
        if (st->nblocks > 0)
            memcpy(nb, st->block_tool, st->nblocks * sizeof(*nb));
        for (uint32_t i = st->nblocks; i < cap; i++)
            nb[i] = -2;
        st->block_tool = nb;
        st->nblocks = cap;
    }
    st->block_tool[index] = v;
}

static int block_tool(const xstate_t *st, int64_t index)
{
    if (index < 0 || (uint64_t)index >= st->nblocks)
        return -2;
    return st->block_tool[index];
}

/* An OpenAI-shaped error event for an upstream `event: error`. */
static void stream_error(h2o_buffer_t **out, const char *js, const sl_json_tok_t *t, int ty, int msg)
{
    const err_map_t *m = lookup_error(js, t, ty);
    OB_LIT(out, "data: {\"error\":{\"message\":");
    if (msg > 0 && t[msg].type == SL_JSON_STRING)
        ob_verbatim(out, js + t[msg].start, TLEN(&t[msg]));
    else
        OB_LIT(out, "\"the upstream stream failed\"");
    OB_LIT(out, ",\"type\":\"");
    const char *type = m != NULL && m->status != 400 ? m->type : "server_error";
    ob_raw(out, type, strlen(type));
    OB_LIT(out, "\",\"param\":null,\"code\":");
    if (m != NULL && m->code != NULL) {
        OB_LIT(out, "\"");
        ob_raw(out, m->code, strlen(m->code));
        OB_LIT(out, "\"");
    } else {
        OB_LIT(out, "\"upstream_error\"");
    }
    OB_LIT(out, "}}\n\n");
}

int dp_anthropic_translate_event(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const char *event, size_t event_len,
                                 const char *data, size_t len, h2o_buffer_t **out, dp_tokens_t *tokens)
{
    xstate_t *st = ctx->state;
    if (st == NULL) {
        st = ctx->state = h2o_mem_alloc_pool(pool, sizeof(*st));
        memset(st, 0, sizeof(*st));
    }
    sl_json_tok_t stack[128], *t;
    int n = dp_provider_parse_pool(pool, data, len, stack, 128, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT) {
        if (event_len == 4 && memcmp(event, "ping", 4) == 0)
            return 0;
        return DP_EV_ERROR; /* an event we cannot read may have carried content */
    }
    int ty = FIND(data, t, 0, "type");
    sl_json_tok_t name;
    const char *js = data;
    const sl_json_tok_t *tt;
    if (ty > 0 && t[ty].type == SL_JSON_STRING) {
        tt = &t[ty];
    } else {
        /* no "type" member: go by the SSE event name */
        name = (sl_json_tok_t){.start = 0, .end = (uint32_t)event_len, .type = SL_JSON_STRING};
        js = event;
        tt = &name;
    }

    if (IS(js, tt, "content_block_delta")) {
        int64_t index = -1;
        int ix = FIND(data, t, 0, "index"), d = FIND(data, t, 0, "delta");
        if (ix > 0)
            sl_json_int64(data, &t[ix], &index);
        if (d < 0 || t[d].type != SL_JSON_OBJECT)
            return 0;
        int dty = FIND(data, t, d, "type");
        if (dty > 0 && IS(data, &t[dty], "text_delta"))
            return text_chunk(out, ctx, data, t, FIND(data, t, d, "text"));
        if (dty > 0 && IS(data, &t[dty], "input_json_delta")) {
            int k = block_tool(st, index);
            int s = FIND(data, t, d, "partial_json");
            if (k < 0 || s < 0 || t[s].type != SL_JSON_STRING || t[s].end == t[s].start)
                return 0;
            delta_open(out, ctx);
            OB_LIT(out, "{\"tool_calls\":[{\"index\":");
            ob_int(out, k);
            OB_LIT(out, ",\"function\":{\"arguments\":");
            ob_verbatim(out, data + t[s].start, TLEN(&t[s]));
            OB_LIT(out, "}}]}");
            delta_close(out, NULL);
            return DP_EV_CONTENT;
        }
        return 0; /* thinking, signature and citation deltas have no OpenAI form */
    }
    if (IS(js, tt, "content_block_start")) {
        int64_t index = -1;
        int ix = FIND(data, t, 0, "index"), cb = FIND(data, t, 0, "content_block");
        if (ix > 0)
            sl_json_int64(data, &t[ix], &index);
        if (cb < 0 || t[cb].type != SL_JSON_OBJECT)
            return 0;
        int cty = FIND(data, t, cb, "type");
        if (cty > 0 && IS(data, &t[cty], "text")) {
            set_block(pool, st, index, -1);
            return text_chunk(out, ctx, data, t, FIND(data, t, cb, "text"));
        }
        if (cty > 0 && IS(data, &t[cty], "tool_use")) {
            int id = FIND(data, t, cb, "id"), nm = FIND(data, t, cb, "name");
            if (id < 0 || t[id].type != SL_JSON_STRING || nm < 0 || t[nm].type != SL_JSON_STRING ||
                st->ntools >= INT16_MAX)
                return DP_EV_ERROR;
            int k = st->ntools++;
            set_block(pool, st, index, (int16_t)k);
            delta_open(out, ctx);
            OB_LIT(out, "{\"tool_calls\":[{\"index\":");
            ob_int(out, k);
            OB_LIT(out, ",\"id\":");
            ob_verbatim(out, data + t[id].start, TLEN(&t[id]));
            OB_LIT(out, ",\"type\":\"function\",\"function\":{\"name\":");
            ob_verbatim(out, data + t[nm].start, TLEN(&t[nm]));
            OB_LIT(out, ",\"arguments\":\"\"}}]}");
            delta_close(out, NULL);
            return DP_EV_CONTENT;
        }
        set_block(pool, st, index, -2);
        return 0;
    }
    if (IS(js, tt, "message_start")) {
        int m = FIND(data, t, 0, "message");
        if (m > 0 && t[m].type == SL_JSON_OBJECT)
            read_usage(data, t, FIND(data, t, m, "usage"), &st->us);
        fill_tokens(&st->us, tokens);
        delta_open(out, ctx);
        OB_LIT(out, "{\"role\":\"assistant\",\"content\":\"\"}");
        delta_close(out, NULL);
        return 0;
    }
    if (IS(js, tt, "message_delta")) {
        int d = FIND(data, t, 0, "delta");
        /* later API versions repeat input and cache counts here; both are totals */
        read_usage(data, t, FIND(data, t, 0, "usage"), &st->us);
        fill_tokens(&st->us, tokens);
        int sr = d > 0 && t[d].type == SL_JSON_OBJECT ? FIND(data, t, d, "stop_reason") : -1;
        if (sr > 0 && t[sr].type == SL_JSON_STRING) {
            delta_open(out, ctx);
            OB_LIT(out, "{}");
            delta_close(out, finish_reason(data, &t[sr]));
        }
        return 0;
    }
    if (IS(js, tt, "message_stop")) {
        fill_tokens(&st->us, tokens);
        tokens->seen = 1;
        st->ended = 1;
        if (ctx->include_usage) {
            dp_jw_t u; /* once per stream */
            dp_jw_init(&u, pool, 192);
            dp_xlate_usage(&u, tokens, 0);
            chunk_head(out, ctx);
            OB_LIT(out, ",\"choices\":[],\"usage\":");
            ob_raw(out, u.buf, u.len);
            OB_LIT(out, "}\n\n");
        }
        return DP_EV_DONE | DP_EV_USAGE;
    }
    if (IS(js, tt, "error")) {
        int e = FIND(data, t, 0, "error");
        int ety = e > 0 && t[e].type == SL_JSON_OBJECT ? FIND(data, t, e, "type") : -1;
        int msg = e > 0 && t[e].type == SL_JSON_OBJECT ? FIND(data, t, e, "message") : -1;
        stream_error(out, data, t, ety, msg);
        return DP_EV_ERROR;
    }
    return 0; /* ping, content_block_stop, and events added later */
}

int dp_anthropic_parse_event(h2o_mem_pool_t *pool, const char *data, size_t len, dp_tokens_t *out)
{
    sl_json_tok_t stack[128], *t;
    int n = dp_provider_parse_pool(pool, data, len, stack, 128, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return 0;
    int ty = FIND(data, t, 0, "type");
    if (ty < 0)
        return 0;
    usage_t us = {.input = out->input - out->cached_input, .cache_read = out->cached_input, .output = out->output};
    if (IS(data, &t[ty], "message_start")) {
        int m = FIND(data, t, 0, "message");
        if (m > 0 && t[m].type == SL_JSON_OBJECT)
            read_usage(data, t, FIND(data, t, m, "usage"), &us);
        fill_tokens(&us, out);
        return 0;
    }
    if (IS(data, &t[ty], "message_delta")) {
        read_usage(data, t, FIND(data, t, 0, "usage"), &us);
        fill_tokens(&us, out);
        return 0;
    }
    if (IS(data, &t[ty], "message_stop")) {
        out->seen = 1;
        return DP_EV_DONE | DP_EV_USAGE;
    }
    if (IS(data, &t[ty], "content_block_delta"))
        return DP_EV_CONTENT;
    if (IS(data, &t[ty], "error"))
        return DP_EV_ERROR;
    return 0;
}

const dp_provider_ops_t dp_provider_anthropic = {
    .name = "anthropic",
    .openai_format = 0,
    .build_chat = build_chat,
    .parse_usage = dp_anthropic_parse_usage,
    .parse_event = dp_anthropic_parse_event,
    .map_error = dp_anthropic_map_error,
    .framing = DP_FRAMING_SSE,
    .translate_response = dp_anthropic_translate_response,
    .translate_event = dp_anthropic_translate_event,
};

/* ==== Anthropic-format ingress ============================================= */

typedef struct ictx {
    h2o_mem_pool_t *pool;
    const char *js;
    const sl_json_tok_t *t;
    sl_err_t *err;
} ictx_t;

/* An image block as an image_url part. */
static int ingress_image_part(const ictx_t *c, dp_jw_t *w, int b, const char *where)
{
    const char *js = c->js;
    const sl_json_tok_t *t = c->t;
    int src = FIND(js, t, b, "source");
    int sty = src > 0 && t[src].type == SL_JSON_OBJECT ? FIND(js, t, src, "type") : -1;
    if (sty > 0 && IS(js, &t[sty], "base64")) {
        int mt = FIND(js, t, src, "media_type"), data = FIND(js, t, src, "data");
        if (mt < 0 || t[mt].type != SL_JSON_STRING || data < 0 || t[data].type != SL_JSON_STRING)
            return sl_err_set(c->err, SL_EINVAL, "%s.source: media_type and data are required", where);
        dp_jw_lit(w, "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:");
        dp_jw_raw(w, js + t[mt].start, TLEN(&t[mt]));
        dp_jw_lit(w, ";base64,");
        dp_jw_raw(w, js + t[data].start, TLEN(&t[data]));
        dp_jw_lit(w, "\"}}");
        return 0;
    }
    if (sty > 0 && IS(js, &t[sty], "url")) {
        int u = FIND(js, t, src, "url");
        if (u < 0 || t[u].type != SL_JSON_STRING)
            return sl_err_set(c->err, SL_EINVAL, "%s.source.url: field required", where);
        dp_jw_lit(w, "{\"type\":\"image_url\",\"image_url\":{\"url\":");
        jw_value(w, js, &t[u]);
        dp_jw_lit(w, "}}");
        return 0;
    }
    return sl_err_set(c->err, SL_EINVAL, "%s.source: only base64 and url image sources are supported", where);
}

/* tool_result content: a string, or blocks of which text goes into the
 * tool message and images (OpenAI tool messages carry only text) into the
 * user message that follows. */
static int ingress_tool_result(const ictx_t *c, dp_jw_t *tools, int *ntools, dp_jw_t *parts, int *nparts, int b,
                               const char *where)
{
    const char *js = c->js;
    const sl_json_tok_t *t = c->t;
    int id = FIND(js, t, b, "tool_use_id"), content = FIND(js, t, b, "content");
    if (id < 0 || t[id].type != SL_JSON_STRING)
        return sl_err_set(c->err, SL_EINVAL, "%s.tool_use_id: field required", where);
    if ((*ntools)++ > 0)
        dp_jw_lit(tools, ",");
    dp_jw_lit(tools, "{\"role\":\"tool\",\"tool_call_id\":");
    jw_value(tools, js, &t[id]);
    dp_jw_lit(tools, ",\"content\":");
    if (dp_json_absent(t, content)) {
        dp_jw_lit(tools, "\"\"");
    } else if (t[content].type == SL_JSON_STRING) {
        jw_value(tools, js, &t[content]);
    } else if (t[content].type == SL_JSON_ARRAY) {
        int n = 0;
        dp_jw_lit(tools, "[");
        int p = content + 1;
        for (uint32_t k = 0; k < t[content].size; k++, p = (int)t[p].next) {
            int ty = t[p].type == SL_JSON_OBJECT ? FIND(js, t, p, "type") : -1;
            if (ty > 0 && IS(js, &t[ty], "text")) {
                int s = FIND(js, t, p, "text");
                if (s < 0 || t[s].type != SL_JSON_STRING)
                    return sl_err_set(c->err, SL_EINVAL, "%s.content.%u.text: field required", where, k);
                if (n++ > 0)
                    dp_jw_lit(tools, ",");
                jw_text_part(tools, js, t, s, p);
            } else if (ty > 0 && IS(js, &t[ty], "image")) {
                if ((*nparts)++ > 0)
                    dp_jw_lit(parts, ",");
                if (ingress_image_part(c, parts, p, where) != 0)
                    return SL_EINVAL;
            } else {
                return sl_err_set(c->err, SL_EINVAL, "%s.content.%u: only text and image blocks are supported", where,
                                  k);
            }
        }
        dp_jw_lit(tools, "]");
    } else {
        return sl_err_set(c->err, SL_EINVAL, "%s.content: must be a string or a list of blocks", where);
    }
    dp_jw_lit(tools, "}");
    return 0;
}

/* One Anthropic message as OpenAI messages appended to w (*nmsgs so far). */
static int ingress_message(const ictx_t *c, dp_jw_t *w, int *nmsgs, int m, uint32_t mi)
{
    const char *js = c->js;
    const sl_json_tok_t *t = c->t;
    char where[64];
    if (t[m].type != SL_JSON_OBJECT)
        return sl_err_set(c->err, SL_EINVAL, "messages.%u: must be an object", mi);
    int r = FIND(js, t, m, "role"), content = FIND(js, t, m, "content");
    int user = r > 0 && IS(js, &t[r], "user");
    if (r < 0 || !(user || IS(js, &t[r], "assistant")))
        return sl_err_set(c->err, SL_EINVAL, "messages.%u.role: input should be 'user' or 'assistant'", mi);
    if (content < 0 || (t[content].type != SL_JSON_STRING && t[content].type != SL_JSON_ARRAY))
        return sl_err_set(c->err, SL_EINVAL, "messages.%u.content: field required", mi);
    if (t[content].type == SL_JSON_STRING) {
        if ((*nmsgs)++ > 0)
            dp_jw_lit(w, ",");
        if (user)
            dp_jw_lit(w, "{\"role\":\"user\",\"content\":");
        else
            dp_jw_lit(w, "{\"role\":\"assistant\",\"content\":");
        jw_value(w, js, &t[content]);
        dp_jw_lit(w, "}");
        return 0;
    }
    dp_jw_t parts, tools, text, calls;
    dp_jw_init(&parts, c->pool, 128);
    dp_jw_init(&tools, c->pool, 64);
    dp_jw_init(&text, c->pool, 64);
    dp_jw_init(&calls, c->pool, 64);
    int nparts = 0, ntools = 0, ntext = 0, ncalls = 0;
    int b = content + 1;
    for (uint32_t k = 0; k < t[content].size; k++, b = (int)t[b].next) {
        snprintf(where, sizeof(where), "messages.%u.content.%u", mi, k);
        int ty = t[b].type == SL_JSON_OBJECT ? FIND(js, t, b, "type") : -1;
        if (ty < 0 || t[ty].type != SL_JSON_STRING)
            return sl_err_set(c->err, SL_EINVAL, "%s.type: field required", where);
        if (IS(js, &t[ty], "text")) {
            int s = FIND(js, t, b, "text");
            if (s < 0 || t[s].type != SL_JSON_STRING)
                return sl_err_set(c->err, SL_EINVAL, "%s.text: field required", where);
            if (user) {
                if (nparts++ > 0)
                    dp_jw_lit(&parts, ",");
                jw_text_part(&parts, js, t, s, b);
            } else {
                dp_jw_raw(&text, js + t[s].start, TLEN(&t[s]));
                ntext++;
            }
        } else if (IS(js, &t[ty], "image") && user) {
            if (nparts++ > 0)
                dp_jw_lit(&parts, ",");
            if (ingress_image_part(c, &parts, b, where) != 0)
                return SL_EINVAL;
        } else if (IS(js, &t[ty], "tool_result") && user) {
            if (ingress_tool_result(c, &tools, &ntools, &parts, &nparts, b, where) != 0)
                return SL_EINVAL;
        } else if (IS(js, &t[ty], "tool_use") && !user) {
            int id = FIND(js, t, b, "id"), name = FIND(js, t, b, "name"), input = FIND(js, t, b, "input");
            if (id < 0 || t[id].type != SL_JSON_STRING || name < 0 || t[name].type != SL_JSON_STRING)
                return sl_err_set(c->err, SL_EINVAL, "%s: id and name are required", where);
            if (!dp_json_absent(t, input) && t[input].type != SL_JSON_OBJECT)
                return sl_err_set(c->err, SL_EINVAL, "%s.input: must be an object", where);
            if (ncalls++ > 0)
                dp_jw_lit(&calls, ",");
            dp_jw_lit(&calls, "{\"id\":");
            jw_value(&calls, js, &t[id]);
            dp_jw_lit(&calls, ",\"type\":\"function\",\"function\":{\"name\":");
            jw_value(&calls, js, &t[name]);
            dp_jw_lit(&calls, ",\"arguments\":");
            if (dp_json_absent(t, input))
                dp_jw_lit(&calls, "\"{}\"");
            else
                jw_json_as_string(&calls, js + t[input].start, TLEN(&t[input]));
            dp_jw_lit(&calls, "}}");
        } else if (IS(js, &t[ty], "thinking") || IS(js, &t[ty], "redacted_thinking")) {
            continue; /* no OpenAI form; the model does not need its own reasoning back */
        } else {
            h2o_iovec_t name = dp_json_unescape(c->pool, js, &t[ty]);
            return sl_err_set(c->err, SL_EINVAL, "%s: %s blocks of type '%.*s' are not supported", where,
                              user ? "user" : "assistant", (int)(name.len > 40 ? 40 : name.len), name.base);
        }
    }
    if (ntools > 0) {
        if ((*nmsgs)++ > 0)
            dp_jw_lit(w, ",");
        dp_jw_raw(w, tools.buf, tools.len);
        *nmsgs += ntools - 1;
    }
    if (user && nparts > 0) {
        if ((*nmsgs)++ > 0)
            dp_jw_lit(w, ",");
        dp_jw_lit(w, "{\"role\":\"user\",\"content\":[");
        dp_jw_raw(w, parts.buf, parts.len);
        dp_jw_lit(w, "]}");
    }
    if (!user && (ntext > 0 || ncalls > 0)) {
        if ((*nmsgs)++ > 0)
            dp_jw_lit(w, ",");
        dp_jw_lit(w, "{\"role\":\"assistant\",\"content\":");
        if (ntext > 0)
            dp_jw_str_verbatim(w, text.buf, text.len);
        else
            dp_jw_lit(w, "null");
        if (ncalls > 0) {
            dp_jw_lit(w, ",\"tool_calls\":[");
            dp_jw_raw(w, calls.buf, calls.len);
            dp_jw_lit(w, "]");
        }
        dp_jw_lit(w, "}");
    }
    return 0;
}

static int ingress_system(const ictx_t *c, dp_jw_t *w, int *nmsgs, int sys)
{
    const char *js = c->js;
    const sl_json_tok_t *t = c->t;
    if (dp_json_absent(t, sys))
        return 0;
    if (t[sys].type == SL_JSON_STRING) {
        if (t[sys].end == t[sys].start)
            return 0;
        dp_jw_lit(w, "{\"role\":\"system\",\"content\":");
        jw_value(w, js, &t[sys]);
        dp_jw_lit(w, "}");
        (*nmsgs)++;
        return 0;
    }
    if (t[sys].type != SL_JSON_ARRAY)
        return sl_err_set(c->err, SL_EINVAL, "system: input should be a valid string or a list of text blocks");
    if (t[sys].size == 0)
        return 0;
    dp_jw_lit(w, "{\"role\":\"system\",\"content\":[");
    int b = sys + 1;
    for (uint32_t k = 0; k < t[sys].size; k++, b = (int)t[b].next) {
        int ty = t[b].type == SL_JSON_OBJECT ? FIND(js, t, b, "type") : -1;
        int s = t[b].type == SL_JSON_OBJECT ? FIND(js, t, b, "text") : -1;
        if (ty < 0 || !IS(js, &t[ty], "text") || s < 0 || t[s].type != SL_JSON_STRING)
            return sl_err_set(c->err, SL_EINVAL, "system.%u: only text blocks are supported", k);
        if (k > 0)
            dp_jw_lit(w, ",");
        jw_text_part(w, js, t, s, b);
    }
    dp_jw_lit(w, "]}");
    (*nmsgs)++;
    return 0;
}

static int ingress_tools(const ictx_t *c, dp_jw_t *w, int tools)
{
    const char *js = c->js;
    const sl_json_tok_t *t = c->t;
    if (dp_json_absent(t, tools))
        return 0;
    if (t[tools].type != SL_JSON_ARRAY)
        return sl_err_set(c->err, SL_EINVAL, "tools: input should be a valid list");
    if (t[tools].size == 0)
        return 0;
    dp_jw_lit(w, ",\"tools\":[");
    int p = tools + 1;
    for (uint32_t k = 0; k < t[tools].size; k++, p = (int)t[p].next) {
        if (t[p].type != SL_JSON_OBJECT)
            return sl_err_set(c->err, SL_EINVAL, "tools.%u: must be an object", k);
        int ty = FIND(js, t, p, "type"), name = FIND(js, t, p, "name"), desc = FIND(js, t, p, "description"),
            schema = FIND(js, t, p, "input_schema");
        if (!dp_json_absent(t, ty) && !IS(js, &t[ty], "custom"))
            return sl_err_set(c->err, SL_EINVAL, "tools.%u: server tools are not supported through this gateway", k);
        if (name < 0 || t[name].type != SL_JSON_STRING)
            return sl_err_set(c->err, SL_EINVAL, "tools.%u.name: field required", k);
        if (schema < 0 || t[schema].type != SL_JSON_OBJECT)
            return sl_err_set(c->err, SL_EINVAL, "tools.%u.input_schema: field required", k);
        if (k > 0)
            dp_jw_lit(w, ",");
        dp_jw_lit(w, "{\"type\":\"function\",\"function\":{\"name\":");
        jw_value(w, js, &t[name]);
        if (desc > 0 && t[desc].type == SL_JSON_STRING) {
            dp_jw_lit(w, ",\"description\":");
            jw_value(w, js, &t[desc]);
        }
        dp_jw_lit(w, ",\"parameters\":");
        jw_compact(w, js + t[schema].start, TLEN(&t[schema]));
        dp_jw_lit(w, "}");
        jw_cache_control(w, js, t, p);
        dp_jw_lit(w, "}");
    }
    dp_jw_lit(w, "]");
    int tc = FIND(js, t, 0, "tool_choice");
    if (dp_json_absent(t, tc))
        return 0;
    int ty = t[tc].type == SL_JSON_OBJECT ? FIND(js, t, tc, "type") : -1;
    if (ty < 0)
        return sl_err_set(c->err, SL_EINVAL, "tool_choice.type: field required");
    if (IS(js, &t[ty], "auto")) {
        dp_jw_lit(w, ",\"tool_choice\":\"auto\"");
    } else if (IS(js, &t[ty], "any")) {
        dp_jw_lit(w, ",\"tool_choice\":\"required\"");
    } else if (IS(js, &t[ty], "none")) {
        dp_jw_lit(w, ",\"tool_choice\":\"none\"");
    } else if (IS(js, &t[ty], "tool")) {
        int name = FIND(js, t, tc, "name");
        if (name < 0 || t[name].type != SL_JSON_STRING)
            return sl_err_set(c->err, SL_EINVAL, "tool_choice.name: field required");
        dp_jw_lit(w, ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":");
        jw_value(w, js, &t[name]);
        dp_jw_lit(w, "}}");
    } else {
        return sl_err_set(c->err, SL_EINVAL, "tool_choice.type: input should be 'auto', 'any', 'tool' or 'none'");
    }
    int dp = FIND(js, t, tc, "disable_parallel_tool_use");
    if (dp > 0 && t[dp].type == SL_JSON_TRUE && !IS(js, &t[ty], "none"))
        dp_jw_lit(w, ",\"parallel_tool_calls\":false");
    return 0;
}

int dp_anthropic_ingress_to_openai(h2o_mem_pool_t *pool, const char *body, size_t len, h2o_iovec_t *out, sl_err_t *err)
{
    sl_json_tok_t stack[256], *t;
    int n = dp_provider_parse_pool(pool, body, len, stack, 256, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return sl_err_set(err, SL_EINVAL,
                          "there was an error parsing the body of your request: it must be a JSON object");
    ictx_t c = {.pool = pool, .js = body, .t = t, .err = err};
    int model = FIND(body, t, 0, "model"), mt = FIND(body, t, 0, "max_tokens"), msgs = FIND(body, t, 0, "messages");
    if (model < 0 || t[model].type != SL_JSON_STRING || t[model].end == t[model].start)
        return sl_err_set(err, SL_EINVAL, "model: field required");
    int64_t max_tokens;
    if (mt < 0)
        return sl_err_set(err, SL_EINVAL, "max_tokens: field required");
    if (sl_json_int64(body, &t[mt], &max_tokens) != 0 || max_tokens < 1)
        return sl_err_set(err, SL_EINVAL, "max_tokens: input should be a valid integer greater than or equal to 1");
    if (msgs < 0 || t[msgs].type != SL_JSON_ARRAY)
        return sl_err_set(err, SL_EINVAL, "messages: field required");

    dp_jw_t w;
    dp_jw_init(&w, pool, len + 256);
    dp_jw_lit(&w, "{\"model\":");
    jw_value(&w, body, &t[model]);
    dp_jw_lit(&w, ",\"messages\":[");
    int nmsgs = 0;
    if (ingress_system(&c, &w, &nmsgs, FIND(body, t, 0, "system")) != 0)
        return SL_EINVAL;
    int m = msgs + 1;
    for (uint32_t i = 0; i < t[msgs].size; i++, m = (int)t[m].next)
        if (ingress_message(&c, &w, &nmsgs, m, i) != 0)
            return SL_EINVAL;
    dp_jw_lit(&w, "],\"max_tokens\":");
    dp_jw_int(&w, max_tokens);
    int i = FIND(body, t, 0, "stop_sequences");
    if (!dp_json_absent(t, i)) {
        if (t[i].type != SL_JSON_ARRAY)
            return sl_err_set(err, SL_EINVAL, "stop_sequences: input should be a valid list");
        if (t[i].size > 0) {
            dp_jw_lit(&w, ",\"stop\":[");
            int s = i + 1;
            for (uint32_t k = 0; k < t[i].size; k++, s = (int)t[s].next) {
                if (t[s].type != SL_JSON_STRING)
                    return sl_err_set(err, SL_EINVAL, "stop_sequences.%u: input should be a valid string", k);
                if (k > 0)
                    dp_jw_lit(&w, ",");
                jw_value(&w, body, &t[s]);
            }
            dp_jw_lit(&w, "]");
        }
    }
    const char *not_number = jw_sampling(&w, body, t);
    if (not_number != NULL)
        return sl_err_set(err, SL_EINVAL, "%s: input should be a valid number", not_number);
    if (ingress_tools(&c, &w, FIND(body, t, 0, "tools")) != 0)
        return SL_EINVAL;
    int md = FIND(body, t, 0, "metadata");
    int uid = md > 0 && t[md].type == SL_JSON_OBJECT ? FIND(body, t, md, "user_id") : -1;
    if (uid > 0 && t[uid].type == SL_JSON_STRING) {
        dp_jw_lit(&w, ",\"user\":");
        jw_value(&w, body, &t[uid]);
    }
    int st = FIND(body, t, 0, "stream");
    if (st > 0 && !dp_json_absent(t, st) && t[st].type != SL_JSON_TRUE && t[st].type != SL_JSON_FALSE)
        return sl_err_set(err, SL_EINVAL, "stream: input should be a valid boolean");
    if (st > 0 && t[st].type == SL_JSON_TRUE)
        dp_jw_lit(&w, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    dp_jw_lit(&w, "}");
    *out = dp_jw_iov(&w);
    return 0;
}

/* ---- Anthropic-format egress ---------------------------------------------- */

static const char *stop_reason_of(const char *js, const sl_json_tok_t *t)
{
    if (t == NULL || t->type != SL_JSON_STRING)
        return "end_turn";
    if (IS(js, t, "length"))
        return "max_tokens";
    if (IS(js, t, "tool_calls") || IS(js, t, "function_call"))
        return "tool_use";
    if (IS(js, t, "content_filter"))
        return "refusal";
    return "end_turn";
}

/* OpenAI usage -> (input excluding cache reads, cache reads, output). */
static void openai_usage(const char *js, const sl_json_tok_t *t, int u, int64_t *in, int64_t *cached, int64_t *outp)
{
    if (u < 0 || t[u].type != SL_JSON_OBJECT)
        return;
    int64_t p = 0, c = 0, o = 0;
    read_i64(js, t, u, "prompt_tokens", &p);
    read_i64(js, t, u, "completion_tokens", &o);
    int d = FIND(js, t, u, "prompt_tokens_details");
    if (d > 0 && t[d].type == SL_JSON_OBJECT)
        read_i64(js, t, d, "cached_tokens", &c);
    if (c > p)
        c = p;
    *in = p - c;
    *cached = c;
    *outp = o;
}

/* A tool call's arguments (a JSON string holding an object) as the input
 * object; "" counts as {}. */
static int jw_arguments_as_input(h2o_mem_pool_t *pool, dp_jw_t *w, const char *js, const sl_json_tok_t *a)
{
    if (a == NULL || a->type == SL_JSON_NULL) {
        dp_jw_lit(w, "{}");
        return 0;
    }
    if (a->type != SL_JSON_STRING)
        return SL_EINVAL;
    h2o_iovec_t s = dp_json_unescape(pool, js, a);
    if (is_space_only(s.base, s.len)) {
        dp_jw_lit(w, "{}");
        return 0;
    }
    if (!is_json_object(s.base, s.len))
        return SL_EINVAL;
    jw_compact(w, s.base, s.len);
    return 0;
}

static void jw_message_id(dp_jw_t *w, const char *js, const sl_json_tok_t *id)
{
    if (id == NULL || id->type != SL_JSON_STRING || id->end == id->start) {
        dp_jw_lit(w, "\"msg_sluice\"");
        return;
    }
    const char *s = js + id->start;
    size_t n = TLEN(id);
    if (n > 9 && memcmp(s, "chatcmpl-", 9) == 0) {
        s += 9;
        n -= 9;
    }
    dp_jw_lit(w, "\"msg_");
    dp_jw_raw(w, s, n);
    dp_jw_lit(w, "\"");
}

int dp_anthropic_egress_response(h2o_mem_pool_t *pool, const char *body, size_t len, h2o_iovec_t model,
                                 h2o_iovec_t *out)
{
    sl_json_tok_t stack[256], *t;
    int n = dp_provider_parse_pool(pool, body, len, stack, 256, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return SL_EINVAL;
    int ch = FIND(body, t, 0, "choices");
    int c0 = ch > 0 && t[ch].type == SL_JSON_ARRAY ? sl_json_array_at(t, ch, 0) : -1;
    int msg = c0 > 0 && t[c0].type == SL_JSON_OBJECT ? FIND(body, t, c0, "message") : -1;
    if (msg < 0 || t[msg].type != SL_JSON_OBJECT)
        return SL_EINVAL;
    int content = FIND(body, t, msg, "content"), calls = FIND(body, t, msg, "tool_calls");
    int fr = FIND(body, t, c0, "finish_reason");
    int id = FIND(body, t, 0, "id");

    dp_jw_t w;
    dp_jw_init(&w, pool, len + 256);
    dp_jw_lit(&w, "{\"id\":");
    jw_message_id(&w, body, id > 0 ? &t[id] : NULL);
    dp_jw_lit(&w, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    dp_jw_str(&w, model.base, model.len);
    dp_jw_lit(&w, ",\"content\":[");
    int nblocks = 0;
    if (content > 0 && t[content].type == SL_JSON_STRING && t[content].end > t[content].start) {
        dp_jw_lit(&w, "{\"type\":\"text\",\"text\":");
        jw_value(&w, body, &t[content]);
        dp_jw_lit(&w, "}");
        nblocks++;
    } else if (content > 0 && t[content].type == SL_JSON_ARRAY) {
        int p = content + 1;
        for (uint32_t k = 0; k < t[content].size; k++, p = (int)t[p].next) {
            int s = t[p].type == SL_JSON_OBJECT ? FIND(body, t, p, "text") : -1;
            if (s < 0 || t[s].type != SL_JSON_STRING || t[s].end == t[s].start)
                continue;
            if (nblocks++ > 0)
                dp_jw_lit(&w, ",");
            dp_jw_lit(&w, "{\"type\":\"text\",\"text\":");
            jw_value(&w, body, &t[s]);
            dp_jw_lit(&w, "}");
        }
    }
    if (calls > 0 && t[calls].type == SL_JSON_ARRAY) {
        int p = calls + 1;
        for (uint32_t k = 0; k < t[calls].size; k++, p = (int)t[p].next) {
            int cid = t[p].type == SL_JSON_OBJECT ? FIND(body, t, p, "id") : -1;
            int fn = t[p].type == SL_JSON_OBJECT ? FIND(body, t, p, "function") : -1;
            int name = fn > 0 && t[fn].type == SL_JSON_OBJECT ? FIND(body, t, fn, "name") : -1;
            int args = fn > 0 && t[fn].type == SL_JSON_OBJECT ? FIND(body, t, fn, "arguments") : -1;
            if (cid < 0 || t[cid].type != SL_JSON_STRING || name < 0 || t[name].type != SL_JSON_STRING)
                return SL_EINVAL;
            if (nblocks++ > 0)
                dp_jw_lit(&w, ",");
            dp_jw_lit(&w, "{\"type\":\"tool_use\",\"id\":");
            jw_value(&w, body, &t[cid]);
            dp_jw_lit(&w, ",\"name\":");
            jw_value(&w, body, &t[name]);
            dp_jw_lit(&w, ",\"input\":");
            if (jw_arguments_as_input(pool, &w, body, args > 0 ? &t[args] : NULL) != 0)
                return SL_EINVAL;
            dp_jw_lit(&w, "}");
        }
    }
    dp_jw_lit(&w, "],\"stop_reason\":\"");
    const char *sr = stop_reason_of(body, fr > 0 ? &t[fr] : NULL);
    dp_jw_raw(&w, sr, strlen(sr));
    int64_t in = 0, cached = 0, o = 0;
    openai_usage(body, t, FIND(body, t, 0, "usage"), &in, &cached, &o);
    dp_jw_lit(&w, "\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":");
    dp_jw_int(&w, in);
    dp_jw_lit(&w, ",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":");
    dp_jw_int(&w, cached);
    dp_jw_lit(&w, ",\"output_tokens\":");
    dp_jw_int(&w, o);
    dp_jw_lit(&w, "}}");
    *out = dp_jw_iov(&w);
    return 0;
}

static const char *anthropic_error_type(int status)
{
    switch (status) {
    case 400:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 402:
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 503:
    case 529:
        return "overloaded_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

h2o_iovec_t dp_anthropic_egress_error(h2o_mem_pool_t *pool, int status, const char *body, size_t len)
{
    sl_json_tok_t toks[64], *t = toks;
    int ty, msg;
    error_parts(NULL, body, len, toks, 64, &t, &ty, &msg);
    dp_jw_t w;
    dp_jw_init(&w, pool, 160 + len);
    dp_jw_lit(&w, "{\"type\":\"error\",\"error\":{\"type\":\"");
    const char *type = anthropic_error_type(status);
    dp_jw_raw(&w, type, strlen(type));
    dp_jw_lit(&w, "\",\"message\":");
    if (msg > 0 && t[msg].type == SL_JSON_STRING) {
        jw_value(&w, body, &t[msg]);
    } else {
        char tmp[64];
        int n = snprintf(tmp, sizeof(tmp), "the upstream answered HTTP %d", status);
        dp_jw_str(&w, tmp, (size_t)n);
    }
    dp_jw_lit(&w, "}}");
    return dp_jw_iov(&w);
}

/* ---- Anthropic-format streaming egress ------------------------------------- */

enum { EG_NONE, EG_TEXT, EG_TOOL };

struct dp_anthropic_egress {
    h2o_mem_pool_t *pool;
    h2o_iovec_t id, model;
    int started, ended;
    int open;      /* index of the open content block, -1 none */
    int open_kind; /* EG_* */
    int nblocks;
    int32_t *tool_block; /* OpenAI tool index -> content block, -1 unknown */
    uint32_t ntool;
    const char *stop_reason;
    int64_t input, cached, output;
};

dp_anthropic_egress_t *dp_anthropic_egress_new(h2o_mem_pool_t *pool, h2o_iovec_t id, h2o_iovec_t model)
{
    dp_anthropic_egress_t *s = h2o_mem_alloc_pool(pool, sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->pool = pool;
    s->id = h2o_strdup(pool, id.base, id.len);
    s->model = h2o_strdup(pool, model.base, model.len);
    s->open = -1;
    s->stop_reason = "end_turn";
    return s;
}

/* Opens an Anthropic SSE event: the event line and the data up to its
 * "type" member, which repeats the event's name. */
static void ev_open(h2o_buffer_t **out, const char *name)
{
    size_t n = strlen(name);
    OB_LIT(out, "event: ");
    ob_raw(out, name, n);
    OB_LIT(out, "\ndata: {\"type\":\"");
    ob_raw(out, name, n);
    OB_LIT(out, "\"");
}

/* A content_block_delta event for block index (the event of every token,
 * so its opening is written in one piece): delta_head is the delta member
 * up to its text's value, s[0..n) that value's escaped body (a token's
 * text). */
static void ev_delta(h2o_buffer_t **out, int index, const char *delta_head, const char *s, size_t n)
{
    OB_LIT(out, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":");
    ob_int(out, index);
    ob_raw(out, delta_head, strlen(delta_head));
    ob_verbatim(out, s, n);
    OB_LIT(out, "}}\n\n");
}

static void eg_start(dp_anthropic_egress_t *s, h2o_buffer_t **out)
{
    if (s->started)
        return;
    s->started = 1;
    ev_open(out, "message_start");
    OB_LIT(out, ",\"message\":{\"id\":");
    ob_str(out, s->id.base, s->id.len);
    OB_LIT(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    ob_str(out, s->model.base, s->model.len);
    OB_LIT(out, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,"
                "\"output_tokens\":0}}}\n\n");
}

static void eg_close_block(dp_anthropic_egress_t *s, h2o_buffer_t **out)
{
    if (s->open < 0)
        return;
    ev_open(out, "content_block_stop");
    OB_LIT(out, ",\"index\":");
    ob_int(out, s->open);
    OB_LIT(out, "}\n\n");
    s->open = -1;
    s->open_kind = EG_NONE;
}

static int eg_open_block(dp_anthropic_egress_t *s, h2o_buffer_t **out, int kind)
{
    eg_close_block(s, out);
    s->open = s->nblocks++;
    s->open_kind = kind;
    ev_open(out, "content_block_start");
    OB_LIT(out, ",\"index\":");
    ob_int(out, s->open);
    OB_LIT(out, ",\"content_block\":");
    return s->open;
}

static void eg_finish(dp_anthropic_egress_t *s, h2o_buffer_t **out)
{
    eg_start(s, out);
    eg_close_block(s, out);
    ev_open(out, "message_delta");
    OB_LIT(out, ",\"delta\":{\"stop_reason\":\"");
    ob_raw(out, s->stop_reason, strlen(s->stop_reason));
    OB_LIT(out, "\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":");
    ob_int(out, s->input);
    OB_LIT(out, ",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":");
    ob_int(out, s->cached);
    OB_LIT(out, ",\"output_tokens\":");
    ob_int(out, s->output);
    OB_LIT(out, "}}\n\n");
    ev_open(out, "message_stop");
    OB_LIT(out, "}\n\n");
    s->ended = 1;
}

static void eg_error(dp_anthropic_egress_t *s, h2o_buffer_t **out, const char *type, const char *msg, size_t mlen,
                     int verbatim)
{
    ev_open(out, "error");
    OB_LIT(out, ",\"error\":{\"type\":\"");
    ob_raw(out, type, strlen(type));
    OB_LIT(out, "\",\"message\":");
    if (verbatim)
        ob_verbatim(out, msg, mlen);
    else
        ob_str(out, msg, mlen);
    OB_LIT(out, "}}\n\n");
    s->ended = 1;
}

void dp_anthropic_egress_fail(dp_anthropic_egress_t *s, const char *message, h2o_buffer_t **out)
{
    if (s->ended)
        return;
    eg_error(s, out, "api_error", message, strlen(message), 0);
}

/* The content block of OpenAI tool call index k, or -1. */
static int eg_tool_block(const dp_anthropic_egress_t *s, int64_t k)
{
    return k >= 0 && (uint64_t)k < s->ntool ? s->tool_block[k] : -1;
}

static void eg_set_tool_block(dp_anthropic_egress_t *s, int64_t k, int block)
{
    if (k < 0 || k >= MAX_STREAM_BLOCKS)
        return;
    if ((uint64_t)k >= s->ntool) {
        uint32_t cap = s->ntool == 0 ? 4 : s->ntool;
        while (cap <= (uint64_t)k)
            cap *= 2;
        int32_t *nb = h2o_mem_alloc_pool(s->pool, cap * sizeof(*nb));
        if (s->ntool > 0)
            memcpy(nb, s->tool_block, s->ntool * sizeof(*nb));
        for (uint32_t i = s->ntool; i < cap; i++)
            nb[i] = -1;
        s->tool_block = nb;
        s->ntool = cap;
    }
    s->tool_block[k] = block;
}

static int eg_tool_calls(dp_anthropic_egress_t *s, const char *js, const sl_json_tok_t *t, int tc, h2o_buffer_t **out)
{
    int flags = 0;
    int p = tc + 1;
    for (uint32_t k = 0; k < t[tc].size; k++, p = (int)t[p].next) {
        if (t[p].type != SL_JSON_OBJECT)
            continue;
        int64_t index = k;
        int ix = FIND(js, t, p, "index"), id = FIND(js, t, p, "id"), fn = FIND(js, t, p, "function");
        if (ix > 0)
            sl_json_int64(js, &t[ix], &index);
        int name = fn > 0 && t[fn].type == SL_JSON_OBJECT ? FIND(js, t, fn, "name") : -1;
        int args = fn > 0 && t[fn].type == SL_JSON_OBJECT ? FIND(js, t, fn, "arguments") : -1;
        int block = eg_tool_block(s, index);
        if (id > 0 && t[id].type == SL_JSON_STRING && name > 0 && t[name].type == SL_JSON_STRING &&
            (block < 0 || block != s->open)) {
            eg_start(s, out);
            block = eg_open_block(s, out, EG_TOOL);
            OB_LIT(out, "{\"type\":\"tool_use\",\"id\":");
            ob_verbatim(out, js + t[id].start, TLEN(&t[id]));
            OB_LIT(out, ",\"name\":");
            ob_verbatim(out, js + t[name].start, TLEN(&t[name]));
            OB_LIT(out, ",\"input\":{}}}\n\n");
            eg_set_tool_block(s, index, block);
            flags |= DP_EV_CONTENT;
        }
        if (block >= 0 && args > 0 && t[args].type == SL_JSON_STRING && t[args].end > t[args].start) {
            ev_delta(out, block, ",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":", js + t[args].start,
                     TLEN(&t[args]));
            flags |= DP_EV_CONTENT;
        }
    }
    return flags;
}

int dp_anthropic_egress_event(dp_anthropic_egress_t *s, const char *data, size_t len, h2o_buffer_t **out)
{
    if (s->ended)
        return 0;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        eg_finish(s, out);
        return DP_EV_DONE;
    }
    sl_json_tok_t stack[128], *t;
    int n = dp_provider_parse_pool(s->pool, data, len, stack, 128, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT) {
        eg_error(s, out, "api_error", H2O_STRLIT("the upstream sent an unreadable event"), 0);
        return DP_EV_ERROR;
    }
    int e = FIND(data, t, 0, "error");
    if (e > 0 && t[e].type == SL_JSON_OBJECT) {
        int msg = FIND(data, t, e, "message");
        if (msg > 0 && t[msg].type == SL_JSON_STRING)
            eg_error(s, out, "api_error", data + t[msg].start, TLEN(&t[msg]), 1);
        else
            eg_error(s, out, "api_error", H2O_STRLIT("the upstream stream failed"), 0);
        return DP_EV_ERROR;
    }
    int flags = 0;
    eg_start(s, out);
    int u = FIND(data, t, 0, "usage");
    if (u > 0 && t[u].type == SL_JSON_OBJECT)
        openai_usage(data, t, u, &s->input, &s->cached, &s->output);
    int ch = FIND(data, t, 0, "choices");
    int c0 = ch > 0 && t[ch].type == SL_JSON_ARRAY ? sl_json_array_at(t, ch, 0) : -1;
    if (c0 < 0 || t[c0].type != SL_JSON_OBJECT)
        return flags;
    int d = FIND(data, t, c0, "delta");
    if (d > 0 && t[d].type == SL_JSON_OBJECT) {
        int c = FIND(data, t, d, "content");
        if (c > 0 && t[c].type == SL_JSON_STRING && t[c].end > t[c].start) {
            if (s->open_kind != EG_TEXT) {
                eg_open_block(s, out, EG_TEXT);
                OB_LIT(out, "{\"type\":\"text\",\"text\":\"\"}}\n\n");
            }
            ev_delta(out, s->open, ",\"delta\":{\"type\":\"text_delta\",\"text\":", data + t[c].start, TLEN(&t[c]));
            flags |= DP_EV_CONTENT;
        }
        int tc = FIND(data, t, d, "tool_calls");
        if (tc > 0 && t[tc].type == SL_JSON_ARRAY)
            flags |= eg_tool_calls(s, data, t, tc, out);
    }
    int fr = FIND(data, t, c0, "finish_reason");
    if (fr > 0 && t[fr].type == SL_JSON_STRING) {
        s->stop_reason = stop_reason_of(data, &t[fr]);
        eg_close_block(s, out);
    }
    return flags;
}
