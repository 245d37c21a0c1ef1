"""End-to-end: routing and failover through the data plane (DESIGN §7).

Two mock processes stand for two providers: `primary` (kind openai) on the
cluster's mock and `backup` (kind openai_compatible) on a second one, so a
fault injected into the primary's mock never touches the backup. A third
provider, `dead`, points at a port nothing listens on. Assertions go through
what the client sees (status, body, x-sluice-* headers), the mocks' own
counters and fault queues, the ledger and /metrics, never through timing.
"""

import json
import time

import pytest

from harness import chat, free_port, http_request, mock_provider, sse_events, wait_for

FIRST_BYTE_MS = 800


MAIN_KEY = "{id: main, secret_env: MOCK_API_KEY}"


def config(primary_port, backup_port, dead_port, breaker_failures=3):
    breaker = f'{{breaker_failures: "{breaker_failures}", breaker_cooldown_ms: "600000"}}'
    return f"""\
providers:
{mock_provider("primary", "openai", primary_port, MAIN_KEY, first_byte_timeout_ms=FIRST_BYTE_MS, params=breaker)}
{mock_provider("backup", "openai_compatible", backup_port, MAIN_KEY)}
{mock_provider("dead", "openai", dead_port, MAIN_KEY, params=breaker)}
models:
- {{provider: primary, model: gpt-4o, input_usd_per_mtok: 2.50, output_usd_per_mtok: 10.00}}
- {{provider: backup, model: gpt-4o-mini, input_usd_per_mtok: 0.15, output_usd_per_mtok: 0.60}}
- {{provider: dead, model: gpt-4o, input_usd_per_mtok: 2.50, output_usd_per_mtok: 10.00}}
virtual_keys:
- id: vk_fo
  customer_id: acme
  fallbacks:
  - {{provider: primary, model: gpt-4o}}
  - {{provider: backup, model: gpt-4o-mini}}
- id: vk_solo
  customer_id: acme
  allowed_providers: [primary]
- id: vk_dead
  customer_id: acme
  fallbacks:
  - {{provider: dead, model: gpt-4o}}
  - {{provider: backup, model: gpt-4o-mini}}
"""


@pytest.fixture
def fo(cluster):
    """(cluster, dataplane, secrets, backup mock port)."""
    backup_port = cluster.start_mock("mockllm-backup")
    created = cluster.apply(config(cluster.mock_port, backup_port, free_port()))
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    return cluster, dp, created, backup_port


def ask(dp, secret, model="primary/gpt-4o", **kw):
    return chat(dp.api_port, secret, model=model, **kw)


def stream_text(resp):
    events = sse_events(resp.body)
    text = ""
    for e in events:
        if e == "[DONE]":
            continue
        obj = json.loads(e)
        for ch in obj.get("choices") or []:
            text += (ch.get("delta") or {}).get("content") or ""
    return events, text


def assert_clean_stream(resp):
    assert resp.status == 200, resp.body
    events, text = stream_text(resp)
    assert events[-1] == "[DONE]", events
    assert not any('"error"' in e for e in events), events
    assert text.startswith("mock"), text
    return events


def metric(dp, name, **labels):
    text = http_request(dp.admin_port, "GET", "/metrics").body.decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None if want else 0


def ledger(cluster):
    rows = cluster.sql("SELECT provider, model, sum(requests), sum(errors), sum(input_tokens), sum(output_tokens) "
                       "FROM usage_minute GROUP BY 1, 2 ORDER BY 1, 2")
    out = {}
    for line in rows.splitlines():
        p, m, r, e, i, o = line.split("|")
        out[(p, m)] = {"requests": int(r), "errors": int(e), "input": int(i), "output": int(o)}
    return out


def test_primary_503_fails_over_invisibly_streaming_and_not(fo):
    cluster, dp, keys, backup = fo
    secret = keys["vk_fo"]
    cluster.mock_faults(count=1, status=503)
    resp = ask(dp, secret)
    assert resp.status == 200, resp.body
    assert resp.json()["object"] == "chat.completion"
    assert resp.header("x-sluice-provider") == "backup"
    assert resp.header("x-sluice-model") == "gpt-4o-mini"
    assert resp.header("x-sluice-attempts") == "2"

    cluster.mock_faults(count=1, status=503)
    resp = ask(dp, secret, stream=True)
    assert_clean_stream(resp)
    assert resp.header("x-sluice-provider") == "backup"
    assert resp.header("x-sluice-attempts") == "2"
    assert cluster.mock_stats_at(backup)["chat_requests"] == 2
    # a healthy primary answers itself, in one attempt
    resp = ask(dp, secret)
    assert resp.status == 200 and resp.header("x-sluice-provider") == "primary"
    assert resp.header("x-sluice-attempts") == "1"
    assert metric(dp, "sluice_failovers_total", **{"from": "primary", "to": "backup", "reason": "server_error"}) == 2


