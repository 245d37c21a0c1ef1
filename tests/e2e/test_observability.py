"""End-to-end: metrics, request logs and the Grafana dashboard (issue 5).

One cluster for the module: a control plane, two mock providers (`openai`
and a `backup` fallback), and data planes started per test with the flags
under test. Traffic covers plain and streamed answers, an upstream error, a
failover, a quota rejection, a wrong and a revoked key. The /metrics output
of a data plane and of the control plane is checked with `promtool check
metrics` (Debian package `prometheus`) and parsed: every family has HELP and
TYPE, the families operators rely on exist with the right types, and the
labelled cost equals the ledger exactly.
"""

import json
import os
import re
import shutil
import subprocess
import time
from decimal import Decimal

import pytest
import yaml

from harness import REPO, Cluster, chat, http_request, mock_provider, wait_for

PROMPT_MARKER = "zebra-quartz-marker"

DP_FAMILIES = {
    "sluice_requests_total": ("counter", {"provider", "model", "code", "outcome"}),
    "sluice_request_duration_seconds": ("histogram", set()),
    "sluice_gateway_overhead_seconds": ("histogram", set()),
    "sluice_upstream_duration_seconds": ("histogram", set()),
    "sluice_time_to_first_token_seconds": ("histogram", {"provider", "model"}),
    "sluice_tokens_total": ("counter", {"provider", "model", "direction"}),
    "sluice_cost_usd_total": ("counter", {"provider", "model"}),
    "sluice_quota_rejections_total": ("counter", {"kind"}),
    "sluice_failovers_total": ("counter", {"from", "to", "reason"}),
    "sluice_circuit_open": ("gauge", {"provider", "credential"}),
    "sluice_snapshot_version": ("gauge", set()),
    "sluice_snapshot_age_seconds": ("gauge", set()),
    "sluice_usage_reports_pending": ("gauge", set()),
    "sluice_inflight_requests": ("gauge", set()),
}

CP_FAMILIES = {
    "sluice_controlplane_connected_dataplanes": "gauge",
    "sluice_controlplane_snapshots_sent_total": "counter",
    "sluice_controlplane_push_duration_seconds": "histogram",
    "sluice_controlplane_reports_applied_total": "counter",
    "sluice_controlplane_report_apply_duration_seconds": "histogram",
    "sluice_controlplane_lease_grants_total": "counter",
    "sluice_controlplane_lease_denials_total": "counter",
    "sluice_controlplane_db_connections_max": "gauge",
    "sluice_controlplane_db_connections_open": "gauge",
    "sluice_controlplane_db_connections_in_use": "gauge",
    "sluice_controlplane_db_errors_total": "counter",
    "sluice_controlplane_alerts_fired_total": "counter",
    "sluice_controlplane_alert_deliveries_failed_total": "counter",
}


def config(primary_port, backup_port):
    key = "{id: main, secret_env: MOCK_API_KEY}"
    return f"""\
providers:
{mock_provider("openai", "openai", primary_port, key)}
{mock_provider("backup", "openai_compatible", backup_port, key)}
models:
- {{provider: openai, model: gpt-4o, input_usd_per_mtok: 2.50, output_usd_per_mtok: 10.00}}
- {{provider: backup, model: gpt-4o, input_usd_per_mtok: 1.25, output_usd_per_mtok: 5.00}}
virtual_keys:
- id: vk_main
  customer_id: acme_corp
  fallbacks:
  - {{provider: openai, model: gpt-4o}}
  - {{provider: backup, model: gpt-4o}}
- id: vk_content
  customer_id: globex
  metadata: {{log_content: true}}
- id: vk_limited
  customer_id: acme_corp
  rate_limit: {{requests_per_minute: 1}}
- id: vk_revoked
  customer_id: acme_corp
"""


