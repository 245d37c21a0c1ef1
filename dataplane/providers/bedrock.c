/*
 * bedrock.c - OpenAI chat requests to Amazon Bedrock's Converse API and
 * back (see bedrock.h).
 *
 * Request mapping:
 *   system / developer messages      -> system[{text}]
 *   user content (string or parts)   -> {text}, {image:{format,source:{bytes}}}
 *                                       (data: URLs only; the base64 is kept)
 *   assistant content + tool_calls   -> {text}, {toolUse:{toolUseId,name,input}}
 *   tool messages                    -> {toolResult:{toolUseId,content:[{text}]}}
 *                                       in a user message
 *   consecutive messages of one role -> one message (Converse wants turns to
 *                                       alternate)
 *   tools / tool_choice              -> toolConfig{tools[{toolSpec}],toolChoice}
 *   max_(completion_)tokens, temperature, top_p, stop -> inferenceConfig
 * JSON strings are copied verbatim (escapes intact) wherever the value is a
 * string on both sides; only tool-call arguments (JSON text inside a
 * string) and data: URLs with escapes are decoded.
 */
#include "bedrock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dp_jw.h"
#include "sl_b64.h"
#include "sl_err.h"
#include "sl_json.h"
#include "sl_sigv4.h"

#define FIND(js, t, obj, lit) sl_json_find((js), (t), (obj), (lit), sizeof(lit) - 1)
#define STREQ(js, t, lit) sl_json_str_eq((js), (t), (lit), sizeof(lit) - 1)

/* Records why building failed; returns SL_EINVAL. */
static int refuse(dp_upstream_req_t *out, int status, const char *msg)
{
    out->error = msg;
    out->error_status = status;
    return SL_EINVAL;
}

#define CLIENT(msg) refuse(out, 400, (msg))
#define CONFIG(msg) refuse(out, 0, (msg))

/* The unescaped text of a string token, NUL-terminated, in pool memory. */
static h2o_iovec_t str_copy(h2o_mem_pool_t *pool, const char *js, const sl_json_tok_t *t)
{
    if (!t->escaped) {
        char *s = h2o_mem_alloc_pool(pool, t->end - t->start + 1);
        memcpy(s, js + t->start, t->end - t->start);
        s[t->end - t->start] = '\0';
        return h2o_iovec_init(s, t->end - t->start);
    }
    size_t n = sl_json_str_len(js, t);
    char *s = h2o_mem_alloc_pool(pool, n + 1);
    sl_json_str_copy(js, t, s, n + 1);
    return h2o_iovec_init(s, n);
}

/* A string token's raw body (escapes intact), for dp_jw_str_verbatim(). */
static inline void put_verbatim(dp_jw_t *w, const char *js, const sl_json_tok_t *t)
{
    dp_jw_str_verbatim(w, js + t->start, t->end - t->start);
}

/* The raw text of any value token (strings with their quotes). */
static inline void put_raw(dp_jw_t *w, const char *js, const sl_json_tok_t *t)
{
    if (t->type == SL_JSON_STRING)
        put_verbatim(w, js, t);
    else
        dp_jw_raw(w, js + t->start, t->end - t->start);
}

static const char *cred_param(const dp_credential_t *cred, const char *name)
{
    const Sluice__Config__V1__Credential *pb = cred->pb;
    if (pb == NULL)
        return NULL;
    for (size_t i = 0; i < pb->n_params; i++)
        if (strcmp(pb->params[i]->key, name) == 0)
            return pb->params[i]->value;
    return NULL;
}

/* ---- request: messages ---------------------------------------------------- */

typedef struct conv {
    h2o_mem_pool_t *pool;
    const char *js;
    const sl_json_tok_t *t;
    dp_upstream_req_t *out;
    dp_jw_t msgs, sys, blk;
    int nsys;
    int open_role;   /* 0 none, 1 user, 2 assistant: the message being filled */
    int nblk;        /* blocks in blk */
    int tool_blocks; /* toolUse / toolResult blocks were written */
} conv_t;

static void blk_sep(conv_t *c)
{
    if (c->nblk++ > 0)
        dp_jw_lit(&c->blk, ",");
}

static void text_block(conv_t *c, dp_jw_t *w, int *count, const sl_json_tok_t *s)
{
    if (s->end == s->start)
        return; /* Converse refuses blank text blocks */
    if ((*count)++ > 0)
        dp_jw_lit(w, ",");
    dp_jw_lit(w, "{\"text\":");
    put_verbatim(w, c->js, s);
    dp_jw_lit(w, "}");
}

/* An image_url part: data:image/<type>;base64,<data> -> an image block. */
static int image_block(conv_t *c, int part)
{
    dp_upstream_req_t *out = c->out;
    const char *js = c->js;
    const sl_json_tok_t *t = c->t;
    int iu = FIND(js, t, part, "image_url");
    int u = iu > 0 && t[iu].type == SL_JSON_OBJECT ? FIND(js, t, iu, "url") : iu;
    if (u <= 0 || t[u].type != SL_JSON_STRING)
        return CLIENT("an image_url content part needs an image_url.url string");
    h2o_iovec_t url = str_copy(c->pool, js, &t[u]);
    if (url.len < 5 || strncasecmp(url.base, "data:", 5) != 0)
        return CLIENT("bedrock accepts images only as data: URLs (base64), not http(s) links");
    const char *meta = url.base + 5, *comma = memchr(meta, ',', url.len - 5);
    if (comma == NULL)
        return CLIENT("an image data: URL has no comma before its data");
    size_t mlen = (size_t)(comma - meta);
    static const struct {
        const char *media, *format;
    } formats[] = {{"image/png", "png"},
                   {"image/jpeg", "jpeg"},
                   {"image/jpg", "jpeg"},
                   {"image/gif", "gif"},
                   {"image/webp", "webp"}};
    const char *format = NULL;
    size_t tlen = strcspn(meta, ";,");
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
        if (strlen(formats[i].media) == tlen && strncasecmp(meta, formats[i].media, tlen) == 0)
            format = formats[i].format;
    if (format == NULL)
        return CLIENT("bedrock accepts png, jpeg, gif and webp images only");
    if (mlen < 7 || strncasecmp(comma - 7, ";base64", 7) != 0)
        return CLIENT("an image data: URL must be base64-encoded");
    const char *data = comma + 1;
    size_t dlen = url.len - (size_t)(data - url.base);
    if (dlen == 0)
        return CLIENT("an image data: URL has no data");
    for (size_t i = 0; i < dlen; i++) {
        char ch = data[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '+' ||
              ch == '/' || ch == '='))
            return CLIENT("an image data: URL holds characters outside base64");
    }
    blk_sep(c);
    dp_jw_lit(&c->blk, "{\"image\":{\"format\":\"");
    dp_jw_raw(&c->blk, format, strlen(format));
    dp_jw_lit(&c->blk, "\",\"source\":{\"bytes\":\"");
    dp_jw_raw(&c->blk, data, dlen);
    dp_jw_lit(&c->blk, "\"}}}");
    return 0;
}

