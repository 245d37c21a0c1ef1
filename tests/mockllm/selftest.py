#!/usr/bin/env python3
"""End-to-end self test of sluice-mockllm.

Usage: selftest.py PATH/TO/sluice-mockllm

Starts the mock on a free port, checks every provider's wire format (OpenAI,
Azure OpenAI, Anthropic, Bedrock, Vertex AI and its token endpoint), token
counting, auth, tool calls, fault injection and stats over real HTTP, then
stops it with SIGTERM and expects exit code 0. Standard library only, plus the
openssl command line to sign the Vertex service account's JWTs.
"""
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zlib

API_KEY = "sk-selftest-0123456789abcdef"
AUTH = {"Authorization": "Bearer " + API_KEY, "Content-Type": "application/json"}
ANTHROPIC_KEY = "sk-ant-selftest-0123456789"
AZURE_KEY = "azure-selftest-0123456789"
AWS_AKID = "AKIAMOCKLLMTEST00001"  # the mock's documented defaults
AWS_SECRET = "mockllm/TEST/secret/0000000000000000000000"
ANTHROPIC_HEADERS = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01",
                     "content-type": "application/json"}


class Mock:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="mockllm-selftest-")
        port_file = os.path.join(self.dir, "port")
        self.sa_file = os.path.join(self.dir, "sa.json")
        subprocess.run([binary, "--make-service-account", self.sa_file], check=True)
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--api-key", API_KEY, "--port-file", port_file, "--threads", "2",
             "--anthropic-key", ANTHROPIC_KEY, "--azure-key", AZURE_KEY, "--google-sa", self.sa_file])
        deadline = time.time() + 10
        while not os.path.exists(port_file):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("mock did not start")
            time.sleep(0.02)
        with open(port_file) as f:
            self.port = int(f.read())

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        c = self.conn(timeout)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r, data

    def json(self, method, path, body=None, headers=None):
        r, data = self.request(method, path, body, headers)
        return r.status, json.loads(data), r

    def fault(self, **spec):
        status, body, _ = self.json("POST", "/_mock/faults", spec)
        assert status == 200, body

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)


def chat_body(content="hello there world", **extra):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    body.update(extra)
    return body


def read_sse(resp):
    """Returns the list of `data:` payloads of an SSE response."""
    events = []
    for block in resp.read().decode().split("\n\n"):
        if block:
            assert block.startswith("data: "), block
            events.append(block[len("data: "):])
    return events


def check_error_shape(body, code=None):
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    if code is not None:
        assert err["code"] == code, err


# ---- tests -------------------------------------------------------------------

def test_healthz(m):
    r, data = m.request("GET", "/healthz")
    assert r.status == 200 and data == b"ok"


def test_chat_completion_counts_tokens_from_input(m):
    status, body, r = m.json("POST", "/v1/chat/completions", chat_body(), AUTH)
    assert status == 200, body
    assert r.getheader("Content-Length") is not None
    assert r.getheader("Content-Type").startswith("application/json")
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-mock-")
    assert body["model"] == "gpt-4o"
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"].split()) == 16
    usage = body["usage"]
    assert usage["prompt_tokens"] == 3 + 4 + 3
    assert usage["completion_tokens"] == 16 and usage["total_tokens"] == 26
    assert "system_fingerprint" in body


def test_content_parts_and_max_tokens(m):
    body = {"model": "m\"x", "max_tokens": 5, "messages": [
        {"role": "system", "content": "be  terse\n"},
        {"role": "user", "content": [{"type": "text", "text": "a b c"},
                                     {"type": "image_url", "image_url": {"url": "ignored words here"}}]},
        {"role": "assistant", "content": None}]}
    status, out, _ = m.json("POST", "/v1/chat/completions", body, AUTH)
    assert status == 200, out
    assert out["model"] == "m\"x"
    assert out["usage"]["prompt_tokens"] == 3 + (4 + 2) + (4 + 3) + 4
    assert out["usage"]["completion_tokens"] == 5
    assert out["choices"][0]["finish_reason"] == "length"
    status, out, _ = m.json("POST", "/v1/chat/completions", chat_body(max_completion_tokens=100000), AUTH)
    assert out["usage"]["completion_tokens"] == 4096


