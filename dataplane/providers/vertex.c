/*
 * vertex.c - the Google Vertex AI translator: Gemini generateContent and
 * Anthropic models through rawPredict (see vertex.h for the mappings).
 *
 * Requests are written with the pool JSON writer from the client's tokens
 * in one pass over the messages (system parts collect in a second writer
 * and go after the contents). Tool messages need the name of the function
 * they answer, which OpenAI's format only gives on the assistant message
 * that made the call: it is looked up by tool_call_id among the earlier
 * messages (the latest match wins, so ids reused across turns resolve to
 * the nearest call).
 *
 * Streams are translated one GenerateContentResponse at a time straight
 * into the output buffer; the per-stream state (role sent, finish seen,
 * tool-call numbering, a reusable token array) lives in ctx->state. Claude
 * answers (named SSE events, or a body with "type":"message") are handed to
 * the Anthropic translators, which own ctx->state in that case.
 */
#include "vertex.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "anthropic.h"
#include "dp_gauth.h"
#include "dp_jw.h"
#include "sl_b64.h"
#include "sl_err.h"
#include "sl_json.h"

#define FIND(js, t, obj, lit) sl_json_find((js), (t), (obj), (lit), sizeof(lit) - 1)
#define IS(js, tok, lit) ((tok)->type == SL_JSON_STRING && sl_json_str_eq((js), (tok), (lit), sizeof(lit) - 1))
#define TLEN(tok) ((size_t)((tok)->end - (tok)->start))

#define DEFAULT_LOCATION "us-central1"

/* ---- small helpers ------------------------------------------------------- */

static int is_str(const sl_json_tok_t *t, int i)
{
    return i > 0 && t[i].type == SL_JSON_STRING;
}

static int is_obj(const sl_json_tok_t *t, int i)
{
    return i > 0 && t[i].type == SL_JSON_OBJECT;
}

/* The value at t[i] written compactly (strings keep their escapes).
 * Returns the index after its subtree. */
static int jw_copy(dp_jw_t *w, const char *js, const sl_json_tok_t *t, int i)
{
    int j = i + 1;
    switch (t[i].type) {
    case SL_JSON_OBJECT:
        dp_jw_lit(w, "{");
        for (uint32_t k = 0; k < t[i].size; k++) {
            if (k > 0)
                dp_jw_lit(w, ",");
            dp_jw_str_verbatim(w, js + t[j].start, TLEN(&t[j]));
            dp_jw_lit(w, ":");
            j = jw_copy(w, js, t, j + 1);
        }
        dp_jw_lit(w, "}");
        break;
    case SL_JSON_ARRAY:
        dp_jw_lit(w, "[");
        for (uint32_t k = 0; k < t[i].size; k++) {
            if (k > 0)
                dp_jw_lit(w, ",");
            j = jw_copy(w, js, t, j);
        }
        dp_jw_lit(w, "]");
        break;
    case SL_JSON_STRING:
        dp_jw_str_verbatim(w, js + t[i].start, TLEN(&t[i]));
        break;
    default:
        dp_jw_raw(w, js + t[i].start, TLEN(&t[i]));
        break;
    }
    return (int)t[i].next;
}

/* ---- OpenAI request -> generateContent body ------------------------------ */

typedef struct gb {
    h2o_mem_pool_t *pool;
    const char *js;
    const sl_json_tok_t *t;
    int msgs;
    dp_jw_t w;   /* the body; contents are written in place */
    dp_jw_t sys; /* systemInstruction parts */
    size_t ncontents, nsys;
    int group_open; /* a user turn of functionResponse parts */
    size_t group_parts;
    const char *err, *param;
} gb_t;

static int bad(gb_t *b, const char *param, const char *msg)
{
    b->err = msg;
    b->param = param;
    return SL_EINVAL;
}

static void text_part(dp_jw_t *w, size_t *np, const char *js, const sl_json_tok_t *s)
{
    if (TLEN(s) == 0)
        return; /* Vertex refuses empty text parts */
    if ((*np)++ > 0)
        dp_jw_lit(w, ",");
    dp_jw_lit(w, "{\"text\":");
    dp_jw_str_verbatim(w, js + s->start, TLEN(s));
    dp_jw_lit(w, "}");
}

/* MIME type from a URL's file extension, or NULL. */
static const char *mime_from_url(h2o_iovec_t url)
{
    static const struct {
        const char *ext, *mime;
    } table[] = {
        {"png", "image/png"},       {"jpg", "image/jpeg"},  {"jpeg", "image/jpeg"}, {"gif", "image/gif"},
        {"webp", "image/webp"},     {"heic", "image/heic"}, {"heif", "image/heif"}, {"pdf", "application/pdf"},
        {"txt", "text/plain"},      {"mp3", "audio/mpeg"},  {"wav", "audio/wav"},   {"flac", "audio/flac"},
        {"ogg", "audio/ogg"},       {"m4a", "audio/mp4"},   {"aac", "audio/aac"},   {"mp4", "video/mp4"},
        {"mov", "video/quicktime"}, {"webm", "video/webm"}, {"mpeg", "video/mpeg"}, {"avi", "video/x-msvideo"},
    };
    size_t n = url.len;
    for (size_t i = 0; i < url.len; i++)
        if (url.base[i] == '?' || url.base[i] == '#') {
            n = i;
            break;
        }
    size_t dot = n;
    while (dot > 0 && url.base[dot - 1] != '.' && url.base[dot - 1] != '/')
        dot--;
    if (dot == 0 || url.base[dot - 1] != '.')
        return NULL;
    const char *ext = url.base + dot;
    size_t elen = n - dot;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strlen(table[i].ext) == elen && strncasecmp(ext, table[i].ext, elen) == 0)
            return table[i].mime;
    return NULL;
}

static int mime_ok(const char *s, size_t n)
{
    int slash = 0;
    if (n == 0 || n > 127)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '/')
            slash++;
        else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '+' ||
                   c == '-' || c == '_'))
            return 0;
    }
    return slash == 1;
}

static void inline_part(dp_jw_t *w, size_t *np, const char *mime, size_t mlen, const char *data, size_t dlen)
{
    if ((*np)++ > 0)
        dp_jw_lit(w, ",");
    dp_jw_lit(w, "{\"inlineData\":{\"mimeType\":");
    dp_jw_str(w, mime, mlen);
    dp_jw_lit(w, ",\"data\":");
    dp_jw_str(w, data, dlen);
    dp_jw_lit(w, "}}");
}

/* A media URL: a base64 data: URL becomes inlineData, an http(s) or gs URL
 * fileData with the MIME type of its extension. */
static int media_url(gb_t *b, dp_jw_t *w, size_t *np, h2o_iovec_t url)
{
    if (url.len >= 5 && strncasecmp(url.base, "data:", 5) == 0) {
        const char *p = url.base + 5, *end = url.base + url.len;
        const char *comma = memchr(p, ',', (size_t)(end - p));
        if (comma == NULL)
            return bad(b, "messages", "a data URL must be of the form data:<media type>;base64,<data>");
        size_t hlen = (size_t)(comma - p);
        const char *semi = memchr(p, ';', hlen);
        if (semi == NULL || hlen < 7 || strncasecmp(comma - 7, ";base64", 7) != 0)
            return bad(b, "messages", "only base64 data URLs are supported");
        if (!mime_ok(p, (size_t)(semi - p)))
            return bad(b, "messages", "a data URL has an invalid media type");
        if (comma + 1 == end)
            return bad(b, "messages", "a data URL carries no data");
        inline_part(w, np, p, (size_t)(semi - p), comma + 1, (size_t)(end - comma - 1));
        return 0;
    }
    int remote = (url.len > 8 && strncasecmp(url.base, "https://", 8) == 0) ||
                 (url.len > 7 && strncasecmp(url.base, "http://", 7) == 0) ||
                 (url.len > 5 && strncasecmp(url.base, "gs://", 5) == 0);
    if (!remote)
        return bad(b, "messages", "a media URL must be a data:, http(s):// or gs:// URL");
    const char *mime = mime_from_url(url);
    if (mime == NULL)
        return bad(b, "messages",
                   "the media type of a media URL cannot be told from its extension; send it as a data URL");
    if ((*np)++ > 0)
        dp_jw_lit(w, ",");
    dp_jw_lit(w, "{\"fileData\":{\"mimeType\":");
    dp_jw_str(w, mime, strlen(mime));
    dp_jw_lit(w, ",\"fileUri\":");
    dp_jw_str(w, url.base, url.len);
    dp_jw_lit(w, "}}");
    return 0;
}