/* Text (and, when images, image) blocks of a message's content into w. */
static int content_blocks(conv_t *c, int content, int images, dp_jw_t *w, int *count)
{
    dp_upstream_req_t *out = c->out;
    const char *js = c->js;
    const sl_json_tok_t *t = c->t;
    if (content <= 0 || t[content].type == SL_JSON_NULL)
        return 0;
    if (t[content].type == SL_JSON_STRING) {
        text_block(c, w, count, &t[content]);
        return 0;
    }
    if (t[content].type != SL_JSON_ARRAY)
        return CLIENT("a message's content must be a string or an array of content parts");
    for (uint32_t i = 0; i < t[content].size; i++) {
        int p = sl_json_array_at(t, content, i);
        int ty = FIND(js, t, p, "type");
        if (ty <= 0 || t[ty].type != SL_JSON_STRING)
            return CLIENT("a content part needs a type");
        if (STREQ(js, &t[ty], "text")) {
            int s = FIND(js, t, p, "text");
            if (s <= 0 || t[s].type != SL_JSON_STRING)
                return CLIENT("a text content part needs a text string");
            text_block(c, w, count, &t[s]);
        } else if (STREQ(js, &t[ty], "image_url") && images) {
            c->nblk = *count; /* image_block writes to blk */
            int rc = image_block(c, p);
            *count = c->nblk;
            if (rc != 0)
                return rc;
        } else if (STREQ(js, &t[ty], "refusal")) {
            continue;
        } else {
            return CLIENT("bedrock supports text and image_url content parts only");
        }
    }
    return 0;
}

/* Closes the open message, if any. */
static void close_message(conv_t *c)
{
    if (c->open_role != 0)
        dp_jw_lit(&c->msgs, "]}");
    c->open_role = 0;
}

/* Moves blk into the message list as role (merging with an open message of
 * the same role). */
static void flush_blocks(conv_t *c, int role)
{
    if (c->nblk == 0)
        return;
    if (c->open_role == role) {
        dp_jw_lit(&c->msgs, ",");
    } else {
        if (c->open_role != 0)
            dp_jw_lit(&c->msgs, "]},");
        else if (c->msgs.len > 1)
            dp_jw_lit(&c->msgs, ",");
        if (role == 1)
            dp_jw_lit(&c->msgs, "{\"role\":\"user\",\"content\":[");
        else
            dp_jw_lit(&c->msgs, "{\"role\":\"assistant\",\"content\":[");
        c->open_role = role;
    }
    dp_jw_raw(&c->msgs, c->blk.buf, c->blk.len);
    c->blk.len = 0;
    c->nblk = 0;
}

/* tool_calls[] of an assistant message -> toolUse blocks. */
static int tool_use_blocks(conv_t *c, int calls)
{
    dp_upstream_req_t *out = c->out;
    const char *js = c->js;
    const sl_json_tok_t *t = c->t;
    if (calls <= 0 || t[calls].type == SL_JSON_NULL)
        return 0;
    if (t[calls].type != SL_JSON_ARRAY)
        return CLIENT("tool_calls must be an array");
    for (uint32_t i = 0; i < t[calls].size; i++) {
        int tc = sl_json_array_at(t, calls, i);
        int id = FIND(js, t, tc, "id"), fn = FIND(js, t, tc, "function");
        int name = FIND(js, t, fn, "name"), args = FIND(js, t, fn, "arguments");
        if (id <= 0 || t[id].type != SL_JSON_STRING || t[id].end == t[id].start || name <= 0 ||
            t[name].type != SL_JSON_STRING)
            return CLIENT("a tool call needs an id and a function name");
        blk_sep(c);
        dp_jw_lit(&c->blk, "{\"toolUse\":{\"toolUseId\":");
        put_verbatim(&c->blk, js, &t[id]);
        dp_jw_lit(&c->blk, ",\"name\":");
        put_verbatim(&c->blk, js, &t[name]);
        dp_jw_lit(&c->blk, ",\"input\":");
        if (args <= 0 || t[args].type == SL_JSON_NULL) {
            dp_jw_lit(&c->blk, "{}");
        } else if (t[args].type == SL_JSON_OBJECT) {
            put_raw(&c->blk, js, &t[args]); /* lenient: arguments given as an object */
        } else if (t[args].type == SL_JSON_STRING) {
            h2o_iovec_t a = str_copy(c->pool, js, &t[args]);
            size_t k = 0;
            while (k < a.len && (a.base[k] == ' ' || a.base[k] == '\n' || a.base[k] == '\r' || a.base[k] == '\t'))
                k++;
            if (k == a.len) {
                dp_jw_lit(&c->blk, "{}");
            } else {
                sl_json_tok_t stack[64], *at;
                int n = dp_provider_parse_pool(c->pool, a.base, a.len, stack, 64, &at);
                if (n < 1)
                    return CLIENT("a tool call's function.arguments is not valid JSON");
                dp_jw_raw(&c->blk, a.base, a.len);
            }
        } else {
            return CLIENT("a tool call's function.arguments must be a string");
        }
        dp_jw_lit(&c->blk, "}}");
        c->tool_blocks = 1;
    }
    return 0;
}

static int tool_result_block(conv_t *c, int m)
{
    dp_upstream_req_t *out = c->out;
    const char *js = c->js;
    const sl_json_tok_t *t = c->t;
    int id = FIND(js, t, m, "tool_call_id");
    if (id <= 0 || t[id].type != SL_JSON_STRING || t[id].end == t[id].start)
        return CLIENT("a tool message needs a tool_call_id");
    blk_sep(c);
    dp_jw_lit(&c->blk, "{\"toolResult\":{\"toolUseId\":");
    put_verbatim(&c->blk, js, &t[id]);
    dp_jw_lit(&c->blk, ",\"content\":[");
    int content = FIND(js, t, m, "content"), count = 0;
    int rc = content_blocks(c, content, 0, &c->blk, &count);
    if (rc != 0)
        return rc;
    if (count == 0)
        dp_jw_lit(&c->blk, "{\"text\":\"(empty)\"}"); /* Converse refuses an empty result */
    dp_jw_lit(&c->blk, "]}}");
    c->tool_blocks = 1;
    return 0;
}

static int convert_messages(conv_t *c, int msgs)
{
    dp_upstream_req_t *out = c->out;
    const char *js = c->js;
    const sl_json_tok_t *t = c->t;
    dp_jw_lit(&c->msgs, "[");
    for (uint32_t i = 0; i < t[msgs].size; i++) {
        int m = sl_json_array_at(t, msgs, i);
        if (t[m].type != SL_JSON_OBJECT)
            return CLIENT("each message must be an object");
        int role = FIND(js, t, m, "role"), content = FIND(js, t, m, "content"), rc;
        if (role <= 0 || t[role].type != SL_JSON_STRING)
            return CLIENT("each message needs a role");
        if (STREQ(js, &t[role], "system") || STREQ(js, &t[role], "developer")) {
            if ((rc = content_blocks(c, content, 0, &c->sys, &c->nsys)) != 0)
                return rc;
        } else if (STREQ(js, &t[role], "user")) {
            int count = c->nblk;
            if ((rc = content_blocks(c, content, 1, &c->blk, &count)) != 0)
                return rc;
            c->nblk = count;
            flush_blocks(c, 1);
        } else if (STREQ(js, &t[role], "assistant")) {
            int count = c->nblk;
            if ((rc = content_blocks(c, content, 0, &c->blk, &count)) != 0)
                return rc;
            c->nblk = count;
            if ((rc = tool_use_blocks(c, FIND(js, t, m, "tool_calls"))) != 0)
                return rc;
            flush_blocks(c, 2);
        } else if (STREQ(js, &t[role], "tool")) {
            if ((rc = tool_result_block(c, m)) != 0)
                return rc;
            flush_blocks(c, 1);
        } else {
            return CLIENT("bedrock supports the system, developer, user, assistant and tool roles only");
        }
    }
    close_message(c);
    dp_jw_lit(&c->msgs, "]");
    if (c->msgs.len == 2)
        return CLIENT("the request has no user or assistant message with content");
    return 0;
}