def test_primary_slower_than_first_byte_timeout_fails_over(fo):
    cluster, dp, keys, backup = fo
    secret = keys["vk_fo"]
    for stream in (False, True):
        cluster.mock_faults(count=1, delay_ms=FIRST_BYTE_MS * 4)
        resp = ask(dp, secret, stream=stream)
        if stream:
            assert_clean_stream(resp)
        else:
            assert resp.status == 200, resp.body
        assert resp.header("x-sluice-provider") == "backup"
        assert resp.header("x-sluice-attempts") == "2"
    assert metric(dp, "sluice_failovers_total", **{"from": "primary", "to": "backup", "reason": "timeout"}) == 2


def test_refused_connection_fails_over_then_circuit_opens(fo):
    cluster, dp, keys, backup = fo
    secret = keys["vk_dead"]
    for i in range(3):  # breaker_failures
        resp = ask(dp, secret, model="dead/gpt-4o", stream=(i == 1))
        assert resp.status == 200, resp.body
        assert resp.header("x-sluice-provider") == "backup"
        assert resp.header("x-sluice-attempts") == "2"
    assert metric(dp, "sluice_circuit_open", provider="dead", credential="main") == 1
    # the open circuit skips the dead provider: one attempt, straight to the backup
    for _ in range(3):
        resp = ask(dp, secret, model="dead/gpt-4o")
        assert resp.status == 200, resp.body
        assert resp.header("x-sluice-provider") == "backup"
        assert resp.header("x-sluice-attempts") == "1"
    assert metric(dp, "sluice_failovers_total", **{"from": "dead", "to": "backup", "reason": "circuit_open"}) == 3
    assert metric(dp, "sluice_failovers_total", **{"from": "dead", "to": "backup", "reason": "connect"}) == 3


def test_open_circuit_spares_later_requests_the_primary_timeout(fo):
    cluster, dp, keys, backup = fo
    secret = keys["vk_fo"]
    cluster.mock_faults(count=3, delay_ms=FIRST_BYTE_MS * 4)
    for _ in range(3):
        resp = ask(dp, secret)
        assert resp.status == 200 and resp.header("x-sluice-attempts") == "2"
    # queue one more slow answer on the primary: with the circuit open no
    # request reaches it, so the fault stays queued
    cluster.mock_faults(count=1, delay_ms=FIRST_BYTE_MS * 4)
    for stream in (False, True):
        resp = ask(dp, secret, stream=stream)
        assert resp.status == 200, resp.body
        assert resp.header("x-sluice-provider") == "backup"
        assert resp.header("x-sluice-attempts") == "1"
    queued = http_request(cluster.mock_port, "GET", "/_mock/faults").json()
    assert len(queued.get("faults", queued) if isinstance(queued, dict) else queued) == 1, queued


def test_stream_failing_before_content_fails_over_invisibly(fo):
    cluster, dp, keys, backup = fo
    secret = keys["vk_fo"]
    # the role chunk only, then the connection drops: nothing reached the client yet
    cluster.mock_faults(count=1, drop_after_chunks=1)
    resp = ask(dp, secret, stream=True)
    assert_clean_stream(resp)
    assert resp.header("x-sluice-provider") == "backup"
    # an in-stream error event before any content: the same
    cluster.mock_faults(count=1, error_after_chunks=1)
    resp = ask(dp, secret, stream=True)
    assert_clean_stream(resp)
    assert resp.header("x-sluice-attempts") == "2"


def content_chunks(events):
    n = 0
    for e in events:
        if e != "[DONE]":
            obj = json.loads(e)
            n += sum(1 for ch in obj.get("choices") or [] if (ch.get("delta") or {}).get("content"))
    return n