static int audio_part(gb_t *b, dp_jw_t *w, size_t *np, int p)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    int ia = FIND(js, t, p, "input_audio");
    int data = is_obj(t, ia) ? FIND(js, t, ia, "data") : -1;
    int fmt = is_obj(t, ia) ? FIND(js, t, ia, "format") : -1;
    if (!is_str(t, data) || TLEN(&t[data]) == 0 || !is_str(t, fmt))
        return bad(b, "messages", "an input_audio part needs data and format strings");
    const char *mime = IS(js, &t[fmt], "wav")    ? "audio/wav"
                       : IS(js, &t[fmt], "mp3")  ? "audio/mp3"
                       : IS(js, &t[fmt], "flac") ? "audio/flac"
                       : IS(js, &t[fmt], "ogg")  ? "audio/ogg"
                                                 : NULL;
    if (mime == NULL)
        return bad(b, "messages", "unsupported input_audio format");
    if ((*np)++ > 0)
        dp_jw_lit(w, ",");
    dp_jw_lit(w, "{\"inlineData\":{\"mimeType\":\"");
    dp_jw_raw(w, mime, strlen(mime));
    dp_jw_lit(w, "\",\"data\":");
    dp_jw_str_verbatim(w, js + t[data].start, TLEN(&t[data]));
    dp_jw_lit(w, "}}");
    return 0;
}

/* The parts of a message's content: a string, an array of content parts, or
 * null. media: whether parts other than text are accepted. */
static int content_parts(gb_t *b, dp_jw_t *w, size_t *np, int c, int media)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    if (dp_json_absent(t, c))
        return 0;
    if (t[c].type == SL_JSON_STRING) {
        text_part(w, np, js, &t[c]);
        return 0;
    }
    if (t[c].type != SL_JSON_ARRAY)
        return bad(b, "messages", "message content must be a string or an array of content parts");
    int p = c + 1;
    for (uint32_t k = 0; k < t[c].size; k++, p = (int)t[p].next) {
        if (t[p].type != SL_JSON_OBJECT)
            return bad(b, "messages", "a content part must be an object");
        int ty = FIND(js, t, p, "type");
        if (!is_str(t, ty))
            return bad(b, "messages", "a content part needs a type");
        if (IS(js, &t[ty], "text") || IS(js, &t[ty], "refusal")) {
            int x = IS(js, &t[ty], "text") ? FIND(js, t, p, "text") : FIND(js, t, p, "refusal");
            if (!is_str(t, x))
                return bad(b, "messages", "a text content part needs a text string");
            text_part(w, np, js, &t[x]);
            continue;
        }
        if (!media)
            return bad(b, "messages", "only text content parts are supported in system and assistant messages");
        int rc;
        if (IS(js, &t[ty], "image_url")) {
            int iu = FIND(js, t, p, "image_url");
            int u = is_obj(t, iu) ? FIND(js, t, iu, "url") : iu;
            if (!is_str(t, u))
                return bad(b, "messages", "an image_url part needs a url");
            rc = media_url(b, w, np, dp_json_unescape(b->pool, js, &t[u]));
        } else if (IS(js, &t[ty], "input_audio")) {
            rc = audio_part(b, w, np, p);
        } else if (IS(js, &t[ty], "file")) {
            int f = FIND(js, t, p, "file");
            int fd = is_obj(t, f) ? FIND(js, t, f, "file_data") : -1;
            if (!is_str(t, fd))
                return bad(b, "messages", "file parts must carry file_data (file ids are not supported)");
            rc = media_url(b, w, np, dp_json_unescape(b->pool, js, &t[fd]));
        } else {
            return bad(b, "messages", "unsupported content part type");
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* functionCall parts from an assistant message's tool_calls. */
static int tool_call_parts(gb_t *b, dp_jw_t *w, size_t *np, int tc)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    if (dp_json_absent(t, tc))
        return 0;
    if (t[tc].type != SL_JSON_ARRAY)
        return bad(b, "messages", "tool_calls must be an array");
    int c = tc + 1;
    for (uint32_t k = 0; k < t[tc].size; k++, c = (int)t[c].next) {
        int fn = t[c].type == SL_JSON_OBJECT ? FIND(js, t, c, "function") : -1;
        int name = is_obj(t, fn) ? FIND(js, t, fn, "name") : -1;
        if (!is_str(t, name) || TLEN(&t[name]) == 0)
            return bad(b, "messages", "a tool call needs a function name");
        int args = FIND(js, t, fn, "arguments");
        if ((*np)++ > 0)
            dp_jw_lit(w, ",");
        dp_jw_lit(w, "{\"functionCall\":{\"name\":");
        dp_jw_str_verbatim(w, js + t[name].start, TLEN(&t[name]));
        dp_jw_lit(w, ",\"args\":");
        if (dp_json_absent(t, args)) {
            dp_jw_lit(w, "{}");
        } else if (t[args].type == SL_JSON_OBJECT) {
            jw_copy(w, js, t, args);
        } else if (t[args].type == SL_JSON_STRING) {
            h2o_iovec_t a = dp_json_unescape(b->pool, js, &t[args]);
            size_t s = 0;
            while (s < a.len && (a.base[s] == ' ' || a.base[s] == '\t' || a.base[s] == '\n' || a.base[s] == '\r'))
                s++;
            if (s == a.len) {
                dp_jw_lit(w, "{}");
            } else {
                sl_json_tok_t *at;
                int n = dp_provider_parse_pool(b->pool, a.base, a.len, NULL, 0, &at);
                if (n < 1 || at[0].type != SL_JSON_OBJECT)
                    return bad(b, "messages", "tool call arguments must be a JSON object");
                jw_copy(w, a.base, at, 0);
            }
        } else {
            return bad(b, "messages", "tool call arguments must be a JSON object");
        }
        dp_jw_lit(w, "}}");
    }
    return 0;
}

/* The function name of the latest assistant tool call with id, among the
 * messages before message number upto; -1 when none. */
static int find_tool_name(gb_t *b, uint32_t upto, h2o_iovec_t id)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    int found = -1, m = b->msgs + 1;
    for (uint32_t k = 0; k < upto; k++, m = (int)t[m].next) {
        if (t[m].type != SL_JSON_OBJECT)
            continue;
        int tc = FIND(js, t, m, "tool_calls");
        if (tc < 0 || t[tc].type != SL_JSON_ARRAY)
            continue;
        int c = tc + 1;
        for (uint32_t i = 0; i < t[tc].size; i++, c = (int)t[c].next) {
            int cid = t[c].type == SL_JSON_OBJECT ? FIND(js, t, c, "id") : -1;
            if (!is_str(t, cid) || !sl_json_str_eq(js, &t[cid], id.base, id.len))
                continue;
            int fn = FIND(js, t, c, "function");
            int name = is_obj(t, fn) ? FIND(js, t, fn, "name") : -1;
            if (is_str(t, name))
                found = name;
        }
    }
    return found;
}

static void close_group(gb_t *b)
{
    if (b->group_open)
        dp_jw_lit(&b->w, "]}");
    b->group_open = 0;
}

/* A tool (or legacy function) message: one functionResponse part in the
 * current user turn of function responses. */
