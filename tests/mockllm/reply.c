/*
 * reply.c - the deterministic reply text, word counting, the reply-length
 * rule and the tool-call trigger shared by every fake provider.
 *
 * words_text holds the reply for the largest completion: "mock word1 ...
 * word4095". word_start[i] is the offset of word i; word_start[MAX] is one
 * past the end plus one, as if a space followed, so that the first n words
 * are always words_text[0, word_start[n] - 1). Immutable after init.
 */
#include "reply.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const mock_tool_args_pieces[MOCK_TOOL_ARGS_PIECES] = {"{\"location\": ", "\"Par", "is\"}"};

static char words_text[40000];
static uint32_t word_start[MOCK_MAX_COMPLETION + 1];

int mock_reply_init(void)
{
    size_t len = 0;

    for (uint32_t i = 0; i != MOCK_MAX_COMPLETION; ++i) {
        int n = i == 0 ? snprintf(words_text, sizeof(words_text), "mock")
                       : snprintf(words_text + len, sizeof(words_text) - len, " word%u", (unsigned)i);
        if (n < 0 || (size_t)n >= sizeof(words_text) - len)
            return -1;
        word_start[i] = (uint32_t)(i == 0 ? 0 : len + 1);
        len += (size_t)n;
    }
    word_start[MOCK_MAX_COMPLETION] = (uint32_t)len + 1;
    return 0;
}

h2o_iovec_t mock_reply_text(uint32_t n)
{
    /* no words (a stop sequence cut the reply before "mock"): empty */
    return h2o_iovec_init(words_text, n == 0 ? 0 : word_start[n] - 1);
}

h2o_iovec_t mock_reply_token(uint32_t i)
{
    size_t from = i == 0 ? 0 : word_start[i] - 1;
    return h2o_iovec_init(words_text + from, word_start[i + 1] - 1 - from);
}

uint64_t mock_count_words(const char *s, size_t n)
{
    uint64_t words = 0;
    int in_word = 0;

    for (size_t i = 0; i != n; ++i) {
        char c = s[i];
        int space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
        if (!space && !in_word)
            ++words;
        in_word = !space;
    }
    return words;
}

int mock_mentions_weather(const char *s, size_t n)
{
    static const char word[] = "weather";
    size_t wl = sizeof(word) - 1;

    for (size_t i = 0; i + wl <= n; ++i) {
        size_t j = 0;
        while (j != wl && (s[i + j] | 0x20) == word[j])
            ++j;
        if (j == wl)
            return 1;
    }
    return 0;
}

int mock_content_mentions_weather(json_t *content, const char *block_type)
{
    size_t i;
    json_t *block;

    if (json_is_string(content))
        return mock_mentions_weather(json_string_value(content), json_string_length(content));
    json_array_foreach(content, i, block)
    {
        json_t *type = json_object_get(block, "type"), *text = json_object_get(block, "text");
        if (block_type != NULL && (!json_is_string(type) || strcmp(json_string_value(type), block_type) != 0))
            continue;
        if (json_is_string(text) && mock_mentions_weather(json_string_value(text), json_string_length(text)))
            return 1;
    }
    return 0;
}

/* Index of the reply word s names ("mock" 0, "wordN" N), or -1. */
static long stop_word_index(const char *s)
{
    if (strcmp(s, "mock") == 0)
        return 0;
    if (strncmp(s, "word", 4) != 0 || s[4] < '1' || s[4] > '9')
        return -1;
    char *end;
    long n = strtol(s + 4, &end, 10);
    return *end == '\0' && n < MOCK_MAX_COMPLETION ? n : -1;
}

json_t *mock_reply_stop(json_t *stop_sequences, uint32_t *n)
{
    json_t *stop = NULL, *seq;
    size_t i;

    json_array_foreach(stop_sequences, i, seq)
    {
        long k = json_is_string(seq) ? stop_word_index(json_string_value(seq)) : -1;
        if (k >= 0 && (uint32_t)k < *n) {
            *n = (uint32_t)k;
            stop = seq;
        }
    }
    return stop;
}

void mock_reply_length(int has_limit, int64_t limit, uint32_t *n, int *limited)
{
    if (has_limit && limit >= 1 && limit < MOCK_GENEROUS_LIMIT) {
        *n = (uint32_t)limit;
        *limited = 1;
    } else {
        *n = MOCK_DEFAULT_COMPLETION;
        *limited = 0;
    }
}

uint64_t mock_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i != n; ++i) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void mock_unit_vector(uint64_t seed, float *out, size_t dims)
{
    double norm = 0;

    for (size_t d = 0; d != dims; ++d) {
        /* uniform in [-1, 1) from the top 24 bits */
        float x = (float)((double)(splitmix64(&seed) >> 40) / (double)(1u << 23) - 1.0);
        out[d] = x;
        norm += (double)x * x;
    }
    norm = norm > 0 ? sqrt(norm) : 1;
    for (size_t d = 0; d != dims; ++d)
        out[d] = (float)(out[d] / norm);
}

void mock_append_floats(mock_buf_t *buf, const float *v, size_t dims)
{
    mock_buf_append_lit(buf, "[");
    for (size_t d = 0; d != dims; ++d)
        mock_buf_appendf(buf, d == 0 ? "%.9g" : ",%.9g", (double)v[d]);
    mock_buf_append_lit(buf, "]");
}