def test_stream_broken_after_content_ends_with_error_and_is_accounted(fo):
    cluster, dp, keys, backup = fo
    secret = keys["vk_fo"]
    # role chunk + 3 words, then the connection drops (spaced out so the
    # words arrive before the drop does)
    cluster.mock_faults(count=1, drop_after_chunks=4, chunk_delay_ms=50)
    resp = ask(dp, secret, stream=True, max_tokens=20)
    assert resp.status == 200
    assert resp.header("x-sluice-provider") == "primary"
    assert resp.header("x-sluice-attempts") == "1"
    events, text = stream_text(resp)
    assert text.startswith("mock") and "mock word1 word2".startswith(text), text
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert last["error"]["message"], last
    delivered = content_chunks(events)
    assert cluster.mock_stats_at(backup)["chat_requests"] == 0
    # the upstream's own error event after content is relayed, once, without [DONE]
    cluster.mock_faults(count=1, error_after_chunks=3)
    resp = ask(dp, secret, stream=True, max_tokens=20)
    events, text = stream_text(resp)
    assert "[DONE]" not in events and text == "mock word1"
    assert sum(1 for e in events if '"error"' in e) == 1, events
    delivered += content_chunks(events)
    # the delivered tokens are accounted as error rows: no usage came from
    # the upstream, so one output token per content chunk delivered
    rows = wait_for(lambda: (lambda r: r if r.get(("primary", "gpt-4o"), {}).get("errors") == 2 else None)(
        ledger(cluster)), 10, interval=0.1, what="the broken streams in the ledger")
    row = rows[("primary", "gpt-4o")]
    assert row["output"] == delivered, (row, delivered)
    assert row["input"] > 0, row


def test_client_error_from_primary_is_returned_not_failed_over(fo):
    cluster, dp, keys, backup = fo
    secret = keys["vk_fo"]
    cluster.mock_faults(count=1, status=400)
    for stream in (False,):
        resp = ask(dp, secret, stream=stream)
        assert resp.status == 400, resp.body
        assert set(resp.json()) == {"error"}
        assert resp.header("x-sluice-attempts") == "1"
    assert cluster.mock_stats_at(backup)["chat_requests"] == 0


def test_credential_refused_with_401_is_skipped_until_cooldown(cluster, monkeypatch):
    backup = cluster.start_mock("mockllm-backup")
    monkeypatch.setenv("FO_BAD_KEY", "sk-wrong-key")
    doc = config(cluster.mock_port, backup, free_port()).replace(
        "  - {id: main, secret_env: MOCK_API_KEY}\n- name: backup",
        "  - {id: main, secret_env: MOCK_API_KEY, weight: 1}\n"
        "  - {id: stale, secret_env: FO_BAD_KEY, weight: 50}\n- name: backup", 1)
    keys = cluster.apply(doc)
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    secret = keys["vk_fo"]
    # the stale credential is picked almost always until it answers 401 once
    seen = []
    for _ in range(10):
        resp = ask(dp, secret)
        assert resp.status == 200, resp.body
        assert resp.header("x-sluice-provider") == "primary"  # the provider's other key answered
        seen.append(resp.header("x-sluice-attempts"))
        if cluster.mock_stats()["unauthorized"] == 1:
            break
    assert cluster.mock_stats()["unauthorized"] == 1, seen
    assert seen[-1] == "2"
    for _ in range(8):
        resp = ask(dp, secret, stream=True)
        assert_clean_stream(resp)
        assert resp.header("x-sluice-attempts") == "1"
    assert cluster.mock_stats()["unauthorized"] == 1
    assert metric(dp, "sluice_circuit_open", provider="primary", credential="stale") == 1
    assert metric(dp, "sluice_circuit_open", provider="primary", credential="main") == 0
    assert cluster.mock_stats_at(backup)["chat_requests"] == 0


def answered(stats):
    return stats["requests"] + stats["errors"]


def test_retry_after_throttles_the_credential_for_every_request(fo):
    """A 429 with Retry-After: 30 leaves the primary's credential alone for
    30 s on every request, not just this one: later requests go straight to
    the fallback, and a key with no fallback gets 429 with the time left."""
    cluster, dp, keys, backup = fo
    cluster.mock_faults(count=1, status=429, retry_after=30)
    resp = ask(dp, keys["vk_fo"])
    assert resp.status == 200 and resp.header("x-sluice-provider") == "backup", resp.body
    assert resp.header("x-sluice-attempts") == "2"
    asked = answered(cluster.mock_stats())
    for _ in range(3):
        resp = ask(dp, keys["vk_fo"])
        assert resp.status == 200 and resp.header("x-sluice-provider") == "backup", resp.body
        assert resp.header("x-sluice-attempts") == "1"                  # the primary was not asked
    resp = ask(dp, keys["vk_solo"])
    assert resp.status == 429, resp.body
    assert resp.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(resp.header("retry-after")) <= 30
    assert answered(cluster.mock_stats()) == asked                        # nothing reached the primary
    assert metric(dp, "sluice_failovers_total", **{"from": "primary", "to": "backup", "reason": "rate_limited"}) == 4