def test_stream_matches_non_stream(m):
    _, plain, _ = m.json("POST", "/v1/chat/completions", chat_body(max_tokens=7), AUTH)
    c = m.conn()
    c.request("POST", "/v1/chat/completions", json.dumps(chat_body(max_tokens=7, stream=True)), AUTH)
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
    events = read_sse(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(ch["object"] == "chat.completion.chunk" and "usage" not in ch for ch in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    words = [ch["choices"][0]["delta"]["content"] for ch in chunks[1:-1]]
    assert len(words) == 7
    assert "".join(words) == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}


def test_stream_include_usage(m):
    c = m.conn()
    c.request("POST", "/v1/chat/completions",
              json.dumps(chat_body(stream=True, stream_options={"include_usage": True})), AUTH)
    events = read_sse(c.getresponse())
    chunks = [json.loads(e) for e in events[:-1]]
    assert events[-1] == "[DONE]"
    assert all(ch["usage"] is None for ch in chunks[:-1])
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 16
    assert last["usage"]["prompt_tokens"] == 10
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_unauthorized(m):
    status, body, _ = m.json("POST", "/v1/chat/completions", chat_body(), {"Content-Type": "application/json"})
    assert status == 401
    check_error_shape(body, "invalid_api_key")
    wrong = "sk-wrong-key-0000wxyz"
    status, body, _ = m.json("POST", "/v1/chat/completions", chat_body(),
                             {"Authorization": "Bearer " + wrong})
    assert status == 401
    check_error_shape(body, "invalid_api_key")
    assert body["error"]["type"] == "invalid_request_error"
    assert wrong not in body["error"]["message"] and "wxyz" in body["error"]["message"]
    status, _, _ = m.json("GET", "/v1/models")
    assert status == 401


def test_bad_requests(m):
    status, body, _ = m.json("POST", "/v1/chat/completions", "{not json", AUTH)
    assert status == 400
    check_error_shape(body)
    status, body, _ = m.json("POST", "/v1/chat/completions", {"messages": []}, AUTH)
    assert status == 400
    check_error_shape(body)
    status, body, _ = m.json("POST", "/v1/chat/completions", {"model": "gpt-4o"}, AUTH)
    assert status == 400
    check_error_shape(body, "missing_required_parameter")
    assert body["error"]["param"] == "messages"
    status, body, _ = m.json("GET", "/v1/nope", None, AUTH)
    assert status == 404
    check_error_shape(body)


def test_models_and_embeddings(m):
    status, body, _ = m.json("GET", "/v1/models", None, AUTH)
    assert status == 200 and body["object"] == "list"
    ids = {x["id"] for x in body["data"]}
    assert {"gpt-4o", "gpt-4o-mini", "text-embedding-3-small"} <= ids
    req = {"model": "text-embedding-3-small", "input": ["hello world", "x"]}
    status, a, _ = m.json("POST", "/v1/embeddings", req, AUTH)
    assert status == 200, a
    _, b, _ = m.json("POST", "/v1/embeddings", req, AUTH)
    assert a == b
    assert [d["index"] for d in a["data"]] == [0, 1]
    vec = a["data"][0]["embedding"]
    assert len(vec) == 8 and abs(sum(v * v for v in vec) - 1) < 1e-4
    assert a["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    req = {"model": "text-embedding-3-small", "input": "hello world", "encoding_format": "base64"}
    _, c, _ = m.json("POST", "/v1/embeddings", req, AUTH)
    decoded = struct.unpack("<8f", base64.b64decode(c["data"][0]["embedding"]))
    assert all(abs(x - y) < 1e-6 for x, y in zip(decoded, vec))


def test_status_fault_for_next_two_requests(m):
    m.fault(count=2, status=503)
    m.fault(count=1, status=429, retry_after=3)
    statuses = []
    for _ in range(4):
        status, body, r = m.json("POST", "/v1/chat/completions", chat_body(), AUTH)
        statuses.append(status)
        if status == 503:
            assert body["error"]["type"] == "server_error"
        if status == 429:
            check_error_shape(body, "rate_limit_exceeded")
            assert r.getheader("Retry-After") == "3"
    assert statuses == [503, 503, 429, 200], statuses


def test_raw_error_body(m):
    m.fault(count=1, status=500, error_body="{\"custom\":1}")
    r, data = m.request("POST", "/v1/chat/completions", json.dumps(chat_body()), AUTH)
    assert r.status == 500 and data == b"{\"custom\":1}"


def test_delay_before_headers(m):
    m.fault(count=1, delay_ms=300)
    t = time.monotonic()
    status, _, _ = m.json("POST", "/v1/chat/completions", chat_body(), AUTH)
    assert status == 200 and time.monotonic() - t >= 0.29


def test_chunk_delay(m):
    m.fault(count=1, chunk_delay_ms=50)
    c = m.conn()
    t = time.monotonic()
    c.request("POST", "/v1/chat/completions", json.dumps(chat_body(max_tokens=3, stream=True)), AUTH)
    events = read_sse(c.getresponse())
    # role, 3 words, finish, [DONE]: 5 gaps
    assert len(events) == 6 and time.monotonic() - t >= 0.24


def test_drop_mid_stream(m):
    m.fault(count=1, drop_after_chunks=3)
    c = m.conn()
    c.request("POST", "/v1/chat/completions", json.dumps(chat_body(stream=True)), AUTH)
    r = c.getresponse()
    assert r.status == 200
    try:
        r.read()
    except (http.client.IncompleteRead, ConnectionError) as e:
        if isinstance(e, http.client.IncompleteRead):
            assert e.partial.count(b"data: ") == 3
        return
    raise AssertionError("stream was not dropped")


def test_drop_without_response(m):
    m.fault(count=1, drop_after_chunks=0)
    try:
        m.request("POST", "/v1/chat/completions", json.dumps(chat_body()), AUTH)
    except (http.client.RemoteDisconnected, ConnectionError):
        return
    raise AssertionError("connection was not dropped")


def test_clear_faults(m):
    m.fault(count=5, status=500)
    r, _ = m.request("DELETE", "/_mock/faults")
    assert r.status == 200
    status, _, _ = m.json("POST", "/v1/chat/completions", chat_body(), AUTH)
    assert status == 200


def test_stats_after_reset(m):
    r, _ = m.request("POST", "/_mock/reset")
    assert r.status == 200
    m.json("POST", "/v1/chat/completions", chat_body(max_tokens=4), AUTH)
    c = m.conn()
    c.request("POST", "/v1/chat/completions", json.dumps(chat_body(max_tokens=2, stream=True)), AUTH)
    read_sse(c.getresponse())
    m.json("POST", "/v1/chat/completions", chat_body())
    m.fault(count=1, drop_after_chunks=1)
    c = m.conn()
    c.request("POST", "/v1/chat/completions", json.dumps(chat_body(stream=True)), AUTH)
    try:
        c.getresponse().read()
    except (http.client.IncompleteRead, ConnectionError):
        pass
    m.fault(count=1, status=503)
    m.json("POST", "/v1/chat/completions", chat_body(), AUTH)
    _, stats, _ = m.json("GET", "/_mock/stats")
    assert stats["requests"] == 2, stats
    assert stats["chat_requests"] == 2
    assert stats["prompt_tokens"] == 20 and stats["completion_tokens"] == 6
    assert stats["unauthorized"] == 1 and stats["faults_applied"] == 2, stats


# ---- helpers for the other providers -------------------------------------------

def stats_of(m, provider):
    _, stats, _ = m.json("GET", "/_mock/stats")
    return stats["by_provider"][provider]


def read_named_sse(resp):
    """Returns [(event name, data)] of an SSE response with `event:` lines."""
    out = []
    for block in resp.read().decode().split("\n\n"):
        if not block:
            continue
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = line[len("data: "):]
        out.append((name, json.loads(data)))
    return out


def sigv4_headers(method, host, path, body, akid=AWS_AKID, secret=AWS_SECRET, region="us-east-1",
                  service="bedrock", when=None):
    """Signs a request as the AWS SDKs do (path already percent-encoded once)."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"content-type": "application/json", "host": host, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical_uri = urllib.parse.quote(path, safe="/-_.~")  # encoded once more, as for every service but S3
    canonical = "\n".join([method, canonical_uri, "",
                           "".join("%s:%s\n" % (k, headers[k]) for k in sorted(headers)), signed, payload_hash])
    scope = "%s/%s/%s/aws4_request" % (day, region, service)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        akid, scope, signed, sig)
    return headers


def bedrock(m, model_id, op, body, **sign):
    raw = json.dumps(body).encode()
    path = "/model/%s/%s" % (urllib.parse.quote(model_id, safe=""), op)
    headers = sigv4_headers("POST", "127.0.0.1:%d" % m.port, path, raw, **sign)
    c = m.conn()
    c.request("POST", path, body=raw, headers=headers)
    r = c.getresponse()
    return r, r.read()


def decode_eventstream(data):
    """Decodes application/vnd.amazon.eventstream, checking both CRCs."""
    msgs = []
    while data:
        total, hlen, prelude_crc = struct.unpack(">III", data[:12])
        assert zlib.crc32(data[:8]) == prelude_crc, "prelude crc"
        assert zlib.crc32(data[:total - 4]) == struct.unpack(">I", data[total - 4:total])[0], "message crc"
        h, pos, headers = data[12:12 + hlen], 0, {}
        while pos < len(h):
            n = h[pos]
            name = h[pos + 1:pos + 1 + n].decode()
            pos += 1 + n
            assert h[pos] == 7, "string header expected"
            vlen = struct.unpack(">H", h[pos + 1:pos + 3])[0]
            headers[name] = h[pos + 3:pos + 3 + vlen].decode()
            pos += 3 + vlen
        msgs.append((headers, json.loads(data[12 + hlen:total - 4])))
        data = data[total:]
    return msgs


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def google_assertion(m, sa_file=None, aud=None, iat=None, tamper=False):
    """An RS256 JWT for the service account, signed with the openssl CLI."""
    with open(sa_file or m.sa_file) as f:
        sa = json.load(f)
    key = os.path.join(m.dir, "key.pem")
    with open(key, "w") as f:
        f.write(sa["private_key"])
    now = int(time.time()) if iat is None else iat
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": sa["private_key_id"]}).encode())
    claims = b64url(json.dumps({"iss": sa["client_email"], "scope": "https://www.googleapis.com/auth/cloud-platform",
                                "aud": aud or "http://127.0.0.1:%d/token" % m.port, "iat": now,
                                "exp": now + 3600}).encode())
    signing_input = (header + "." + claims).encode()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input, check=True,
                         capture_output=True).stdout
    if tamper:
        sig = bytes([sig[0] ^ 1]) + sig[1:]
    return header + "." + claims + "." + b64url(sig)


def google_token(m, assertion=None):
    body = urllib.parse.urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                   "assertion": assertion or google_assertion(m)})
    return m.json("POST", "/token", body, {"Content-Type": "application/x-www-form-urlencoded"})


VERTEX = "/v1/projects/p1/locations/us-central1/publishers/%s/models/%s:%s"


def vertex(m, token, publisher, model, method, body, query=""):
    return m.request("POST", VERTEX % (publisher, model, method) + query, json.dumps(body),
                     {"Authorization": "Bearer " + token, "Content-Type": "application/json"})


WEATHER_TOOL_OPENAI = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


# ---- OpenAI additions ----------------------------------------------------------

def test_openai_tool_call_and_cached_tokens(m):
    body = chat_body("what is the weather in Paris", tools=WEATHER_TOOL_OPENAI, prompt_cache_key="k1")
    status, out, _ = m.json("POST", "/v1/chat/completions", body, AUTH)
    assert status == 200, out
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "Paris"}
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == out["usage"]["prompt_tokens"] // 2
    c = m.conn()
    c.request("POST", "/v1/chat/completions", json.dumps(dict(body, stream=True)), AUTH)
    chunks = [json.loads(e) for e in read_sse(c.getresponse())[:-1]]
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["function"]["name"] == "get_weather" and first["id"].startswith("call_")
    args = "".join(ch["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for ch in chunks[1:-1])
    assert json.loads(args) == {"location": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # a tool result as the last message gets a text answer
    body["messages"] += [{"role": "assistant", "content": None, "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    _, out, _ = m.json("POST", "/v1/chat/completions", body, AUTH)
    assert out["choices"][0]["finish_reason"] == "stop"


def test_openai_in_stream_error(m):
    m.fault(count=1, error_after_chunks=2, provider="openai")
    c = m.conn()
    c.request("POST", "/v1/chat/completions", json.dumps(chat_body(stream=True)), AUTH)
    events = read_sse(c.getresponse())
    assert len(events) == 3 and "[DONE]" not in events
    assert json.loads(events[-1])["error"]["type"] == "server_error"
    st = stats_of(m, "openai")
    assert st["stream_errors"] == 1 and st["requests"] == 0


# ---- Azure OpenAI ---------------------------------------------------------------

AZURE_CHAT = "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"


def test_azure_chat_and_auth(m):
    hdr = {"api-key": AZURE_KEY, "Content-Type": "application/json"}
    status, out, r = m.json("POST", AZURE_CHAT, {"messages": [{"role": "user", "content": "a b"}]}, hdr)
    assert status == 200, out
    assert out["model"] == "my-gpt4o" and out["usage"]["prompt_tokens"] == 3 + 4 + 2
    assert "prompt_filter_results" in out and "content_filter_results" in out["choices"][0]
    assert r.getheader("apim-request-id")
    status, out, _ = m.json("POST", AZURE_CHAT, chat_body(), {"api-key": "wrong"})
    assert status == 401 and out["error"]["code"] == "401" and "Access denied" in out["error"]["message"]
    status, out, _ = m.json("POST", AZURE_CHAT, chat_body(), AUTH)  # the OpenAI bearer is not Azure's key
    assert status == 401
    status, out, _ = m.json("POST", AZURE_CHAT.split("?")[0], chat_body(), hdr)
    assert status == 404 and out["error"]["message"] == "Resource not found"
    c = m.conn()
    c.request("POST", AZURE_CHAT, json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": 3,
                                              "stream": True}), hdr)
    events = read_sse(c.getresponse())
    pre = json.loads(events[0])
    assert pre["choices"] == [] and "prompt_filter_results" in pre
    words = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[2:-2]]
    assert "".join(words) == "mock word1 word2"
    status, out, _ = m.json("POST", "/openai/deployments/emb/embeddings?api-version=2024-10-21",
                            {"input": "hello world"}, hdr)
    assert status == 200 and out["usage"]["prompt_tokens"] == 2 and out["model"] == "emb"
    st = stats_of(m, "azure")
    assert st["requests"] == 3 and st["unauthorized"] == 2 and st["embedding_requests"] == 1


# ---- Anthropic ------------------------------------------------------------------

def anthropic_body(**extra):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 4096,
            "system": "be terse", "messages": [{"role": "user", "content": "hello there world"}]}
    body.update(extra)
    return body


def test_anthropic_message_shape_and_usage(m):
    status, out, r = m.json("POST", "/v1/messages", anthropic_body(), ANTHROPIC_HEADERS)
    assert status == 200, out
    assert out["type"] == "message" and out["role"] == "assistant" and out["id"].startswith("msg_")
    assert out["model"] == "claude-sonnet-4-5" and r.getheader("request-id")
    assert out["stop_reason"] == "end_turn" and out["stop_sequence"] is None
    assert out["content"] == [{"type": "text", "text": " ".join(["mock"] + ["word%d" % i for i in range(1, 16)])}]
    u = out["usage"]
    assert u["input_tokens"] == 3 + (4 + 2) + (4 + 3) and u["output_tokens"] == 16
    assert u["cache_read_input_tokens"] == 0 and u["cache_creation_input_tokens"] == 0
    _, out, _ = m.json("POST", "/v1/messages", anthropic_body(max_tokens=5), ANTHROPIC_HEADERS)
    assert out["stop_reason"] == "max_tokens" and out["usage"]["output_tokens"] == 5
    _, out, _ = m.json("POST", "/v1/messages", anthropic_body(stop_sequences=["word3"]), ANTHROPIC_HEADERS)
    assert out["stop_reason"] == "stop_sequence" and out["stop_sequence"] == "word3"
    assert out["content"][0]["text"] == "mock word1 word2" and out["usage"]["output_tokens"] == 3
    # a stop sequence on the very first word: an empty reply, and the mock keeps serving
    _, out, _ = m.json("POST", "/v1/messages", anthropic_body(stop_sequences=["mock"]), ANTHROPIC_HEADERS)
    assert out["stop_reason"] == "stop_sequence" and out["usage"]["output_tokens"] == 0
    assert out["content"][0]["text"] == ""
    system = [{"type": "text", "text": "a long cached system prompt", "cache_control": {"type": "ephemeral"}}]
    _, out, _ = m.json("POST", "/v1/messages", anthropic_body(system=system), ANTHROPIC_HEADERS)
    total = 3 + (4 + 5) + (4 + 3)
    assert out["usage"]["cache_read_input_tokens"] == total // 2
    assert out["usage"]["input_tokens"] == total - total // 2
    st = stats_of(m, "anthropic")
    assert st["requests"] == 5 and st["cached_tokens"] == total // 2
    status, out, _ = m.json("POST", "/v1/messages/count_tokens", anthropic_body(), ANTHROPIC_HEADERS)
    assert status == 200 and out == {"input_tokens": 16}


def test_anthropic_auth_and_validation(m):
    hdr = dict(ANTHROPIC_HEADERS)
    del hdr["x-api-key"]
    status, out, _ = m.json("POST", "/v1/messages", anthropic_body(), hdr)
    assert status == 401 and out["type"] == "error" and out["error"]["type"] == "authentication_error"
    status, out, _ = m.json("POST", "/v1/messages", anthropic_body(), dict(ANTHROPIC_HEADERS, **{"x-api-key": API_KEY}))
    assert status == 401 and out["error"]["message"] == "invalid x-api-key"
    hdr = dict(ANTHROPIC_HEADERS)
    del hdr["anthropic-version"]
    status, out, _ = m.json("POST", "/v1/messages", anthropic_body(), hdr)
    assert status == 400 and "anthropic-version" in out["error"]["message"]
    body = anthropic_body()
    del body["max_tokens"]
    status, out, _ = m.json("POST", "/v1/messages", body, ANTHROPIC_HEADERS)
    assert status == 400 and out["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    assert stats_of(m, "anthropic")["unauthorized"] == 2


def test_anthropic_stream_text_and_tool(m):
    c = m.conn()
    c.request("POST", "/v1/messages", json.dumps(anthropic_body(max_tokens=3, stream=True)), ANTHROPIC_HEADERS)
    r = c.getresponse()
    assert r.getheader("Content-Type").startswith("text/event-stream")
    events = read_named_sse(r)
    names = [n for n, _ in events]
    assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 3 + [
        "content_block_stop", "message_delta", "message_stop"], names
    assert all(d["type"] == n for n, d in events)
    assert events[0][1]["message"]["usage"]["input_tokens"] == 16
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "mock word1 word2"
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens" and events[-2][1]["usage"]["output_tokens"] == 3
    tools = [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}]
    body = anthropic_body(tools=tools, messages=[{"role": "user", "content": [{"type": "text",
                                                                                "text": "Weather in Paris?"}]}])
    status, out, _ = m.json("POST", "/v1/messages", body, ANTHROPIC_HEADERS)
    assert out["stop_reason"] == "tool_use"
    block = out["content"][0]
    assert block["type"] == "tool_use" and block["name"] == "get_weather" and block["input"] == {"location": "Paris"}
    c = m.conn()
    c.request("POST", "/v1/messages", json.dumps(dict(body, stream=True)), ANTHROPIC_HEADERS)
    events = read_named_sse(c.getresponse())
    assert events[1][1]["content_block"]["type"] == "tool_use" and events[1][1]["content_block"]["input"] == {}
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(partial) == {"location": "Paris"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    body["messages"] += [{"role": "assistant", "content": [block]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"],
                                                       "content": "sunny"}]}]
    _, out, _ = m.json("POST", "/v1/messages", body, ANTHROPIC_HEADERS)
    assert out["stop_reason"] == "end_turn"


def test_anthropic_faults_only_hit_anthropic(m):
    m.fault(count=1, status=529, provider="anthropic")
    status, _, _ = m.json("POST", "/v1/chat/completions", chat_body(), AUTH)
    assert status == 200
    status, out, _ = m.json("POST", "/v1/messages", anthropic_body(), ANTHROPIC_HEADERS)
    assert status == 529 and out["error"]["type"] == "overloaded_error"
    m.fault(count=1, error_after_chunks=4, provider="anthropic")
    c = m.conn()
    c.request("POST", "/v1/messages", json.dumps(anthropic_body(stream=True)), ANTHROPIC_HEADERS)
    events = read_named_sse(c.getresponse())
    assert len(events) == 5 and events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "overloaded_error"
    _, stats, _ = m.json("GET", "/_mock/stats")
    assert stats["by_provider"]["anthropic"]["faults_applied"] == 2
    assert stats["by_provider"]["openai"]["faults_applied"] == 0 and stats["faults_applied"] == 2


# ---- Bedrock --------------------------------------------------------------------

CLAUDE_ON_BEDROCK = "anthropic.claude-3-5-sonnet-20240620-v1:0"


def converse_body(**extra):
    body = {"system": [{"text": "be terse"}], "messages": [{"role": "user", "content": [{"text": "hello there world"}]}]}
    body.update(extra)
    return body


def test_bedrock_converse_and_sigv4(m):
    r, data = bedrock(m, CLAUDE_ON_BEDROCK, "converse", converse_body(inferenceConfig={"maxTokens": 4}))
    assert r.status == 200, data
    out = json.loads(data)
    assert out["output"]["message"] == {"role": "assistant", "content": [{"text": "mock word1 word2 word3"}]}
    assert out["stopReason"] == "max_tokens"
    assert out["usage"] == {"inputTokens": 16, "outputTokens": 4, "totalTokens": 20}
    assert "latencyMs" in out["metrics"] and r.getheader("x-amzn-RequestId")
    r, data = bedrock(m, CLAUDE_ON_BEDROCK, "converse", converse_body(), secret="wrong" + AWS_SECRET)
    assert r.status == 403, data
    assert r.getheader("x-amzn-ErrorType").startswith("InvalidSignatureException:")
    assert "signature we calculated does not match" in json.loads(data)["message"]
    r, data = bedrock(m, CLAUDE_ON_BEDROCK, "converse", converse_body(), akid="AKIAUNKNOWN000000000")
    assert r.status == 403 and r.getheader("x-amzn-ErrorType").startswith("UnrecognizedClientException:")
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    r, data = bedrock(m, CLAUDE_ON_BEDROCK, "converse", converse_body(), when=old)
    assert r.status == 403, data
    r, data = bedrock(m, CLAUDE_ON_BEDROCK, "converse", converse_body(), region="eu-west-3")  # any region
    assert r.status == 200
    cached = converse_body(system=[{"text": "be terse"}, {"cachePoint": {"type": "default"}}])
    r, data = bedrock(m, CLAUDE_ON_BEDROCK, "converse", cached)
    u = json.loads(data)["usage"]
    assert u["cacheReadInputTokens"] == 8 and u["inputTokens"] == 8 and u["totalTokens"] == 16 + 16
    st = stats_of(m, "bedrock")
    assert st["requests"] == 3 and st["unauthorized"] == 3 and st["cached_tokens"] == 8


def test_bedrock_converse_stream_eventstream(m):
    r, data = bedrock(m, CLAUDE_ON_BEDROCK, "converse-stream", converse_body(inferenceConfig={"maxTokens": 3}))
    assert r.status == 200 and r.getheader("Content-Type") == "application/vnd.amazon.eventstream"
    msgs = decode_eventstream(data)
    types = [h[":event-type"] for h, _ in msgs]
    assert types == ["messageStart"] + ["contentBlockDelta"] * 3 + ["contentBlockStop", "messageStop", "metadata"]
    assert all(h[":message-type"] == "event" and h[":content-type"] == "application/json" for h, _ in msgs)
    assert "".join(p["delta"]["text"] for h, p in msgs if h[":event-type"] == "contentBlockDelta") == \
        "mock word1 word2"
    assert msgs[-2][1]["stopReason"] == "max_tokens"
    assert msgs[-1][1]["usage"] == {"inputTokens": 16, "outputTokens": 3, "totalTokens": 19}
    tools = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}
    body = converse_body(toolConfig=tools, messages=[{"role": "user", "content": [{"text": "weather?"}]}])
    r, data = bedrock(m, CLAUDE_ON_BEDROCK, "converse", body)
    out = json.loads(data)
    use = out["output"]["message"]["content"][0]["toolUse"]
    assert out["stopReason"] == "tool_use" and use["name"] == "get_weather" and use["input"] == {"location": "Paris"}
    r, data = bedrock(m, CLAUDE_ON_BEDROCK, "converse-stream", body)
    msgs = decode_eventstream(data)
    assert msgs[1][0][":event-type"] == "contentBlockStart"
    assert msgs[1][1]["start"]["toolUse"]["name"] == "get_weather"
    args = "".join(p["delta"]["toolUse"]["input"] for h, p in msgs if h[":event-type"] == "contentBlockDelta")
    assert json.loads(args) == {"location": "Paris"} and msgs[-2][1]["stopReason"] == "tool_use"


def test_bedrock_faults_and_stream_exception(m):
    m.fault(count=1, status=429, provider="bedrock")
    m.fault(count=1, status=503, provider="bedrock")
    status, _, _ = m.json("POST", "/v1/messages", anthropic_body(), ANTHROPIC_HEADERS)
    assert status == 200
    r, data = bedrock(m, CLAUDE_ON_BEDROCK, "converse", converse_body())
    assert r.status == 429 and r.getheader("x-amzn-ErrorType").startswith("ThrottlingException:")
    assert json.loads(data)["message"].startswith("Too many requests")
    r, data = bedrock(m, CLAUDE_ON_BEDROCK, "converse", converse_body())
    assert r.status == 503 and r.getheader("x-amzn-ErrorType").startswith("ServiceUnavailableException:")
    m.fault(count=1, error_after_chunks=2, provider="bedrock")
    r, data = bedrock(m, CLAUDE_ON_BEDROCK, "converse-stream", converse_body())
    msgs = decode_eventstream(data)
    assert len(msgs) == 3 and msgs[-1][0][":message-type"] == "exception"
    assert msgs[-1][0][":exception-type"] == "internalServerException"
    m.fault(count=1, drop_after_chunks=2, provider="bedrock")
    raw = json.dumps(converse_body()).encode()
    path = "/model/%s/converse-stream" % urllib.parse.quote(CLAUDE_ON_BEDROCK, safe="")
    c = m.conn()
    c.request("POST", path, body=raw, headers=sigv4_headers("POST", "127.0.0.1:%d" % m.port, path, raw))
    r = c.getresponse()
    try:
        r.read()
        raise AssertionError("stream was not dropped")
    except (http.client.IncompleteRead, ConnectionError) as e:
        if isinstance(e, http.client.IncompleteRead):
            assert len(decode_eventstream(e.partial)) == 2


def test_bedrock_invoke_embeddings_and_claude(m):
    r, data = bedrock(m, "amazon.titan-embed-text-v2:0", "invoke", {"inputText": "hello world", "dimensions": 256})
    assert r.status == 200, data
    out = json.loads(data)
    assert len(out["embedding"]) == 256 and out["inputTextTokenCount"] == 2
    assert abs(sum(x * x for x in out["embedding"]) - 1) < 1e-4
    assert r.getheader("X-Amzn-Bedrock-Input-Token-Count") == "2"
    r, data = bedrock(m, "cohere.embed-english-v3", "invoke", {"texts": ["a b c", "d"], "input_type": "search_document"})
    out = json.loads(data)
    assert r.status == 200 and len(out["embeddings"]) == 2 and out["response_type"] == "embeddings_floats"
    r, data = bedrock(m, "us." + CLAUDE_ON_BEDROCK, "invoke",
                      {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 2,
                       "messages": [{"role": "user", "content": "hi"}]})
    out = json.loads(data)
    assert r.status == 200 and out["type"] == "message" and out["usage"]["output_tokens"] == 2
    st = stats_of(m, "bedrock")
    assert st["embedding_requests"] == 2 and st["prompt_tokens"] == 2 + 4 + 8


# ---- Vertex AI and its token endpoint --------------------------------------------

def test_google_token_endpoint(m):
    status, out, _ = google_token(m)
    assert status == 200, out
    assert out["token_type"] == "Bearer" and out["expires_in"] == 3600 and out["access_token"].startswith("ya29.")
    status, out, _ = google_token(m, google_assertion(m, tamper=True))
    assert status == 400 and out == {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    status, out, _ = google_token(m, google_assertion(m, aud="https://example.com/token"))
    assert status == 400 and out["error"] == "invalid_grant"
    status, out, _ = google_token(m, google_assertion(m, iat=int(time.time()) - 7300))
    assert status == 400 and "short-lived" in out["error_description"]
    other = os.path.join(m.dir, "other-sa.json")
    subprocess.run([sys.argv[1], "--make-service-account", other], check=True)
    status, out, _ = google_token(m, google_assertion(m, sa_file=other))  # same email, another key
    assert status == 400 and out["error_description"] == "Invalid JWT Signature."
    status, out, _ = m.json("POST", "/token", "grant_type=password&assertion=x",
                            {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and out["error"] == "unsupported_grant_type"
    st = stats_of(m, "google_oauth")
    assert st["requests"] == 1 and st["errors"] == 5
    _, stats, _ = m.json("GET", "/_mock/stats")
    assert stats["requests"] == 0  # the token endpoint is not counted in the totals


def test_vertex_gemini_generate_and_stream(m):
    _, tok, _ = google_token(m)
    token = tok["access_token"]
    body = {"systemInstruction": {"parts": [{"text": "be terse"}]},
            "contents": [{"role": "user", "parts": [{"text": "hello there world"}]}],
            "generationConfig": {"maxOutputTokens": 3}}
    r, data = vertex(m, token, "google", "gemini-2.0-flash", "generateContent", body)
    assert r.status == 200, data
    out = json.loads(data)
    cand = out["candidates"][0]
    assert cand["content"] == {"role": "model", "parts": [{"text": "mock word1 word2"}]}
    assert cand["finishReason"] == "MAX_TOKENS"
    u = out["usageMetadata"]
    assert (u["promptTokenCount"], u["candidatesTokenCount"], u["totalTokenCount"]) == (16, 3, 19)
    assert out["modelVersion"] == "gemini-2.0-flash"
    r, data = vertex(m, token, "google", "gemini-2.0-flash", "streamGenerateContent", body, "?alt=sse")
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
    chunks = [json.loads(b[len("data: "):]) for b in data.decode().split("\r\n\r\n") if b]
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == "mock word1 word2"
    assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 3
    r, data = vertex(m, token, "google", "gemini-2.0-flash", "streamGenerateContent", body)
    arr = json.loads(data)
    assert len(arr) == 3 and arr[-1]["usageMetadata"]["totalTokenCount"] == 19
    body = {"contents": [{"role": "user", "parts": [{"text": "what's the weather"}]}],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "OBJECT"}}]}],
            "cachedContent": "projects/p1/locations/us-central1/cachedContents/c1"}
    r, data = vertex(m, token, "google", "gemini-2.0-flash", "generateContent", body)
    out = json.loads(data)
    assert out["candidates"][0]["content"]["parts"][0]["functionCall"] == {"name": "get_weather",
                                                                          "args": {"location": "Paris"}}
    assert out["candidates"][0]["finishReason"] == "STOP"
    assert out["usageMetadata"]["cachedContentTokenCount"] == out["usageMetadata"]["promptTokenCount"] // 2
    r, data = vertex(m, token, "google", "text-embedding-005", "predict", {"instances": [{"content": "a b"}]})
    out = json.loads(data)
    assert r.status == 200 and len(out["predictions"][0]["embeddings"]["values"]) == 768
    assert out["predictions"][0]["embeddings"]["statistics"]["token_count"] == 2
    st = stats_of(m, "vertex")
    assert st["requests"] == 5 and st["stream_requests"] == 2


def test_vertex_auth_and_faults(m):
    r, data = vertex(m, "ya29.forged", "google", "gemini-2.0-flash", "generateContent",
                     {"contents": [{"parts": [{"text": "x"}]}]})
    err = json.loads(data)["error"]
    assert r.status == 401 and err["code"] == 401 and err["status"] == "UNAUTHENTICATED"
    _, tok, _ = google_token(m)
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    m.fault(count=1, status=429, provider="vertex")
    m.fault(count=1, status=503, provider="vertex")
    r, data = vertex(m, tok["access_token"], "google", "gemini-2.0-flash", "generateContent", body)
    assert r.status == 429 and json.loads(data)["error"]["status"] == "RESOURCE_EXHAUSTED"
    r, data = vertex(m, tok["access_token"], "google", "gemini-2.0-flash", "generateContent", body)
    assert r.status == 503 and json.loads(data)["error"]["status"] == "UNAVAILABLE"
    m.fault(count=1, error_after_chunks=1, provider="vertex")
    r, data = vertex(m, tok["access_token"], "google", "gemini-2.0-flash", "streamGenerateContent", body, "?alt=sse")
    chunks = [json.loads(b[len("data: "):]) for b in data.decode().split("\r\n\r\n") if b]
    assert len(chunks) == 2 and chunks[-1]["error"]["status"] == "UNAVAILABLE"
    m.fault(count=1, status=503, provider="google_oauth")
    status, out, _ = google_token(m)
    assert status == 503
    m.fault(count=1, status=500)  # no provider: never the token endpoint
    status, out, _ = google_token(m)
    assert status == 200
    status, _, _ = m.json("POST", "/v1/chat/completions", chat_body(), AUTH)
    assert status == 500


def test_vertex_claude_raw_predict(m):
    _, tok, _ = google_token(m)
    body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 2,
            "messages": [{"role": "user", "content": "hello"}]}
    r, data = vertex(m, tok["access_token"], "anthropic", "claude-sonnet-4-5@20250929", "rawPredict", body)
    out = json.loads(data)
    assert r.status == 200 and out["model"] == "claude-sonnet-4-5@20250929" and out["usage"]["output_tokens"] == 2
    r, data = vertex(m, tok["access_token"], "anthropic", "claude-sonnet-4-5@20250929", "streamRawPredict",
                     dict(body, stream=True))
    names = [b.split("\n")[0] for b in data.decode().split("\n\n") if b]
    assert names[0] == "event: message_start" and names[-1] == "event: message_stop"
    r, data = vertex(m, tok["access_token"], "anthropic", "claude-sonnet-4-5@20250929", "rawPredict",
                     {"max_tokens": 2, "messages": [{"role": "user", "content": "hello"}]})
    assert r.status == 400 and json.loads(data)["error"]["message"] == "anthropic_version: Field required"
    assert stats_of(m, "vertex")["requests"] == 2


TESTS = [v for k, v in list(globals().items()) if k.startswith("test_")]


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    m = Mock(sys.argv[1])
    passed = failed = 0
    try:
        for test in TESTS:
            m.request("POST", "/_mock/reset")
            try:
                test(m)
                passed += 1
                print("ok   " + test.__name__)
            except Exception as e:  # report and go on
                failed += 1
                print("FAIL %s: %r" % (test.__name__, e))
    finally:
        code = m.stop()
    if code != 0:
        failed += 1
        print("FAIL exit code on SIGTERM: %d" % code)
    else:
        passed += 1
        print("ok   exit code on SIGTERM")
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
