/* anthropic_test.c - the Anthropic translator (dataplane/providers/
 * anthropic.c): OpenAI chat requests rewritten as Messages requests,
 * Messages answers and named SSE events rewritten as chat completions and
 * chunks, error bodies, and the Anthropic-format ingress translations both
 * ways. Fixtures are written in each API's real wire format; the last test
 * feeds bounded random mutations of them to every entry point. */
#include "provider_fixture.h"

#include "anthropic.h"
#include "sl_sse.h"

#define STR_EQ(got, want)                                                                                              \
    do {                                                                                                               \
        const char *g_ = (got), *w_ = (want);                                                                          \
        if (strcmp(g_, w_) != 0)                                                                                       \
            fail_msg("\n got  %s\n want %s", g_, w_);                                                                  \
    } while (0)

/* ---- fixtures (recorded wire formats) ------------------------------------ */

static const char REQ_FULL[] =
    "{\"model\":\"anthropic/claude-sonnet-4-5\",\"messages\":[\n"
    " {\"role\":\"system\",\"content\":\"You are terse.\"},\n"
    " {\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"Use metric units.\","
    "\"cache_control\":{\"type\":\"ephemeral\"}}]},\n"
    " {\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is in these?\"},\n"
    "   {\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0KGgo\\/AAA=\","
    "\"detail\":\"high\"}},\n"
    "   {\"type\":\"image_url\",\"image_url\":{\"url\":\"https://example.com/cat.jpg\"}}]},\n"
    " {\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[\n"
    "   {\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"arguments\":\"{\\\"location\\\": \\\"Paris\\\"}\"}},\n"
    "   {\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}]},\n"
    " {\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"18C\"},\n"
    " {\"role\":\"tool\",\"tool_call_id\":\"call_2\",\"content\":[{\"type\":\"text\",\"text\":\"09:00\"}]},\n"
    " {\"role\":\"user\",\"content\":\"Thanks\"},\n"
    " {\"role\":\"user\",\"content\":\"and?\"}],\n"
    " \"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather\","
    "\"parameters\":{\"type\": \"object\", \"properties\": {\"location\": {\"type\":\"string\"}}}}},\n"
    "          {\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}],\n"
    " \"tool_choice\":\"required\",\"parallel_tool_calls\":false,\n"
    " \"max_completion_tokens\":300,\"max_tokens\":5,\"stop\":[\"END\",\"STOP\"],\"temperature\":0.2,\"top_p\":1,"
    "\"user\":\"u-42\",\"n\":1,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"seed\":7}";

static const char WANT_REQ_FULL[] =
    "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":300,\"system\":[{\"type\":\"text\","
    "\"text\":\"You are terse.\"},{\"type\":\"text\",\"text\":\"Use metric units.\","
    "\"cache_control\":{\"type\":\"ephemeral\"}}],\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
    "\"text\":\"What is in these?\"},{\"type\":\"image\",\"source\":{\"type\":\"base64\","
    "\"media_type\":\"image/png\",\"data\":\"iVBORw0KGgo/AAA=\"}},{\"type\":\"image\",\"source\":{\"type\":\"url\","
    "\"url\":\"https://example.com/cat.jpg\"}}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\","
    "\"id\":\"call_1\",\"name\":\"get_weather\",\"input\":{\"location\":\"Paris\"}},{\"type\":\"tool_use\","
    "\"id\":\"call_2\",\"name\":\"get_time\",\"input\":{}}]},{\"role\":\"user\","
    "\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"call_1\",\"content\":\"18C\"},"
    "{\"type\":\"tool_result\",\"tool_use_id\":\"call_2\",\"content\":[{\"type\":\"text\",\"text\":\"09:00\"}]},"
    "{\"type\":\"text\",\"text\":\"Thanks\"},{\"type\":\"text\",\"text\":\"and?\"}]}],"
    "\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather\",\"input_schema\":{\"type\":\"object\","
    "\"properties\":{\"location\":{\"type\":\"string\"}}}},{\"name\":\"get_time\","
    "\"input_schema\":{\"type\":\"object\",\"properties\":{}}}],\"tool_choice\":{\"type\":\"any\","
    "\"disable_parallel_tool_use\":true},\"stop_sequences\":[\"END\",\"STOP\"],\"temperature\":0.2,\"top_p\":1,"
    "\"metadata\":{\"user_id\":\"u-42\"},\"stream\":true}";

static const char RESP_TOOLS[] =
    "{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\","
    "\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[{\"type\":\"text\","
    "\"text\":\"Let me check \\\"both\\\".\\n\"},{\"type\":\"tool_use\",\"id\":\"toolu_01A09q90qw90lq917835lq9\","
    "\"name\":\"get_weather\",\"input\":{\"location\": \"San Francisco, CA\", \"unit\": \"celsius\"}},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_02\",\"name\":\"get_time\",\"input\":{}}],\"stop_reason\":\"tool_use\","
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":100,"
    "\"cache_read_input_tokens\":2048,\"output_tokens\":89,\"service_tier\":\"standard\"}}";

static const char WANT_RESP_TOOLS[] =
    "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion\",\"created\":1700000000,"
    "\"model\":\"claude-sonnet-4-5\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":\"Let me check \\\"both\\\".\\n\",\"tool_calls\":[{\"id\":\"toolu_01A09q90qw90lq917835lq9\","
    "\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"arguments\":\"{\\\"location\\\":\\\"San Francisco, CA\\\",\\\"unit\\\":\\\"celsius\\\"}\"}},"
    "{\"id\":\"toolu_02\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}],"
    "\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":2620,"
    "\"completion_tokens\":89,\"total_tokens\":2709,\"prompt_tokens_details\":{\"cached_tokens\":2048}}}";