static int tool_message(gb_t *b, int m, uint32_t k, int legacy)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    int name;
    if (legacy) {
        name = FIND(js, t, m, "name");
    } else {
        int id = FIND(js, t, m, "tool_call_id");
        if (!is_str(t, id))
            return bad(b, "messages", "a tool message needs a tool_call_id");
        name = find_tool_name(b, k, dp_json_unescape(b->pool, js, &t[id]));
        if (name < 0)
            name = FIND(js, t, m, "name");
    }
    if (!is_str(t, name) || TLEN(&t[name]) == 0)
        return bad(b, "messages", "a tool message answers no earlier assistant tool call (unknown tool_call_id)");
    dp_jw_t *w = &b->w;
    if (!b->group_open) {
        if (b->ncontents++ > 0)
            dp_jw_lit(w, ",");
        dp_jw_lit(w, "{\"role\":\"user\",\"parts\":[");
        b->group_open = 1;
        b->group_parts = 0;
    }
    if (b->group_parts++ > 0)
        dp_jw_lit(w, ",");
    dp_jw_lit(w, "{\"functionResponse\":{\"name\":");
    dp_jw_str_verbatim(w, js + t[name].start, TLEN(&t[name]));
    dp_jw_lit(w, ",\"response\":{\"content\":\"");
    int c = FIND(js, t, m, "content");
    if (is_str(t, c)) {
        dp_jw_raw(w, js + t[c].start, TLEN(&t[c]));
    } else if (c > 0 && t[c].type == SL_JSON_ARRAY) {
        /* text parts joined: escaped bodies concatenate into one string */
        int p = c + 1;
        for (uint32_t i = 0; i < t[c].size; i++, p = (int)t[p].next) {
            int x = t[p].type == SL_JSON_OBJECT ? FIND(js, t, p, "text") : -1;
            if (!is_str(t, x))
                return bad(b, "messages", "tool message content parts must be text");
            dp_jw_raw(w, js + t[x].start, TLEN(&t[x]));
        }
    } else if (!dp_json_absent(t, c)) {
        return bad(b, "messages", "tool message content must be a string or text parts");
    }
    dp_jw_lit(w, "\"}}}");
    return 0;
}

static int messages(gb_t *b)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    int m = b->msgs + 1;
    for (uint32_t k = 0; k < t[b->msgs].size; k++, m = (int)t[m].next) {
        if (t[m].type != SL_JSON_OBJECT)
            return bad(b, "messages", "each message must be an object");
        int role = FIND(js, t, m, "role");
        if (!is_str(t, role))
            return bad(b, "messages", "each message needs a role");
        int content = FIND(js, t, m, "content"), rc;
        if (IS(js, &t[role], "system") || IS(js, &t[role], "developer")) {
            rc = content_parts(b, &b->sys, &b->nsys, content, 0);
        } else if (IS(js, &t[role], "tool") || IS(js, &t[role], "function")) {
            rc = tool_message(b, m, k, IS(js, &t[role], "function"));
        } else if (IS(js, &t[role], "user") || IS(js, &t[role], "assistant")) {
            int user = IS(js, &t[role], "user");
            close_group(b);
            dp_jw_t *w = &b->w;
            size_t mark = w->len, np = 0;
            if (b->ncontents > 0)
                dp_jw_lit(w, ",");
            dp_jw_lit(w, "{\"role\":\"");
            dp_jw_raw(w, user ? "user" : "model", user ? 4 : 5);
            dp_jw_lit(w, "\",\"parts\":[");
            rc = content_parts(b, w, &np, content, user);
            if (rc == 0 && !user)
                rc = tool_call_parts(b, w, &np, FIND(js, t, m, "tool_calls"));
            if (rc == 0 && np == 0) {
                w->len = mark; /* nothing to say: Vertex refuses empty turns */
            } else if (rc == 0) {
                dp_jw_lit(w, "]}");
                b->ncontents++;
            }
        } else {
            return bad(b, "messages", "unsupported message role");
        }
        if (rc != 0)
            return rc;
    }
    close_group(b);
    return 0;
}

/* JSON-Schema keywords Vertex's Schema does not take. */
static int schema_drop(const char *js, const sl_json_tok_t *name)
{
    return IS(js, name, "$schema") || IS(js, name, "$id") || IS(js, name, "$comment") ||
           IS(js, name, "additionalProperties") || IS(js, name, "strict");
}

static void jw_schema(dp_jw_t *w, const char *js, const sl_json_tok_t *t, int i);

/* An object whose member values are schemas (properties, $defs). */
static void jw_schema_map(dp_jw_t *w, const char *js, const sl_json_tok_t *t, int i)
{
    dp_jw_lit(w, "{");
    int j = i + 1;
    for (uint32_t k = 0; k < t[i].size; k++, j = (int)t[j + 1].next) {
        if (k > 0)
            dp_jw_lit(w, ",");
        dp_jw_str_verbatim(w, js + t[j].start, TLEN(&t[j]));
        dp_jw_lit(w, ":");
        jw_schema(w, js, t, j + 1);
    }
    dp_jw_lit(w, "}");
}

static void jw_schema(dp_jw_t *w, const char *js, const sl_json_tok_t *t, int i)
{
    if (t[i].type != SL_JSON_OBJECT) {
        jw_copy(w, js, t, i);
        return;
    }
    dp_jw_lit(w, "{");
    int j = i + 1, n = 0;
    for (uint32_t k = 0; k < t[i].size; k++, j = (int)t[j + 1].next) {
        const sl_json_tok_t *name = &t[j];
        int v = j + 1;
        if (schema_drop(js, name))
            continue;
        if (n++ > 0)
            dp_jw_lit(w, ",");
        if (IS(js, name, "oneOf"))
            dp_jw_lit(w, "\"anyOf\""); /* Vertex knows anyOf only */
        else
            dp_jw_str_verbatim(w, js + name->start, TLEN(name));
        dp_jw_lit(w, ":");
        if ((IS(js, name, "properties") || IS(js, name, "$defs") || IS(js, name, "definitions")) &&
            t[v].type == SL_JSON_OBJECT) {
            jw_schema_map(w, js, t, v);
        } else if ((IS(js, name, "items") || IS(js, name, "not")) && t[v].type == SL_JSON_OBJECT) {
            jw_schema(w, js, t, v);
        } else if ((IS(js, name, "anyOf") || IS(js, name, "oneOf") || IS(js, name, "allOf") ||
                    IS(js, name, "prefixItems")) &&
                   t[v].type == SL_JSON_ARRAY) {
            dp_jw_lit(w, "[");
            int e = v + 1;
            for (uint32_t x = 0; x < t[v].size; x++, e = (int)t[e].next) {
                if (x > 0)
                    dp_jw_lit(w, ",");
                jw_schema(w, js, t, e);
            }
            dp_jw_lit(w, "]");
        } else {
            jw_copy(w, js, t, v);
        }
    }
    dp_jw_lit(w, "}");
}

/* Whether a parameters schema declares nothing (Vertex refuses an OBJECT
 * schema without properties, so such parameters are left out). */
static int empty_params(const char *js, const sl_json_tok_t *t, int p)
{
    if (t[p].type != SL_JSON_OBJECT || t[p].size == 0)
        return 1;
    int props = FIND(js, t, p, "properties");
    int ty = FIND(js, t, p, "type");
    return ty > 0 && IS(js, &t[ty], "object") && (props < 0 || (t[props].type == SL_JSON_OBJECT && t[props].size == 0));
}

