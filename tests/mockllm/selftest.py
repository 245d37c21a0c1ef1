#!/usr/bin/env python3
"""End-to-end self test of sluice-mockllm.

Usage: selftest.py PATH/TO/sluice-mockllm

Starts the mock on a free port, checks the OpenAI wire format, token counting,
auth, fault injection and stats over real HTTP, then stops it with SIGTERM and
expects exit code 0. Standard library only.
"""
import base64
import http.client
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

API_KEY = "sk-selftest-0123456789abcdef"
AUTH = {"Authorization": "Bearer " + API_KEY, "Content-Type": "application/json"}


class Mock:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="mockllm-selftest-")
        port_file = os.path.join(self.dir, "port")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--api-key", API_KEY, "--port-file", port_file, "--threads", "2"])
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