static const char SSE_TEXT[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\","
    "\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,"
    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,"
    "\"cache_read_input_tokens\":1024,\"output_tokens\":1}}}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n"
    "\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\" \\\"world\\\"\\n\"}}\n"
    "\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n"
    "\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},"
    "\"usage\":{\"output_tokens\":15}}\n"
    "\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n"
    "\n";

static const char WANT_SSE_TEXT[] =
    "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"claude-sonnet-4-5\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"claude-sonnet-4-5\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,"
    "\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"claude-sonnet-4-5\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" \\\"world\\\"\\n\"},"
    "\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"claude-sonnet-4-5\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
    "\"finish_reason\":\"stop\"}]}\n"
    "\n";

static const char SSE_TOOL[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\","
    "\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":472,\"output_tokens\":2},\"content\":[],\"stop_reason\":null}}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n"
    "\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"Checking.\"}}\n"
    "\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\","
    "\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"{\\\"location\\\":\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\" \\\"San Francisco, CA\\\"}\"}}\n"
    "\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n"
    "\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},"
    "\"usage\":{\"output_tokens\":89}}\n"
    "\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n"
    "\n";

static const char WANT_SSE_TOOL[] =
    "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"claude-sonnet-4-5\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"claude-sonnet-4-5\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Checking.\"},"
    "\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"claude-sonnet-4-5\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
    "\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"claude-sonnet-4-5\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
    "\"function\":{\"arguments\":\"{\\\"location\\\":\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"claude-sonnet-4-5\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
    "\"function\":{\"arguments\":\" \\\"San Francisco, CA\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"claude-sonnet-4-5\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
    "\"finish_reason\":\"tool_calls\"}]}\n"
    "\n";

static const char ING_FULL[] =
    "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"system\":[{\"type\":\"text\","
    "\"text\":\"You are a coding agent.\",\"cache_control\":{\"type\":\"ephemeral\"}}],\n"
    " \"messages\":[\n"
    "  {\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Look at this\"},{\"type\":\"image\","
    "\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}},{\"type\":\"image\","
    "\"source\":{\"type\":\"url\",\"url\":\"https://example.com/a.png\"}}]},\n"
    "  {\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"...\",\"signature\":\"sig\"},"
    "{\"type\":\"text\",\"text\":\"I'll read it.\"},{\"type\":\"tool_use\",\"id\":\"toolu_01\","
    "\"name\":\"read_file\",\"input\":{\"path\": \"/tmp/a\"}}]},\n"
    "  {\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_01\","
    "\"content\":[{\"type\":\"text\",\"text\":\"contents\"},{\"type\":\"image\",\"source\":{\"type\":\"base64\","
    "\"media_type\":\"image/jpeg\",\"data\":\"/9j/\"}}]},{\"type\":\"text\",\"text\":\"Go on\"}]},\n"
    "  {\"role\":\"assistant\",\"content\":\"Done.\"},\n"
    "  {\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_02\",\"content\":\"ok\","
    "\"is_error\":true}]}],\n"
    " \"tools\":[{\"name\":\"read_file\",\"description\":\"Read a file\",\"input_schema\":{\"type\":\"object\","
    "\"properties\":{\"path\":{\"type\":\"string\"}},\"required\":[\"path\"]}}],\n"
    " \"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true},\n"
    " \"stop_sequences\":[\"\\n\\nHuman:\"],\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,"
    "\"metadata\":{\"user_id\":\"user-7\"},\"stream\":true}";

static const char WANT_ING_FULL[] =
    "{\"model\":\"claude-sonnet-4-5\",\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"text\","
    "\"text\":\"You are a coding agent.\",\"cache_control\":{\"type\":\"ephemeral\"}}]},{\"role\":\"user\","
    "\"content\":[{\"type\":\"text\",\"text\":\"Look at this\"},{\"type\":\"image_url\","
    "\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0KGgo=\"}},{\"type\":\"image_url\","
    "\"image_url\":{\"url\":\"https://example.com/a.png\"}}]},{\"role\":\"assistant\","
    "\"content\":\"I'll read it.\",\"tool_calls\":[{\"id\":\"toolu_01\",\"type\":\"function\","
    "\"function\":{\"name\":\"read_file\",\"arguments\":\"{\\\"path\\\":\\\"/tmp/a\\\"}\"}}]},{\"role\":\"tool\","
    "\"tool_call_id\":\"toolu_01\",\"content\":[{\"type\":\"text\",\"text\":\"contents\"}]},{\"role\":\"user\","
    "\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/jpeg;base64,/9j/\"}},"
    "{\"type\":\"text\",\"text\":\"Go on\"}]},{\"role\":\"assistant\",\"content\":\"Done.\"},{\"role\":\"tool\","
    "\"tool_call_id\":\"toolu_02\",\"content\":\"ok\"}],\"max_tokens\":1024,\"stop\":[\"\\n\\nHuman:\"],"
    "\"temperature\":0.5,\"top_p\":0.9,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"read_file\","
    "\"description\":\"Read a file\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"path\":{\"type\":\"string\"}},\"required\":[\"path\"]}}}],\"tool_choice\":\"required\","
    "\"parallel_tool_calls\":false,\"user\":\"user-7\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}";

static const char EGR_TOOLS[] =
    "{\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"object\":\"chat.completion\",\"created\":1741569952,"
    "\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":\"Let me look.\",\"tool_calls\":[{\"id\":\"call_abc\",\"type\":\"function\","
    "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\n  \\\"location\\\": \\\"Paris\\\"\\n}\"}}],"
    "\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":82,"
    "\"completion_tokens\":17,\"total_tokens\":99,\"prompt_tokens_details\":{\"cached_tokens\":64,"
    "\"audio_tokens\":0}}}";

static const char WANT_EGR_TOOLS[] =
    "{\"id\":\"msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\"type\":\"message\",\"role\":\"assistant\","
    "\"model\":\"gpt-4o\",\"content\":[{\"type\":\"text\",\"text\":\"Let me look.\"},{\"type\":\"tool_use\","
    "\"id\":\"call_abc\",\"name\":\"get_weather\",\"input\":{\"location\":\"Paris\"}}],"
    "\"stop_reason\":\"tool_use\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":18,"
    "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":64,\"output_tokens\":17}}";

static const char EG_CHUNKS[] =
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\","
    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
    "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n"
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\","
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"logprobs\":null,\"finish_reason\":null}],"
    "\"usage\":null}\n"
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\","
    "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\","
    "\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],"
    "\"usage\":null}\n"
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\","
    "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
    "\"function\":{\"arguments\":\"{\\\"location\\\":\"}}]},\"logprobs\":null,\"finish_reason\":null}],"
    "\"usage\":null}\n"
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\","
    "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
    "\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],"
    "\"usage\":null}\n"
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\","
    "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n"
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],"
    "\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":9,\"total_tokens\":29,"
    "\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n"
    "[DONE]\n";

static const char WANT_EG_STREAM[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_x\",\"type\":\"message\",\"role\":\"assistant\","
    "\"model\":\"gpt-4o\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,"
    "\"output_tokens\":0}}}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n"
    "\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\","
    "\"id\":\"call_1\",\"name\":\"get_weather\",\"input\":{}}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"{\\\"location\\\":\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"\\\"Paris\\\"}\"}}\n"
    "\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n"
    "\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},"
    "\"usage\":{\"input_tokens\":16,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":4,"
    "\"output_tokens\":9}}\n"
    "\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n"
    "\n";

/* ---- OpenAI request -> Messages request ---------------------------------- */

static const dp_credential_t cred = {.id = "primary", .secret = "sk-ant-api03-test", .secret_len = 17, .weight = 1};

/* The provider as the snapshot makes it from base_url https://api.anthropic.com. */
static const dp_provider_t api_anthropic = {.name = "anthropic",
                                            .kind = "anthropic",
                                            .host = "api.anthropic.com",
                                            .port = 443,
                                            .is_ssl = 1,
                                            .path_prefix = "",
                                            .authority = "api.anthropic.com",
                                            .authority_len = 17};

/* chat_req_parse() of body, streamed or not as stream says, whatever body says. */
static int tokens_for(const char *body, dp_chat_req_t *in, int stream)
{
    if (chat_req_parse(body, in) != 0)
        return -1;
    in->stream = stream;
    return 0;
}

/* The Messages body for an OpenAI body, or NULL with *err set. */
static char *body_for(const char *openai, int stream, const char **err)
{
    dp_chat_req_t in;
    assert_int_equal(tokens_for(openai, &in, stream), 0);
    h2o_iovec_t out;
    const char *param;
    *err = NULL;
    if (dp_anthropic_chat_body(&pool, &in, h2o_iovec_init(H2O_STRLIT("claude-sonnet-4-5")), NULL, 0, &out, err,
                               &param) != 0) {
        assert_non_null(*err);
        return NULL;
    }
    assert_true(valid_json(out.base, out.len));
    return iovdup(out);
}

static void check_body(const char *openai, const char *want)
{
    const char *err;
    char *got = body_for(openai, 0, &err);
    if (got == NULL)
        fail_msg("rejected: %s", err);
    STR_EQ(got, want);
}

static void check_rejected(const char *openai, const char *want_in_message)
{
    const char *err;
    char *got = body_for(openai, 0, &err);
    if (got != NULL)
        fail_msg("accepted %s\n as %s", openai, got);
    if (strstr(err, want_in_message) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err, want_in_message);
}

/* Runs build_chat; returns the head and body as strings. */
static int build(const dp_provider_t *p, const char *openai, int stream, const h2o_headers_t *hdrs, char **head,
                 char **body, dp_upstream_req_t *out)
{
    dp_chat_req_t in;
    h2o_headers_t none = {NULL};
    assert_int_equal(tokens_for(openai, &in, stream), 0);
    memset(out, 0, sizeof(*out));
    int rc = dp_provider_anthropic.build_chat(&pool, p, &cred, h2o_iovec_init(H2O_STRLIT("claude-sonnet-4-5")), &in,
                                              hdrs != NULL ? hdrs : &none, h2o_iovec_init(H2O_STRLIT("rid42")), out);
    if (rc != 0)
        return rc;
    assert_int_equal(out->nbufs, 2);
    assert_int_equal(out->body_len, out->bufs[1].len);
    *head = iovdup(out->bufs[0]);
    *body = iovdup(out->bufs[1]);
    char cl[64];
    snprintf(cl, sizeof(cl), "\r\ncontent-length: %zu\r\n\r\n", out->body_len);
    assert_non_null(strstr(*head, cl));
    return 0;
}

static void test_build_text_request(void **state)
{
    dp_upstream_req_t out;
    char *head, *body;
    assert_int_equal(build(&api_anthropic,
                           "{\"model\":\"claude-sonnet-4-5\",\"messages\":[{\"role\":\"system\",\"content\":\"Be "
                           "brief.\"},{\"role\":\"user\",\"content\":\"Hello, Claude\"}]}",
                           0, NULL, &head, &body, &out),
                     0);
    STR_EQ(body,
           "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":4096,\"system\":\"Be brief.\",\"messages\":[{\"role\":"
           "\"user\",\"content\":\"Hello, Claude\"}]}");
    assert_non_null(strstr(head, "POST /v1/messages HTTP/1.1\r\nhost: api.anthropic.com\r\n"));
    assert_non_null(strstr(head, "\r\nx-api-key: sk-ant-api03-test\r\n"));
    assert_non_null(strstr(head, "\r\nanthropic-version: 2023-06-01\r\n"));
    assert_non_null(strstr(head, "\r\ncontent-type: application/json\r\n"));
    assert_non_null(strstr(head, "\r\naccept: application/json\r\n"));
    assert_non_null(strstr(head, "\r\nx-request-id: rid42\r\n"));
    assert_null(strstr(head, "authorization"));
}

static void test_build_url_and_headers(void **state)
{
    /* a test upstream on a port; the base URL given with /v1 anyway */
    dp_provider_t p = {
        .name = "anthropic", .kind = "anthropic", .host = "127.0.0.1", .port = 8080, .is_ssl = 0, .path_prefix = "/v1",
        .authority = "127.0.0.1:8080", .authority_len = 14};
    h2o_headers_t hdrs = {NULL};
    h2o_add_header_by_str(&pool, &hdrs, H2O_STRLIT("anthropic-version"), 0, NULL, H2O_STRLIT("2099-01-01"));
    h2o_add_header_by_str(&pool, &hdrs, H2O_STRLIT("anthropic-beta"), 0, NULL, H2O_STRLIT("prompt-caching-2024-07-31"));
    h2o_add_header_by_str(&pool, &hdrs, H2O_STRLIT("authorization"), 0, NULL, H2O_STRLIT("Bearer sk-sluice-x"));
    h2o_add_header_by_str(&pool, &hdrs, H2O_STRLIT("x-api-key"), 0, NULL, H2O_STRLIT("client-key"));
    dp_upstream_req_t out;
    char *head, *body;
    assert_int_equal(build(&p, "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                           1, &hdrs, &head, &body, &out),
                     0);
    assert_true(strncmp(head, "POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n", 50) == 0);
    assert_non_null(strstr(head, "\r\naccept: text/event-stream\r\n"));
    assert_non_null(strstr(head, "\r\nanthropic-beta: prompt-caching-2024-07-31\r\n"));
    assert_non_null(strstr(head, "\r\nanthropic-version: 2023-06-01\r\n"));
    assert_null(strstr(head, "2099-01-01"));
    assert_null(strstr(head, "client-key"));
    assert_null(strstr(head, "sk-sluice-x"));
    assert_non_null(strstr(body, ",\"stream\":true}"));

    /* a credential that would split the head is a configuration error */
    dp_credential_t bad = cred;
    bad.secret = "sk\r\nx: y";
    bad.secret_len = 8;
    dp_chat_req_t in;
    assert_int_equal(tokens_for("{\"model\":\"m\",\"messages\":[]}", &in, 0), 0);
    h2o_headers_t none = {NULL};
    assert_int_equal(dp_provider_anthropic.build_chat(&pool, &p, &bad, h2o_iovec_init(H2O_STRLIT("m")), &in, &none,
                                                      h2o_iovec_init(H2O_STRLIT("r")), &out),
                     SL_EINVAL);
    assert_int_equal(out.error_status, 0);
}

static void test_build_full_request(void **state)
{
    const char *err;
    char *got = body_for(REQ_FULL, 1, &err);
    if (got == NULL)
        fail_msg("rejected: %s", err);
    STR_EQ(got, WANT_REQ_FULL);
}

static void test_build_vertex_flavour(void **state)
{
    dp_chat_req_t in;
    assert_int_equal(tokens_for("{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &in, 0), 0);
    h2o_iovec_t out;
    const char *err;
    assert_int_equal(
        dp_anthropic_chat_body(&pool, &in, h2o_iovec_init(NULL, 0), "vertex-2023-10-16", 2048, &out, &err, NULL), 0);
    STR_EQ(iovdup(out), "{\"anthropic_version\":\"vertex-2023-10-16\",\"max_tokens\":2048,\"messages\":[{\"role\":"
                        "\"user\",\"content\":\"hi\"}]}");
}

static void test_build_parameters(void **state)
{
#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]"
#define WANT_HEAD "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":"
#define WANT_MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]"
    check_body("{" MSGS ",\"max_tokens\":77}", WANT_HEAD "77," WANT_MSGS "}");
    check_body("{" MSGS ",\"max_completion_tokens\":null,\"max_tokens\":12}", WANT_HEAD "12," WANT_MSGS "}");
    check_body("{" MSGS ",\"stop\":\"###\",\"temperature\":0,\"top_p\":0.95,\"user\":\"\"}",
               WANT_HEAD "4096," WANT_MSGS ",\"stop_sequences\":[\"###\"],\"temperature\":0,\"top_p\":0.95}");
    check_body("{" MSGS ",\"stop\":[],\"stop_options\":null,\"frequency_penalty\":0.5,\"seed\":1,\"n\":null}",
               WANT_HEAD "4096," WANT_MSGS "}");
    /* tool_choice forms; without tools there is nothing to choose */
#define TOOLS ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}]"
#define WANT_TOOLS ",\"tools\":[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}]"
    check_body("{" MSGS TOOLS ",\"tool_choice\":\"auto\"}",
               WANT_HEAD "4096," WANT_MSGS WANT_TOOLS ",\"tool_choice\":{\"type\":\"auto\"}}");
    check_body("{" MSGS TOOLS ",\"tool_choice\":\"none\",\"parallel_tool_calls\":false}",
               WANT_HEAD "4096," WANT_MSGS WANT_TOOLS ",\"tool_choice\":{\"type\":\"none\"}}");
    check_body("{" MSGS TOOLS ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}}",
               WANT_HEAD "4096," WANT_MSGS WANT_TOOLS ",\"tool_choice\":{\"type\":\"tool\",\"name\":\"f\"}}");
    check_body("{" MSGS TOOLS ",\"parallel_tool_calls\":false}", WANT_HEAD
               "4096," WANT_MSGS WANT_TOOLS ",\"tool_choice\":{\"type\":\"auto\",\"disable_parallel_tool_use\":true}}");
    check_body("{" MSGS ",\"tools\":[],\"tool_choice\":\"required\"}", WANT_HEAD "4096," WANT_MSGS "}");
    /* consecutive messages of one role are merged; empty assistant text dropped */
    check_body("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"\"},"
               "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"assistant\","
               "\"content\":\"c\"},{\"role\":\"assistant\",\"content\":[{\"type\":\"refusal\",\"refusal\":\"d\"}]}]}",
               WANT_HEAD "4096,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                         "{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"text\","
                         "\"text\":\"c\"},{\"type\":\"text\",\"text\":\"d\"}]}]}");
    /* escapes in strings travel unchanged; data URL media type parameters are dropped */
    check_body("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
               "\"data:image/webp;charset=binary;base64,UklGRg==\"},{\"type\":\"text\",\"text\":\"\\u00e9\\n\"}]}]}",
               WANT_HEAD "4096,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{"
                         "\"type\":\"base64\",\"media_type\":\"image/webp\",\"data\":\"UklGRg==\"}},{\"type\":\"text\","
                         "\"text\":\"\\u00e9\\n\"}]}]}");
}

static void test_build_rejects(void **state)
{
    check_rejected("{" MSGS ",\"n\":2}", "n other than 1");
    check_rejected("{" MSGS ",\"logprobs\":true}", "logprobs");
    check_rejected("{" MSGS ",\"top_logprobs\":3}", "top_logprobs");
    check_rejected("{" MSGS ",\"response_format\":{\"type\":\"json_object\"}}", "response_format");
    check_rejected("{" MSGS ",\"max_tokens\":0}", "max_tokens");
    check_rejected("{" MSGS ",\"max_tokens\":\"5\"}", "max_tokens");
    check_rejected("{" MSGS ",\"stop\":[1]}", "stop");
    check_rejected("{" MSGS ",\"temperature\":\"hot\"}", "temperature");
    check_rejected("{" MSGS ",\"tools\":[{\"type\":\"code_interpreter\"}]}", "only function tools");
    check_rejected("{" MSGS TOOLS ",\"tool_choice\":\"sometimes\"}", "tool_choice");
    check_rejected("{\"messages\":{}}", "messages must be an array");
    check_rejected("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"}]}", "at least one");
    check_rejected("{\"messages\":[\"hi\"]}", "messages[0] must be an object");
    check_rejected("{\"messages\":[{\"role\":\"function\",\"name\":\"f\",\"content\":\"x\"}]}", "role \"function\"");
    check_rejected("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{}}]}]}",
                   "\"input_audio\" are not supported");
    check_rejected("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
                   "\"ftp://x/y.png\"}}]}]}",
                   "data: URL or an http(s) URL");
    check_rejected("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
                   "\"data:image/png,abc\"}}]}]}",
                   "base64");
    check_rejected("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
                   "\"data:;base64,abc\"}}]}]}",
                   "media type");
    check_rejected("{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
                   "\"https://x/y.png\"}}]}]}",
                   "\"image_url\" are not supported");
    check_rejected(
        "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"tool_calls\":[{\"id\":"
        "\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]}]}",
        "not a JSON object");
    check_rejected(
        "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"tool_calls\":[{\"id\":"
        "\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"[1,2]\"}}]}]}",
        "not a JSON object");
    check_rejected("{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"tool_calls\":[{"
                   "\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}]}",
                   "needs an id");
    check_rejected("{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "tool_call_id");
    check_rejected("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "content must be");

    /* through build_chat: a 400 for the client, with the reason */
    dp_upstream_req_t out;
    char *head, *body;
    assert_int_equal(build(&api_anthropic, "{" MSGS ",\"n\":3}", 0, NULL, &head, &body, &out), SL_EINVAL);
    assert_int_equal(out.error_status, 400);
    assert_non_null(out.error);
    assert_non_null(strstr(out.error, "n other than 1"));
}

/* ---- Messages answers -> chat completions --------------------------------- */

static dp_xlate_ctx_t xctx(int include_usage)
{
    return xlate_ctx("chatcmpl-abc", "claude-sonnet-4-5", include_usage);
}

static char *response(const char *anthropic, dp_tokens_t *tk)
{
    dp_xlate_ctx_t c = xctx(0);
    h2o_iovec_t out;
    memset(tk, 0, sizeof(*tk));
    if (dp_anthropic_translate_response(&pool, &c, anthropic, strlen(anthropic), &out, tk) != 0)
        return NULL;
    assert_true(valid_json(out.base, out.len));
    return iovdup(out);
}

static void test_response_text_and_tools(void **state)
{
    dp_tokens_t tk;
    char *got = response(RESP_TOOLS, &tk);
    assert_non_null(got);
    STR_EQ(got, WANT_RESP_TOOLS);
    /* prompt tokens count cache reads and writes; cached ones are the reads */
    assert_int_equal(tk.input, 472 + 100 + 2048);
    assert_int_equal(tk.cached_input, 2048);
    assert_int_equal(tk.output, 89);
    assert_int_equal(tk.seen, 1);

    const dp_provider_ops_t *ops = &dp_provider_anthropic;
    dp_tokens_t pu = {0};
    assert_int_equal(ops->parse_usage(&pool, RESP_TOOLS, strlen(RESP_TOOLS), &pu), 0);
    assert_int_equal(pu.input, tk.input);
    assert_int_equal(pu.cached_input, tk.cached_input);
    assert_int_equal(pu.output, tk.output);
    assert_int_equal(pu.seen, 1);
}

static void test_response_shapes(void **state)
{
    dp_tokens_t tk;
    /* thinking skipped, text blocks joined */
    STR_EQ(
        response("{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-opus-4-1\","
                 "\"content\":[{\"type\":\"thinking\",\"thinking\":\"hmm\",\"signature\":\"EqQB\"},{\"type\":\"text\","
                 "\"text\":\"Hi\"},{\"type\":\"text\",\"text\":\" there\\n\"}],\"stop_reason\":\"end_turn\","
                 "\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":2}}",
                 &tk),
        "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"claude-sonnet-4-"
        "5\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi there\\n\",\"refusal\":null},"
        "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2,"
        "\"total_tokens\":12,\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    /* a tool call alone: content null */
    char *got =
        response("{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[{"
                 "\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":\"f\",\"input\":{\"a\":[1, 2],\"b\":\"x y\"}}],"
                 "\"stop_reason\":\"tool_use\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,"
                 "\"output_tokens\":4}}",
                 &tk);
    assert_non_null(strstr(got, "\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
                                "\"toolu_9\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
                                "\"{\\\"a\\\":[1,2],\\\"b\\\":\\\"x y\\\"}\"}}]"));
    /* stop reasons */
    static const char *const map[][2] = {
        {"end_turn", "stop"},
        {"stop_sequence", "stop"},
        {"max_tokens", "length"},
        {"tool_use", "tool_calls"},
        {"refusal", "content_filter"},
        {"pause_turn", "stop"},
        {"model_context_window_exceeded", "length"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        char body[512], want[64];
        snprintf(body, sizeof(body),
                 "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}],\"stop_reason\":\"%s\","
                 "\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}",
                 map[i][0]);
        snprintf(want, sizeof(want), "\"finish_reason\":\"%s\"", map[i][1]);
        got = response(body, &tk);
        if (strstr(got, want) == NULL)
            fail_msg("%s: %s", map[i][0], got);
    }
    /* not a message */
    assert_null(response("{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"x\"}}", &tk));
    assert_null(response("not json", &tk));
    assert_null(response("{\"content\":[{\"type\":\"text\"}]}", &tk));
    assert_null(response("{\"content\":[{\"type\":\"tool_use\",\"name\":\"f\"}]}", &tk));
}

/* ---- errors ---------------------------------------------------------------- */

static void check_error(int status, const char *body, int want_status, const char *want_type, const char *want_code,
                        const char *want_message)
{
    check_mapped(&dp_provider_anthropic, status, body, want_status, want_type, want_code, want_message);
}

#define AERR(type, msg)                                                                                                \
    "{\"type\":\"error\",\"error\":{\"type\":\"" type "\",\"message\":\"" msg                                          \
    "\"},\"request_id\":\"req_011CSHoEeqs5C35K2UUqR7Fy\"}"

static void test_map_error(void **state)
{
    check_error(400, AERR("invalid_request_error", "max_tokens: Field required"), 400, "invalid_request_error", NULL,
                "max_tokens: Field required");
    check_error(
        400, AERR("invalid_request_error", "messages: roles must alternate between \\\"user\\\" and \\\"assistant\\\""),
        400, "invalid_request_error", NULL, "messages: roles must alternate between \"user\" and \"assistant\"");
    /* our credential refused: never the client's fault, never echoed */
    check_error(401, AERR("authentication_error", "invalid x-api-key"), 502, "api_error", "upstream_auth_failed", "");
    check_error(403, AERR("permission_error", "Your API key does not have permission"), 502, "api_error",
                "upstream_auth_failed", "");
    check_error(404, AERR("not_found_error", "model: claude-nope"), 404, "invalid_request_error", "model_not_found",
                "model: claude-nope");
    check_error(413, AERR("request_too_large", "Request exceeds the maximum allowed number of bytes."), 413,
                "invalid_request_error", "request_too_large", "Request exceeds the maximum allowed number of bytes.");
    check_error(429, AERR("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"), 429,
                "rate_limit_error", "rate_limit_exceeded",
                "Number of request tokens has exceeded your per-minute rate limit");
    check_error(500, AERR("api_error", "Internal server error"), 500, "server_error", "upstream_error",
                "Internal server error");
    check_error(529, AERR("overloaded_error", "Overloaded"), 503, "server_error", "upstream_overloaded", "Overloaded");
    /* bodies that are not Anthropic's */
    check_error(502, "<html>Bad Gateway</html>", 502, "server_error", "upstream_error", "");
    check_error(529, NULL, 503, "server_error", "upstream_error", "");
    check_error(429, "{}", 429, "rate_limit_error", "rate_limit_exceeded", "");
    check_error(418, "{\"error\":{\"message\":\"teapot\"}}", 418, "invalid_request_error", NULL, "teapot");
    /* a long message is cut on a character boundary */
    char body[1400], want[600];
    char *p = body + sprintf(body, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"");
    for (int i = 0; i < 400; i++)
        p += sprintf(p, "\xc3\xa9"); /* 800 bytes of U+00E9 */
    sprintf(p, "\"}}");
    dp_upstream_error_t ue;
    memset(&ue, 0, sizeof(ue));
    dp_provider_anthropic.map_error(400, body, strlen(body), &ue);
    size_t n = strlen(ue.message);
    assert_true(n > 400 && n < sizeof(ue.message));
    assert_int_equal(n % 2, 0);
    memset(want, 0, sizeof(want));
    memcpy(want, body + strlen(body) - 3 - n, n);
    STR_EQ(ue.message, want);
}

/* ---- streams ----------------------------------------------------------------- */

typedef struct feed {
    dp_xlate_ctx_t ctx;
    dp_tokens_t tk;
    h2o_buffer_t *out;
    int flags, events;
} feed_t;

static int on_event(void *ud, const sl_sse_event_t *ev)
{
    feed_t *f = ud;
    f->events++;
    f->flags |= dp_provider_anthropic.translate_event(&pool, &f->ctx, ev->event, strlen(ev->event), ev->data, ev->len,
                                                      &f->out, &f->tk);
    return 0;
}

/* Feeds an SSE text (in pieces of step bytes) and returns what came out. */
static char *stream(const char *sse, size_t step, int include_usage, feed_t *f)
{
    static char evbuf[65536];
    sl_sse_t p;
    memset(f, 0, sizeof(*f));
    f->ctx = xctx(include_usage);
    h2o_buffer_init(&f->out, &h2o_socket_buffer_prototype);
    sl_sse_init(&p, evbuf, sizeof(evbuf) - 1);
    size_t len = strlen(sse);
    for (size_t off = 0; off < len; off += step)
        sl_sse_feed(&p, sse + off, off + step <= len ? step : len - off, on_event, f);
    char *s = iovdup(h2o_iovec_init(f->out->bytes, f->out->size));
    h2o_buffer_dispose(&f->out);
    return s;
}

static void test_stream_text(void **state)
{
    feed_t f;
    STR_EQ(stream(SSE_TEXT, strlen(SSE_TEXT), 0, &f), WANT_SSE_TEXT);
    assert_int_equal(f.flags, DP_EV_CONTENT | DP_EV_DONE | DP_EV_USAGE);
    assert_int_equal(f.tk.input, 25 + 1024);
    assert_int_equal(f.tk.cached_input, 1024);
    assert_int_equal(f.tk.output, 15);
    assert_int_equal(f.tk.seen, 1);
    /* byte by byte: the same */
    STR_EQ(stream(SSE_TEXT, 1, 0, &f), WANT_SSE_TEXT);
    /* with include_usage, a usage chunk (no choices) before the end */
    char want[4096];
    snprintf(want, sizeof(want),
             "%sdata: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
             "\"model\":\"claude-sonnet-4-5\",\"choices\":[],\"usage\":{\"prompt_tokens\":1049,"
             "\"completion_tokens\":15,\"total_tokens\":1064,\"prompt_tokens_details\":{\"cached_tokens\":1024}}}\n\n",
             WANT_SSE_TEXT);
    STR_EQ(stream(SSE_TEXT, 7, 1, &f), want);
}

static void test_stream_tool_use(void **state)
{
    feed_t f;
    STR_EQ(stream(SSE_TOOL, 13, 0, &f), WANT_SSE_TOOL);
    assert_int_equal(f.flags, DP_EV_CONTENT | DP_EV_DONE | DP_EV_USAGE);
    assert_int_equal(f.tk.input, 472);
    assert_int_equal(f.tk.output, 89);
}

/* One event through translate_event with fresh state; returns its flags. */
static int one_event(dp_xlate_ctx_t *c, const char *event, const char *data, char **out)
{
    h2o_buffer_t *b;
    dp_tokens_t tk = {0};
    h2o_buffer_init(&b, &h2o_socket_buffer_prototype);
    int f = dp_anthropic_translate_event(&pool, c, event, strlen(event), data, strlen(data), &b, &tk);
    *out = iovdup(h2o_iovec_init(b->bytes, b->size));
    h2o_buffer_dispose(&b);
    return f;
}

static void test_stream_edges(void **state)
{
    dp_xlate_ctx_t c = xctx(0);
    char *out;
    /* the preamble is not content */
    assert_int_equal(one_event(&c, "message_start", "{\"type\":\"message_start\",\"message\":{\"usage\":{}}}", &out),
                     0);
    assert_non_null(strstr(out, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}"));
    assert_int_equal(one_event(&c, "ping", "{\"type\": \"ping\"}", &out), 0);
    STR_EQ(out, "");
    assert_int_equal(one_event(&c, "ping", "", &out), 0);
    /* thinking blocks and their deltas produce nothing */
    assert_int_equal(one_event(&c, "content_block_start",
                               "{\"type\":\"content_block_start\",\"index\":0,"
                               "\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}",
                               &out),
                     0);
    assert_int_equal(one_event(&c, "content_block_delta",
                               "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{"
                               "\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}",
                               &out),
                     0);
    STR_EQ(out, "");
    /* partial JSON for a block that is not a tool call is dropped, not misfiled */
    assert_int_equal(one_event(&c, "content_block_delta",
                               "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{"
                               "\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}",
                               &out),
                     0);
    /* an in-stream error */
    assert_int_equal(one_event(&c, "error",
                               "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
                               "\"Overloaded\"}}",
                               &out),
                     DP_EV_ERROR);
    STR_EQ(out, "data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"server_error\",\"param\":null,\"code\":"
                "\"upstream_overloaded\"}}\n\n");
    /* an unreadable event may have carried content: an error */
    assert_int_equal(one_event(&c, "content_block_delta", "{\"type\":\"content_block_delta\"", &out), DP_EV_ERROR);
    /* no "type" member: the event name decides */
    assert_int_equal(one_event(&c, "message_stop", "{}", &out), DP_EV_DONE | DP_EV_USAGE);
    /* events from later API versions are ignored */
    assert_int_equal(one_event(&c, "future_event", "{\"type\":\"future_event\"}", &out), 0);
    STR_EQ(out, "");
    /* message_delta usage carrying input and cache counts (later API versions) */
    dp_xlate_ctx_t c2 = xctx(0);
    h2o_buffer_t *b;
    dp_tokens_t tk = {0};
    h2o_buffer_init(&b, &h2o_socket_buffer_prototype);
    static const char *const evs[][2] = {
        {"message_start", "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,"
                          "\"cache_creation_input_tokens\":7,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}"},
        {"message_delta",
         "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null},"
         "\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":7,\"cache_read_input_tokens\":"
         "3,\"output_tokens\":64}}"},
    };
    for (size_t i = 0; i < 2; i++)
        dp_anthropic_translate_event(&pool, &c2, evs[i][0], strlen(evs[i][0]), evs[i][1], strlen(evs[i][1]), &b, &tk);
    assert_non_null(memmem(b->bytes, b->size, H2O_STRLIT("\"finish_reason\":\"length\"")));
    h2o_buffer_dispose(&b);
    assert_int_equal(tk.input, 15);
    assert_int_equal(tk.cached_input, 3);
    assert_int_equal(tk.output, 64);
    assert_int_equal(tk.seen, 0); /* only message_stop completes a stream */

    /* the parse_event hook reads the same usage */
    dp_tokens_t pt = {0};
    const dp_provider_ops_t *ops = &dp_provider_anthropic;
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(ops->parse_event(&pool, evs[i][1], strlen(evs[i][1]), &pt), 0);
    assert_int_equal(ops->parse_event(&pool, H2O_STRLIT("{\"type\":\"message_stop\"}"), &pt), DP_EV_DONE | DP_EV_USAGE);
    assert_int_equal(pt.input, 15);
    assert_int_equal(pt.cached_input, 3);
    assert_int_equal(pt.output, 64);
    assert_int_equal(pt.seen, 1);
    assert_int_equal(ops->framing, DP_FRAMING_SSE);
    assert_int_equal(ops->openai_format, 0);
}

/* ---- Anthropic-format ingress -------------------------------------------------- */

static char *ingress(const char *body, sl_err_t *err)
{
    h2o_iovec_t out;
    if (dp_anthropic_ingress_to_openai(&pool, body, strlen(body), &out, err) != 0)
        return NULL;
    assert_true(valid_json(out.base, out.len));
    return iovdup(out);
}

static void test_ingress_request(void **state)
{
    sl_err_t err;
    char *got = ingress(ING_FULL, &err);
    if (got == NULL)
        fail_msg("rejected: %s", err.msg);
    STR_EQ(got, WANT_ING_FULL);
    STR_EQ(ingress("{\"model\":\"claude-3-5-haiku-latest\",\"max_tokens\":64,\"system\":\"Be brief.\",\"messages\":[{"
                   "\"role\":\"user\",\"content\":\"Hello\"}],\"stream\":false}",
                   &err),
           "{\"model\":\"claude-3-5-haiku-latest\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
           "{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":64}");
    /* tool_choice forms */
    static const char *const tc[][2] = {
        {"{\"type\":\"auto\"}", ",\"tool_choice\":\"auto\"}"},
        {"{\"type\":\"none\"}", ",\"tool_choice\":\"none\"}"},
        {"{\"type\":\"tool\",\"name\":\"f\",\"disable_parallel_tool_use\":true}",
         ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}},\"parallel_tool_calls\":false}"},
    };
    for (size_t i = 0; i < 3; i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"tools\":[{\"name\":\"f\",\"input_schema\":{"
                 "\"type\":\"object\"}}],\"tool_choice\":%s}",
                 tc[i][0]);
        got = ingress(body, &err);
        assert_non_null(got);
        assert_true(strlen(got) > strlen(tc[i][1]));
        STR_EQ(got + strlen(got) - strlen(tc[i][1]), tc[i][1]);
    }
}

/* Anthropic -> OpenAI -> Anthropic keeps what both can say. */
static void test_ingress_round_trip(void **state)
{
    sl_err_t err;
    char *openai = ingress(ING_FULL, &err);
    assert_non_null(openai);
    const char *msg;
    char *back = body_for(openai, 1, &msg);
    if (back == NULL)
        fail_msg("rejected: %s", msg);
    STR_EQ(
        back,
        "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"system\":[{\"type\":\"text\",\"text\":\"You are a "
        "coding agent.\",\"cache_control\":{\"type\":\"ephemeral\"}}],\"messages\":[{\"role\":\"user\",\"content\":[{"
        "\"type\":\"text\",\"text\":\"Look at this\"},{\"type\":\"image\",\"source\":{\"type\":\"base64\","
        "\"media_type\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}},{\"type\":\"image\",\"source\":{\"type\":\"url\","
        "\"url\":\"https://example.com/a.png\"}}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"I'll read it.\"},{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"read_file\",\"input\":{\"path\":"
        "\"/tmp/a\"}}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_01\","
        "\"content\":[{\"type\":\"text\",\"text\":\"contents\"}]},{\"type\":\"image\",\"source\":{\"type\":"
        "\"base64\",\"media_type\":\"image/jpeg\",\"data\":\"/9j/\"}},{\"type\":\"text\",\"text\":\"Go on\"}]},{"
        "\"role\":\"assistant\",\"content\":\"Done.\"},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
        "\"tool_use_id\":\"toolu_02\",\"content\":\"ok\"}]}],\"tools\":[{\"name\":\"read_file\",\"description\":"
        "\"Read a file\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"path\":{\"type\":\"string\"}},"
        "\"required\":[\"path\"]}}],\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true},"
        "\"stop_sequences\":[\"\\n\\nHuman:\"],\"temperature\":0.5,\"top_p\":0.9,\"metadata\":{\"user_id\":"
        "\"user-7\"},\"stream\":true}");
}

static void check_ingress_rejected(const char *body, const char *want)
{
    sl_err_t err;
    char *got = ingress(body, &err);
    if (got != NULL)
        fail_msg("accepted %s as %s", body, got);
    assert_int_equal(err.code, SL_EINVAL);
    if (strstr(err.msg, want) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, want);
}

static void test_ingress_rejects(void **state)
{
    check_ingress_rejected("[]", "JSON object");
    check_ingress_rejected("{\"max_tokens\":1,\"messages\":[]}", "model: field required");
    check_ingress_rejected("{\"model\":\"m\",\"messages\":[]}", "max_tokens: field required");
    check_ingress_rejected("{\"model\":\"m\",\"max_tokens\":0,\"messages\":[]}", "max_tokens");
    check_ingress_rejected("{\"model\":\"m\",\"max_tokens\":1}", "messages: field required");
    check_ingress_rejected("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
                           "messages.0.role");
    check_ingress_rejected("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\"}]}",
                           "messages.0.content");
    check_ingress_rejected("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                           "\"document\",\"source\":{}}]}]}",
                           "'document' are not supported");
    check_ingress_rejected("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                           "\"image\",\"source\":{\"type\":\"file\",\"file_id\":\"f\"}}]}]}",
                           "image sources");
    check_ingress_rejected("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"assistant\",\"content\":[{"
                           "\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":[]}]}]}",
                           "input: must be an object");
    check_ingress_rejected("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"tools\":[{\"type\":"
                           "\"web_search_20250305\",\"name\":\"web_search\"}]}",
                           "server tools");
    check_ingress_rejected(
        "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"tools\":[{\"name\":\"f\",\"input_schema\":"
        "{}}],\"tool_choice\":{\"type\":\"maybe\"}}",
        "tool_choice.type");
    check_ingress_rejected("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"stream\":\"yes\"}", "stream");
    check_ingress_rejected("{\"model\":\"m\",\"max_tokens\":1,\"messages\":[],\"system\":5}", "system");
}