/* ---- request: tools and inference configuration ---------------------------------- */

static int convert_tools(conv_t *c, dp_jw_t *w)
{
    dp_upstream_req_t *out = c->out;
    const char *js = c->js;
    const sl_json_tok_t *t = c->t;
    int tools = FIND(js, t, 0, "tools"), choice = FIND(js, t, 0, "tool_choice");
    if (tools <= 0 || t[tools].type == SL_JSON_NULL || (t[tools].type == SL_JSON_ARRAY && t[tools].size == 0))
        return 0;
    if (t[tools].type != SL_JSON_ARRAY)
        return CLIENT("tools must be an array");
    int none = choice > 0 && t[choice].type == SL_JSON_STRING && STREQ(js, &t[choice], "none");
    if (none && !c->tool_blocks)
        return 0; /* Converse has no "none": offering no tools is the same */
    dp_jw_lit(w, ",\"toolConfig\":{\"tools\":[");
    for (uint32_t i = 0; i < t[tools].size; i++) {
        int tool = sl_json_array_at(t, tools, i);
        int ty = FIND(js, t, tool, "type"), fn = FIND(js, t, tool, "function");
        if (ty <= 0 || t[ty].type != SL_JSON_STRING || !STREQ(js, &t[ty], "function") || fn <= 0 ||
            t[fn].type != SL_JSON_OBJECT)
            return CLIENT("bedrock supports tools of type function only");
        int name = FIND(js, t, fn, "name"), desc = FIND(js, t, fn, "description");
        int params = FIND(js, t, fn, "parameters");
        if (name <= 0 || t[name].type != SL_JSON_STRING || t[name].end == t[name].start)
            return CLIENT("a tool needs a function name");
        if (i > 0)
            dp_jw_lit(w, ",");
        dp_jw_lit(w, "{\"toolSpec\":{\"name\":");
        put_verbatim(w, js, &t[name]);
        if (desc > 0 && t[desc].type == SL_JSON_STRING && t[desc].end > t[desc].start) {
            dp_jw_lit(w, ",\"description\":");
            put_verbatim(w, js, &t[desc]);
        }
        dp_jw_lit(w, ",\"inputSchema\":{\"json\":");
        if (params > 0 && t[params].type == SL_JSON_OBJECT)
            put_raw(w, js, &t[params]);
        else if (params <= 0 || t[params].type == SL_JSON_NULL)
            dp_jw_lit(w, "{\"type\":\"object\",\"properties\":{}}");
        else
            return CLIENT("a tool's function.parameters must be a JSON Schema object");
        dp_jw_lit(w, "}}}");
    }
    dp_jw_lit(w, "]");
    if (choice > 0 && t[choice].type == SL_JSON_STRING) {
        if (STREQ(js, &t[choice], "required"))
            dp_jw_lit(w, ",\"toolChoice\":{\"any\":{}}");
        else if (STREQ(js, &t[choice], "auto"))
            dp_jw_lit(w, ",\"toolChoice\":{\"auto\":{}}");
        else if (!none)
            return CLIENT("tool_choice must be none, auto, required or a function");
    } else if (choice > 0 && t[choice].type == SL_JSON_OBJECT) {
        int fn = FIND(js, t, choice, "function");
        int name = FIND(js, t, fn, "name");
        if (name <= 0 || t[name].type != SL_JSON_STRING)
            return CLIENT("tool_choice names no function");
        dp_jw_lit(w, ",\"toolChoice\":{\"tool\":{\"name\":");
        put_verbatim(w, js, &t[name]);
        dp_jw_lit(w, "}}");
    } else if (choice > 0 && t[choice].type != SL_JSON_NULL) {
        return CLIENT("tool_choice must be a string or an object");
    }
    dp_jw_lit(w, "}");
    return 0;
}

static int convert_inference(conv_t *c, const dp_chat_req_t *in, dp_jw_t *w)
{
    dp_upstream_req_t *out = c->out;
    const char *js = c->js;
    const sl_json_tok_t *t = c->t;
    int n = 0, i;
    size_t mark = w->len;
    dp_jw_lit(w, ",\"inferenceConfig\":{");
    if (in->max_tokens >= 0) {
        dp_jw_lit(w, "\"maxTokens\":");
        dp_jw_int(w, in->max_tokens);
        n++;
    }
    static const struct {
        const char *openai, *bedrock;
    } nums[] = {{"temperature", "temperature"}, {"top_p", "topP"}};
    for (size_t k = 0; k < 2; k++) {
        i = sl_json_find(js, t, 0, nums[k].openai, strlen(nums[k].openai));
        if (i <= 0 || t[i].type == SL_JSON_NULL)
            continue;
        if (t[i].type != SL_JSON_NUMBER)
            return CLIENT(k == 0 ? "temperature must be a number" : "top_p must be a number");
        if (n++ > 0)
            dp_jw_lit(w, ",");
        dp_jw_lit(w, "\"");
        dp_jw_raw(w, nums[k].bedrock, strlen(nums[k].bedrock));
        dp_jw_lit(w, "\":");
        put_raw(w, js, &t[i]);
    }
    i = FIND(js, t, 0, "stop");
    if (i > 0 && t[i].type != SL_JSON_NULL) {
        if (t[i].type == SL_JSON_STRING) {
            if (n++ > 0)
                dp_jw_lit(w, ",");
            dp_jw_lit(w, "\"stopSequences\":[");
            put_verbatim(w, js, &t[i]);
            dp_jw_lit(w, "]");
        } else if (t[i].type == SL_JSON_ARRAY) {
            if (t[i].size > 0) {
                if (n++ > 0)
                    dp_jw_lit(w, ",");
                dp_jw_lit(w, "\"stopSequences\":[");
                for (uint32_t k = 0; k < t[i].size; k++) {
                    int s = sl_json_array_at(t, i, k);
                    if (t[s].type != SL_JSON_STRING)
                        return CLIENT("stop must be a string or an array of strings");
                    if (k > 0)
                        dp_jw_lit(w, ",");
                    put_verbatim(w, js, &t[s]);
                }
                dp_jw_lit(w, "]");
            }
        } else {
            return CLIENT("stop must be a string or an array of strings");
        }
    }
    if (n == 0)
        w->len = mark; /* nothing to configure */
    else
        dp_jw_lit(w, "}");
    return 0;
}

/* ---- request: signing and the HTTP head ----------------------------------------- */

typedef struct aws_creds {
    sl_sigv4_creds_t c;
} aws_creds_t;