def test_short_retry_after_is_waited_out_within_the_request(fo):
    cluster, dp, keys, backup = fo
    cluster.mock_faults(count=1, status=429, retry_after=1)
    resp = ask(dp, keys["vk_solo"])
    assert resp.status == 200, resp.body                                 # waited a second, then asked again
    assert resp.header("x-sluice-provider") == "primary" and resp.header("x-sluice-attempts") == "2"
    # a provider asking for longer than the retry backoff allows is not waited for
    cluster.mock_faults(count=1, status=429, retry_after=20)
    resp = ask(dp, keys["vk_solo"])
    assert resp.status == 429 and resp.header("retry-after") == "20", resp.body
    assert resp.header("x-sluice-attempts") == "1"


def test_all_targets_failing_answers_the_last_error_in_openai_shape(fo):
    cluster, dp, keys, backup = fo
    secret = keys["vk_fo"]
    cluster.mock_faults(count=10, status=503)
    cluster.mock_faults_at(backup, count=10, status=503)
    resp = ask(dp, secret)
    assert resp.status == 503, resp.body
    assert set(resp.json()) == {"error"}
    # both targets, then both again after a backoff (the attempt budget)
    assert resp.header("x-sluice-attempts") == "4"
    # counted when the request is accounted, just after its last byte went out
    wait_for(lambda: metric(dp, "sluice_requests_total", provider="backup", code="503", outcome="upstream_error") == 1,
             5, what="the request to be counted")


def test_failover_between_translating_providers(cluster, monkeypatch):
    """Anthropic (SSE) and Bedrock (binary event stream) on the one mock, with
    per-provider faults: failover before content is invisible in both
    directions, a break after content ends the stream with an error event."""
    monkeypatch.setenv("FO_AWS_AK", "AKIAMOCKLLMTEST00001")
    monkeypatch.setenv("FO_AWS_SK", "mockllm/TEST/secret/0000000000000000000000")
    port = cluster.mock_port
    bedrock_key = "{access_key_id_env: FO_AWS_AK, secret_access_key_env: FO_AWS_SK}"
    secret = cluster.apply(f"""\
providers:
{mock_provider("anthropic", "anthropic", port)}
{mock_provider("bedrock", "bedrock", port, bedrock_key, params="{region: us-east-1}")}
models:
- {{provider: anthropic, model: claude-sonnet-4-6, input_usd_per_mtok: 3, output_usd_per_mtok: 15}}
- {{provider: bedrock, model: anthropic.claude-sonnet-4-6, input_usd_per_mtok: 3, output_usd_per_mtok: 15}}
virtual_keys:
- id: vk_x
  customer_id: acme
  fallbacks:
  - {{provider: anthropic, model: claude-sonnet-4-6}}
  - {{provider: bedrock, model: anthropic.claude-sonnet-4-6}}
""")["vk_x"]
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    # Anthropic overloaded (529) -> Bedrock, streamed from its event stream
    cluster.mock_faults(count=1, status=529, provider="anthropic")
    resp = ask(dp, secret, model="claude-sonnet-4-6", stream=True, max_tokens=5)
    assert_clean_stream(resp)
    assert resp.header("x-sluice-provider") == "bedrock"
    assert resp.header("x-sluice-model") == "anthropic.claude-sonnet-4-6"
    assert resp.header("x-sluice-attempts") == "2"
    # a Bedrock exception before any content -> Anthropic, invisibly
    cluster.mock_faults(count=1, error_after_chunks=1, provider="bedrock")
    resp = ask(dp, secret, model="bedrock/anthropic.claude-sonnet-4-6", stream=True, max_tokens=5)
    assert_clean_stream(resp)
    assert resp.header("x-sluice-provider") == "anthropic" and resp.header("x-sluice-attempts") == "2"
    # non-streaming too
    cluster.mock_faults(count=1, status=503, provider="bedrock")
    resp = ask(dp, secret, model="bedrock/anthropic.claude-sonnet-4-6", max_tokens=5)
    assert resp.status == 200 and resp.json()["choices"][0]["message"]["content"].startswith("mock")
    assert resp.header("x-sluice-provider") == "anthropic"
    # a request no target can express (Anthropic and Bedrock take n == 1
    # only) is answered 400 at once, nothing sent upstream
    resp = ask(dp, secret, model="claude-sonnet-4-6", extra={"n": 2})
    assert resp.status == 400, resp.body
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert resp.header("x-sluice-attempts") == "0"
    # after content: the client gets what was generated, then an error event
    for provider, model in (("anthropic", "claude-sonnet-4-6"), ("bedrock", "bedrock/anthropic.claude-sonnet-4-6")):
        cluster.mock_faults(count=1, error_after_chunks=5, provider=provider)
        resp = ask(dp, secret, model=model, stream=True, max_tokens=20)
        events, text = stream_text(resp)
        assert resp.header("x-sluice-provider") == provider
        assert text.startswith("mock") and "[DONE]" not in events, events
        assert json.loads(events[-1])["error"]["code"] == "upstream_stream_error", events