static int tools(gb_t *b)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    dp_jw_t *w = &b->w;
    int ts = FIND(js, t, 0, "tools");
    if (dp_json_absent(t, ts))
        return 0;
    if (t[ts].type != SL_JSON_ARRAY)
        return bad(b, "tools", "tools must be an array");
    if (t[ts].size == 0)
        return 0;
    dp_jw_lit(w, ",\"tools\":[{\"functionDeclarations\":[");
    int x = ts + 1;
    for (uint32_t k = 0; k < t[ts].size; k++, x = (int)t[x].next) {
        int ty = t[x].type == SL_JSON_OBJECT ? FIND(js, t, x, "type") : -1;
        int fn = t[x].type == SL_JSON_OBJECT ? FIND(js, t, x, "function") : -1;
        if ((ty > 0 && !IS(js, &t[ty], "function")) || !is_obj(t, fn))
            return bad(b, "tools", "only function tools are supported");
        int name = FIND(js, t, fn, "name"), desc = FIND(js, t, fn, "description"),
            params = FIND(js, t, fn, "parameters");
        if (!is_str(t, name) || TLEN(&t[name]) == 0)
            return bad(b, "tools", "a function tool needs a name");
        if (k > 0)
            dp_jw_lit(w, ",");
        dp_jw_lit(w, "{\"name\":");
        dp_jw_str_verbatim(w, js + t[name].start, TLEN(&t[name]));
        if (is_str(t, desc)) {
            dp_jw_lit(w, ",\"description\":");
            dp_jw_str_verbatim(w, js + t[desc].start, TLEN(&t[desc]));
        }
        if (!dp_json_absent(t, params)) {
            if (t[params].type != SL_JSON_OBJECT)
                return bad(b, "tools", "function parameters must be a JSON schema object");
            if (!empty_params(js, t, params)) {
                dp_jw_lit(w, ",\"parameters\":");
                jw_schema(w, js, t, params);
            }
        }
        dp_jw_lit(w, "}");
    }
    dp_jw_lit(w, "]}]");

    int tc = FIND(js, t, 0, "tool_choice");
    if (dp_json_absent(t, tc))
        return 0;
    const char *mode = NULL;
    int only = -1;
    if (t[tc].type == SL_JSON_STRING) {
        mode = IS(js, &t[tc], "none")       ? "NONE"
               : IS(js, &t[tc], "auto")     ? "AUTO"
               : IS(js, &t[tc], "required") ? "ANY"
                                            : NULL;
    } else if (t[tc].type == SL_JSON_OBJECT) {
        int fn = FIND(js, t, tc, "function");
        only = is_obj(t, fn) ? FIND(js, t, fn, "name") : -1;
        if (is_str(t, only) && TLEN(&t[only]) > 0)
            mode = "ANY";
    }
    if (mode == NULL)
        return bad(b, "tool_choice", "tool_choice must be none, auto, required or a named function");
    dp_jw_lit(w, ",\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"");
    dp_jw_raw(w, mode, strlen(mode));
    dp_jw_lit(w, "\"");
    if (only > 0) {
        dp_jw_lit(w, ",\"allowedFunctionNames\":[");
        dp_jw_str_verbatim(w, js + t[only].start, TLEN(&t[only]));
        dp_jw_lit(w, "]");
    }
    dp_jw_lit(w, "}}");
    return 0;
}

static void gen_key(dp_jw_t *w, size_t *n, const char *name)
{
    if ((*n)++ > 0)
        dp_jw_lit(w, ",");
    dp_jw_lit(w, "\"");
    dp_jw_raw(w, name, strlen(name));
    dp_jw_lit(w, "\":");
}

/* A numeric request field copied into generationConfig under gname. */
static int gen_number(gb_t *b, size_t *n, const char *oname, const char *gname, int integer)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    int v = sl_json_find(js, t, 0, oname, strlen(oname));
    if (dp_json_absent(t, v))
        return 0;
    int64_t iv;
    if (t[v].type != SL_JSON_NUMBER || (integer && sl_json_int64(js, &t[v], &iv) != 0))
        return bad(b, oname, integer ? "must be an integer" : "must be a number");
    gen_key(&b->w, n, gname);
    dp_jw_raw(&b->w, js + t[v].start, TLEN(&t[v]));
    return 0;
}

static int generation_config(gb_t *b, const dp_chat_req_t *in)
{
    const char *js = b->js;
    const sl_json_tok_t *t = b->t;
    dp_jw_t *w = &b->w;
    size_t mark = w->len, n = 0;
    int rc;
    dp_jw_lit(w, ",\"generationConfig\":{");
    if (in->max_tokens >= 0) {
        gen_key(w, &n, "maxOutputTokens");
        dp_jw_int(w, in->max_tokens);
    }
    if ((rc = gen_number(b, &n, "temperature", "temperature", 0)) != 0 ||
        (rc = gen_number(b, &n, "top_p", "topP", 0)) != 0 ||
        (rc = gen_number(b, &n, "presence_penalty", "presencePenalty", 0)) != 0 ||
        (rc = gen_number(b, &n, "frequency_penalty", "frequencyPenalty", 0)) != 0 ||
        (rc = gen_number(b, &n, "seed", "seed", 1)) != 0)
        return rc;
    int nc = FIND(js, t, 0, "n");
    int64_t nv;
    if (!dp_json_absent(t, nc) && (sl_json_int64(js, &t[nc], &nv) != 0 || nv != 1))
        return bad(b, "n", "n other than 1 is not supported for Gemini"); /* one choice is translated */
    int stop = FIND(js, t, 0, "stop");
    if (!dp_json_absent(t, stop)) {
        if (t[stop].type == SL_JSON_STRING) {
            gen_key(w, &n, "stopSequences");
            dp_jw_lit(w, "[");
            dp_jw_str_verbatim(w, js + t[stop].start, TLEN(&t[stop]));
            dp_jw_lit(w, "]");
        } else if (t[stop].type == SL_JSON_ARRAY) {
            gen_key(w, &n, "stopSequences");
            dp_jw_lit(w, "[");
            int s = stop + 1;
            for (uint32_t k = 0; k < t[stop].size; k++, s = (int)t[s].next) {
                if (t[s].type != SL_JSON_STRING)
                    return bad(b, "stop", "stop must be a string or an array of strings");
                if (k > 0)
                    dp_jw_lit(w, ",");
                dp_jw_str_verbatim(w, js + t[s].start, TLEN(&t[s]));
            }
            dp_jw_lit(w, "]");
        } else {
            return bad(b, "stop", "stop must be a string or an array of strings");
        }
    }
    int rf = FIND(js, t, 0, "response_format");
    if (!dp_json_absent(t, rf)) {
        int ty = t[rf].type == SL_JSON_OBJECT ? FIND(js, t, rf, "type") : -1;
        if (!is_str(t, ty))
            return bad(b, "response_format", "response_format needs a type");
        if (IS(js, &t[ty], "json_object")) {
            gen_key(w, &n, "responseMimeType");
            dp_jw_lit(w, "\"application/json\"");
        } else if (IS(js, &t[ty], "json_schema")) {
            int s = FIND(js, t, rf, "json_schema");
            int schema = is_obj(t, s) ? FIND(js, t, s, "schema") : -1;
            gen_key(w, &n, "responseMimeType");
            dp_jw_lit(w, "\"application/json\"");
            if (is_obj(t, schema)) {
                gen_key(w, &n, "responseSchema");
                jw_schema(w, js, t, schema);
            }
        } else if (!IS(js, &t[ty], "text")) {
            return bad(b, "response_format", "unsupported response_format type");
        }
    }
    if (n == 0)
        w->len = mark;
    else
        dp_jw_lit(w, "}");
    return 0;
}

int dp_vertex_gemini_body(h2o_mem_pool_t *pool, const dp_chat_req_t *in, h2o_iovec_t *out, const char **errmsg,
                          const char **errparam)
{
    gb_t b = {.pool = pool, .js = in->body, .t = in->toks};
    const char *js = in->body;
    const sl_json_tok_t *t = in->toks;
    int rc;
    *errmsg = NULL;
    if (errparam != NULL)
        *errparam = NULL;
    b.msgs = FIND(js, t, 0, "messages");
    if (b.msgs < 0 || t[b.msgs].type != SL_JSON_ARRAY) {
        *errmsg = "you must provide a messages array";
        if (errparam != NULL)
            *errparam = "messages";
        return SL_EINVAL;
    }
    dp_jw_init(&b.w, pool, in->len + 256);
    dp_jw_init(&b.sys, pool, 256);
    dp_jw_lit(&b.w, "{\"contents\":[");
    if ((rc = messages(&b)) == 0) {
        dp_jw_lit(&b.w, "]");
        if (b.nsys > 0) {
            dp_jw_lit(&b.w, ",\"systemInstruction\":{\"parts\":[");
            dp_jw_raw(&b.w, b.sys.buf, b.sys.len);
            dp_jw_lit(&b.w, "]}");
        }
        if ((rc = tools(&b)) == 0 && (rc = generation_config(&b, in)) == 0) {
            int cc = FIND(js, t, 0, "cachedContent");
            if (is_str(t, cc)) {
                dp_jw_lit(&b.w, ",\"cachedContent\":");
                dp_jw_str_verbatim(&b.w, js + t[cc].start, TLEN(&t[cc]));
            }
            dp_jw_lit(&b.w, "}");
        }
    }
    if (rc != 0) {
        *errmsg = b.err != NULL ? b.err : "the request cannot be expressed for Gemini";
        if (errparam != NULL)
            *errparam = b.param;
        return rc;
    }
    *out = dp_jw_iov(&b.w);
    return 0;
}

