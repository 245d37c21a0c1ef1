"""End-to-end: the walking skeleton, PostgreSQL -> control plane -> snapshots
over gRPC -> data plane -> provider, with usage reported back exactly once."""

import json
import os
import shutil
import subprocess
import time

import grpc

from conftest import SEED_YAML, mock_provider_yaml
from harness import chat, http_request, mock_provider, sse_events, wait_for

GPT4O_IN_NANO_PER_TOKEN = 2500      # $2.50 per million tokens
GPT4O_OUT_NANO_PER_TOKEN = 10000    # $10.00 per million tokens


def assert_openai_error(resp, status, code=None):
    assert resp.status == status, (resp.status, resp.body)
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"], err
    assert "type" in err and "code" in err and "param" in err, err
    if code is not None:
        assert err["code"] == code, err
    return err


def ledger(cluster):
    rows = cluster.sql("SELECT key_id, provider, model, sum(requests), sum(errors), sum(input_tokens), "
                       "sum(output_tokens), sum(cost_nano) FROM usage_minute GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    out = []
    for line in rows.splitlines():
        k, p, m, r, e, i, o, c = line.split("|")
        out.append({"key": k, "provider": p, "model": m, "requests": int(r), "errors": int(e),
                    "input": int(i), "output": int(o), "cost_nano": int(c)})
    return out


def wait_ledger_requests(cluster, n, timeout=10):
    return wait_for(lambda: (lambda rows: rows if sum(r["requests"] for r in rows) >= n else None)(ledger(cluster)),
                    timeout, interval=0.1, what=f"{n} requests in the ledger")


def test_seed_yaml_applies_and_key_gets_200_from_mock(seeded):
    cluster, secret = seeded
    assert secret.startswith("sk-sluice-") and len(secret) == 53
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    resp = chat(dp.api_port, secret, content="one two three four")
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    assert resp.header("x-sluice-provider") == "openai"
    assert resp.header("x-sluice-model") == "gpt-4o"
    assert resp.header("x-request-id")
    expected = (body["usage"]["prompt_tokens"] * GPT4O_IN_NANO_PER_TOKEN
                + body["usage"]["completion_tokens"] * GPT4O_OUT_NANO_PER_TOKEN)
    assert resp.header("x-sluice-cost-usd") == format_usd(expected)
    # the provider/model form routes the same way
    resp = chat(dp.api_port, secret, model="openai/gpt-4o-mini")
    assert resp.status == 200, resp.body
    assert resp.header("x-sluice-model") == "gpt-4o-mini"


def format_usd(nano):
    whole, frac = divmod(nano, 10**9)
    return f"{whole}" if frac == 0 else f"{whole}.{frac:09d}".rstrip("0")


def test_streaming_relays_every_chunk_and_usage_then_done(seeded):
    cluster, secret = seeded
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    resp = chat(dp.api_port, secret, stream=True, max_tokens=7)
    assert resp.status == 200, resp.body
    assert resp.header("content-type").startswith("text/event-stream")
    events = sse_events(resp.body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(text.split()) == 7
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert usage and usage[-1]["completion_tokens"] == 7
    # the gateway asked the upstream for usage although the client did not
    rows = wait_ledger_requests(cluster, 1)
    assert rows[0]["output"] == 7


def test_wrong_key_gets_401_in_openai_shape(seeded):
    cluster, secret = seeded
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    err = assert_openai_error(chat(dp.api_port, "sk-sluice-" + "A" * 43), 401, "invalid_api_key")
    assert "A" * 20 not in err["message"]           # never echo a presented secret
    assert_openai_error(chat(dp.api_port, ""), 401)
    resp = http_request(dp.api_port, "POST", "/v1/chat/completions", body={"model": "gpt-4o", "messages": []})
    assert_openai_error(resp, 401)
    # x-api-key is accepted as well
    resp = http_request(dp.api_port, "POST", "/v1/chat/completions",
                        body={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                        headers={"x-api-key": secret})
    assert resp.status == 200, resp.body


def test_disallowed_provider_or_model_gets_403(seeded):
    cluster, secret = seeded
    created = cluster.apply(f"""\
providers:
{mock_provider("mistral", "openai_compatible", cluster.mock_port)}
virtual_keys:
- id: vk_mini_only
  customer_id: acme_corp
  allowed_providers: [openai]
  allowed_models: [gpt-4o-mini]
""", name="mini.yaml")
    mini = created["vk_mini_only"]
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    # mistral is configured, but vk_acme_prod may use only openai, anthropic and bedrock
    assert_openai_error(chat(dp.api_port, secret, model="mistral/mistral-large"), 403, "provider_not_allowed")
    assert_openai_error(chat(dp.api_port, mini, model="gpt-4o"), 403)
    assert_openai_error(chat(dp.api_port, mini, model="openai/gpt-4o"), 403)
    assert chat(dp.api_port, mini, model="gpt-4o-mini").status == 200
    # /v1/models shows only what the key may use
    models = http_request(dp.api_port, "GET", "/v1/models", headers={"Authorization": f"Bearer {mini}"}).json()
    assert [m["id"] for m in models["data"]] == ["gpt-4o-mini"]
    models = http_request(dp.api_port, "GET", "/v1/models", headers={"Authorization": f"Bearer {secret}"}).json()
    # claude-sonnet-4-6 is priced, but no anthropic provider is configured: not usable, not listed
    assert sorted(m["id"] for m in models["data"]) == ["gpt-4o", "gpt-4o-mini"]


def test_revoked_key_rejected_by_two_dataplanes_within_one_second(seeded):
    cluster, secret = seeded
    dps = [cluster.start_dataplane("dp1"), cluster.start_dataplane("dp2")]
    for dp in dps:
        cluster.wait_ready(dp)
        assert chat(dp.api_port, secret).status == 200
    cluster.ctl("keys", "revoke", "vk_acme_prod")
    revoked_at = time.monotonic()
    for dp in dps:
        wait_for(lambda: chat(dp.api_port, secret).status == 401, 1.0 - (time.monotonic() - revoked_at),
                 interval=0.01, what=f"{dp.name} to reject the revoked key")
    assert time.monotonic() - revoked_at < 1.0
    assert_openai_error(chat(dps[0].api_port, secret), 401, "invalid_api_key")


def test_dataplane_restarted_while_controlplane_down_serves_from_snapshot_cache(seeded):
    cluster, secret = seeded
    plain = cluster.apply("""\
virtual_keys:
- id: vk_no_budget
  customer_id: acme_corp
  allowed_providers: [openai]
""", name="plain.yaml")["vk_no_budget"]
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    assert chat(dp.api_port, secret).status == 200
    assert chat(dp.api_port, plain).status == 200
    cache = cluster.path("dp1.snapshot")
    wait_for(lambda: os.path.exists(cache), 5, what="snapshot cache file")
    assert os.stat(cache).st_mode & 0o777 == 0o600
    with open(cache, "rb") as f:
        raw = f.read()
    assert cluster.mock_key.encode() not in raw          # credentials are sealed
    assert b"vk_acme_prod" not in raw
    dp.stop()
    cluster.cp.stop()
    dp2 = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp2, timeout=5)
    # keys, providers and prices come from the cache: a key without a budget is served
    resp = chat(dp2.api_port, plain)
    assert resp.status == 200, resp.body
    assert resp.header("x-sluice-provider") == "openai"
    # the budgeted key is known too, but a fresh process holds no lease of its
    # monthly budget, and budgets fail closed while the control plane is away
    resp = chat(dp2.api_port, secret)
    assert resp.status == 503, resp.body
    assert resp.json()["error"]["code"] == "quota_unavailable"
    assert_openai_error(chat(dp2.api_port, "sk-sluice-" + "B" * 43), 401)


def test_usage_rows_equal_mock_tokens_priced_exactly(seeded):
    cluster, secret = seeded
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    total_in = total_out = 0
    for i in range(12):
        resp = chat(dp.api_port, secret, content=" ".join(["word"] * (i + 1)), max_tokens=3 + i, stream=(i % 2 == 1))
        assert resp.status == 200
    stats = cluster.mock_stats()
    total_in, total_out = stats["prompt_tokens"], stats["completion_tokens"]
    assert total_out == sum(3 + i for i in range(12))
    rows = wait_ledger_requests(cluster, 12)
    assert len(rows) == 1
    row = rows[0]
    assert (row["key"], row["provider"], row["model"]) == ("vk_acme_prod", "openai", "gpt-4o")
    assert row["requests"] == 12 and row["errors"] == 0
    assert row["input"] == total_in and row["output"] == total_out
    assert row["cost_nano"] == total_in * GPT4O_IN_NANO_PER_TOKEN + total_out * GPT4O_OUT_NANO_PER_TOKEN
    assert cluster.sql("SELECT DISTINCT tenant_id FROM usage_minute").strip() == "acme_corp"
    time.sleep(1.5)                                       # later reports must not add anything
    assert ledger(cluster) == rows


def test_duplicate_report_is_applied_once(seeded, pb):
    cluster, _ = seeded
    report = pb.sync.UsageReport(node_id="node-x", boot_id="b" * 32, seq=1, entries=[pb.sync.UsageEntry(
        key_id="vk_acme_prod", tenant_id="acme_corp", provider="openai", model="gpt-4o",
        minute_unix=int(time.time()) // 60 * 60, requests=3, input_tokens=30, output_tokens=9, cost_nano=165000)])
    channel = grpc.insecure_channel(f"127.0.0.1:{cluster.grpc_port}")
    call = channel.unary_unary("/sluice.sync.v1.Sync/Report", request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=pb.sync.ReportAck.FromString)
    md = [("authorization", f"Bearer {cluster.node_token}")]
    first = call(report, metadata=md, timeout=10)
    second = call(report, metadata=md, timeout=10)
    assert first.seq == 1 and not first.duplicate
    assert second.duplicate
    rows = ledger(cluster)
    assert rows == [{"key": "vk_acme_prod", "provider": "openai", "model": "gpt-4o", "requests": 3, "errors": 0,
                     "input": 30, "output": 9, "cost_nano": 165000}]
    # a wrong node token is refused and changes nothing
    report.seq = 2
    try:
        call(report, metadata=[("authorization", "Bearer wrong")], timeout=10)
        raise AssertionError("report with a wrong node token was accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED
    assert ledger(cluster) == rows
    channel.close()


def test_reports_retried_across_controlplane_restart_are_counted_once(seeded):
    cluster, secret = seeded
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    assert chat(dp.api_port, secret).status == 200
    wait_ledger_requests(cluster, 1)
    grpc_port = cluster.grpc_port
    cluster.cp.stop()
    for _ in range(5):                                    # served from the last snapshot, reports queue up
        assert chat(dp.api_port, secret).status == 200
    time.sleep(1.5)
    cluster.start_controlplane(grpc_port=grpc_port)
    rows = wait_ledger_requests(cluster, 6, timeout=15)
    stats = cluster.mock_stats()
    assert rows[0]["requests"] == 6
    assert rows[0]["input"] == stats["prompt_tokens"] and rows[0]["output"] == stats["completion_tokens"]
    time.sleep(1.5)
    assert ledger(cluster)[0]["requests"] == 6


def test_sigterm_flushes_usage_before_exit(seeded):
    cluster, secret = seeded
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    for _ in range(4):
        assert chat(dp.api_port, secret).status == 200
    dp.stop()                                             # right away: within the report interval
    rows = ledger(cluster)
    assert rows and rows[0]["requests"] == 4


def test_bad_requests_get_400_in_openai_shape(seeded):
    cluster, secret = seeded
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    auth = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    port = dp.api_port
    assert_openai_error(http_request(port, "POST", "/v1/chat/completions", body='{"model": "gpt-4o", "messages": [',
                                     headers=auth), 400)
    assert_openai_error(http_request(port, "POST", "/v1/chat/completions", body="[1,2]", headers=auth), 400)
    err = assert_openai_error(http_request(port, "POST", "/v1/chat/completions",
                                           body={"messages": [{"role": "user", "content": "hi"}]}, headers=auth), 400)
    assert err["param"] == "model"
    huge = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * (8 * 1024 * 1024)}]}
    assert_openai_error(http_request(port, "POST", "/v1/chat/completions", body=huge, headers=auth), 400)
    assert_openai_error(http_request(port, "GET", "/v1/nope", headers=auth), 404)
    # nothing of the above reached the provider or the ledger, and the node still serves
    assert cluster.mock_stats()["requests"] == 0
    assert chat(port, secret).status == 200


def test_upstream_errors_reach_the_client_in_openai_shape(seeded):
    cluster, secret = seeded
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    # the only target is retried (after a backoff) until the attempt budget is spent
    cluster.mock_faults(count=4, status=503)
    assert_openai_error(chat(dp.api_port, secret), 503)
    cluster.mock_faults(count=1, status=400)
    assert_openai_error(chat(dp.api_port, secret), 400)
    assert chat(dp.api_port, secret).status == 200


def test_stream_cut_after_content_ends_with_error_event_not_done(seeded):
    cluster, secret = seeded
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    # spaced out so content reaches the client before the cut (a cut before
    # any content is retried, invisibly)
    cluster.mock_faults(count=1, drop_after_chunks=3, chunk_delay_ms=50)
    resp = chat(dp.api_port, secret, stream=True, max_tokens=20)
    events = sse_events(resp.body)
    assert events, resp.body
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert "error" in last and last["error"]["message"]
    assert chat(dp.api_port, secret, stream=True).status == 200


def test_apply_is_idempotent_and_dry_run_changes_nothing(seeded):
    cluster, _ = seeded
    doc = mock_provider_yaml(cluster.mock_port) + SEED_YAML
    version = cluster.sql("SELECT version FROM config_state").strip()
    created = cluster.apply(doc, name="again.yaml")
    assert created == {}
    assert "no changes" in cluster.last_apply_output
    assert cluster.sql("SELECT version FROM config_state").strip() == version
    changed = doc.replace("requests_per_minute: 600", "requests_per_minute: 900")
    cluster.apply(changed, name="dry.yaml", extra_args=("--dry-run",))
    assert "vk_acme_prod" in cluster.last_apply_output
    assert cluster.sql("SELECT version FROM config_state").strip() == version
    assert cluster.sql("SELECT limit_value FROM quotas WHERE metric = 'requests'").strip() == "600"
    cluster.apply(changed, name="real.yaml")
    assert cluster.sql("SELECT limit_value FROM quotas WHERE metric = 'requests'").strip() == "900"
    assert int(cluster.sql("SELECT version FROM config_state")) == int(version) + 1
    # secrets are never stored in clear
    assert cluster.mock_key not in cluster.sql("SELECT encode(ciphertext, 'escape') FROM provider_credentials")
    assert cluster.sql("SELECT count(*) FROM virtual_keys WHERE length(key_hash) = 32").strip() == "1"


def test_apply_accepts_fallbacks_to_unconfigured_providers_with_a_warning(cluster):
    out_created = cluster.apply(SEED_YAML, name="keys-first.yaml")
    assert "vk_acme_prod" in out_created
    out = cluster.ctl("apply", "-f", cluster.path("keys-first.yaml"))
    assert "anthropic" in out.stderr and "warning" in out.stderr.lower()


def test_admin_api_requires_the_admin_token(seeded):
    cluster, _ = seeded
    cluster._write("bad.token", "not-the-token\n")
    from harness import binary
    out = subprocess.run([binary("sluicectl"), "--server", f"127.0.0.1:{cluster.grpc_port}", "--token-file",
                          cluster.path("bad.token"), "tenants", "list"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "UNAUTHENTICATED" in out.stderr.upper()
    out = cluster.ctl("tenants", "list", "-o", "json")
    assert "acme_corp" in out.stdout


def test_dataplane_with_wrong_node_token_gets_no_config(seeded):
    cluster, secret = seeded
    cluster._write("wrong-node.token", "wrong\n")
    dp = cluster.start_dataplane("dpx", extra=["--node-token-file", cluster.path("wrong-node.token")])
    time.sleep(1.0)
    assert http_request(dp.admin_port, "GET", "/readyz").status == 503
    assert chat(dp.api_port, secret).status == 503


def test_ops_endpoints_answer(seeded):
    cluster, secret = seeded
    dp = cluster.start_dataplane("dp1")
    cluster.wait_ready(dp)
    assert chat(dp.api_port, secret).status == 200
    for port in (cluster.cp_http_port, dp.admin_port):
        assert http_request(port, "GET", "/healthz").status == 200
        assert http_request(port, "GET", "/readyz").status == 200
        metrics = http_request(port, "GET", "/metrics")
        assert metrics.status == 200
        text = metrics.body.decode()
        assert "# TYPE" in text and "sluice_" in text
        if shutil.which("promtool"):
            check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
    dp_metrics = http_request(dp.admin_port, "GET", "/metrics").body.decode()
    assert "sluice_snapshot_version" in dp_metrics
    assert "sluice_gateway_overhead_seconds_bucket" in dp_metrics