/* Header-safe: printable ASCII without spaces. */
static int header_safe(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

static int parse_creds(h2o_mem_pool_t *pool, const dp_credential_t *cred, sl_sigv4_creds_t *out)
{
    sl_json_tok_t t[32];
    const char *js = cred->secret;
    memset(out, 0, sizeof(*out));
    int n = sl_json_parse(js, cred->secret_len, t, 32, NULL);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return SL_EINVAL;
    int a = FIND(js, t, 0, "access_key_id"), s = FIND(js, t, 0, "secret_access_key");
    int tok = FIND(js, t, 0, "session_token");
    if (a <= 0 || s <= 0 || t[a].type != SL_JSON_STRING || t[s].type != SL_JSON_STRING)
        return SL_EINVAL;
    h2o_iovec_t akid = str_copy(pool, js, &t[a]), secret = str_copy(pool, js, &t[s]);
    if (akid.len == 0 || secret.len == 0 || !header_safe(akid.base, akid.len) || memchr(akid.base, '/', akid.len))
        return SL_EINVAL;
    out->access_key_id = akid.base;
    out->secret_access_key = secret.base;
    if (tok > 0 && t[tok].type == SL_JSON_STRING && t[tok].end > t[tok].start) {
        h2o_iovec_t st = str_copy(pool, js, &t[tok]);
        if (!header_safe(st.base, st.len))
            return SL_EINVAL;
        out->session_token = st.base;
    } else if (tok > 0 && t[tok].type != SL_JSON_NULL && t[tok].type != SL_JSON_STRING) {
        return SL_EINVAL;
    }
    return 0;
}

/* Writes the signed head for POST path (body already final) into out->bufs[0]
 * and the body into out->bufs[1]. */
static int finish_request(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                          h2o_iovec_t path, const char *accept, h2o_iovec_t request_id, h2o_iovec_t body,
                          dp_upstream_req_t *out)
{
    const char *region = cred_param(cred, "region");
    if (region == NULL || region[0] == '\0')
        region = dp_provider_param(prov, "region");
    if (region == NULL || region[0] == '\0')
        return CONFIG("the bedrock provider has no region parameter (params: {region: us-east-1})");
    if (!header_safe(region, strlen(region)))
        return CONFIG("the bedrock provider's region parameter is invalid");
    if (prov->host == NULL || prov->host[0] == '\0' || prov->port == 0)
        return CONFIG("the bedrock provider has no usable base_url");
    sl_sigv4_creds_t creds;
    if (parse_creds(pool, cred, &creds) != 0)
        return CONFIG("the bedrock credential is not the JSON object {\"access_key_id\", \"secret_access_key\", "
                      "\"session_token\"?}");
    if (!header_safe(request_id.base, request_id.len))
        request_id = h2o_iovec_init(H2O_STRLIT("-"));

    /* host[:port] as sent and signed */
    const char *hostval = prov->authority;
    size_t hv = prov->authority_len;

    char hash[65];
    sl_sigv4_payload_hash(body.base, body.len, hash);
    sl_sigv4_kv_t hdrs[4] = {
        sl_sigv4_kv("accept", accept),
        sl_sigv4_kv("content-type", "application/json"),
        {"host", 4, hostval, hv},
        {"x-request-id", 12, request_id.base, request_id.len},
    };
    sl_sigv4_request_t sreq = {
        .method = "POST",
        .path = path.base,
        .path_len = path.len,
        .headers = hdrs,
        .nheaders = 4,
        .payload_hash = hash,
        .region = region,
        .service = "bedrock",
        .time = time(NULL),
    };
    sl_sigv4_result_t *sig = h2o_mem_alloc_pool(pool, sizeof(*sig));
    sl_err_t err = {0};
    if (sl_sigv4_sign(&sreq, &creds, sig, NULL, 0, &err) != 0)
        return CONFIG("the bedrock request could not be signed (check the credential and region)");

    dp_jw_t w;
    dp_jw_init(&w, pool,
               512 + path.len + hv + request_id.len + strlen(sig->authorization) +
                   (creds.session_token != NULL ? strlen(creds.session_token) : 0));
    dp_jw_lit(&w, "POST ");
    dp_jw_raw(&w, path.base, path.len);
    dp_jw_lit(&w, " HTTP/1.1\r\nhost: ");
    dp_jw_raw(&w, hostval, hv);
    dp_jw_lit(&w, "\r\n");
    dp_upstream_json_headers(&w, accept, request_id);
    dp_jw_lit(&w, "x-amz-date: ");
    dp_jw_raw(&w, sig->amz_date, strlen(sig->amz_date));
    if (creds.session_token != NULL) {
        dp_jw_lit(&w, "\r\nx-amz-security-token: ");
        dp_jw_raw(&w, creds.session_token, strlen(creds.session_token));
    }
    dp_jw_lit(&w, "\r\nauthorization: ");
    dp_jw_raw(&w, sig->authorization, strlen(sig->authorization));
    dp_jw_lit(&w, "\r\n");
    dp_upstream_finish(&w, body, out);
    return 0;
}

/* prefix + "/model/" + percent-encoded model + "/" + op, in pool memory. */
static int model_path(h2o_mem_pool_t *pool, const dp_provider_t *prov, h2o_iovec_t model, const char *op,
                      h2o_iovec_t *path, dp_upstream_req_t *out)
{
    if (model.len == 0)
        return CLIENT("the request names no model");
    const char *prefix = prov->path_prefix != NULL ? prov->path_prefix : "";
    size_t plen = strlen(prefix), cap = plen + 8 + 3 * model.len + 1 + strlen(op) + 1, enc = 0;
    char *p = h2o_mem_alloc_pool(pool, cap);
    memcpy(p, prefix, plen);
    memcpy(p + plen, "/model/", 7);
    if (sl_sigv4_uri_encode(model.base, model.len, 0, p + plen + 7, cap - plen - 7, &enc) != 0)
        return CLIENT("the model id is too long");
    size_t n = plen + 7 + enc;
    n += (size_t)snprintf(p + n, cap - n, "/%s", op);
    *path = h2o_iovec_init(p, n);
    return 0;
}

static int build_chat(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                      h2o_iovec_t served_model, const dp_chat_req_t *in, const h2o_headers_t *client_headers,
                      h2o_iovec_t request_id, dp_upstream_req_t *out)
{
    out->nbufs = 0;
    out->body_len = 0;
    out->error = NULL;
    out->error_status = 0;
    conv_t c = {.pool = pool, .js = in->body, .t = in->toks, .out = out};
    const char *js = in->body;
    const sl_json_tok_t *t = in->toks;
    if (in->ntoks < 1 || t[0].type != SL_JSON_OBJECT)
        return CLIENT("the request body must be a JSON object");
    int msgs = FIND(js, t, 0, "messages");
    if (msgs <= 0 || t[msgs].type != SL_JSON_ARRAY)
        return CLIENT("you must provide a messages array");
    int nn = FIND(js, t, 0, "n");
    int64_t nv;
    if (nn > 0 && t[nn].type != SL_JSON_NULL && (sl_json_int64(js, &t[nn], &nv) != 0 || nv != 1))
        return CLIENT("bedrock returns one choice per request (n must be 1)");
    dp_jw_init(&c.msgs, pool, in->len + 128);
    dp_jw_init(&c.sys, pool, 128);
    dp_jw_init(&c.blk, pool, 256);
    int rc = convert_messages(&c, msgs);
    if (rc != 0)
        return rc;

    dp_jw_t w;
    dp_jw_init(&w, pool, c.msgs.len + c.sys.len + 256);
    dp_jw_lit(&w, "{\"messages\":");
    dp_jw_raw(&w, c.msgs.buf, c.msgs.len);
    if (c.nsys > 0) {
        dp_jw_lit(&w, ",\"system\":[");
        dp_jw_raw(&w, c.sys.buf, c.sys.len);
        dp_jw_lit(&w, "]");
    }
    if ((rc = convert_inference(&c, in, &w)) != 0 || (rc = convert_tools(&c, &w)) != 0)
        return rc;
    dp_jw_lit(&w, "}");

    h2o_iovec_t path;
    if ((rc = model_path(pool, prov, served_model, in->stream ? "converse-stream" : "converse", &path, out)) != 0)
        return rc;
    return finish_request(pool, prov, cred, path,
                          in->stream ? "application/vnd.amazon.eventstream" : "application/json", request_id,
                          dp_jw_iov(&w), out);
}

/* ---- responses ----------------------------------------------------------------- */

static const char *finish_reason(const char *js, const sl_json_tok_t *t)
{
    if (t == NULL || t->type != SL_JSON_STRING)
        return "stop";
    if (STREQ(js, t, "max_tokens") || STREQ(js, t, "model_context_window_exceeded"))
        return "length";
    if (STREQ(js, t, "tool_use"))
        return "tool_calls";
    if (STREQ(js, t, "content_filtered") || STREQ(js, t, "guardrail_intervened"))
        return "content_filter";
    return "stop"; /* end_turn, stop_sequence */
}

typedef struct usage {
    int64_t input, output, cache_read, cache_write;
} usage_t;

/* Reads Converse's usage object; returns 1 when it was one. */
static int read_usage(const char *js, const sl_json_tok_t *t, int u, usage_t *out)
{
    if (u <= 0 || t[u].type != SL_JSON_OBJECT)
        return 0;
    static const char *const names[] = {"inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens"};
    int64_t *fields[] = {&out->input, &out->output, &out->cache_read, &out->cache_write};
    memset(out, 0, sizeof(*out));
    for (size_t k = 0; k < 4; k++) {
        int i = sl_json_find(js, t, u, names[k], strlen(names[k]));
        int64_t v;
        if (i > 0 && sl_json_int64(js, &t[i], &v) == 0 && v >= 0 && v < (INT64_C(1) << 48))
            *fields[k] = v;
    }
    return 1;
}

static void usage_tokens(const usage_t *u, dp_tokens_t *tokens)
{
    tokens->input = u->input + u->cache_read + u->cache_write;
    tokens->cached_input = u->cache_read;
    tokens->output = u->output;
    tokens->seen = 1;
}

static void write_usage(dp_jw_t *w, const usage_t *u)
{
    dp_tokens_t tk;
    usage_tokens(u, &tk);
    dp_jw_lit(w, "\"usage\":");
    dp_xlate_usage(w, &tk, 0);
}

/* A tool call's arguments: the toolUse input value as a JSON string. */
static void write_arguments(dp_jw_t *w, const char *js, const sl_json_tok_t *input)
{
    if (input == NULL)
        dp_jw_lit(w, "\"{}\"");
    else if (input->type == SL_JSON_STRING)
        dp_jw_str(w, js + input->start - 1, input->end - input->start + 2);
    else
        dp_jw_str(w, js + input->start, input->end - input->start);
}

static int translate_response(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const char *body, size_t len, h2o_iovec_t *out,
                              dp_tokens_t *tokens)
{
    sl_json_tok_t stack[256], *t;
    int n = dp_provider_parse_pool(pool, body, len, stack, 256, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return SL_EINVAL;
    const char *js = body;
    int o = FIND(js, t, 0, "output"), m = FIND(js, t, o, "message"), content = FIND(js, t, m, "content");
    if (content > 0 && t[content].type != SL_JSON_ARRAY)
        return SL_EINVAL;
    int sr = FIND(js, t, 0, "stopReason");
    usage_t u = {0};
    int have_usage = read_usage(js, t, FIND(js, t, 0, "usage"), &u);

    dp_jw_t w;
    dp_jw_init(&w, pool, len + 256 + ctx->id.len + ctx->model.len);
    dp_xlate_open(&w, ctx, 0);
    dp_jw_lit(&w, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    int ntext = 0, ntools = 0;
    uint32_t nblocks = content > 0 ? t[content].size : 0;
    for (uint32_t i = 0; i < nblocks; i++) {
        int b = sl_json_array_at(t, content, i), s = FIND(js, t, b, "text");
        if (s > 0 && t[s].type == SL_JSON_STRING) {
            if (ntext++ == 0)
                dp_jw_lit(&w, "\"");
            dp_jw_raw(&w, js + t[s].start, t[s].end - t[s].start);
        } else if (FIND(js, t, b, "toolUse") > 0) {
            ntools++;
        }
    }
    if (ntext > 0)
        dp_jw_lit(&w, "\"");
    else if (ntools > 0)
        dp_jw_lit(&w, "null");
    else
        dp_jw_lit(&w, "\"\"");
    if (ntools > 0) {
        dp_jw_lit(&w, ",\"tool_calls\":[");
        int k = 0;
        for (uint32_t i = 0; i < nblocks; i++) {
            int b = sl_json_array_at(t, content, i), tu = FIND(js, t, b, "toolUse");
            if (tu <= 0 || t[tu].type != SL_JSON_OBJECT)
                continue;
            int id = FIND(js, t, tu, "toolUseId"), name = FIND(js, t, tu, "name"), input = FIND(js, t, tu, "input");
            if (id <= 0 || t[id].type != SL_JSON_STRING || name <= 0 || t[name].type != SL_JSON_STRING)
                return SL_EINVAL;
            if (k++ > 0)
                dp_jw_lit(&w, ",");
            dp_jw_lit(&w, "{\"id\":");
            put_verbatim(&w, js, &t[id]);
            dp_jw_lit(&w, ",\"type\":\"function\",\"function\":{\"name\":");
            put_verbatim(&w, js, &t[name]);
            dp_jw_lit(&w, ",\"arguments\":");
            write_arguments(&w, js, input > 0 ? &t[input] : NULL);
            dp_jw_lit(&w, "}}");
        }
        dp_jw_lit(&w, "]");
    }
    dp_jw_lit(&w, "},\"logprobs\":null,\"finish_reason\":\"");
    const char *fr = finish_reason(js, sr > 0 ? &t[sr] : NULL);
    dp_jw_raw(&w, fr, strlen(fr));
    dp_jw_lit(&w, "\"}]");
    if (have_usage) {
        dp_jw_lit(&w, ",");
        write_usage(&w, &u);
        usage_tokens(&u, tokens);
    }
    dp_jw_lit(&w, "}");
    *out = dp_jw_iov(&w);
    return 0;
}

/* ---- stream events ------------------------------------------------------------- */

typedef struct block_tool {
    int64_t block; /* contentBlockIndex */
    int tool;      /* index in tool_calls */
} block_tool_t;

typedef struct stream_state {
    dp_jw_t w; /* reused for every event */
    int role_sent, stop_seen, meta_seen, done;
    const char *finish;
    usage_t usage;
    int ntools;
    block_tool_t *map;
    size_t nmap, capmap;
} stream_state_t;

/* A chunk with one choice whose delta is delta_json (an object's inside). */
static void delta_chunk(dp_jw_t *w, const dp_xlate_ctx_t *ctx, const char *delta, size_t dlen, const char *finish)
{
    dp_xlate_open(w, ctx, 1);
    dp_jw_lit(w, ",\"choices\":[{\"index\":0,\"delta\":{");
    dp_jw_raw(w, delta, dlen);
    dp_jw_lit(w, "},\"logprobs\":null,\"finish_reason\":");
    if (finish != NULL) {
        dp_jw_lit(w, "\"");
        dp_jw_raw(w, finish, strlen(finish));
        dp_jw_lit(w, "\"");
    } else {
        dp_jw_lit(w, "null");
    }
    dp_jw_lit(w, "}]}\n\n");
}

static void role_chunk(stream_state_t *s, const dp_xlate_ctx_t *ctx)
{
    if (s->role_sent)
        return;
    static const char delta[] = "\"role\":\"assistant\",\"content\":\"\"";
    delta_chunk(&s->w, ctx, delta, sizeof(delta) - 1, NULL);
    s->role_sent = 1;
}

/* The end of the message: finish chunk, usage chunk when asked. */
static int finish_stream(stream_state_t *s, const dp_xlate_ctx_t *ctx)
{
    if (!s->stop_seen || !s->meta_seen || s->done)
        return 0;
    role_chunk(s, ctx);
    delta_chunk(&s->w, ctx, "", 0, s->finish);
    if (ctx->include_usage) {
        dp_xlate_open(&s->w, ctx, 1);
        dp_jw_lit(&s->w, ",\"choices\":[],");
        write_usage(&s->w, &s->usage);
        dp_jw_lit(&s->w, "}\n\n");
    }
    s->done = 1;
    return DP_EV_DONE;
}

static int tool_for_block(h2o_mem_pool_t *pool, stream_state_t *s, int64_t block, int create)
{
    for (size_t i = s->nmap; i > 0; i--)
        if (s->map[i - 1].block == block)
            return s->map[i - 1].tool;
    if (!create)
        return -1;
    if (s->nmap == s->capmap) {
        size_t cap = s->capmap ? s->capmap * 2 : 8;
        block_tool_t *m = h2o_mem_alloc_pool(pool, cap * sizeof(*m));
        if (s->nmap > 0)
            memcpy(m, s->map, s->nmap * sizeof(*m));
        s->map = m;
        s->capmap = cap;
    }
    s->map[s->nmap].block = block;
    s->map[s->nmap].tool = s->ntools++;
    return s->map[s->nmap++].tool;
}

static void append_out(h2o_buffer_t **out, const dp_jw_t *w)
{
    if (w->len == 0)
        return;
    h2o_iovec_t dst = h2o_buffer_reserve(out, w->len);
    memcpy(dst.base, w->buf, w->len);
    (*out)->size += w->len;
}

static int ev_is(const char *event, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    return len == n && memcmp(event, lit, n) == 0;
}

static int translate_event(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const char *event, size_t event_len,
                           const char *data, size_t len, h2o_buffer_t **out, dp_tokens_t *tokens)
{
    stream_state_t *s = ctx->state;
    if (s == NULL) {
        s = h2o_mem_alloc_pool(pool, sizeof(*s));
        memset(s, 0, sizeof(*s));
        dp_jw_init(&s->w, pool, 512);
        s->finish = "stop";
        ctx->state = s;
    }
    if (event_len >= 9 && memcmp(event + event_len - 9, "Exception", 9) == 0)
        return DP_EV_ERROR;
    if (s->done)
        return 0;
    sl_json_tok_t stack[64], *t;
    int n = dp_provider_parse_pool(pool, data, len, stack, 64, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return 0; /* not a Converse event: ignored */
    const char *js = data;
    int flags = 0;
    s->w.len = 0;

    if (ev_is(event, event_len, "messageStart")) {
        role_chunk(s, ctx);
    } else if (ev_is(event, event_len, "contentBlockStart")) {
        int st = FIND(js, t, 0, "start"), tu = FIND(js, t, st, "toolUse");
        int bi = FIND(js, t, 0, "contentBlockIndex");
        int64_t block = 0;
        if (tu > 0 && t[tu].type == SL_JSON_OBJECT) {
            int id = FIND(js, t, tu, "toolUseId"), name = FIND(js, t, tu, "name");
            if (id > 0 && t[id].type == SL_JSON_STRING && name > 0 && t[name].type == SL_JSON_STRING) {
                if (bi > 0)
                    sl_json_int64(js, &t[bi], &block);
                int k = tool_for_block(pool, s, block, 1);
                role_chunk(s, ctx);
                dp_jw_t d;
                dp_jw_init(&d, pool, 128 + (t[id].end - t[id].start) + (t[name].end - t[name].start));
                dp_jw_lit(&d, "\"tool_calls\":[{\"index\":");
                dp_jw_int(&d, k);
                dp_jw_lit(&d, ",\"id\":");
                put_verbatim(&d, js, &t[id]);
                dp_jw_lit(&d, ",\"type\":\"function\",\"function\":{\"name\":");
                put_verbatim(&d, js, &t[name]);
                dp_jw_lit(&d, ",\"arguments\":\"\"}}]");
                delta_chunk(&s->w, ctx, d.buf, d.len, NULL);
                flags |= DP_EV_CONTENT;
            }
        }
    } else if (ev_is(event, event_len, "contentBlockDelta")) {
        int d = FIND(js, t, 0, "delta"), bi = FIND(js, t, 0, "contentBlockIndex");
        int txt = FIND(js, t, d, "text"), tu = FIND(js, t, d, "toolUse");
        if (txt > 0 && t[txt].type == SL_JSON_STRING) {
            if (t[txt].end > t[txt].start) {
                role_chunk(s, ctx);
                dp_xlate_open(&s->w, ctx, 1);
                dp_jw_lit(&s->w, ",\"choices\":[{\"index\":0,\"delta\":{\"content\":");
                put_verbatim(&s->w, js, &t[txt]);
                dp_jw_lit(&s->w, "},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
                flags |= DP_EV_CONTENT;
            }
        } else if (tu > 0 && t[tu].type == SL_JSON_OBJECT) {
            int in = FIND(js, t, tu, "input");
            int64_t block = 0;
            if (bi > 0)
                sl_json_int64(js, &t[bi], &block);
            if (in > 0 && t[in].type == SL_JSON_STRING) {
                int k = tool_for_block(pool, s, block, 1);
                role_chunk(s, ctx);
                dp_xlate_open(&s->w, ctx, 1);
                dp_jw_lit(&s->w, ",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":");
                dp_jw_int(&s->w, k);
                dp_jw_lit(&s->w, ",\"function\":{\"arguments\":");
                put_verbatim(&s->w, js, &t[in]);
                dp_jw_lit(&s->w, "}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
                flags |= DP_EV_CONTENT;
            }
        }
        /* reasoningContent and other deltas have no OpenAI chunk form */
    } else if (ev_is(event, event_len, "messageStop")) {
        int sr = FIND(js, t, 0, "stopReason");
        s->finish = finish_reason(js, sr > 0 ? &t[sr] : NULL);
        s->stop_seen = 1;
        flags |= finish_stream(s, ctx);
    } else if (ev_is(event, event_len, "metadata")) {
        usage_t u;
        if (read_usage(js, t, FIND(js, t, 0, "usage"), &u)) {
            s->usage = u;
            usage_tokens(&u, tokens);
            flags |= DP_EV_USAGE;
        }
        s->meta_seen = 1;
        flags |= finish_stream(s, ctx);
    }
    append_out(out, &s->w);
    return flags;
}

/* ---- usage for callers that do not translate ------------------------------------ */

static int parse_usage(h2o_mem_pool_t *pool, const char *body, size_t len, dp_tokens_t *out)
{
    sl_json_tok_t stack[256], *t;
    int n = dp_provider_parse_pool(pool, body, len, stack, 256, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return SL_EINVAL;
    usage_t u;
    if (read_usage(body, t, FIND(body, t, 0, "usage"), &u))
        usage_tokens(&u, out);
    return 0;
}

static int parse_event(h2o_mem_pool_t *pool, const char *data, size_t len, dp_tokens_t *out)
{
    sl_json_tok_t stack[64], *t;
    int n = dp_provider_parse_pool(pool, data, len, stack, 64, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return 0;
    usage_t u;
    int flags = 0;
    if (read_usage(data, t, FIND(data, t, 0, "usage"), &u)) {
        usage_tokens(&u, out);
        flags |= DP_EV_USAGE | DP_EV_DONE;
    }
    int d = FIND(data, t, 0, "delta");
    if (d > 0 && t[d].type == SL_JSON_OBJECT)
        flags |= DP_EV_CONTENT;
    return flags;
}

/* ---- errors -------------------------------------------------------------------- */

static void map_error(int status, const char *body, size_t len, dp_upstream_error_t *out)
{
    out->pass_body = 0;
    out->type = "api_error";
    out->code = "upstream_error";
    out->message[0] = '\0';
    /* AWS error bodies: {"message": "..."} (some services: "Message") */
    sl_json_tok_t t[64];
    int n = len > 0 ? sl_json_parse(body, len, t, 64, NULL) : -1;
    if (n >= 1 && t[0].type == SL_JSON_OBJECT) {
        int m = FIND(body, t, 0, "message");
        if (m < 0)
            m = FIND(body, t, 0, "Message");
        if (m > 0 && t[m].type == SL_JSON_STRING) {
            size_t ml = sl_json_str_len(body, &t[m]);
            if (ml < sizeof(out->message)) {
                sl_json_str_copy(body, &t[m], out->message, sizeof(out->message));
            } else {
                /* keep the start of a long message */
                char *tmp = malloc(ml + 1);
                if (tmp != NULL) {
                    sl_json_str_copy(body, &t[m], tmp, ml + 1);
                    memcpy(out->message, tmp, sizeof(out->message) - 4);
                    memcpy(out->message + sizeof(out->message) - 4, "...", 4);
                    free(tmp);
                }
            }
            /* signature refusals append the canonical request: keep the first line */
            char *nl = strchr(out->message, '\n');
            if (nl != NULL)
                *nl = '\0';
        }
    }
    switch (status) {
    case 400:
        out->status = 400;
        out->type = "invalid_request_error";
        out->code = "invalid_request";
        break;
    case 401:
    case 403:
        /* the provider refused our credential (signature, unknown key, no
         * access to the model): not the client's fault */
        out->status = 502;
        out->code = "upstream_auth_failed";
        break;
    case 404:
        out->status = 404;
        out->type = "invalid_request_error";
        out->code = "model_not_found";
        break;
    case 408: /* ModelTimeoutException */
        out->status = 504;
        out->code = "upstream_timeout";
        break;
    case 424: /* ModelErrorException */
        out->status = 502;
        out->code = "upstream_model_error";
        break;
    case 429: /* ThrottlingException, ServiceQuotaExceededException */
        out->status = 429;
        out->type = "rate_limit_error";
        out->code = "rate_limit_exceeded";
        break;
    default:
        if (status >= 500 && status <= 599) {
            out->status = status; /* InternalServerException, ServiceUnavailableException */
        } else if (status >= 400 && status < 500) {
            out->status = status;
            out->type = "invalid_request_error";
        } else {
            out->status = 502;
        }
        break;
    }
}

static int build_embeddings(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                            h2o_iovec_t served_model, const dp_chat_req_t *in, const h2o_headers_t *client_headers,
                            h2o_iovec_t request_id, dp_upstream_req_t *out);
static int translate_embeddings(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const dp_chat_req_t *in,
                                const h2o_headers_t *upstream_headers, const char *body, size_t len, h2o_iovec_t *out,
                                dp_tokens_t *tokens);

const dp_provider_ops_t dp_provider_bedrock = {
    .name = "bedrock",
    .openai_format = 0,
    .build_chat = build_chat,
    .parse_usage = parse_usage,
    .parse_event = parse_event,
    .map_error = map_error,
    .framing = DP_FRAMING_AWS_EVENTSTREAM,
    .translate_response = translate_response,
    .translate_event = translate_event,
    .build_embeddings = build_embeddings,
    .translate_embeddings = translate_embeddings,
};

/* ---- embeddings (InvokeModel) ---------------------------------------------------- */

static h2o_iovec_t strip_region_prefix(const char *model, size_t len)
{
    static const char *const prefixes[] = {"us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca."};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]);
        if (len > n && memcmp(model, prefixes[i], n) == 0)
            return h2o_iovec_init(model + n, len - n);
    }
    return h2o_iovec_init(model, len);
}

static int has_prefix(h2o_iovec_t s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && memcmp(s.base, p, n) == 0;
}

int dp_bedrock_embed_family(const char *model, size_t len)
{
    h2o_iovec_t m = strip_region_prefix(model, len);
    if (has_prefix(m, "amazon.titan-embed-text-") || has_prefix(m, "amazon.titan-embed-g1-text"))
        return DP_BEDROCK_EMBED_TITAN;
    if (has_prefix(m, "cohere.embed-"))
        return DP_BEDROCK_EMBED_COHERE;
    return DP_BEDROCK_EMBED_NONE;
}

int dp_bedrock_embeddings_base64(const char *body, const sl_json_tok_t *toks)
{
    int f = FIND(body, toks, 0, "encoding_format");
    return f > 0 && toks[f].type == SL_JSON_STRING && STREQ(body, &toks[f], "base64");
}

int dp_bedrock_build_embeddings(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                                h2o_iovec_t served_model, const char *body, size_t len, const sl_json_tok_t *toks,
                                h2o_iovec_t request_id, dp_upstream_req_t *out)
{
    const char *js = body;
    const sl_json_tok_t *t = toks;
    out->nbufs = 0;
    out->body_len = 0;
    out->error = NULL;
    out->error_status = 0;
    if (t[0].type != SL_JSON_OBJECT)
        return CLIENT("the request body must be a JSON object");
    int family = dp_bedrock_embed_family(served_model.base, served_model.len);
    if (family == DP_BEDROCK_EMBED_NONE)
        return CLIENT("bedrock embeddings support amazon.titan-embed-* and cohere.embed-* models only");
    int input = FIND(js, t, 0, "input");
    if (input <= 0)
        return CLIENT("you must provide an input");
    /* the strings to embed */
    int single = t[input].type == SL_JSON_STRING;
    uint32_t count = single ? 1 : (t[input].type == SL_JSON_ARRAY ? t[input].size : 0);
    if (count == 0)
        return CLIENT("input must be a string or a non-empty array of strings");
    for (uint32_t i = 0; !single && i < count; i++)
        if (t[sl_json_array_at(t, input, i)].type != SL_JSON_STRING)
            return CLIENT("bedrock embeddings take text input only (strings, not token arrays)");

    dp_jw_t w;
    dp_jw_init(&w, pool, len + 128);
    if (family == DP_BEDROCK_EMBED_TITAN) {
        if (count != 1)
            return CLIENT("titan embedding models take one input per request");
        int s = single ? input : sl_json_array_at(t, input, 0);
        dp_jw_lit(&w, "{\"inputText\":");
        put_verbatim(&w, js, &t[s]);
        int dims = FIND(js, t, 0, "dimensions");
        if (dims > 0 && t[dims].type != SL_JSON_NULL) {
            int64_t d;
            if (sl_json_int64(js, &t[dims], &d) != 0 || d <= 0)
                return CLIENT("dimensions must be a positive integer");
            dp_jw_lit(&w, ",\"dimensions\":");
            dp_jw_int(&w, d);
        }
        dp_jw_lit(&w, "}");
    } else {
        if (count > 96)
            return CLIENT("cohere embedding models take at most 96 inputs per request");
        dp_jw_lit(&w, "{\"texts\":[");
        for (uint32_t i = 0; i < count; i++) {
            if (i > 0)
                dp_jw_lit(&w, ",");
            put_verbatim(&w, js, &t[single ? input : sl_json_array_at(t, input, i)]);
        }
        dp_jw_lit(&w, "],\"input_type\":");
        int it = FIND(js, t, 0, "input_type");
        if (it > 0 && t[it].type == SL_JSON_STRING)
            put_verbatim(&w, js, &t[it]);
        else
            dp_jw_lit(&w, "\"search_document\"");
        dp_jw_lit(&w, "}");
    }
    h2o_iovec_t path;
    int rc = model_path(pool, prov, served_model, "invoke", &path, out);
    if (rc != 0)
        return rc;
    return finish_request(pool, prov, cred, path, "application/json", request_id, dp_jw_iov(&w), out);
}

/* Writes one vector (array token v) as floats or base64 float32. */
static int write_vector(dp_jw_t *w, h2o_mem_pool_t *pool, const char *js, const sl_json_tok_t *t, int v, int base64)
{
    if (v <= 0 || t[v].type != SL_JSON_ARRAY)
        return SL_EINVAL;
    if (!base64) {
        for (uint32_t i = 0; i < t[v].size; i++)
            if (t[sl_json_array_at(t, v, i)].type != SL_JSON_NUMBER)
                return SL_EINVAL;
        dp_jw_raw(w, js + t[v].start, t[v].end - t[v].start);
        return 0;
    }
    size_t n = t[v].size;
    uint8_t *bytes = h2o_mem_alloc_pool(pool, n * 4 + 1);
    for (uint32_t i = 0; i < n; i++) {
        const sl_json_tok_t *x = &t[sl_json_array_at(t, v, i)];
        char num[64];
        size_t l = x->end - x->start;
        if (x->type != SL_JSON_NUMBER || l >= sizeof(num))
            return SL_EINVAL;
        memcpy(num, js + x->start, l);
        num[l] = '\0';
        float f = strtof(num, NULL);
        uint32_t bits;
        memcpy(&bits, &f, 4);
        bytes[i * 4] = (uint8_t)bits;
        bytes[i * 4 + 1] = (uint8_t)(bits >> 8);
        bytes[i * 4 + 2] = (uint8_t)(bits >> 16);
        bytes[i * 4 + 3] = (uint8_t)(bits >> 24);
    }
    char *enc = h2o_mem_alloc_pool(pool, SL_B64_ENCODED_SIZE(n * 4));
    size_t el = sl_b64_encode(bytes, n * 4, enc);
    dp_jw_lit(w, "\"");
    dp_jw_raw(w, enc, el);
    dp_jw_lit(w, "\"");
    return 0;
}

int dp_bedrock_translate_embeddings(h2o_mem_pool_t *pool, h2o_iovec_t model, int base64, const char *body, size_t len,
                                    int64_t header_tokens, h2o_iovec_t *out, dp_tokens_t *tokens)
{
    sl_json_tok_t *t;
    int n = dp_provider_parse_pool(pool, body, len, NULL, 0, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return SL_EINVAL;
    const char *js = body;
    dp_jw_t w;
    dp_jw_init(&w, pool, (base64 ? len / 2 : len) + 256 + model.len);
    dp_jw_lit(&w, "{\"object\":\"list\",\"data\":[");
    int64_t count = -1;
    int vecs = FIND(js, t, 0, "embeddings"), one = FIND(js, t, 0, "embedding");
    if (vecs > 0 && t[vecs].type == SL_JSON_OBJECT) /* Cohere v3 with embedding_types */
        vecs = FIND(js, t, vecs, "float");
    if (vecs > 0 && t[vecs].type == SL_JSON_ARRAY) {
        for (uint32_t i = 0; i < t[vecs].size; i++) {
            if (i > 0)
                dp_jw_lit(&w, ",");
            dp_jw_lit(&w, "{\"object\":\"embedding\",\"index\":");
            dp_jw_int(&w, i);
            dp_jw_lit(&w, ",\"embedding\":");
            if (write_vector(&w, pool, js, t, sl_json_array_at(t, vecs, i), base64) != 0)
                return SL_EINVAL;
            dp_jw_lit(&w, "}");
        }
    } else if (one > 0) {
        dp_jw_lit(&w, "{\"object\":\"embedding\",\"index\":0,\"embedding\":");
        if (write_vector(&w, pool, js, t, one, base64) != 0)
            return SL_EINVAL;
        dp_jw_lit(&w, "}");
        int c = FIND(js, t, 0, "inputTextTokenCount");
        int64_t v;
        if (c > 0 && sl_json_int64(js, &t[c], &v) == 0 && v >= 0)
            count = v;
    } else {
        return SL_EINVAL;
    }
    if (count < 0)
        count = header_tokens;
    dp_jw_lit(&w, "],\"model\":");
    dp_jw_str(&w, model.base, model.len);
    if (count >= 0) {
        dp_jw_lit(&w, ",\"usage\":{\"prompt_tokens\":");
        dp_jw_int(&w, count);
        dp_jw_lit(&w, ",\"total_tokens\":");
        dp_jw_int(&w, count);
        dp_jw_lit(&w, "}");
        tokens->input = count;
        tokens->cached_input = 0;
        tokens->output = 0;
        tokens->seen = 1;
    }
    dp_jw_lit(&w, "}");
    *out = dp_jw_iov(&w);
    return 0;
}

/* The embeddings hooks of the provider table, over the functions above. */
static int build_embeddings(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                            h2o_iovec_t served_model, const dp_chat_req_t *in, const h2o_headers_t *client_headers,
                            h2o_iovec_t request_id, dp_upstream_req_t *out)
{
    if (in->ntoks < 1) {
        out->error = "the request body must be a JSON object";
        out->error_status = 400;
        return SL_EINVAL;
    }
    return dp_bedrock_build_embeddings(pool, prov, cred, served_model, in->body, in->len, in->toks, request_id, out);
}

static int translate_embeddings(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const dp_chat_req_t *in,
                                const h2o_headers_t *upstream_headers, const char *body, size_t len, h2o_iovec_t *out,
                                dp_tokens_t *tokens)
{
    int64_t header_tokens = -1;
    if (upstream_headers != NULL) {
        ssize_t i = h2o_find_header_by_str(upstream_headers, H2O_STRLIT("x-amzn-bedrock-input-token-count"), -1);
        if (i >= 0) {
            const h2o_iovec_t *v = &upstream_headers->entries[i].value;
            int64_t n = 0;
            size_t k = 0;
            for (; k < v->len && k < 18 && v->base[k] >= '0' && v->base[k] <= '9'; k++)
                n = n * 10 + (v->base[k] - '0');
            if (k > 0 && k == v->len)
                header_tokens = n;
        }
    }
    int base64 = in != NULL && in->ntoks > 0 && dp_bedrock_embeddings_base64(in->body, in->toks);
    return dp_bedrock_translate_embeddings(pool, ctx->model, base64, body, len, header_tokens, out, tokens);
}