/* ---- the upstream request ------------------------------------------------ */

int dp_vertex_is_claude(const char *model, size_t len)
{
    return len >= 6 && strncasecmp(model, "claude", 6) == 0;
}

/* Whether s may go into a URL path segment as is. */
static int segment_ok(const char *s, size_t n, const char *extra)
{
    if (n == 0 || n > 256)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.' || (c != '\0' && strchr(extra, c) != NULL)))
            return 0;
    }
    return 1;
}

static int config_error(dp_upstream_req_t *out, const char *msg)
{
    out->error = msg;
    out->error_status = 0;
    return SL_EINVAL;
}

static void read_i64(const char *js, const sl_json_tok_t *t, int obj, const char *name, size_t nlen, int64_t *v);

/* Where and as whom a request goes: checked once per request. */
typedef struct target {
    h2o_iovec_t token;
    const char *project, *location;
    size_t project_len;
} target_t;

/* Fills tg for a request to served_model. Returns 0, SL_EUNAVAIL (no
 * access token yet) or SL_EINVAL, with out->error set. */
static int prepare(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                   h2o_iovec_t served_model, target_t *tg, dp_upstream_req_t *out)
{
    out->error = NULL;
    out->error_status = 0;
    if (prov->host == NULL || prov->host[0] == '\0' || prov->port == 0)
        return config_error(out, "the vertex provider needs a base_url such as "
                                 "https://us-central1-aiplatform.googleapis.com");
    h2o_iovec_t sa_project;
    const char *why = NULL;
    if (dp_gauth_token(pool, prov->name, cred->id, &tg->token, &sa_project, &why) != 0) {
        out->error = why;
        return SL_EUNAVAIL;
    }
    tg->project = dp_provider_param(prov, "project");
    tg->project_len = tg->project != NULL ? strlen(tg->project) : 0;
    if (tg->project_len == 0) {
        tg->project = sa_project.base;
        tg->project_len = sa_project.len;
    }
    tg->location = dp_provider_param(prov, "location");
    if (tg->location == NULL || tg->location[0] == '\0')
        tg->location = DEFAULT_LOCATION;
    if (!segment_ok(tg->project, tg->project_len, ":"))
        return config_error(out, "the vertex provider needs a valid project (provider param \"project\")");
    if (!segment_ok(tg->location, strlen(tg->location), ""))
        return config_error(out, "the vertex provider's location is invalid");
    if (!segment_ok(served_model.base, served_model.len, "@")) {
        out->error = "the model name cannot be used in a Vertex AI URL";
        out->error_status = 400;
        return SL_EINVAL;
    }
    return 0;
}

/* The request head for POST .../publishers/{publisher}/models/{model}{method}
 * carrying body. Client headers are not forwarded: they were meant for
 * another API. */
static void finish_request(h2o_mem_pool_t *pool, const dp_provider_t *prov, const target_t *tg, const char *publisher,
                           h2o_iovec_t model, const char *method, int stream, h2o_iovec_t request_id, h2o_iovec_t body,
                           dp_upstream_req_t *out)
{
    dp_jw_t w;
    dp_jw_init(&w, pool, 512 + tg->token.len + tg->project_len + model.len);
    dp_jw_lit(&w, "POST ");
    dp_jw_raw(&w, prov->path_prefix, strlen(prov->path_prefix));
    dp_jw_lit(&w, "/v1/projects/");
    dp_jw_raw(&w, tg->project, tg->project_len);
    dp_jw_lit(&w, "/locations/");
    dp_jw_raw(&w, tg->location, strlen(tg->location));
    dp_jw_lit(&w, "/publishers/");
    dp_jw_raw(&w, publisher, strlen(publisher));
    dp_jw_lit(&w, "/models/");
    dp_jw_raw(&w, model.base, model.len);
    dp_jw_raw(&w, method, strlen(method));
    dp_jw_lit(&w, " HTTP/1.1\r\nhost: ");
    dp_jw_raw(&w, prov->authority, prov->authority_len);
    dp_jw_lit(&w, "\r\nauthorization: Bearer ");
    dp_jw_raw(&w, tg->token.base, tg->token.len);
    dp_jw_lit(&w, "\r\n");
    dp_upstream_json_headers(&w, stream ? "text/event-stream" : "application/json", request_id);
    dp_upstream_finish(&w, body, out);
}

static int build_chat(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                      h2o_iovec_t served_model, const dp_chat_req_t *in, const h2o_headers_t *client_headers,
                      h2o_iovec_t request_id, dp_upstream_req_t *out)
{
    target_t tg;
    int rc = prepare(pool, prov, cred, served_model, &tg, out);
    if (rc != 0)
        return rc;
    int claude = dp_vertex_is_claude(served_model.base, served_model.len);
    h2o_iovec_t body;
    const char *msg = NULL, *eparam = NULL;
    if (claude) {
        int64_t dflt = in->max_tokens >= 0 ? DP_ANTHROPIC_DEFAULT_MAX_TOKENS
                                           : dp_anthropic_default_max_tokens(prov->name, served_model);
        rc = dp_anthropic_chat_body(pool, in, h2o_iovec_init(NULL, 0), DP_VERTEX_ANTHROPIC_VERSION, dflt, &body, &msg,
                                    &eparam);
    } else {
        rc = dp_vertex_gemini_body(pool, in, &body, &msg, &eparam);
    }
    if (rc != 0) {
        out->error = msg;
        out->error_status = 400;
        return SL_EINVAL;
    }
    const char *method = claude       ? (in->stream ? ":streamRawPredict" : ":rawPredict")
                         : in->stream ? ":streamGenerateContent?alt=sse"
                                      : ":generateContent";
    finish_request(pool, prov, &tg, claude ? "anthropic" : "google", served_model, method, in->stream, request_id, body,
                   out);
    return 0;
}

/* ---- embeddings (:predict) ------------------------------------------------ */

int dp_vertex_embeddings_body(h2o_mem_pool_t *pool, const char *js, const sl_json_tok_t *t, h2o_iovec_t *out,
                              const char **errmsg)
{
    int in = FIND(js, t, 0, "input");
    if (in < 0 || (t[in].type != SL_JSON_STRING && t[in].type != SL_JSON_ARRAY) ||
        (t[in].type == SL_JSON_ARRAY && t[in].size == 0)) {
        *errmsg = "input must be a string or a non-empty array of strings";
        return SL_EINVAL;
    }
    int task = FIND(js, t, 0, "input_type"), dims = FIND(js, t, 0, "dimensions");
    int64_t d = 0;
    if (!dp_json_absent(t, dims) && (sl_json_int64(js, &t[dims], &d) != 0 || d < 1)) {
        *errmsg = "dimensions must be a positive integer";
        return SL_EINVAL;
    }
    if (!dp_json_absent(t, task) && t[task].type != SL_JSON_STRING) {
        *errmsg = "input_type must be a string";
        return SL_EINVAL;
    }
    dp_jw_t w;
    dp_jw_init(&w, pool, (size_t)(t[in].end - t[in].start) + 128);
    dp_jw_lit(&w, "{\"instances\":[");
    int e = t[in].type == SL_JSON_STRING ? in : in + 1;
    uint32_t n = t[in].type == SL_JSON_STRING ? 1 : t[in].size;
    for (uint32_t k = 0; k < n; k++, e = (int)t[e].next) {
        if (t[e].type != SL_JSON_STRING) {
            *errmsg = "input must be text (token arrays are not supported by Vertex AI)";
            return SL_EINVAL;
        }
        if (k > 0)
            dp_jw_lit(&w, ",");
        dp_jw_lit(&w, "{\"content\":");
        dp_jw_str_verbatim(&w, js + t[e].start, TLEN(&t[e]));
        if (!dp_json_absent(t, task)) {
            dp_jw_lit(&w, ",\"task_type\":");
            dp_jw_str_verbatim(&w, js + t[task].start, TLEN(&t[task]));
        }
        dp_jw_lit(&w, "}");
    }
    dp_jw_lit(&w, "]");
    if (d > 0) {
        dp_jw_lit(&w, ",\"parameters\":{\"outputDimensionality\":");
        dp_jw_int(&w, d);
        dp_jw_lit(&w, "}");
    }
    dp_jw_lit(&w, "}");
    *out = dp_jw_iov(&w);
    return 0;
}

