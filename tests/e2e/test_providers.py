"""End-to-end: OpenAI-format requests through the data plane to each
translating provider of the mock (in its own wire format and auth), with
usage in the ledger equal to what the mock reported, priced exactly."""

import json

from harness import chat, http_request, mock_provider, sse_events, wait_for

# ---- anthropic ------------------------------------------------------------------

CLAUDE_IN_NANO = 3000        # $3.00 per million input tokens
CLAUDE_CACHED_NANO = 300     # $0.30 per million cached input tokens
CLAUDE_OUT_NANO = 15000      # $15.00 per million output tokens

# A system prompt and a user message: 3 + (4 + 3) + (4 + 3) = 17 prompt tokens
TERSE_MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "one two three"}]

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}


def anthropic_yaml(port):
    # Anthropic's base URL is the bare origin, as in Anthropic's SDKs
    return f"""\
providers:
{mock_provider("anthropic", "anthropic", port)}
models:
- {{provider: anthropic, model: claude-sonnet-4-6, input_usd_per_mtok: 3, output_usd_per_mtok: 15, cached_input_usd_per_mtok: 0.30, max_output_tokens: 8192}}
virtual_keys:
- id: vk_claude
  customer_id: acme_corp
  allowed_providers: [anthropic]
"""


def anthropic_setup(cluster):
    created = cluster.apply(anthropic_yaml(cluster.mock_port))
    assert "vk_claude" in created, cluster.last_apply_output
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    return dp, created["vk_claude"]


def anthropic_ledger(cluster):
    rows = cluster.sql("SELECT provider, model, sum(requests), sum(errors), sum(input_tokens), "
                       "sum(cached_input_tokens), sum(output_tokens), sum(cost_nano) FROM usage_minute "
                       "WHERE key_id = 'vk_claude' GROUP BY 1, 2 ORDER BY 1, 2")
    out = []
    for line in rows.splitlines():
        p, m, r, e, i, c, o, cost = line.split("|")
        out.append({"provider": p, "model": m, "requests": int(r), "errors": int(e), "input": int(i),
                    "cached": int(c), "output": int(o), "cost_nano": int(cost)})
    return out


def wait_anthropic_ledger(cluster, n):
    return wait_for(lambda: (lambda rows: rows if sum(r["requests"] for r in rows) >= n else None)(
        anthropic_ledger(cluster)), 10, interval=0.1, what=f"{n} anthropic requests in the ledger")


def chunks_of(resp):
    assert resp.status == 200, resp.body
    assert resp.header("content-type").startswith("text/event-stream")
    events = sse_events(resp.body)
    assert events[-1] == "[DONE]", events[-3:]
    return [json.loads(e) for e in events[:-1]]


