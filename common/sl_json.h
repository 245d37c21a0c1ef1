/*
 * sl_json.h - a small, allocation-free, validating JSON tokenizer.
 *
 * sl_json_parse() checks a whole document against RFC 8259 in one pass
 * (no trailing commas, no leading zeros, only the six escape forms plus
 * \uXXXX, no raw control characters in strings, valid UTF-8, balanced
 * brackets, nothing but whitespace after the value) and describes it as a
 * flat array of tokens in document order that the caller provides (on the
 * data plane, from the request's memory pool). Nothing is copied: tokens
 * are offsets into the input, which must outlive them.
 *
 * Tree shape: an object token is followed by its members, each a string
 * token (the name) followed by the value's tokens; an array token by its
 * elements. Every token knows the index just past its subtree (`next`), so
 * skipping a value is O(1) and looking up a member walks only the object's
 * direct members.
 *
 * sl_json_escape() writes the other way: raw bytes as a JSON string body.
 *
 * Everything here is thread-safe (no state outside the arguments).
 */
#ifndef SL_JSON_H
#define SL_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    SL_JSON_OBJECT = 1,
    SL_JSON_ARRAY,
    SL_JSON_STRING,
    SL_JSON_NUMBER,
    SL_JSON_TRUE,
    SL_JSON_FALSE,
    SL_JSON_NULL,
} sl_json_type_t;

typedef struct sl_json_tok {
    uint32_t start;   /* offset of the first byte; strings: after the opening quote */
    uint32_t end;     /* offset past the last byte; strings: at the closing quote */
    uint32_t size;    /* objects: number of members; arrays: number of elements */
    uint32_t next;    /* index of the first token after this token's subtree */
    uint8_t type;     /* sl_json_type_t */
    uint8_t escaped;  /* strings: contains at least one backslash escape */
} sl_json_tok_t;

/* Deepest nesting accepted; deeper documents are rejected as invalid. */
#define SL_JSON_MAX_DEPTH 128

/* Documents longer than this are rejected (offsets are 32-bit). */
#define SL_JSON_MAX_LEN (UINT32_MAX - 1)

/* Parses js[0..len) into toks (cap entries). Returns the number of tokens
 * (>= 1; toks[0] is the root), SL_EINVAL when the text is not one valid JSON
 * value, or SL_ETOOBIG when it needs more than cap tokens (call again with a
 * bigger array; len / 2 + 2 always suffices). When *errpos is not NULL it
 * receives the offset where parsing stopped on error. */
int sl_json_parse(const char *js, size_t len, sl_json_tok_t *toks, size_t cap, size_t *errpos);

/* Index of the value of the member named name (len bytes, compared after
 * unescaping the member's name) of the object at toks[obj], or -1 when it is
 * absent or toks[obj] is not an object. With duplicate names the last one
 * wins, as most parsers do. */
int sl_json_find(const char *js, const sl_json_tok_t *toks, int obj, const char *name, size_t len);

/* Whether the string token t, unescaped, equals s[0..len). */
int sl_json_str_eq(const char *js, const sl_json_tok_t *t, const char *s, size_t len);

/* Unescaped length of a string token (UTF-8 bytes). */
size_t sl_json_str_len(const char *js, const sl_json_tok_t *t);

/* Writes the unescaped string into out (cap bytes, NUL-terminated when cap >
 * length). Returns the unescaped length, or SIZE_MAX when t is not a string
 * or out is too small. */
size_t sl_json_str_copy(const char *js, const sl_json_tok_t *t, char *out, size_t cap);

/* Reads an integer number token (no fraction or exponent) into *out.
 * Returns 0, or SL_EINVAL when t is not an integer or overflows int64. */
int sl_json_int64(const char *js, const sl_json_tok_t *t, int64_t *out);

/* Reads a boolean token. Returns 0 or SL_EINVAL. */
int sl_json_bool(const sl_json_tok_t *t, int *out);

/* Index of the i-th element of the array at toks[arr], or -1. */
int sl_json_array_at(const sl_json_tok_t *toks, int arr, uint32_t i);

/* Writing JSON strings. sl_json_escape() writes s[0..len) as the inside of
 * a JSON string (no quotes): '"', '\\', newline, carriage return and tab as
 * two-character escapes, the other bytes below 0x20 as \u00XX, every other
 * byte as it is (the caller vouches for UTF-8). out must hold
 * sl_json_escaped_len(s, len) bytes, at most 6 * len. Returns the end of
 * what was written. */
char *sl_json_escape(char *out, const char *s, size_t len);
size_t sl_json_escaped_len(const char *s, size_t len);

#endif