static void test_egress_response(void **state)
{
    h2o_iovec_t out;
    assert_int_equal(
        dp_anthropic_egress_response(&pool, EGR_TOOLS, strlen(EGR_TOOLS), h2o_iovec_init(H2O_STRLIT("gpt-4o")), &out),
        0);
    STR_EQ(iovdup(out), WANT_EGR_TOOLS);
    static const char text[] =
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{"
        "\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"mock word1\"},\"finish_reason\":\"length\"}],"
        "\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}";
    assert_int_equal(
        dp_anthropic_egress_response(&pool, text, strlen(text), h2o_iovec_init(H2O_STRLIT("claude-x")), &out), 0);
    STR_EQ(iovdup(out), "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
                        "\"content\":[{\"type\":\"text\",\"text\":\"mock word1\"}],\"stop_reason\":\"max_tokens\","
                        "\"stop_sequence\":null,\"usage\":{\"input_tokens\":9,\"cache_creation_input_tokens\":0,"
                        "\"cache_read_input_tokens\":0,\"output_tokens\":2}}");
    /* unreadable tool arguments are not passed off as input */
    static const char bad[] = "{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
                              "\"function\":{\"name\":\"f\",\"arguments\":\"{oops\"}}]}}]}";
    assert_int_equal(dp_anthropic_egress_response(&pool, bad, strlen(bad), h2o_iovec_init(H2O_STRLIT("m")), &out),
                     SL_EINVAL);
    assert_int_equal(
        dp_anthropic_egress_response(&pool, H2O_STRLIT("{\"choices\":[]}"), h2o_iovec_init(H2O_STRLIT("m")), &out),
        SL_EINVAL);

    /* errors */
    STR_EQ(iovdup(dp_anthropic_egress_error(&pool, 429,
                                            H2O_STRLIT("{\"error\":{\"message\":\"rate limit reached for "
                                                       "this key\",\"type\":\"rate_limit_error\",\"param\":"
                                                       "null,\"code\":\"rate_limited\"}}\n"))),
           "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"rate limit reached for this "
           "key\"}}");
    STR_EQ(iovdup(dp_anthropic_egress_error(&pool, 503, H2O_STRLIT("<html>"))),
           "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"the upstream answered HTTP "
           "503\"}}");
    STR_EQ(iovdup(dp_anthropic_egress_error(&pool, 401, NULL, 0)),
           "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"the upstream answered HTTP "
           "401\"}}");
}

/* Feeds newline-separated OpenAI chunk payloads to the egress translator. */
static char *egress_stream(const char *chunks, int *flags, dp_anthropic_egress_t **sp, h2o_buffer_t **b)
{
    dp_anthropic_egress_t *s =
        dp_anthropic_egress_new(&pool, h2o_iovec_init(H2O_STRLIT("msg_x")), h2o_iovec_init(H2O_STRLIT("gpt-4o")));
    h2o_buffer_init(b, &h2o_socket_buffer_prototype);
    *flags = 0;
    for (const char *p = chunks; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        *flags |= dp_anthropic_egress_event(s, p, n, b);
        p += n + (nl != NULL);
    }
    *sp = s;
    return iovdup(h2o_iovec_init((*b)->bytes, (*b)->size));
}

static void test_egress_stream(void **state)
{
    int flags;
    dp_anthropic_egress_t *s;
    h2o_buffer_t *b;
    STR_EQ(egress_stream(EG_CHUNKS, &flags, &s, &b), WANT_EG_STREAM);
    assert_int_equal(flags, DP_EV_CONTENT | DP_EV_DONE);
    /* nothing after the end, not even a failure */
    size_t n = b->size;
    dp_anthropic_egress_fail(s, "late", &b);
    assert_int_equal(dp_anthropic_egress_event(s, H2O_STRLIT("[DONE]"), &b), 0);
    assert_int_equal(b->size, n);
    h2o_buffer_dispose(&b);

    /* a stream that breaks after content ends with an error event */
    char *got = egress_stream("{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}",
                              &flags, &s, &b);
    dp_anthropic_egress_fail(s, "the upstream stream ended \"unexpectedly\"", &b);
    got = iovdup(h2o_iovec_init(b->bytes, b->size));
    h2o_buffer_dispose(&b);
    const char *tail = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"the "
                       "upstream stream ended \\\"unexpectedly\\\"\"}}\n\n";
    assert_true(strlen(got) > strlen(tail));
    STR_EQ(got + strlen(got) - strlen(tail), tail);
    assert_non_null(strstr(got, "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}"));
    assert_null(strstr(got, "message_stop"));

    /* an OpenAI in-stream error object becomes an error event */
    got = egress_stream("{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}", &flags, &s, &b);
    h2o_buffer_dispose(&b);
    assert_int_equal(flags, DP_EV_ERROR);
    STR_EQ(got, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"boom\"}}\n\n");

    /* an empty answer still has the full event frame */
    got =
        egress_stream("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n[DONE]", &flags, &s, &b);
    h2o_buffer_dispose(&b);
    STR_EQ(got, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_x\",\"type\":"
                "\"message\",\"role\":\"assistant\",\"model\":\"gpt-4o\",\"content\":[],\"stop_reason\":null,"
                "\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}\n\n"
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
                "\"stop_sequence\":null},\"usage\":{\"input_tokens\":0,\"cache_creation_input_tokens\":0,"
                "\"cache_read_input_tokens\":0,\"output_tokens\":0}}\n\n"
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

/* ---- malformed input ------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
    return (uint32_t)(xorshift64(&rng) % n);
}

/* A random mutation of src: flipped, deleted, duplicated or inserted bytes,
 * or a cut. Pool memory, NUL-terminated. */
static char *mutate(const char *src, size_t *lenp)
{
    static const char tokens[] = "{}[]\",:\\0-eE.tfn \x01\xc3\xff";
    size_t len = strlen(src);
    char *s = h2o_mem_alloc_pool(&pool, len * 2 + 16);
    memcpy(s, src, len + 1);
    int edits = 1 + (int)rnd(4);
    for (int e = 0; e < edits && len > 0; e++) {
        size_t at = rnd((uint32_t)len);
        switch (rnd(5)) {
        case 0:
            s[at] = tokens[rnd(sizeof(tokens) - 1)];
            break;
        case 1:
            memmove(s + at, s + at + 1, len - at);
            len--;
            break;
        case 2:
            memmove(s + at + 1, s + at, len - at + 1);
            s[at] = tokens[rnd(sizeof(tokens) - 1)];
            len++;
            break;
        case 3:
            len = at;
            s[len] = '\0';
            break;
        default: {
            size_t n = rnd(8) + 1;
            if (at + n > len)
                n = len - at;
            memmove(s + at + n, s + at, len - at + 1);
            len += n;
            break;
        }
        }
    }
    s[len] = '\0';
    *lenp = len;
    return s;
}

/* Every "data: " line of a translated stream is JSON. */
static void assert_chunks_valid(const char *s, size_t n)
{
    const char *end = s + n;
    while (s < end) {
        const char *data = memmem(s, (size_t)(end - s), "data: ", 6);
        if (data == NULL)
            break;
        data += 6;
        const char *nl = memchr(data, '\n', (size_t)(end - data));
        assert_non_null(nl);
        if (!valid_json(data, (size_t)(nl - data)))
            fail_msg("invalid chunk: %.*s", (int)(nl - data), data);
        s = nl + 1;
    }
}

static void test_malformed_inputs(void **state)
{
    static const char *const sse_events[] = {
        "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}",
        "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\","
        "\"name\":\"f\",\"input\":{}}}",
        "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"
        "\"{\\\"a\\\":\"}}",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"h\\u00e9\"}}",
        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3}}",
        "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"x\"}}",
    };
    static const char *const openai_chunks[] = {
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\",\"tool_calls\":[{\"index\":0,\"id\":\"c\","
        "\"function\":{"
        "\"name\":\"f\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":1}}",
    };
    for (int iter = 0; iter < 3000; iter++) {
        size_t len;
        char *m;
        const char *err;
        /* OpenAI request -> Messages body: valid JSON or a clean refusal */
        m = mutate(REQ_FULL, &len);
        dp_chat_req_t in;
        if (tokens_for(m, &in, iter & 1) == 0 && in.toks[0].type == SL_JSON_OBJECT) {
            h2o_iovec_t out;
            if (dp_anthropic_chat_body(&pool, &in, h2o_iovec_init(H2O_STRLIT("m")), NULL, 0, &out, &err, NULL) == 0)
                assert_true(valid_json(out.base, out.len));
            else
                assert_non_null(err);
        }
        /* Messages answer -> chat completion */
        m = mutate(RESP_TOOLS, &len);
        dp_xlate_ctx_t c = xctx(iter & 1);
        dp_tokens_t tk = {0};
        h2o_iovec_t out;
        if (dp_anthropic_translate_response(&pool, &c, m, len, &out, &tk) == 0)
            assert_true(valid_json(out.base, out.len));
        /* stream events (state carried across iterations) */
        static dp_xlate_ctx_t sc;
        static dp_tokens_t stk;
        if (iter % 50 == 0) {
            sc = xctx(1);
            memset(&stk, 0, sizeof(stk));
        }
        m = mutate(sse_events[rnd(sizeof(sse_events) / sizeof(sse_events[0]))], &len);
        h2o_buffer_t *b;
        h2o_buffer_init(&b, &h2o_socket_buffer_prototype);
        dp_anthropic_translate_event(&pool, &sc, "message_delta", 13, m, len, &b, &stk);
        dp_anthropic_parse_event(&pool, m, len, &stk);
        assert_chunks_valid(b->bytes, b->size);
        h2o_buffer_dispose(&b);
        /* errors */
        dp_upstream_error_t ue;
        memset(&ue, 0, sizeof(ue));
        m = mutate(AERR("invalid_request_error", "bad \\u00e9 \\\"x\\\""), &len);
        dp_anthropic_map_error(400 + (int)rnd(200), m, len, &ue);
        assert_true(strlen(ue.message) < sizeof(ue.message));
        /* ingress both ways */
        sl_err_t se;
        m = mutate(ING_FULL, &len);
        if (dp_anthropic_ingress_to_openai(&pool, m, len, &out, &se) == 0)
            assert_true(valid_json(out.base, out.len));
        m = mutate(EGR_TOOLS, &len);
        if (dp_anthropic_egress_response(&pool, m, len, h2o_iovec_init(H2O_STRLIT("m")), &out) == 0)
            assert_true(valid_json(out.base, out.len));
        out = dp_anthropic_egress_error(&pool, 500, m, len);
        assert_true(valid_json(out.base, out.len));
        dp_anthropic_egress_t *es =
            dp_anthropic_egress_new(&pool, h2o_iovec_init(H2O_STRLIT("msg")), h2o_iovec_init(H2O_STRLIT("m")));
        h2o_buffer_init(&b, &h2o_socket_buffer_prototype);
        m = mutate(openai_chunks[0], &len);
        dp_anthropic_egress_event(es, m, len, &b);
        dp_anthropic_egress_event(es, H2O_STRLIT("[DONE]"), &b);
        assert_chunks_valid(b->bytes, b->size);
        h2o_buffer_dispose(&b);
        if (iter % 100 == 99) { /* keep the pool small */
            h2o_mem_clear_pool(&pool);
            h2o_mem_init_pool(&pool);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_build_text_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_url_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_full_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_vertex_flavour, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_parameters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_text_and_tools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_tool_use, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ingress_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ingress_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ingress_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_egress_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_egress_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_inputs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