# ---- exposition parsing ---------------------------------------------------

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, value)]}}."""
    families = {}
    current = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            fam = families.setdefault(parts[2], {"type": None, "help": None, "samples": []})
            fam["help" if parts[1] == "HELP" else "type"] = parts[3] if len(parts) > 3 else ""
            current = parts[2]
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"unparsable sample line: {line!r}"
        name, labels, value = m.group(1), dict(LABEL_RE.findall(m.group(3) or "")), float(m.group(4))
        fam = current
        assert fam is not None and (name == fam or name in (fam + "_bucket", fam + "_sum", fam + "_count")), \
            f"sample {name} outside its family block (current: {fam})"
        families[fam]["samples"].append((name, labels, value))
    return families


def value(families, family, name=None, **labels):
    """Sum of the samples of family (sample name `name`) matching labels."""
    total = 0.0
    for n, ls, v in families.get(family, {}).get("samples", []):
        if n == (name or family) and all(ls.get(k) == val for k, val in labels.items()):
            total += v
    return total


def metrics(port):
    resp = http_request(port, "GET", "/metrics")
    assert resp.status == 200
    return resp.body.decode()


def promtool(text):
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# ---- request logs -----------------------------------------------------------

def request_lines(dp):
    lines = []
    text = dp.log_text()
    # only whole lines: the last one may still be being written
    for line in text[:text.rfind("\n") + 1].splitlines():
        if '"module":"request"' not in line:
            continue
        lines.append(json.loads(line))
    return lines


def line_for(dp, request_id):
    return wait_for(lambda: next((ln for ln in request_lines(dp) if ln["request_id"] == request_id), None), 5,
                    what=f"request log line {request_id}")


# ---- fixture ---------------------------------------------------------------

@pytest.fixture(scope="module")
def obs(pg, tmp_path_factory):
    cluster = Cluster(pg, str(tmp_path_factory.mktemp("obs")))
    try:
        backup_port = cluster.start_mock("mock-backup")
        keys = cluster.apply(config(cluster.mock_port, backup_port))
        cluster.backup_port = backup_port
        cluster.keys = keys
        dp = cluster.start_dataplane("dp-obs")
        cluster.wait_ready(dp)
        cluster.dp = dp
        drive_traffic(cluster, dp)
        yield cluster
    finally:
        cluster.stop_all()


def drive_traffic(cluster, dp):
    k = cluster.keys
    r = chat(dp.api_port, k["vk_main"], content=f"plain {PROMPT_MARKER}")
    assert r.status == 200, r.body
    cluster.plain_id = r.header("x-request-id")
    for _ in range(3):
        r = chat(dp.api_port, k["vk_main"], stream=True, max_tokens=5,
                 extra={"stream_options": {"include_usage": True}})
        assert r.status == 200, r.body
    cluster.stream_id = r.header("x-request-id")
    # the upstream answers 400: the client's own error, no failover
    cluster.mock_faults(count=1, status=400)
    r = chat(dp.api_port, k["vk_main"])
    assert r.status == 400, r.body
    cluster.error_id = r.header("x-request-id")
    # the primary fails with 503: served by the fallback
    cluster.mock_faults(count=1, status=503)
    r = chat(dp.api_port, k["vk_main"])
    assert r.status == 200, r.body
    assert r.header("x-sluice-provider") == "backup"
    cluster.failover_id = r.header("x-request-id")
    # one request a minute: the second is rejected by the quota
    assert chat(dp.api_port, k["vk_limited"]).status == 200
    r = chat(dp.api_port, k["vk_limited"])
    assert r.status == 429, r.body
    cluster.quota_id = r.header("x-request-id")
    assert chat(dp.api_port, "sk-sluice-" + "x" * 43).status == 401
    assert chat(dp.api_port, k["vk_revoked"]).status == 200
    cluster.ctl("keys", "revoke", "vk_revoked")
    wait_for(lambda: chat(dp.api_port, k["vk_revoked"]).status == 401, 5, what="the revoked key to be refused")
    r = chat(dp.api_port, k["vk_revoked"])
    cluster.revoked_id = r.header("x-request-id")
    # every report applied before the metrics are read
    wait_for(lambda: value(parse_exposition(metrics(dp.admin_port)), "sluice_usage_reports_pending") == 0
             and cluster.sql("SELECT count(*) FROM usage_minute").strip() != "0", 10, what="reports applied")


# ---- metrics ---------------------------------------------------------------

def check_help_and_type(families):
    for name, fam in families.items():
        assert fam["help"], f"{name} has no HELP"
        assert fam["type"] in ("counter", "gauge", "histogram", "summary", "untyped"), f"{name}: TYPE {fam['type']}"
        if fam["type"] == "counter":
            assert name.endswith("_total"), f"counter {name} does not end in _total"
        assert name.startswith("sluice_"), name


def test_dataplane_metrics_pass_promtool_under_traffic(obs):
    text = metrics(obs.dp.admin_port)
    promtool(text)
    families = parse_exposition(text)
    check_help_and_type(families)
    for name, (typ, labels) in DP_FAMILIES.items():
        assert name in families, f"{name} missing from the data plane's /metrics"
        assert families[name]["type"] == typ, f"{name} is a {families[name]['type']}, not a {typ}"
        for n, ls, _ in families[name]["samples"]:
            if n in (name, name + "_count"):
                assert labels <= set(ls), f"{name} sample {ls} lacks labels {labels - set(ls)}"
    # traffic shows up where it should
    assert value(families, "sluice_requests_total", code="200", provider="openai", model="gpt-4o") >= 4
    assert value(families, "sluice_requests_total", code="401") >= 2
    assert value(families, "sluice_requests_total", code="429") >= 1
    assert value(families, "sluice_failovers_total", to="backup") >= 1
    assert value(families, "sluice_quota_rejections_total", kind="rate") >= 1
    assert value(families, "sluice_tokens_total", provider="openai", model="gpt-4o", direction="output") > 0
    assert value(families, "sluice_tokens_total", provider="backup", model="gpt-4o", direction="input") > 0
    assert value(families, "sluice_time_to_first_token_seconds", "sluice_time_to_first_token_seconds_count",
                 provider="openai", model="gpt-4o") == 3
    assert value(families, "sluice_snapshot_version") >= 1
    # no per-key or per-tenant labels by default
    for name, fam in families.items():
        for _, ls, _ in fam["samples"]:
            assert "tenant" not in ls and "key" not in ls and "key_id" not in ls, (name, ls)
    # the gateway's overhead histogram resolves 10 microseconds
    les = {ls["le"] for n, ls, _ in families["sluice_gateway_overhead_seconds"]["samples"] if "le" in ls}
    assert min(float(x) for x in les) <= 1e-5


def cost_series(port):
    """{(provider, model): Decimal USD} read from the exposition text as is."""
    exact = {}
    for line in metrics(port).splitlines():
        if line.startswith("sluice_cost_usd_total{"):
            ls = dict(LABEL_RE.findall(line[line.index("{") + 1:line.rindex("}")]))
            exact[(ls["provider"], ls["model"])] = Decimal(line.rsplit(" ", 1)[1])
    return exact


def ledger_cost(cluster):
    out = {}
    for row in cluster.sql("SELECT provider, model, sum(cost_nano) FROM usage_minute GROUP BY 1, 2").splitlines():
        p, m, c = row.split("|")
        out[(p, m)] = Decimal(c) / Decimal(10 ** 9)
    return out


def test_cost_metric_equals_the_ledger_exactly(obs):
    exact = cost_series(obs.dp.admin_port)
    assert exact[("openai", "gpt-4o")] > 0 and exact[("backup", "gpt-4o")] > 0, exact

    def matches():
        ledger = ledger_cost(obs)
        return all(ledger.get(k, Decimal(0)) == exact.get(k, Decimal(0)) for k in set(ledger) | set(exact))

    # the ledger catches up with the last report
    wait_for(matches, 10, what=f"the ledger to equal sluice_cost_usd_total {exact}")


def test_controlplane_metrics_pass_promtool_under_traffic(obs):
    text = metrics(obs.cp_http_port)
    promtool(text)
    families = parse_exposition(text)
    check_help_and_type(families)
    for name, typ in CP_FAMILIES.items():
        assert name in families, f"{name} missing from the control plane's /metrics"
        assert families[name]["type"] == typ, f"{name} is a {families[name]['type']}, not a {typ}"
    assert value(families, "sluice_controlplane_connected_dataplanes") >= 1
    assert value(families, "sluice_controlplane_reports_applied_total") >= 1
    assert value(families, "sluice_controlplane_report_apply_duration_seconds",
                 "sluice_controlplane_report_apply_duration_seconds_count") >= 1
    # the revocation was pushed to the connected data plane
    assert value(families, "sluice_controlplane_snapshots_sent_total", kind="delta") >= 1
    assert value(families, "sluice_controlplane_push_duration_seconds",
                 "sluice_controlplane_push_duration_seconds_count") >= 1
    assert value(families, "sluice_controlplane_lease_grants_total") >= 1
    opened = value(families, "sluice_controlplane_db_connections_open")
    in_use = value(families, "sluice_controlplane_db_connections_in_use")
    slots = value(families, "sluice_controlplane_db_connections_max")
    assert 1 <= opened <= slots and 0 <= in_use <= opened, (slots, opened, in_use)


def test_tenant_label_only_when_asked(obs):
    dp = obs.start_dataplane("dp-tenant", extra=["--metrics-tenant-label"])
    obs.wait_ready(dp)
    try:
        assert chat(dp.api_port, obs.keys["vk_main"]).status == 200
        assert chat(dp.api_port, obs.keys["vk_content"]).status == 200
        text = metrics(dp.admin_port)
        promtool(text)
        families = parse_exposition(text)
        tenants = {ls.get("tenant") for _, ls, _ in families["sluice_tokens_total"]["samples"]}
        assert tenants == {"acme_corp", "globex"}, tenants
        assert value(families, "sluice_cost_usd_total", tenant="globex") > 0
        # histograms never carry the tenant
        assert all("tenant" not in ls for _, ls, _ in families["sluice_time_to_first_token_seconds"]["samples"])
    finally:
        dp.stop()


# ---- request logs -------------------------------------------------------------

def test_request_log_lines_carry_the_fields_and_no_content(obs):
    dp = obs.dp
    plain = line_for(dp, obs.plain_id)
    for field in ("ts", "request_id", "key_id", "tenant_id", "model", "requested_provider", "provider",
                  "served_model", "attempts", "status", "outcome", "input_tokens", "cached_input_tokens",
                  "output_tokens", "cost_nano", "cost_usd", "overhead_us", "upstream_ms", "duration_ms", "ttft_ms"):
        assert field in plain, (field, plain)
    assert plain["key_id"] == "vk_main" and plain["tenant_id"] == "acme_corp"
    assert plain["model"] == "gpt-4o" and plain["provider"] == "openai" and plain["served_model"] == "gpt-4o"
    assert plain["status"] == 200 and plain["attempts"] == 1 and plain["outcome"] == "success"
    assert plain["output_tokens"] > 0 and plain["cost_nano"] > 0
    assert Decimal(plain["cost_usd"]) == Decimal(plain["cost_nano"]) / Decimal(10 ** 9)
    assert plain["ttft_ms"] is None
    stream = line_for(dp, obs.stream_id)
    assert stream["stream"] is True and stream["ttft_ms"] is not None and stream["ttft_ms"] >= 0
    assert stream["ttft_ms"] <= stream["duration_ms"] + 1
    failover = line_for(dp, obs.failover_id)
    assert failover["requested_provider"] == "openai" and failover["provider"] == "backup"
    assert failover["attempts"] == 2 and failover["outcome"] == "failover"
    error = line_for(dp, obs.error_id)
    assert error["status"] == 400 and error["upstream_status"] == 400
    quota = line_for(dp, obs.quota_id)
    assert quota["status"] == 429 and quota["key_id"] == "vk_limited"
    revoked = line_for(dp, obs.revoked_id)
    assert revoked["status"] == 401 and revoked["key_id"] == "vk_revoked"
    # content is never logged for keys that did not opt in
    log = dp.log_text()
    assert PROMPT_MARKER not in log
    for line in request_lines(dp):
        assert "prompt" not in line and "completion" not in line, line


def test_content_logged_only_for_keys_that_opt_in_and_truncated(obs):
    dp = obs.dp
    secret = obs.keys["vk_content"]
    r = chat(dp.api_port, secret, content=f"hello {PROMPT_MARKER}", max_tokens=4)
    assert r.status == 200
    line = line_for(dp, r.header("x-request-id"))
    assert PROMPT_MARKER in line["prompt"] and line["prompt_truncated"] is False
    assert json.loads(line["prompt"])[0]["role"] == "user"
    assert line["completion"] == r.json()["choices"][0]["message"]["content"]
    assert line["completion_truncated"] is False

    r = chat(dp.api_port, secret, content="streamed please", stream=True, max_tokens=6)
    assert r.status == 200
    line = line_for(dp, r.header("x-request-id"))
    assert line["completion"].startswith("mock") and len(line["completion"].split()) == 6, line["completion"]

    big = "é" * 5000  # 10000 bytes: cut at 4096 bytes on a character boundary
    body = {"model": "gpt-4o", "max_tokens": 2, "messages": [{"role": "user", "content": big}]}
    r = http_request(dp.api_port, "POST", "/v1/chat/completions", body=json.dumps(body, ensure_ascii=False).encode(),
                     headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
    assert r.status == 200, r.body
    line = line_for(dp, r.header("x-request-id"))
    assert line["prompt_truncated"] is True
    assert len(line["prompt"].encode()) <= 4096 and line["prompt"].endswith("é")


def test_request_log_sampling_keeps_errors(obs):
    dp = obs.start_dataplane("dp-sampled", extra=["--request-log-sample", "0.25"])
    obs.wait_ready(dp)
    try:
        n_ok, n_err = 200, 30
        ids_ok, ids_err = set(), set()
        deadline = time.monotonic() + 60
        for _ in range(n_ok):
            r = http_request(dp.api_port, "GET", "/v1/models",
                             headers={"Authorization": f"Bearer {obs.keys['vk_main']}"})
            assert r.status == 200
            ids_ok.add(r.header("x-request-id"))
            assert time.monotonic() < deadline
        for _ in range(n_err):
            r = chat(dp.api_port, "sk-sluice-" + "y" * 43)
            assert r.status == 401
            ids_err.add(r.header("x-request-id"))
        wait_for(lambda: ids_err <= {ln["request_id"] for ln in request_lines(dp)}, 5, what="error lines")
        lines = {ln["request_id"]: ln for ln in request_lines(dp)}
        kept = len(ids_ok & set(lines))
        # binomial(200, 0.25): mean 50, sd 6.1; +-4.5 sd
        assert 23 <= kept <= 77, kept
        assert all(lines[i]["sample_rate"] == 0.25 for i in ids_ok & set(lines))
    finally:
        dp.stop()


def test_bad_sample_rate_is_refused(obs):
    out = subprocess.run([os.path.join(os.environ.get("SLUICE_BUILD", os.path.join(REPO, "build")),
                                       "sluice-dataplane"), "--controlplane", "127.0.0.1:1", "--node-token-file",
                          obs.path("node.token"), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                          "--request-log-sample", "1.5"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "request-log-sample" in out.stderr


# ---- dashboard ---------------------------------------------------------------

def dashboard_exprs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                yield v
            else:
                yield from dashboard_exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from dashboard_exprs(v)


def test_grafana_dashboard_uses_only_metrics_that_exist(obs):
    with open(os.path.join(REPO, "deploy", "grafana", "sluice.json")) as f:
        dash = json.load(f)
    assert isinstance(dash.get("schemaVersion"), int) and dash.get("title")
    assert dash.get("panels"), "no panels"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    families = {}
    families.update(parse_exposition(metrics(obs.dp.admin_port)))
    families.update(parse_exposition(metrics(obs.cp_http_port)))
    exprs = list(dashboard_exprs(dash["panels"]))
    assert len(exprs) >= 12, exprs
    used = set()
    for expr in exprs:
        for name in re.findall(r"\bsluice_[a-z0-9_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            fam = name if name in families else base
            assert fam in families, f"dashboard expression uses {name}, which no process exports: {expr}"
            if name != fam:
                assert families[fam]["type"] == "histogram", f"{name} of non-histogram {fam}"
            used.add(fam)
    for must in ("sluice_requests_total", "sluice_gateway_overhead_seconds", "sluice_time_to_first_token_seconds",
                 "sluice_tokens_total", "sluice_cost_usd_total", "sluice_quota_rejections_total",
                 "sluice_failovers_total", "sluice_circuit_open", "sluice_snapshot_age_seconds",
                 "sluice_usage_reports_pending", "sluice_controlplane_connected_dataplanes",
                 "sluice_controlplane_report_apply_duration_seconds", "sluice_controlplane_alerts_fired_total"):
        assert must in used, f"the dashboard has no panel on {must}"


def test_alert_rules_read_only_metrics_and_labels_that_exist(obs):
    """The shipped alerting rules (their behaviour is tested with `promtool
    test rules` in tests/deploy) select families the processes export, by
    label names their samples carry."""
    with open(os.path.join(REPO, "deploy", "helm", "sluice", "files", "prometheus-rules.yaml")) as f:
        rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
    assert len(rules) >= 10, rules
    families = {}
    families.update(parse_exposition(metrics(obs.dp.admin_port)))
    families.update(parse_exposition(metrics(obs.cp_http_port)))
    target_labels = {"namespace"}  # added by the scrape, not by Sluice
    for rule in rules:
        expr = rule["expr"]
        known = set(target_labels)
        for name, matchers in re.findall(r"\b(sluice_[a-z0-9_]+)(?:\{([^}]*)\})?", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            fam = name if name in families else base
            assert fam in families, f"{rule['alert']} uses {name}, which no process exports"
            if name != fam:
                assert families[fam]["type"] == "histogram", f"{rule['alert']}: {name} of non-histogram {fam}"
            labels = {k for n, ls, _ in families[fam]["samples"] if n == name for k in ls}
            for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers):
                assert label in labels, f"{rule['alert']}: {name} has no label {label} (it has {sorted(labels)})"
            known |= labels
        for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
            for label in (x.strip() for x in group.split(",")):
                assert label in known, f"{rule['alert']} groups by {label}, which its series do not carry"