static int build_embeddings(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                            h2o_iovec_t served_model, const dp_chat_req_t *in, const h2o_headers_t *client_headers,
                            h2o_iovec_t request_id, dp_upstream_req_t *out)
{
    target_t tg;
    int rc = prepare(pool, prov, cred, served_model, &tg, out);
    if (rc != 0)
        return rc;
    if (dp_vertex_is_claude(served_model.base, served_model.len)) {
        out->error = "Claude models have no embeddings";
        out->error_status = 400;
        return SL_EINVAL;
    }
    h2o_iovec_t body;
    const char *msg = NULL;
    if (in->ntoks < 1 || in->toks[0].type != SL_JSON_OBJECT ||
        dp_vertex_embeddings_body(pool, in->body, in->toks, &body, &msg) != 0) {
        out->error = msg != NULL ? msg : "the request body must be a JSON object";
        out->error_status = 400;
        return SL_EINVAL;
    }
    finish_request(pool, prov, &tg, "google", served_model, ":predict", 0, request_id, body, out);
    return 0;
}

/* Appends the vector at t[v] (an array of numbers) as OpenAI writes it:
 * the numbers, or base64 of their float32 little-endian bytes. */
static int jw_vector(dp_jw_t *w, h2o_mem_pool_t *pool, const char *js, const sl_json_tok_t *t, int v, int base64)
{
    if (v < 0 || t[v].type != SL_JSON_ARRAY)
        return SL_EINVAL;
    int e = v + 1;
    for (uint32_t k = 0; k < t[v].size; k++, e = (int)t[e].next)
        if (t[e].type != SL_JSON_NUMBER)
            return SL_EINVAL;
    if (!base64) {
        jw_copy(w, js, t, v);
        return 0;
    }
    size_t n = t[v].size;
    uint8_t *bytes = h2o_mem_alloc_pool(pool, n * 4 + 1);
    e = v + 1;
    for (size_t k = 0; k < n; k++, e = (int)t[e].next) {
        char num[64];
        size_t len = TLEN(&t[e]);
        if (len >= sizeof(num))
            return SL_EINVAL;
        memcpy(num, js + t[e].start, len);
        num[len] = '\0';
        float f = strtof(num, NULL);
        uint32_t u;
        memcpy(&u, &f, 4);
        for (int b = 0; b < 4; b++)
            bytes[k * 4 + (size_t)b] = (uint8_t)(u >> (8 * b));
    }
    char *b64 = h2o_mem_alloc_pool(pool, SL_B64_ENCODED_SIZE(n * 4));
    size_t blen = sl_b64_encode(bytes, n * 4, b64);
    dp_jw_lit(w, "\"");
    dp_jw_raw(w, b64, blen);
    dp_jw_lit(w, "\"");
    return 0;
}

