/*
 * bedrock.h - the Amazon Bedrock Runtime translator (kind "bedrock").
 *
 * Chat requests in OpenAI's format become Converse / ConverseStream calls
 * (POST {base_url}/model/{model id, percent-encoded}/converse[-stream]),
 * signed with AWS Signature Version 4 (service "bedrock", the region from
 * the provider's `region` parameter). The credential's secret is the JSON
 * object {"access_key_id","secret_access_key","session_token"?}, parsed per
 * request (it is small).
 *
 * Responses come back as OpenAI chat.completion bodies and, for streams,
 * chat.completion.chunk events translated one event-stream message at a
 * time (messageStart, contentBlockStart/Delta/Stop, messageStop, metadata).
 * In-stream exceptions (an event name ending in "Exception") are reported
 * as DP_EV_ERROR with nothing appended: the request path words the error
 * event itself.
 *
 * Embeddings go through InvokeModel (POST .../model/{id}/invoke) with the
 * body of the model family: Amazon Titan text embeddings ({"inputText"}, one
 * input per call) and Cohere Embed ({"texts":[...],"input_type"}), served
 * through the table's build_embeddings / translate_embeddings hooks, which
 * wrap the functions below. They are pure and allocate from the request
 * pool only, like the chat ones.
 */
#ifndef DP_BEDROCK_H
#define DP_BEDROCK_H

#include "dp_provider.h"

extern const dp_provider_ops_t dp_provider_bedrock;

/* Embedding model families reachable through InvokeModel. */
enum {
    DP_BEDROCK_EMBED_NONE = 0,
    DP_BEDROCK_EMBED_TITAN,  /* amazon.titan-embed-text-v1/v2, amazon.titan-embed-g1-text */
    DP_BEDROCK_EMBED_COHERE, /* cohere.embed-* */
};

/* The family of a model id (a cross-region prefix such as "us." is
 * ignored), or DP_BEDROCK_EMBED_NONE. */
int dp_bedrock_embed_family(const char *model, size_t len);

/* Builds the signed InvokeModel request for an OpenAI embeddings body
 * (body[0..len) tokenized in toks, toks[0] the root object): `input` is a
 * string or an array of strings (Titan takes exactly one), `dimensions`
 * maps to Titan v2's `dimensions`, `input_type` (an extension; Cohere's
 * search_document, search_query, classification, clustering) defaults to
 * search_document. Returns 0, or SL_EINVAL with out->error set. */
int dp_bedrock_build_embeddings(h2o_mem_pool_t *pool, const dp_provider_t *prov, const dp_credential_t *cred,
                                h2o_iovec_t served_model, const char *body, size_t len, const sl_json_tok_t *toks,
                                h2o_iovec_t request_id, dp_upstream_req_t *out);

/* Whether an OpenAI embeddings body asks for "encoding_format": "base64". */
int dp_bedrock_embeddings_base64(const char *body, const sl_json_tok_t *toks);

/* Translates an InvokeModel embeddings answer into OpenAI's
 * {"object":"list","data":[{"object":"embedding","index":i,"embedding":...}],
 * "model","usage"} (vectors as float arrays, or base64 of little-endian
 * float32 when base64). Token counts come from Titan's inputTextTokenCount,
 * else header_tokens (the X-Amzn-Bedrock-Input-Token-Count header, -1 when
 * absent). Returns 0 or SL_EINVAL. */
int dp_bedrock_translate_embeddings(h2o_mem_pool_t *pool, h2o_iovec_t model, int base64, const char *body, size_t len,
                                    int64_t header_tokens, h2o_iovec_t *out, dp_tokens_t *tokens);

#endif