def check_stream_with_usage(dp, secret, model):
    """Streams a 7-word answer with include_usage: a role chunk, deltas that join
    to the reply text, one "length" finish, then the usage chunk."""
    chunks = chunks_of(chat(dp.api_port, secret, model=model, stream=True, max_tokens=7,
                            extra={"stream_options": {"include_usage": True}}))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "mock word1 word2 word3 word4 word5 word6"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == ["length"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 7


def test_anthropic_chat_stream_and_cache_usage_priced_exactly(cluster):
    dp, secret = anthropic_setup(cluster)

    # non-streaming, system prompt extracted, max_tokens below the mock's 1024 used in full
    resp = chat(dp.api_port, secret, model="claude-sonnet-4-6", max_tokens=5,
                extra={"messages": TERSE_MESSAGES})
    assert resp.status == 200, resp.body
    assert resp.header("x-sluice-provider") == "anthropic"
    assert resp.header("x-sluice-model") == "claude-sonnet-4-6"
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    msg = body["choices"][0]["message"]
    assert msg["role"] == "assistant" and msg["content"] == "mock word1 word2 word3 word4"
    assert body["choices"][0]["finish_reason"] == "length"
    # 3 + (4 + 3 words of system) + (4 + 3 words of user)
    assert body["usage"] == {"prompt_tokens": 17, "completion_tokens": 5, "total_tokens": 22,
                             "prompt_tokens_details": {"cached_tokens": 0}}

    # no max_tokens: the catalog's max_output_tokens (>= 1024) lets the mock end the turn
    resp = chat(dp.api_port, secret, model="anthropic/claude-sonnet-4-6", content="hello")
    body = resp.json()
    assert resp.status == 200, resp.body
    assert body["choices"][0]["finish_reason"] == "stop"
    assert len(body["choices"][0]["message"]["content"].split()) == 16

    # a stop sequence ends the answer before it
    resp = chat(dp.api_port, secret, model="claude-sonnet-4-6", content="hello", extra={"stop": ["word3"]})
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == "mock word1 word2"
    assert body["choices"][0]["finish_reason"] == "stop"

    # streaming with usage: the deltas join to the non-streamed text
    check_stream_with_usage(dp, secret, "claude-sonnet-4-6")
    # without include_usage no usage chunk reaches the client
    chunks = chunks_of(chat(dp.api_port, secret, model="claude-sonnet-4-6", stream=True, max_tokens=3))
    assert all("usage" not in c for c in chunks)

    # prompt caching: cache_control on a system part; cache reads are priced as cached input
    resp = chat(dp.api_port, secret, model="claude-sonnet-4-6", max_tokens=4, extra={"messages": [
        {"role": "system", "content": [{"type": "text", "text": "a long shared preamble of many words here",
                                        "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "and a question"}]})
    assert resp.status == 200, resp.body
    usage = resp.json()["usage"]
    prompt = 3 + (4 + 8) + (4 + 3)
    assert usage["prompt_tokens"] == prompt
    assert usage["prompt_tokens_details"]["cached_tokens"] == prompt // 2
    chunks = chunks_of(chat(dp.api_port, secret, model="claude-sonnet-4-6", stream=True, max_tokens=4, extra={
        "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": [{"type": "text", "text": "cached system prompt",
                                                     "cache_control": {"type": "ephemeral"}}]},
                     {"role": "user", "content": "hi"}]}))
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == 3 + (4 + 3) + (4 + 1)
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] // 2

    # the ledger equals what the mock served, priced exactly
    stats = cluster.mock_stats()["by_provider"]["anthropic"]
    assert stats["chat_requests"] == 7 and stats["unauthorized"] == 0
    rows = wait_anthropic_ledger(cluster, 7)
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["provider"], row["model"], row["requests"], row["errors"]) == ("anthropic", "claude-sonnet-4-6", 7, 0)
    assert row["input"] == stats["prompt_tokens"]
    assert row["cached"] == stats["cached_tokens"] > 0
    assert row["output"] == stats["completion_tokens"]
    assert row["cost_nano"] == ((row["input"] - row["cached"]) * CLAUDE_IN_NANO + row["cached"] * CLAUDE_CACHED_NANO
                                + row["output"] * CLAUDE_OUT_NANO)


def test_anthropic_tool_calls_round_trip(cluster):
    dp, secret = anthropic_setup(cluster)
    question = {"role": "user", "content": "What is the weather in Paris?"}

    resp = chat(dp.api_port, secret, model="claude-sonnet-4-6",
                extra={"messages": [question], "tools": [WEATHER_TOOL], "tool_choice": "auto"})
    assert resp.status == 200, resp.body
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("toolu_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "Paris"}

    # streamed: id and name first, then the argument pieces, as OpenAI streams them
    chunks = chunks_of(chat(dp.api_port, secret, model="claude-sonnet-4-6", stream=True,
                            extra={"messages": [question], "tools": [WEATHER_TOOL]}))
    deltas = [d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas[0]["index"] == 0 and deltas[0]["id"].startswith("toolu_")
    assert deltas[0]["function"]["name"] == "get_weather"
    args = "".join(d["function"].get("arguments", "") for d in deltas)
    assert json.loads(args) == {"location": "Paris"}
    assert len(deltas) >= 3
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == ["tool_calls"]

    # the tool's answer goes back as a tool message; the model answers in text
    resp = chat(dp.api_port, secret, model="claude-sonnet-4-6", max_tokens=3, extra={"messages": [
        question,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"}],
        "tools": [WEATHER_TOOL]})
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == "mock word1 word2"
    # 3 + (4 + 6 words) + (4 + 0: a tool_use block has no text) + (4 + 3 words of the tool result)
    assert body["usage"]["prompt_tokens"] == 24

    stats = cluster.mock_stats()["by_provider"]["anthropic"]
    rows = wait_anthropic_ledger(cluster, 3)
    assert rows[0]["input"] == stats["prompt_tokens"] and rows[0]["output"] == stats["completion_tokens"]


def test_anthropic_errors_reach_the_client_in_openai_shape(cluster):
    dp, secret = anthropic_setup(cluster)
    # what Anthropic cannot do is refused before going upstream
    resp = chat(dp.api_port, secret, model="claude-sonnet-4-6", extra={"n": 2})
    assert resp.status == 400, resp.body
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and "n other than 1" in err["message"]
    assert cluster.mock_stats()["by_provider"]["anthropic"]["chat_requests"] == 0

    # an upstream 400 keeps Anthropic's message
    cluster.mock_faults(count=1, status=400, provider="anthropic")
    resp = chat(dp.api_port, secret, model="claude-sonnet-4-6")
    assert resp.status == 400, resp.body
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert "injected by sluice-mockllm" in err["message"]

    # overloaded (529) is answered as 503
    cluster.mock_faults(count=10, status=529, provider="anthropic")
    resp = chat(dp.api_port, secret, model="claude-sonnet-4-6")
    assert resp.status == 503, resp.body
    assert set(resp.json()) == {"error"}
    http_request(cluster.mock_port, "DELETE", "/_mock/faults")



def test_anthropic_refused_credential_is_not_the_clients_fault(cluster, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_WRONG_KEY", "sk-ant-wrong-0000")
    created = cluster.apply(anthropic_yaml(cluster.mock_port).replace("secret_env: MOCK_API_KEY",
                                                                      "secret_env: ANTHROPIC_WRONG_KEY"))
    secret = created["vk_claude"]
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    resp = chat(dp.api_port, secret, model="claude-sonnet-4-6")
    assert resp.status >= 500, resp.body
    err = resp.json()["error"]
    assert err["code"] == "upstream_auth_failed", err
    assert "sk-ant-wrong" not in resp.body.decode()
    assert cluster.mock_stats()["by_provider"]["anthropic"]["unauthorized"] >= 1


# ---- bedrock (Converse / ConverseStream, SigV4, binary event stream) -------------

MOCK_AWS_KEY_ID = "AKIAMOCKLLMTEST00001"                      # the mock's default test credentials
MOCK_AWS_SECRET = "mockllm/TEST/secret/0000000000000000000000"
BEDROCK_MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"   # ':' travels as %3A
BEDROCK_IN_NANO = 3000                                        # $3 per million input tokens
BEDROCK_OUT_NANO = 15000                                      # $15 per million output tokens
BEDROCK_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}


def bedrock_ledger(cluster):
    rows = cluster.sql("SELECT model, sum(requests), sum(errors), sum(input_tokens), sum(cached_input_tokens), "
                       "sum(output_tokens), sum(cost_nano) FROM usage_minute WHERE provider = 'bedrock' "
                       "GROUP BY 1 ORDER BY 1")
    out = []
    for line in rows.splitlines():
        m, r, e, i, ci, o, c = line.split("|")
        out.append({"model": m, "requests": int(r), "errors": int(e), "input": int(i), "cached": int(ci),
                    "output": int(o), "cost_nano": int(c)})
    return out


def wait_bedrock_ledger(cluster, n, timeout=15):
    def enough():
        rows = bedrock_ledger(cluster)
        return rows if sum(r["requests"] for r in rows) >= n else None
    return wait_for(enough, timeout, interval=0.1, what=f"{n} bedrock requests in the ledger")


def bedrock_chunks(resp):
    """The JSON chunks of an OpenAI SSE body, checking it ends with [DONE]."""
    events = sse_events(resp.body)
    assert events and events[-1] == "[DONE]", events[-3:]
    return [json.loads(e) for e in events[:-1]]


def bedrock_yaml(port, keys):
    embed = ("- {provider: bedrock, model: \"amazon.titan-embed-text-v2:0\", input_usd_per_mtok: 0.02, "
             "output_usd_per_mtok: 0}\n"
             "- {provider: bedrock, model: cohere.embed-english-v3, input_usd_per_mtok: 0.10, output_usd_per_mtok: 0}\n")
    return f"""\
providers:
- name: bedrock
  kind: bedrock
  base_url: http://127.0.0.1:{port}
  params: {{region: us-east-1}}
  keys:
{keys}models:
- {{provider: bedrock, model: "{BEDROCK_MODEL}", input_usd_per_mtok: 3, output_usd_per_mtok: 15}}
{embed}virtual_keys:
- id: vk_bedrock
  customer_id: acme_corp
  allowed_providers: [bedrock]
"""


def bedrock_setup(cluster, monkeypatch, keys=None):
    """A bedrock provider at the mock whose keys come from AWS_* variables
    (read by sluicectl at apply time); returns (dataplane, key secret)."""
    keys = keys or ("  - {access_key_id_env: AWS_KEY_ID, secret_access_key_env: AWS_SECRET, "
                    "session_token_env: AWS_TOKEN}\n")
    monkeypatch.setenv("AWS_KEY_ID", MOCK_AWS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET", MOCK_AWS_SECRET)
    monkeypatch.setenv("AWS_TOKEN", "mock-session-token")   # signed along; the mock accepts any
    monkeypatch.setenv("AWS_BAD_SECRET", "not/the/right/secret/at/all")
    created = cluster.apply(bedrock_yaml(cluster.mock_port, keys))
    assert "vk_bedrock" in created, cluster.last_apply_output
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    return dp, created["vk_bedrock"]


def test_bedrock_chat_streams_tools_and_ledger(cluster, monkeypatch):
    dp, secret = bedrock_setup(cluster, monkeypatch)
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "hello there gateway"}]

    # not streamed: Converse, translated to a chat.completion
    resp = chat(dp.api_port, secret, model=BEDROCK_MODEL, max_tokens=5, extra={"messages": messages})
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["object"] == "chat.completion" and body["model"] == BEDROCK_MODEL
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "mock word1 word2 word3 word4"}
    assert choice["finish_reason"] == "length"
    # 3 + (4 + 3 system words) + (4 + 3 user words)
    assert body["usage"]["prompt_tokens"] == 17 and body["usage"]["completion_tokens"] == 5
    text = choice["message"]["content"]

    # streamed: ConverseStream's binary event stream, translated to chunks
    resp = chat(dp.api_port, secret, model=BEDROCK_MODEL, max_tokens=5, stream=True,
                extra={"messages": messages, "stream_options": {"include_usage": True}})
    assert resp.status == 200, resp.body
    assert resp.header("content-type").startswith("text/event-stream")
    chunks = bedrock_chunks(resp)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == text
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == ["length"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 17
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    assert all(c["id"] == chunks[0]["id"] and c["object"] == "chat.completion.chunk" for c in chunks)

    # tool calls, not streamed and streamed; then the tool's result goes back
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    resp = chat(dp.api_port, secret, model=BEDROCK_MODEL, extra={"messages": ask, "tools": [BEDROCK_TOOL]})
    assert resp.status == 200, resp.body
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["id"].startswith("tooluse_mock_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "Paris"}

    resp = chat(dp.api_port, secret, model=BEDROCK_MODEL, stream=True,
                extra={"messages": ask, "tools": [BEDROCK_TOOL], "tool_choice": "auto"})
    assert resp.status == 200, resp.body
    chunks = bedrock_chunks(resp)
    deltas = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
              if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
    assert deltas[0]["id"].startswith("tooluse_mock_") and deltas[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(d["function"]["arguments"] for d in deltas)) == {"location": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

    followup = ask + [{"role": "assistant", "content": None, "tool_calls": [call]},
                      {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees and sunny"}]
    resp = chat(dp.api_port, secret, model=BEDROCK_MODEL, extra={"messages": followup, "tools": [BEDROCK_TOOL]})
    assert resp.status == 200, resp.body
    assert resp.json()["choices"][0]["finish_reason"] == "stop"
    assert resp.json()["choices"][0]["message"]["content"].startswith("mock word1")

    # the ledger holds what the mock counted, priced exactly
    stats = cluster.mock_stats()["by_provider"]["bedrock"]
    assert stats["requests"] == 5 and stats["unauthorized"] == 0
    rows = wait_bedrock_ledger(cluster, 5)
    assert len(rows) == 1 and rows[0]["model"] == BEDROCK_MODEL
    row = rows[0]
    assert row["requests"] == 5 and row["errors"] == 0
    assert row["input"] == stats["prompt_tokens"] and row["output"] == stats["completion_tokens"]
    assert row["cached"] == stats["cached_tokens"] == 0
    assert row["cost_nano"] == stats["prompt_tokens"] * BEDROCK_IN_NANO + stats["completion_tokens"] * BEDROCK_OUT_NANO


def test_bedrock_refusals_reach_the_client_in_openai_shape(cluster, monkeypatch):
    dp, secret = bedrock_setup(cluster, monkeypatch)
    # an http image URL cannot be expressed in Converse: refused before going upstream
    resp = chat(dp.api_port, secret, model=BEDROCK_MODEL, extra={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
    assert resp.status == 400, resp.body
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and "data: URLs" in err["message"], err
    assert cluster.mock_stats()["by_provider"]["bedrock"]["chat_requests"] == 0
    # the provider's own validation error, translated
    cluster.mock_faults(count=1, status=400, provider="bedrock")
    resp = chat(dp.api_port, secret, model=BEDROCK_MODEL)
    assert resp.status == 400, resp.body
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error", err
    assert "Malformed input request (injected by sluice-mockllm)" in err["message"], err
    assert cluster.mock_stats()["by_provider"]["bedrock"]["requests"] == 0


def test_bedrock_wrong_secret_is_refused_and_surfaced(cluster, monkeypatch):
    keys = "  - {id: bad, access_key_id_env: AWS_KEY_ID, secret_access_key_env: AWS_BAD_SECRET}\n"
    dp, secret = bedrock_setup(cluster, monkeypatch, keys=keys)
    resp = chat(dp.api_port, secret, model=BEDROCK_MODEL)
    assert resp.status == 502, resp.body
    err = resp.json()["error"]
    assert err["code"] == "upstream_auth_failed", err
    assert MOCK_AWS_SECRET not in resp.body.decode() and "not/the/right" not in resp.body.decode()
    assert "signature" in err["message"], err        # AWS's own words, first line only
    stats = cluster.mock_stats()["by_provider"]["bedrock"]
    assert stats["unauthorized"] >= 1 and stats["requests"] == 0


def test_bedrock_bad_credential_is_skipped_for_the_good_one(cluster, monkeypatch):
    keys = ("  - {id: bad, access_key_id_env: AWS_KEY_ID, secret_access_key_env: AWS_BAD_SECRET}\n"
            "  - {id: good, access_key_id_env: AWS_KEY_ID, secret_access_key_env: AWS_SECRET}\n")
    dp, secret = bedrock_setup(cluster, monkeypatch, keys=keys)
    for _ in range(6):
        resp = chat(dp.api_port, secret, model=BEDROCK_MODEL, max_tokens=3)
        assert resp.status == 200, resp.body
    stats = cluster.mock_stats()["by_provider"]["bedrock"]
    assert stats["requests"] == 6
    assert stats["unauthorized"] <= 1          # marked bad after its first refusal


# ---- vertex (Gemini generateContent, Claude rawPredict, Google OAuth) ------------

import subprocess  # noqa: E402
import time  # noqa: E402

from harness import binary  # noqa: E402

GEMINI_MODEL = "gemini-2.0-flash"
VERTEX_CLAUDE_MODEL = "claude-sonnet-4@20250514"
GEMINI_IN_NANO = 1250         # $1.25 per million input tokens
GEMINI_CACHED_NANO = 250      # $0.25 per million cached input tokens
GEMINI_OUT_NANO = 10000       # $10 per million output tokens
VCLAUDE_IN_NANO = 3000
VCLAUDE_OUT_NANO = 15000


class VertexMock:
    """A mock with Google's token endpoint accepting a fresh test service account."""

    def __init__(self, cluster, ttl=None):
        self.sa_path = cluster.path("vertex-sa.json")
        subprocess.run([binary("sluice-mockllm"), "--make-service-account", self.sa_path], check=True)
        argv = [binary("sluice-mockllm"), "--listen", "127.0.0.1:0", "--api-key", cluster.mock_key,
                "--google-sa", self.sa_path]
        if ttl is not None:
            argv += ["--google-token-ttl", str(ttl)]
        self.cluster, self.argv = cluster, argv
        self.proc = cluster._start("mockllm-vertex", argv)
        self.port = self.proc.ports[0]

    def restart(self):
        """A new process on the same port: Google having revoked every token
        it issued (the new process signs tokens with a new key)."""
        self.proc.stop()
        argv = [a if a != "127.0.0.1:0" else f"127.0.0.1:{self.port}" for a in self.argv]
        self.proc = self.cluster._start("mockllm-vertex-2", argv)

    def stats(self):
        return http_request(self.port, "GET", "/_mock/stats").json()["by_provider"]

    def faults(self, **fault):
        resp = http_request(self.port, "POST", "/_mock/faults", body=fault)
        assert resp.status == 200, resp.body


def vertex_yaml(mock):
    # base_url and the token URI both point at the mock; the key is the account file itself
    key = f'{{id: sa, service_account_file: "{mock.sa_path}"}}'
    params = f'{{project: test-project, location: us-central1, token_uri: "http://127.0.0.1:{mock.port}/token"}}'
    return f"""\
providers:
{mock_provider("vertex", "vertex", mock.port, key, params=params)}
models:
- {{provider: vertex, model: {GEMINI_MODEL}, input_usd_per_mtok: 1.25, output_usd_per_mtok: 10, cached_input_usd_per_mtok: 0.25}}
- {{provider: vertex, model: "{VERTEX_CLAUDE_MODEL}", input_usd_per_mtok: 3, output_usd_per_mtok: 15, max_output_tokens: 8192}}
- {{provider: vertex, model: text-embedding-005, input_usd_per_mtok: 0.1, output_usd_per_mtok: 0}}
virtual_keys:
- id: vk_vertex
  customer_id: acme_corp
  allowed_providers: [vertex]
"""


def vertex_setup(cluster, ttl=None):
    mock = VertexMock(cluster, ttl)
    created = cluster.apply(vertex_yaml(mock))
    assert "vk_vertex" in created, cluster.last_apply_output
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    # the access token is fetched in the background as soon as the credential is known
    wait_for(lambda: mock.stats()["google_oauth"]["requests"] >= 1, 10, interval=0.05, what="a vertex access token")
    time.sleep(0.2)
    return dp, created["vk_vertex"], mock


def vertex_ledger(cluster):
    rows = cluster.sql("SELECT model, sum(requests), sum(errors), sum(input_tokens), sum(cached_input_tokens), "
                       "sum(output_tokens), sum(cost_nano) FROM usage_minute WHERE provider = 'vertex' "
                       "GROUP BY 1 ORDER BY 1")
    out = {}
    for line in rows.splitlines():
        m, r, e, i, ci, o, c = line.split("|")
        out[m] = {"requests": int(r), "errors": int(e), "input": int(i), "cached": int(ci), "output": int(o),
                  "cost_nano": int(c)}
    return out


def wait_vertex_ledger(cluster, n):
    return wait_for(lambda: (lambda rows: rows if sum(r["requests"] for r in rows.values()) >= n else None)(
        vertex_ledger(cluster)), 10, interval=0.1, what=f"{n} vertex requests in the ledger")


def test_vertex_gemini_chat_stream_tools_and_cache_priced_exactly(cluster):
    dp, secret, mock = vertex_setup(cluster)

    # non-streaming; the system prompt becomes systemInstruction; a limit below 1024 is used in full
    resp = chat(dp.api_port, secret, model=GEMINI_MODEL, max_tokens=5,
                extra={"messages": TERSE_MESSAGES})
    assert resp.status == 200, resp.body
    assert resp.header("x-sluice-provider") == "vertex"
    assert resp.header("x-sluice-model") == GEMINI_MODEL
    body = resp.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == GEMINI_MODEL
    assert body["choices"][0]["message"]["content"] == "mock word1 word2 word3 word4"
    assert body["choices"][0]["finish_reason"] == "length"
    # 3 + (4 + 3 words of system) + (4 + 3 words of user)
    assert body["usage"] == {"prompt_tokens": 17, "completion_tokens": 5, "total_tokens": 22,
                             "prompt_tokens_details": {"cached_tokens": 0}}

    # no limit: a natural stop after 16 words; a stop sequence ends it early
    body = chat(dp.api_port, secret, model=GEMINI_MODEL, content="hello").json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert len(body["choices"][0]["message"]["content"].split()) == 16
    body = chat(dp.api_port, secret, model="vertex/" + GEMINI_MODEL, content="hello", extra={"stop": "word3"}).json()
    assert body["choices"][0]["message"]["content"] == "mock word1 word2"

    # streaming with usage: role chunk, one delta per word, finish, usage, [DONE]
    check_stream_with_usage(dp, secret, GEMINI_MODEL)
    chunks = chunks_of(chat(dp.api_port, secret, model=GEMINI_MODEL, stream=True, max_tokens=3))
    assert all(c.get("usage") is None for c in chunks)

    # tool calls: the call, streamed as one delta, then the result goes back as a functionResponse
    question = {"role": "user", "content": "What is the weather in Paris?"}
    resp = chat(dp.api_port, secret, model=GEMINI_MODEL, extra={"messages": [question], "tools": [WEATHER_TOOL]})
    assert resp.status == 200, resp.body
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"] == "call_0" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "Paris"}
    chunks = chunks_of(chat(dp.api_port, secret, model=GEMINI_MODEL, stream=True,
                            extra={"messages": [question], "tools": [WEATHER_TOOL], "tool_choice": "required"}))
    deltas = [d for c in chunks if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert len(deltas) == 1 and deltas[0]["index"] == 0 and deltas[0]["function"]["name"] == "get_weather"
    assert json.loads(deltas[0]["function"]["arguments"]) == {"location": "Paris"}
    resp = chat(dp.api_port, secret, model=GEMINI_MODEL, max_tokens=3, extra={"messages": [
        question, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"}], "tools": [WEATHER_TOOL]})
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == "mock word1 word2"
    # 3 + (4 + 6 words) + (4: a function call has no text) + (4: nor has its response)
    assert body["usage"]["prompt_tokens"] == 21

    # context caching: a cachedContent name passes through; its tokens are priced as cached
    resp = chat(dp.api_port, secret, model=GEMINI_MODEL, max_tokens=4, content="a question of six words here",
                extra={"cachedContent": "projects/test-project/locations/us-central1/cachedContents/c1"})
    usage = resp.json()["usage"]
    assert usage["prompt_tokens"] == 3 + 4 + 6
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] // 2

    # what Gemini cannot take is the client's error, and nothing goes upstream
    before = mock.stats()["vertex"]["chat_requests"]
    resp = chat(dp.api_port, secret, model=GEMINI_MODEL, extra={"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/picture"}}]}]})
    assert resp.status == 400, resp.body
    assert "extension" in resp.json()["error"]["message"]
    assert mock.stats()["vertex"]["chat_requests"] == before

    # one access token served every request; the ledger equals the mock's counts, priced exactly
    stats = mock.stats()
    assert stats["google_oauth"]["requests"] == 1
    assert stats["vertex"]["unauthorized"] == 0 and stats["vertex"]["chat_requests"] == 9
    rows = wait_vertex_ledger(cluster, 10)
    row = rows[GEMINI_MODEL]
    assert row["requests"] == 10 and row["errors"] == 1  # the refused image counts as an error, with no tokens
    assert row["input"] == stats["vertex"]["prompt_tokens"]
    assert row["cached"] == stats["vertex"]["cached_tokens"] > 0
    assert row["output"] == stats["vertex"]["completion_tokens"]
    assert row["cost_nano"] == ((row["input"] - row["cached"]) * GEMINI_IN_NANO + row["cached"] * GEMINI_CACHED_NANO
                                + row["output"] * GEMINI_OUT_NANO)


def test_vertex_claude_through_raw_predict(cluster):
    dp, secret, mock = vertex_setup(cluster)
    resp = chat(dp.api_port, secret, model=VERTEX_CLAUDE_MODEL, max_tokens=5,
                extra={"messages": TERSE_MESSAGES})
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == "mock word1 word2 word3 word4"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] == 17 and body["usage"]["completion_tokens"] == 5

    chunks = chunks_of(chat(dp.api_port, secret, model=VERTEX_CLAUDE_MODEL, stream=True, max_tokens=4,
                            extra={"stream_options": {"include_usage": True}}))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "mock word1 word2 word3"
    assert chunks[-1]["usage"]["completion_tokens"] == 4

    question = {"role": "user", "content": "What is the weather in Paris?"}
    resp = chat(dp.api_port, secret, model=VERTEX_CLAUDE_MODEL, extra={"messages": [question],
                                                                       "tools": [WEATHER_TOOL]})
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"location": "Paris"}

    stats = mock.stats()
    assert stats["vertex"]["chat_requests"] == 3 and stats["anthropic"]["chat_requests"] == 0
    assert stats["google_oauth"]["requests"] == 1
    row = wait_vertex_ledger(cluster, 3)[VERTEX_CLAUDE_MODEL]
    assert row["input"] == stats["vertex"]["prompt_tokens"]
    assert row["output"] == stats["vertex"]["completion_tokens"]
    assert row["cost_nano"] == row["input"] * VCLAUDE_IN_NANO + row["output"] * VCLAUDE_OUT_NANO


def test_vertex_errors_in_openai_shape(cluster):
    dp, secret, mock = vertex_setup(cluster)
    # more 429s than the request path retries: the last one reaches the client
    mock.faults(count=10, status=429, provider="vertex")
    resp = chat(dp.api_port, secret, model=GEMINI_MODEL)
    assert resp.status == 429, resp.body
    err = resp.json()["error"]
    assert err["type"] == "rate_limit_error"
    http_request(mock.port, "DELETE", "/_mock/faults")

    mock.faults(count=1, status=400, provider="vertex")
    resp = chat(dp.api_port, secret, model=GEMINI_MODEL)
    assert resp.status == 400, resp.body
    assert resp.json()["error"]["type"] == "invalid_request_error"

    # an in-stream error after content ends the stream with an error event and no [DONE]
    mock.faults(count=1, error_after_chunks=3, provider="vertex")
    resp = chat(dp.api_port, secret, model=GEMINI_MODEL, stream=True)
    assert resp.status == 200
    events = sse_events(resp.body)
    assert events[-1] != "[DONE]"
    assert "error" in json.loads(events[-1])


def test_vertex_short_lived_tokens_refresh_without_failed_requests(cluster):
    dp, secret, mock = vertex_setup(cluster, ttl=5)
    deadline = time.monotonic() + 9
    n = 0
    while time.monotonic() < deadline:
        resp = chat(dp.api_port, secret, model=GEMINI_MODEL, max_tokens=2, stream=(n % 2 == 1))
        assert resp.status == 200, (n, resp.body)
        n += 1
        time.sleep(0.25)
    stats = mock.stats()
    assert stats["vertex"]["unauthorized"] == 0
    assert stats["vertex"]["chat_requests"] == n
    # a 5 s token is renewed half-way: at least three in nine seconds, never one per request
    assert 3 <= stats["google_oauth"]["requests"] < n


def test_vertex_refused_token_is_renewed_not_condemned(cluster):
    """Google refuses a token it issued (revoked). The data plane renews it
    at once instead of shutting the service account out for the
    authentication cooldown (10 minutes), so requests succeed again within
    seconds."""
    dp, secret, mock = vertex_setup(cluster)
    assert chat(dp.api_port, secret, model=GEMINI_MODEL, max_tokens=2).status == 200
    mock.restart()
    first = chat(dp.api_port, secret, model=GEMINI_MODEL, max_tokens=2)
    assert first.status in (200, 401, 503), first.body          # 200 when the retry already had the new token
    wait_for(lambda: chat(dp.api_port, secret, model=GEMINI_MODEL, max_tokens=2).status == 200, 10, interval=0.2,
             what="a request with a renewed token")
    stats = mock.stats()
    assert stats["google_oauth"]["requests"] >= 1               # the new process issued a token
    assert stats["vertex"]["unauthorized"] <= 2                 # refused once or twice, not per request
    for _ in range(5):
        assert chat(dp.api_port, secret, model=GEMINI_MODEL, max_tokens=2).status == 200
    assert "refused the access token" in dp.log_text()


# ---- anthropic-format ingress (POST /v1/messages) ----------------------------------

def messages(port, secret, body):
    return http_request(port, "POST", "/v1/messages", body=body,
                        headers={"x-api-key": secret, "anthropic-version": "2023-06-01",
                                 "content-type": "application/json"})


def anthropic_events(resp):
    """(event name, data) pairs of an Anthropic SSE answer."""
    assert resp.status == 200, resp.body
    out = []
    for block in resp.body.decode().split("\n\n"):
        lines = block.strip().split("\n")
        if len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "):
            out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


def test_anthropic_ingress_reaches_claude_and_gpt_in_anthropic_shape(cluster):
    port = cluster.mock_port
    created = cluster.apply(f"""\
providers:
- {{name: anthropic, kind: anthropic, base_url: "http://127.0.0.1:{port}", keys: [{{secret_env: MOCK_API_KEY}}]}}
- {{name: openai, kind: openai, base_url: "http://127.0.0.1:{port}/v1", keys: [{{secret_env: MOCK_API_KEY}}]}}
models:
- {{provider: anthropic, model: claude-sonnet-4-6, input_usd_per_mtok: 3, output_usd_per_mtok: 15}}
- {{provider: openai, model: gpt-4o, input_usd_per_mtok: 2.50, output_usd_per_mtok: 10.00}}
virtual_keys:
- id: vk_claude
  customer_id: acme_corp
  allowed_providers: [anthropic, openai]
""")
    secret = created["vk_claude"]
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    question = {"role": "user", "content": [{"type": "text", "text": "one two three"}]}

    for model in ("claude-sonnet-4-6", "gpt-4o"):
        resp = messages(dp.api_port, secret, {"model": model, "max_tokens": 5, "system": "Be terse.",
                                              "messages": [question]})
        assert resp.status == 200, (model, resp.body)
        msg = resp.json()
        assert msg["type"] == "message" and msg["role"] == "assistant" and msg["model"] == model
        assert msg["id"].startswith("msg_")
        assert msg["content"] == [{"type": "text", "text": "mock word1 word2 word3 word4"}], msg
        assert msg["stop_reason"] == "max_tokens"
        assert msg["usage"]["output_tokens"] == 5 and msg["usage"]["input_tokens"] == 16

        # streamed: Anthropic's event sequence, text deltas joining to the same text
        events = anthropic_events(messages(dp.api_port, secret, {
            "model": model, "max_tokens": 5, "stream": True, "system": "Be terse.", "messages": [question]}))
        names = [e for e, _ in events]
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"], names
        assert names[1] == "content_block_start" and names[-3] == "content_block_stop", names
        text = "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta")
        assert text == "mock word1 word2 word3 word4"
        delta = events[-2][1]
        assert delta["delta"]["stop_reason"] == "max_tokens" and delta["usage"]["output_tokens"] == 5

        # tools: a tool_use block with the input object
        tools = [{"name": "get_weather", "description": "Weather", "input_schema": {
            "type": "object", "properties": {"location": {"type": "string"}}}}]
        weather = {"role": "user", "content": "What is the weather in Paris?"}
        resp = messages(dp.api_port, secret, {"model": model, "max_tokens": 1024, "tools": tools,
                                              "messages": [weather]})
        msg = resp.json()
        assert resp.status == 200, resp.body
        assert msg["stop_reason"] == "tool_use", msg
        [use] = [b for b in msg["content"] if b["type"] == "tool_use"]
        assert use["name"] == "get_weather" and use["input"] == {"location": "Paris"}
        events = anthropic_events(messages(dp.api_port, secret, {"model": model, "max_tokens": 1024, "stream": True,
                                                                 "tools": tools, "messages": [weather]}))
        starts = [d["content_block"] for e, d in events if e == "content_block_start"]
        assert starts[-1]["type"] == "tool_use" and starts[-1]["name"] == "get_weather"
        args = "".join(d["delta"]["partial_json"] for e, d in events
                       if e == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
        assert json.loads(args) == {"location": "Paris"}
        assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
        # and the tool's result goes back as a tool_result block
        resp = messages(dp.api_port, secret, {"model": model, "max_tokens": 3, "tools": tools, "messages": [
            weather, {"role": "assistant", "content": [use]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "sunny"}]}]})
        assert resp.status == 200, resp.body
        assert resp.json()["content"] == [{"type": "text", "text": "mock word1 word2"}]

    # malformed requests are refused in Anthropic's error shape
    resp = messages(dp.api_port, secret, {"model": "claude-sonnet-4-6", "messages": [question]})
    assert resp.status == 400, resp.body
    err = resp.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in err["error"]["message"]


def test_vertex_embeddings_through_predict(cluster):
    dp, secret, mock = vertex_setup(cluster)
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    resp = http_request(dp.api_port, "POST", "/v1/embeddings", headers=headers, body={
        "model": "text-embedding-005", "input": ["one two three", "four five"], "dimensions": 16})
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["object"] == "list" and body["model"] == "text-embedding-005"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 16 for d in body["data"])
    assert body["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    resp = http_request(dp.api_port, "POST", "/v1/embeddings", headers=headers, body={
        "model": "text-embedding-005", "input": "six", "encoding_format": "base64"})
    assert resp.status == 200, resp.body
    import base64
    import struct
    raw = base64.b64decode(resp.json()["data"][0]["embedding"])
    vec = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(vec) == 768 and abs(sum(x * x for x in vec) - 1) < 1e-3
    stats = mock.stats()["vertex"]
    assert stats["embedding_requests"] == 2 and stats["prompt_tokens"] == 6
    row = wait_vertex_ledger(cluster, 2)["text-embedding-005"]
    assert row["input"] == 6 and row["output"] == 0 and row["cost_nano"] == 6 * 100


def test_bedrock_embeddings_titan_and_cohere(cluster, monkeypatch):
    import base64
    import struct
    dp, secret = bedrock_setup(cluster, monkeypatch)
    auth = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    # Titan: one input per call, dimensions passed through, tokens from the body
    resp = http_request(dp.api_port, "POST", "/v1/embeddings", headers=auth, body={
        "model": "amazon.titan-embed-text-v2:0", "input": "hello embedding world", "dimensions": 256})
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["object"] == "list" and body["model"] == "amazon.titan-embed-text-v2:0"
    assert len(body["data"]) == 1 and body["data"][0]["index"] == 0 and len(body["data"][0]["embedding"]) == 256
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}

    # Cohere: a batch, tokens from X-Amzn-Bedrock-Input-Token-Count; base64 as the OpenAI SDKs ask
    resp = http_request(dp.api_port, "POST", "/v1/embeddings", headers=auth, body={
        "model": "cohere.embed-english-v3", "input": ["a b", "c d e"], "encoding_format": "base64"})
    assert resp.status == 200, resp.body
    body = resp.json()
    assert [d["index"] for d in body["data"]] == [0, 1]
    vec = struct.unpack("<1024f", base64.b64decode(body["data"][1]["embedding"]))
    assert abs(sum(x * x for x in vec) - 1.0) < 1e-3          # the mock's vectors have unit length
    assert body["usage"]["prompt_tokens"] == 5

    # Titan cannot batch: refused before going upstream
    resp = http_request(dp.api_port, "POST", "/v1/embeddings", headers=auth, body={
        "model": "amazon.titan-embed-text-v2:0", "input": ["a", "b"]})
    assert resp.status == 400 and "one input" in resp.json()["error"]["message"], resp.body

    stats = cluster.mock_stats()["by_provider"]["bedrock"]
    assert stats["embedding_requests"] == 2 and stats["prompt_tokens"] == 8
    rows = {r["model"]: r for r in wait_bedrock_ledger(cluster, 2)}
    assert rows["amazon.titan-embed-text-v2:0"]["input"] == 3
    assert rows["amazon.titan-embed-text-v2:0"]["cost_nano"] == 3 * 20
    assert rows["cohere.embed-english-v3"]["input"] == 5
    assert rows["cohere.embed-english-v3"]["cost_nano"] == 5 * 100