static int translate_embeddings(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const dp_chat_req_t *in,
                                const h2o_headers_t *upstream_headers, const char *body, size_t len, h2o_iovec_t *out,
                                dp_tokens_t *tokens)
{
    int base64 = 0;
    if (in != NULL && in->ntoks > 0) {
        int ef = FIND(in->body, in->toks, 0, "encoding_format");
        base64 = is_str(in->toks, ef) && IS(in->body, &in->toks[ef], "base64");
    }
    sl_json_tok_t *t;
    int n = dp_provider_parse_pool(pool, body, len, NULL, 0, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return SL_EINVAL;
    int preds = FIND(body, t, 0, "predictions");
    if (preds < 0 || t[preds].type != SL_JSON_ARRAY)
        return SL_EINVAL;
    dp_jw_t w;
    dp_jw_init(&w, pool, (base64 ? len / 2 : len) + 256 + ctx->model.len);
    dp_jw_lit(&w, "{\"object\":\"list\",\"data\":[");
    int64_t count = 0;
    int p = preds + 1;
    for (uint32_t k = 0; k < t[preds].size; k++, p = (int)t[p].next) {
        int emb = is_obj(t, p) ? FIND(body, t, p, "embeddings") : -1;
        if (!is_obj(t, emb))
            return SL_EINVAL;
        int stats = FIND(body, t, emb, "statistics");
        int64_t c = 0;
        if (is_obj(t, stats))
            read_i64(body, t, stats, "token_count", 11, &c);
        count += c;
        if (k > 0)
            dp_jw_lit(&w, ",");
        dp_jw_lit(&w, "{\"object\":\"embedding\",\"index\":");
        dp_jw_int(&w, k);
        dp_jw_lit(&w, ",\"embedding\":");
        if (jw_vector(&w, pool, body, t, FIND(body, t, emb, "values"), base64) != 0)
            return SL_EINVAL;
        dp_jw_lit(&w, "}");
    }
    dp_jw_lit(&w, "],\"model\":");
    dp_jw_str(&w, ctx->model.base, ctx->model.len);
    dp_jw_lit(&w, ",\"usage\":{\"prompt_tokens\":");
    dp_jw_int(&w, count);
    dp_jw_lit(&w, ",\"total_tokens\":");
    dp_jw_int(&w, count);
    dp_jw_lit(&w, "}}");
    *tokens = (dp_tokens_t){.input = count, .seen = 1};
    *out = dp_jw_iov(&w);
    return 0;
}

/* ---- responses: shared pieces ------------------------------------------- */

typedef struct gusage {
    int64_t input, cached, output, reasoning;
    int seen;
} gusage_t;

static void read_i64(const char *js, const sl_json_tok_t *t, int obj, const char *name, size_t nlen, int64_t *v)
{
    int i = sl_json_find(js, t, obj, name, nlen);
    int64_t x;
    if (i > 0 && sl_json_int64(js, &t[i], &x) == 0 && x >= 0)
        *v = x;
}

/* usageMetadata at t[u]; seen only when it carries promptTokenCount (the
 * per-chunk metadata of a stream may carry nothing but trafficType). */
static void read_gusage(const char *js, const sl_json_tok_t *t, int u, gusage_t *g)
{
    int64_t prompt = 0, cand = 0, thoughts = 0, tool = 0, cached = 0;
    if (!is_obj(t, u) || FIND(js, t, u, "promptTokenCount") < 0)
        return;
    read_i64(js, t, u, "promptTokenCount", 16, &prompt);
    read_i64(js, t, u, "candidatesTokenCount", 20, &cand);
    read_i64(js, t, u, "thoughtsTokenCount", 18, &thoughts);
    read_i64(js, t, u, "toolUsePromptTokenCount", 23, &tool);
    read_i64(js, t, u, "cachedContentTokenCount", 23, &cached);
    g->input = prompt + tool;
    g->output = cand + thoughts;
    g->reasoning = thoughts;
    g->cached = cached < g->input ? cached : g->input;
    g->seen = 1;
}

static void fill_tokens(const gusage_t *g, dp_tokens_t *tk)
{
    tk->input = g->input;
    tk->cached_input = g->cached;
    tk->output = g->output;
    tk->seen = 1;
}

/* What one GenerateContentResponse holds. */
typedef struct gresp {
    int parts;   /* candidates[0].content.parts, or -1 */
    int finish;  /* candidates[0].finishReason, or -1 */
    int usage;   /* usageMetadata, or -1 */
    int blocked; /* promptFeedback.blockReason present */
    int error;   /* an "error" object */
} gresp_t;

static void read_gresp(const char *js, const sl_json_tok_t *t, gresp_t *g)
{
    *g = (gresp_t){.parts = -1, .finish = -1, .usage = -1};
    int e = FIND(js, t, 0, "error");
    g->error = is_obj(t, e);
    int cands = FIND(js, t, 0, "candidates");
    if (cands > 0 && t[cands].type == SL_JSON_ARRAY && t[cands].size > 0 && t[cands + 1].type == SL_JSON_OBJECT) {
        int c = cands + 1;
        int content = FIND(js, t, c, "content");
        int parts = is_obj(t, content) ? FIND(js, t, content, "parts") : -1;
        if (parts > 0 && t[parts].type == SL_JSON_ARRAY)
            g->parts = parts;
        int fr = FIND(js, t, c, "finishReason");
        if (is_str(t, fr) && !IS(js, &t[fr], "FINISH_REASON_UNSPECIFIED"))
            g->finish = fr;
    }
    int u = FIND(js, t, 0, "usageMetadata");
    if (is_obj(t, u))
        g->usage = u;
    int pf = FIND(js, t, 0, "promptFeedback");
    g->blocked = is_obj(t, pf) && is_str(t, FIND(js, t, pf, "blockReason"));
}

static const char *finish_reason(const char *js, const sl_json_tok_t *t, int fr, int calls, int blocked)
{
    if (fr < 0)
        return blocked ? "content_filter" : calls ? "tool_calls" : "stop";
    const sl_json_tok_t *f = &t[fr];
    if (IS(js, f, "MAX_TOKENS"))
        return "length";
    if (IS(js, f, "SAFETY") || IS(js, f, "RECITATION") || IS(js, f, "BLOCKLIST") || IS(js, f, "PROHIBITED_CONTENT") ||
        IS(js, f, "SPII") || IS(js, f, "IMAGE_SAFETY") || IS(js, f, "IMAGE_PROHIBITED_CONTENT") ||
        IS(js, f, "IMAGE_RECITATION"))
        return "content_filter";
    return calls ? "tool_calls" : "stop"; /* STOP, OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL... */
}

/* Whether a part is model reasoning ("thought": true), left out. */
static int thought(const char *js, const sl_json_tok_t *t, int p)
{
    int th = FIND(js, t, p, "thought");
    return th > 0 && t[th].type == SL_JSON_TRUE;
}

/* Counts text bytes and function calls among parts. */
static void scan_parts(const char *js, const sl_json_tok_t *t, int parts, size_t *ntext, int *ncalls, int *has_text)
{
    *ntext = 0;
    *ncalls = 0;
    *has_text = 0;
    if (parts < 0)
        return;
    int p = parts + 1;
    for (uint32_t k = 0; k < t[parts].size; k++, p = (int)t[p].next) {
        if (t[p].type != SL_JSON_OBJECT || thought(js, t, p))
            continue;
        int x = FIND(js, t, p, "text");
        if (is_str(t, x)) {
            *has_text = 1;
            *ntext += TLEN(&t[x]);
        }
        if (is_obj(t, FIND(js, t, p, "functionCall")))
            (*ncalls)++;
    }
}

/* The text parts joined, as the inside of one JSON string. */
static void jw_text(dp_jw_t *w, const char *js, const sl_json_tok_t *t, int parts)
{
    int p = parts + 1;
    for (uint32_t k = 0; k < t[parts].size; k++, p = (int)t[p].next) {
        if (t[p].type != SL_JSON_OBJECT || thought(js, t, p))
            continue;
        int x = FIND(js, t, p, "text");
        if (is_str(t, x))
            dp_jw_raw(w, js + t[x].start, TLEN(&t[x]));
    }
}

/* The tool_calls array entries for the functionCall parts, numbered from
 * first; with_index adds the streaming "index". */
static void jw_calls(dp_jw_t *w, h2o_mem_pool_t *pool, const char *js, const sl_json_tok_t *t, int parts, int first,
                     int with_index)
{
    int p = parts + 1, n = 0;
    dp_jw_t args;
    dp_jw_init(&args, pool, 128);
    for (uint32_t k = 0; k < t[parts].size; k++, p = (int)t[p].next) {
        int fc = t[p].type == SL_JSON_OBJECT ? FIND(js, t, p, "functionCall") : -1;
        if (!is_obj(t, fc))
            continue;
        int name = FIND(js, t, fc, "name"), a = FIND(js, t, fc, "args");
        if (n > 0)
            dp_jw_lit(w, ",");
        dp_jw_lit(w, "{");
        if (with_index) {
            dp_jw_lit(w, "\"index\":");
            dp_jw_int(w, first + n);
            dp_jw_lit(w, ",");
        }
        dp_jw_lit(w, "\"id\":\"call_");
        dp_jw_int(w, first + n);
        dp_jw_lit(w, "\",\"type\":\"function\",\"function\":{\"name\":");
        if (is_str(t, name))
            dp_jw_str_verbatim(w, js + t[name].start, TLEN(&t[name]));
        else
            dp_jw_lit(w, "\"\"");
        dp_jw_lit(w, ",\"arguments\":");
        args.len = 0;
        if (a > 0 && !dp_json_absent(t, a))
            jw_copy(&args, js, t, a);
        else
            dp_jw_lit(&args, "{}");
        dp_jw_str(w, args.buf, args.len);
        dp_jw_lit(w, "}}");
        n++;
    }
}

/* ---- complete responses --------------------------------------------------- */

static int is_gemini_body(const char *js, const sl_json_tok_t *t)
{
    return FIND(js, t, 0, "candidates") > 0 || FIND(js, t, 0, "usageMetadata") > 0 ||
           FIND(js, t, 0, "promptFeedback") > 0;
}

static int translate_response(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const char *body, size_t len, h2o_iovec_t *out,
                              dp_tokens_t *tokens)
{
    sl_json_tok_t stack[256], *t;
    int n = dp_provider_parse_pool(pool, body, len, stack, 256, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return SL_EINVAL;
    if (!is_gemini_body(body, t))
        return dp_anthropic_translate_response(pool, ctx, body, len, out, tokens);
    gresp_t g;
    read_gresp(body, t, &g);
    if (g.error)
        return SL_EINVAL;
    size_t ntext;
    int ncalls, has_text;
    scan_parts(body, t, g.parts, &ntext, &ncalls, &has_text);
    gusage_t us = {0};
    read_gusage(body, t, g.usage, &us);

    dp_jw_t w;
    dp_jw_init(&w, pool, 384 + ctx->id.len + ctx->model.len + ntext + (size_t)ncalls * 128);
    dp_xlate_open(&w, ctx, 0);
    dp_jw_lit(&w, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    const char *fr = finish_reason(body, t, g.finish, ncalls > 0, g.blocked);
    if (has_text || (ncalls == 0 && strcmp(fr, "content_filter") != 0)) {
        dp_jw_lit(&w, "\"");
        if (g.parts > 0)
            jw_text(&w, body, t, g.parts);
        dp_jw_lit(&w, "\"");
    } else {
        dp_jw_lit(&w, "null"); /* a tool call, or nothing the filters let through */
    }
    if (ncalls > 0) {
        dp_jw_lit(&w, ",\"tool_calls\":[");
        jw_calls(&w, pool, body, t, g.parts, 0, 0);
        dp_jw_lit(&w, "]");
    }
    dp_jw_lit(&w, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"");
    dp_jw_raw(&w, fr, strlen(fr));
    dp_jw_lit(&w, "\"}]");
    if (us.seen) {
        fill_tokens(&us, tokens);
        dp_jw_lit(&w, ",\"usage\":");
        dp_xlate_usage(&w, tokens, us.reasoning);
    }
    dp_jw_lit(&w, "}");
    *out = dp_jw_iov(&w);
    return 0;
}

/* ---- streams --------------------------------------------------------------- */

typedef struct gstate {
    int started;        /* role chunk sent */
    int finished;       /* finish chunk sent */
    int calls;          /* tool calls numbered so far */
    const char *finish; /* the finish reason sent */
    h2o_iovec_t head;   /* "data: {\"id\":...,\"model\":...,\"choices\":[" */
    h2o_iovec_t tail;   /* "]}\n\n" or "],\"usage\":null}\n\n" */
    dp_jw_t w;          /* reused for every event */
    sl_json_tok_t *toks;
    size_t cap;
} gstate_t;

static gstate_t *stream_state(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx)
{
    gstate_t *st = ctx->state;
    if (st != NULL)
        return st;
    st = h2o_mem_alloc_pool(pool, sizeof(*st));
    memset(st, 0, sizeof(*st));
    dp_jw_t h;
    dp_jw_init(&h, pool, 160 + ctx->id.len + ctx->model.len);
    dp_xlate_open(&h, ctx, 1);
    dp_jw_lit(&h, ",\"choices\":[");
    st->head = dp_jw_iov(&h);
    st->tail =
        ctx->include_usage ? h2o_iovec_init(H2O_STRLIT("],\"usage\":null}\n\n")) : h2o_iovec_init(H2O_STRLIT("]}\n\n"));
    dp_jw_init(&st->w, pool, 512);
    ctx->state = st;
    return st;
}

static void chunk(gstate_t *st, const char *choice, size_t n)
{
    dp_jw_raw(&st->w, st->head.base, st->head.len);
    dp_jw_raw(&st->w, choice, n);
}

static void chunk_end(gstate_t *st)
{
    dp_jw_raw(&st->w, st->tail.base, st->tail.len);
}

static void role_chunk(gstate_t *st)
{
    if (st->started)
        return;
    st->started = 1;
    chunk(st, H2O_STRLIT("{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                         "\"finish_reason\":null}"));
    chunk_end(st);
}

static void out_append(h2o_buffer_t **out, const char *s, size_t n)
{
    if (n == 0)
        return;
    h2o_iovec_t dst = h2o_buffer_reserve(out, n);
    if (dst.base == NULL)
        return;
    memcpy(dst.base, s, n);
    (*out)->size += n;
}

static int translate_event(h2o_mem_pool_t *pool, dp_xlate_ctx_t *ctx, const char *event, size_t event_len,
                           const char *data, size_t len, h2o_buffer_t **out, dp_tokens_t *tokens)
{
    if (event_len > 0) /* Claude's events are named; Gemini's never are */
        return dp_anthropic_translate_event(pool, ctx, event, event_len, data, len, out, tokens);
    if (len == 0 || (len == 6 && memcmp(data, "[DONE]", 6) == 0))
        return 0;
    gstate_t *st = stream_state(pool, ctx);
    if (st->cap < len / 2 + 2) {
        st->cap = len / 2 + 2 < 256 ? 256 : len / 2 + 2;
        st->toks = h2o_mem_alloc_pool(pool, st->cap * sizeof(*st->toks));
    }
    sl_json_tok_t *t = st->toks;
    int n = sl_json_parse(data, len, t, st->cap, NULL);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return DP_EV_ERROR; /* not a GenerateContentResponse: the stream cannot be trusted */
    gresp_t g;
    read_gresp(data, t, &g);
    if (g.error)
        return DP_EV_ERROR;

    int flags = 0;
    dp_jw_t *w = &st->w;
    w->len = 0;
    size_t ntext;
    int ncalls, has_text;
    scan_parts(data, t, g.parts, &ntext, &ncalls, &has_text);
    if (!st->finished) {
        role_chunk(st);
        if (ntext > 0) {
            chunk(st, H2O_STRLIT("{\"index\":0,\"delta\":{\"content\":\""));
            jw_text(w, data, t, g.parts);
            dp_jw_lit(w, "\"},\"logprobs\":null,\"finish_reason\":null}");
            chunk_end(st);
            flags |= DP_EV_CONTENT;
        }
        if (ncalls > 0) {
            chunk(st, H2O_STRLIT("{\"index\":0,\"delta\":{\"tool_calls\":["));
            jw_calls(w, pool, data, t, g.parts, st->calls, 1);
            dp_jw_lit(w, "]},\"logprobs\":null,\"finish_reason\":null}");
            chunk_end(st);
            st->calls += ncalls;
            flags |= DP_EV_CONTENT;
        }
        if (g.finish >= 0 || g.blocked) {
            st->finish = finish_reason(data, t, g.finish, st->calls > 0, g.blocked);
            chunk(st, H2O_STRLIT("{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\""));
            dp_jw_raw(w, st->finish, strlen(st->finish));
            dp_jw_lit(w, "\"}");
            chunk_end(st);
            st->finished = 1;
        }
    }
    gusage_t us = {0};
    read_gusage(data, t, g.usage, &us);
    if (us.seen) {
        fill_tokens(&us, tokens);
        flags |= DP_EV_USAGE;
        if (st->finished) {
            if (ctx->include_usage) {
                dp_jw_raw(w, st->head.base, st->head.len);
                dp_jw_lit(w, "],\"usage\":");
                dp_xlate_usage(w, tokens, us.reasoning);
                dp_jw_lit(w, "}\n\n");
            }
            flags |= DP_EV_DONE;
        }
    }
    out_append(out, w->buf, w->len);
    return flags;
}

/* ---- usage only (for callers that relay bodies themselves) ----------------- */

static int parse_usage(h2o_mem_pool_t *pool, const char *body, size_t len, dp_tokens_t *out)
{
    sl_json_tok_t stack[256], *t;
    int n = dp_provider_parse_pool(pool, body, len, stack, 256, &t);
    if (n < 1 || t[0].type != SL_JSON_OBJECT)
        return SL_EINVAL;
    if (!is_gemini_body(body, t))
        return dp_anthropic_parse_usage(pool, body, len, out);
    gusage_t us = {0};
    read_gusage(body, t, FIND(body, t, 0, "usageMetadata"), &us);
    if (us.seen)
        fill_tokens(&us, out);
    return 0;
}

/* ---- errors ---------------------------------------------------------------- */

static void copy_message(char *dst, size_t cap, const char *js, const sl_json_tok_t *t)
{
    size_t n = sl_json_str_len(js, t);
    char tmp[1024];
    if (n >= sizeof(tmp) || sl_json_str_copy(js, t, tmp, sizeof(tmp)) == SIZE_MAX) {
        /* too long to unescape here: keep the raw prefix */
        n = TLEN(t) < sizeof(tmp) - 1 ? TLEN(t) : sizeof(tmp) - 1;
        memcpy(tmp, js + t->start, n);
        tmp[n] = '\0';
    }
    size_t j = 0;
    for (size_t i = 0; tmp[i] != '\0' && j + 1 < cap; i++)
        dst[j++] = (unsigned char)tmp[i] < 0x20 ? ' ' : tmp[i];
    dst[j] = '\0';
}

static void map_error(int status, const char *body, size_t len, dp_upstream_error_t *out)
{
    sl_json_tok_t t[128];
    int n = body != NULL && len > 0 ? sl_json_parse(body, len, t, 128, NULL) : -1;
    if (n > 0 && t[0].type == SL_JSON_OBJECT) {
        int ty = FIND(body, t, 0, "type");
        if (ty > 0 && IS(body, &t[ty], "error")) {
            dp_anthropic_map_error(status, body, len, out); /* Claude's own error body */
            return;
        }
    }
    if (dp_upstream_error_begin(status, out))
        return; /* Google refused our access token */
    out->status = status >= 400 && status <= 599 ? status : 502;
    int e = n > 0 && t[0].type == SL_JSON_OBJECT ? FIND(body, t, 0, "error") : -1;
    int msg = is_obj(t, e) ? FIND(body, t, e, "message") : -1;
    int st = is_obj(t, e) ? FIND(body, t, e, "status") : -1;
    if (is_str(t, msg))
        copy_message(out->message, sizeof(out->message), body, &t[msg]);
    if (status == 429) {
        out->type = "rate_limit_error";
        out->code = "rate_limit_exceeded";
    } else if (status == 404) {
        out->type = "invalid_request_error";
        out->code = "model_not_found";
    } else if (status < 500) {
        out->type = "invalid_request_error";
        out->code = is_str(t, st) && IS(body, &t[st], "INVALID_ARGUMENT")      ? "invalid_argument"
                    : is_str(t, st) && IS(body, &t[st], "FAILED_PRECONDITION") ? "failed_precondition"
                    : is_str(t, st) && IS(body, &t[st], "OUT_OF_RANGE")        ? "out_of_range"
                                                                               : "invalid_request";
    } else if (status == 503) {
        out->code = "service_unavailable";
    }
}

/* A 401 from Vertex refuses the access token (expired early, revoked):
 * renew it rather than condemn the service account. */
static int auth_refused(const dp_provider_t *prov, const dp_credential_t *cred)
{
    return dp_gauth_refused(prov->name, cred->id);
}

const dp_provider_ops_t dp_provider_vertex = {
    .name = "vertex",
    .openai_format = 0,
    .build_chat = build_chat,
    .parse_usage = parse_usage,
    .parse_event = NULL,
    .map_error = map_error,
    .framing = DP_FRAMING_SSE,
    .translate_response = translate_response,
    .translate_event = translate_event,
    .build_embeddings = build_embeddings,
    .translate_embeddings = translate_embeddings,
    .auth_refused = auth_refused,
};
