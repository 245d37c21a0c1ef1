"""Alerting end to end: rules declared with sluicectl apply, spend driven
through the Sync Report RPC (or seeded into the ledger with SQL), events
delivered by the control plane to a local receiver standing in for a
webhook, Slack, PagerDuty and Alertmanager."""

import calendar
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import time

import grpc
import pytest

from conftest import mock_provider_yaml
from harness import Cluster, Receiver, chat, free_port, http_request, wait_for

USD = 1_000_000_000
HMAC_SECRET = "whsec-test-0123456789"
PD_KEY = "R0UTINGKEY0123456789abcdef012345"
PD_PATH = "/pd/v2/enqueue"          # the sink's url + the Events API v2 path
AM_PATH = "/am/api/v2/alerts"       # the sink's url + Alertmanager's API path


@pytest.fixture
def cluster(pg, tmp_path, monkeypatch, request):
    """A cluster whose control planes evaluate alerts every second (and,
    parametrized indirectly, re-send firing alerts to Alertmanager at the
    interval given)."""
    monkeypatch.setenv("SLUICE_ALERT_INTERVAL", "1s")
    if getattr(request, "param", None):
        monkeypatch.setenv("SLUICE_ALERT_RESEND_INTERVAL", request.param)
    c = Cluster(pg, str(tmp_path))
    try:
        yield c
    finally:
        c.stop_all()


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def key_yaml(budget_usd=100):
    return f"""\
virtual_keys:
- id: vk_acme_prod
  customer_id: acme_corp
  budget: {{max_per_month_usd: {budget_usd}, reset_duration: monthly}}
  allowed_providers: [openai]
"""


def alerts_yaml(recv, sinks=("ops", "chat", "pager", "am"), rule_extra=""):
    return f"""\
alerts:
  sinks:
  - {{name: ops, kind: webhook, url: "{recv.url('/hook')}", secret_env: ALERT_HMAC_SECRET}}
  - {{name: chat, kind: slack, url_env: SLACK_WEBHOOK_URL}}
  - {{name: pager, kind: pagerduty, url: "{recv.url('/pd')}", routing_key_env: PD_ROUTING_KEY}}
  - {{name: am, kind: alertmanager, url: "{recv.url('/am')}"}}
  rules:
  - {{name: acme-budget, kind: budget_threshold, scope: {{virtual_key: vk_acme_prod}}, thresholds: [0.5, 0.8, 1.0], sinks: [{", ".join(sinks)}]{rule_extra}}}
"""


def apply(cluster, recv, text):
    env = {"MOCK_API_KEY": cluster.mock_key, "ALERT_HMAC_SECRET": HMAC_SECRET, "PD_ROUTING_KEY": PD_KEY,
           "SLACK_WEBHOOK_URL": recv.url("/slack/T000/B000/XXXX")}
    path = cluster._write("alerts.yaml", text)
    return cluster.ctl("apply", "-f", path, env=env)


class Reporter:
    """Sends usage straight to Sync.Report, as a data plane would."""

    def __init__(self, cluster, pb, port=None):
        self.cluster, self.pb, self.seq = cluster, pb, 0
        self.boot = os.urandom(16).hex()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port or cluster.grpc_port}")
        self.call = self.channel.unary_unary("/sluice.sync.v1.Sync/Report",
                                             request_serializer=lambda m: m.SerializeToString(),
                                             response_deserializer=pb.sync.ReportAck.FromString)

    def spend(self, usd, key="vk_acme_prod", tenant="acme_corp", provider="openai", requests=1, errors=0):
        self.seq += 1
        report = self.pb.sync.UsageReport(node_id="node-alerts", boot_id=self.boot, seq=self.seq, entries=[
            self.pb.sync.UsageEntry(key_id=key, tenant_id=tenant, provider=provider, model="gpt-4o",
                                    minute_unix=int(time.time()) // 60 * 60, requests=requests, errors=errors,
                                    input_tokens=10, output_tokens=10, cost_nano=int(usd * USD))])
        ack = self.call(report, metadata=[("authorization", f"Bearer {self.cluster.node_token}")], timeout=10)
        assert not ack.duplicate

    def close(self):
        self.channel.close()


def iso_unix(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def bodies(recv, path):
    return [json.loads(r["body"]) for r in recv.received(path)]


def wait_count(recv, path, n, timeout=15):
    wait_for(lambda: len(recv.received(path)) >= n, timeout, interval=0.05, what=f"{n} deliveries to {path}")


def test_budget_thresholds_deliver_one_event_per_sink_kind_with_documented_payloads(cluster, receiver, pb):
    out = apply(cluster, receiver, mock_provider_yaml(cluster.mock_port) + key_yaml(100) + alerts_yaml(receiver))
    for secret in (HMAC_SECRET, PD_KEY, "/slack/T000"):
        assert secret not in out.stdout + out.stderr
    rep = Reporter(cluster, pb)
    rep.spend(55)                                              # 55% of 100 USD: crosses 0.5
    for path in ("/hook", "/slack/T000/B000/XXXX", PD_PATH, AM_PATH):
        wait_count(receiver, path, 1)
    rep.spend(30)                                              # 85%: crosses 0.8, not 1.0
    for path in ("/hook", "/slack/T000/B000/XXXX", PD_PATH, AM_PATH):
        wait_count(receiver, path, 2)
    time.sleep(2.5)                                            # more passes: nothing is sent again
    for path in ("/hook", "/slack/T000/B000/XXXX", PD_PATH, AM_PATH):
        assert len(receiver.received(path)) == 2, path

    # generic webhook: the event, signed over the exact body
    hooks = receiver.received("/hook")
    for r in hooks:
        want = "sha256=" + hmac.new(HMAC_SECRET.encode(), r["body"], hashlib.sha256).hexdigest()
        assert r["headers"]["x-sluice-signature"] == want
        assert r["headers"]["content-type"] == "application/json"
    first, second = [json.loads(r["body"]) for r in hooks]
    assert list(first) == ["id", "source", "event", "status", "rule", "rule_kind", "severity", "scope", "instance",
                           "summary", "dedup_key", "fired_at", "created_at", "details"]
    assert hooks[0]["headers"]["x-sluice-event-id"] == first["id"]
    assert first["event"] == "fire" and first["status"] == "firing" and first["source"] == "sluice"
    assert first["rule"] == "acme-budget" and first["rule_kind"] == "budget_threshold"
    assert first["scope"] == {"kind": "virtual_key", "id": "vk_acme_prod"}
    assert first["severity"] == "info" and second["severity"] == "warning"
    month = time.strftime("%Y-%m-01T00:00:00Z", time.gmtime())
    assert first["instance"] == f"month/{month}/0.5" and second["instance"] == f"month/{month}/0.8"
    assert first["dedup_key"] == f"sluice/acme-budget/virtual_key/vk_acme_prod/month/{month}/0.5"
    d = first["details"]
    assert d["spend_usd"] == "55" and d["limit_usd"] == "100" and d["threshold"] == "0.5"
    assert d["spend_nano"] == 55 * USD and d["limit_nano"] == 100 * USD and d["window"] == "month"
    assert second["details"]["spend_usd"] == "85" and second["details"]["threshold"] == "0.8"
    assert "55.00 USD" in first["summary"] and "100.00 USD monthly budget" in first["summary"]

    # Slack incoming webhook: text + blocks
    slack = bodies(receiver, "/slack/T000/B000/XXXX")
    assert set(slack[0]) == {"text", "blocks"}
    assert slack[0]["text"].startswith("[FIRING] virtual key vk_acme_prod has spent 55.00 USD")
    assert [b["type"] for b in slack[0]["blocks"]] == ["header", "section", "context"]
    assert slack[0]["blocks"][0]["text"] == {"type": "plain_text", "text": "Firing: acme-budget"}
    assert slack[0]["blocks"][1]["text"]["type"] == "mrkdwn"

    # PagerDuty Events API v2
    pd = bodies(receiver, PD_PATH)
    assert pd[0]["routing_key"] == PD_KEY and pd[0]["event_action"] == "trigger"
    assert pd[0]["dedup_key"] == first["dedup_key"] and pd[1]["dedup_key"] == second["dedup_key"]
    p = pd[0]["payload"]
    assert p["source"] == "sluice" and p["severity"] == "info" and p["summary"] == first["summary"]
    assert p["custom_details"]["spend_usd"] == "55" and p["custom_details"]["event_id"] == first["id"]

    # Alertmanager: an array of alerts; a firing alert ends at its lease, four
    # resend intervals (the default 60 s) after it was sent
    am = bodies(receiver, AM_PATH)
    assert isinstance(am[0], list) and len(am[0]) == 1
    a = am[0][0]
    assert a["labels"] == {"alertname": "acme-budget", "severity": "info", "source": "sluice",
                           "rule_kind": "budget_threshold", "scope_kind": "virtual_key", "scope_id": "vk_acme_prod",
                           "period": f"month/{month}/0.5"}
    assert a["annotations"]["summary"] == first["summary"] and a["startsAt"] == first["fired_at"]
    sent_at = receiver.received(AM_PATH)[0]["at"]
    assert sent_at + 230 <= iso_unix(a["endsAt"]) <= sent_at + 250

    # the month rolls over (simulated): both thresholds resolve, once each
    cluster.sql("UPDATE alert_state SET period_end = now() - interval '1 second'")
    wait_count(receiver, PD_PATH, 4)
    for path in ("/hook", "/slack/T000/B000/XXXX", AM_PATH):
        wait_count(receiver, path, 4)
    resolved = bodies(receiver, "/hook")[2:]
    assert sorted(r["instance"] for r in resolved) == sorted([first["instance"], second["instance"]])
    assert all(r["event"] == "resolve" and r["status"] == "resolved" and "resolved_at" in r for r in resolved)
    pdr = bodies(receiver, PD_PATH)[2:]
    assert sorted(r["dedup_key"] for r in pdr) == sorted([first["dedup_key"], second["dedup_key"]])
    assert all(r["event_action"] == "resolve" and "payload" not in r for r in pdr)
    assert all("endsAt" in b[0] for b in bodies(receiver, AM_PATH)[2:])
    assert bodies(receiver, "/slack/T000/B000/XXXX")[2]["text"].startswith("[RESOLVED]")
    time.sleep(1.5)
    assert len(receiver.received("/hook")) == 4                # a resolved threshold does not fire again this period

    # sluicectl shows rules, state and deliveries, never a secret
    listing = cluster.ctl("alerts", "list").stdout
    assert "acme-budget" in listing and "budget_threshold" in listing and "resolved" in listing
    js = json.loads(cluster.ctl("-o", "json", "alerts", "list").stdout)
    assert {s["name"] for s in js["sinks"]} == {"ops", "chat", "pager", "am"}
    assert len(js["rules"][0]["states"]) == 2
    hist = json.loads(cluster.ctl("-o", "json", "alerts", "history", "--rule", "acme-budget").stdout)["events"]
    assert [e["event"] for e in hist] == ["resolve", "resolve", "fire", "fire"]
    assert all(d["status"] == "delivered" and d["attempts"] == 1 for e in hist for d in e["deliveries"])
    text = json.dumps(js) + json.dumps(hist) + cluster.ctl("alerts", "history").stdout
    for secret in (HMAC_SECRET, PD_KEY, "/slack/T000"):
        assert secret not in text
    assert HMAC_SECRET not in cluster.cp.log_text() and PD_KEY not in cluster.cp.log_text()

    # re-applying the same file changes nothing
    again = apply(cluster, receiver, mock_provider_yaml(cluster.mock_port) + key_yaml(100) + alerts_yaml(receiver))
    assert again.stdout.startswith("no changes"), again.stdout
    metrics = http_request(cluster.cp_http_port, "GET", "/metrics").body.decode()
    assert "sluice_controlplane_alerts_fired_total 2" in metrics
    assert "sluice_controlplane_alert_leader 1" in metrics
    assert "sluice_controlplane_alert_evaluation_duration_seconds_count" in metrics
    if shutil.which("promtool"):
        lint = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr
    rep.close()


@pytest.mark.parametrize("cluster", ["1s"], indirect=True)
def test_alertmanager_gets_firing_alerts_again_until_they_resolve(cluster, receiver, pb):
    """Alertmanager drops an alert that is not re-sent before its endsAt:
    while firing it is posted every resend interval with a later endsAt;
    the other sinks get it once; after the resolve nothing more is sent."""
    apply(cluster, receiver, mock_provider_yaml(cluster.mock_port) + key_yaml(100) + alerts_yaml(receiver, sinks=("ops", "am")))
    rep = Reporter(cluster, pb)
    rep.spend(55)
    wait_count(receiver, AM_PATH, 4, timeout=20)
    posts = receiver.received(AM_PATH)
    alerts = [json.loads(p["body"])[0] for p in posts]
    assert len({json.dumps(a["labels"], sort_keys=True) for a in alerts}) == 1       # the same alert
    assert {a["annotations"]["event_id"] for a in alerts} == {bodies(receiver, "/hook")[0]["id"]}
    assert len({a["startsAt"] for a in alerts}) == 1
    for p, a in zip(posts, alerts):                                  # each lease: four intervals past its send
        assert p["at"] + 2 <= iso_unix(a["endsAt"]) <= p["at"] + 6
    ends = [iso_unix(a["endsAt"]) for a in alerts]
    assert ends == sorted(ends) and ends[-1] > ends[0]
    gaps = [b["at"] - a["at"] for a, b in zip(posts, posts[1:])]
    assert min(gaps) >= 0.5, gaps                                    # one post per interval, not more
    assert len(receiver.received("/hook")) == 1                      # other sinks: once
    rows = cluster.sql("SELECT sink, status, attempts, refreshed_at IS NOT NULL FROM alert_deliveries"
                       " ORDER BY sink").split()
    assert rows == ["am|delivered|1|t", "ops|delivered|1|f"]

    # the period rolls over: the resolve is the last thing Alertmanager hears
    cluster.sql("UPDATE alert_state SET period_end = now() - interval '1 second'")
    wait_for(lambda: any("endsAt" in b[0] and iso_unix(b[0]["endsAt"]) <= time.time() + 1
                         and b[0]["annotations"]["event_id"] != alerts[0]["annotations"]["event_id"]
                         for b in bodies(receiver, AM_PATH)), 15, what="the resolve")
    time.sleep(3)
    after = bodies(receiver, AM_PATH)
    last = after[-1][0]
    assert last["annotations"]["event_id"] != alerts[0]["annotations"]["event_id"]   # the resolve event
    assert last["startsAt"] == alerts[0]["startsAt"] and last["labels"] == alerts[0]["labels"]
    rep.close()


def test_receiver_down_at_first_gets_events_later_none_lost_none_doubled(cluster, pb):
    recv = Receiver(port=free_port())                          # not started: connections are refused
    apply(cluster, recv, mock_provider_yaml(cluster.mock_port) + key_yaml(100) + alerts_yaml(recv, sinks=("ops",)))
    rep = Reporter(cluster, pb)
    rep.spend(51)
    rep.spend(30)

    def pending():
        count, most = cluster.sql("SELECT count(*), COALESCE(max(attempts), 0) FROM alert_deliveries"
                                  " WHERE status = 'pending'").strip().split("|")
        return int(count), int(most)

    # both events wait; the first one is retried, the second waits behind it
    wait_for(lambda: pending()[0] == 2 and pending()[1] >= 2, 15, what="failed delivery attempts")
    assert recv.received() == []
    recv.start()                                               # the receiver comes back on the same port
    try:
        wait_count(recv, "/hook", 2, timeout=20)
        time.sleep(2.5)
        got = bodies(recv, "/hook")
        assert len(got) == 2
        assert [g["details"]["threshold"] for g in got] == ["0.5", "0.8"]   # in order
        assert len({g["id"] for g in got}) == 2
        rows = cluster.sql("SELECT status, attempts > 1 FROM alert_deliveries d JOIN alert_events e"
                           " ON e.id = d.event_id ORDER BY e.id").split()
        assert rows[0] == "delivered|t" and rows[1].startswith("delivered|")
        metrics = http_request(cluster.cp_http_port, "GET", "/metrics").body.decode()
        failed = [ln for ln in metrics.splitlines() if ln.startswith("sluice_controlplane_alert_deliveries_failed_total")]
        assert failed and int(failed[0].split()[1]) >= 2
    finally:
        recv.stop()
        rep.close()


def seed_hourly_baseline(cluster, tenants, usd_per_hour, days):
    """Completed hours of the last `days` days with a daily cycle (never the
    current hour), straight into the ledger, for each tenant (key vk_<tenant>)."""
    cluster.sql(f"SELECT sluice_ensure_usage_partition(now() - interval '{days + 1} days')")
    names = ",".join(f"'{t}'" for t in tenants)
    cluster.sql(f"""
        INSERT INTO usage_minute (minute, tenant_id, key_id, provider, model, requests, cost_nano)
        SELECT h, t, 'vk_' || t, 'openai', 'gpt-4o', 10,
               ({usd_per_hour} * 1000000000.0 * (1 + 0.4 * sin(extract(hour FROM h)::float8 * pi() / 12)))::bigint
        FROM generate_series(date_trunc('hour', now()) - interval '{days} days',
                             date_trunc('hour', now()) - interval '1 hour', interval '1 hour') AS h,
             unnest(ARRAY[{names}]) AS t""")


def test_spend_spike_through_the_mock_fires_spend_anomaly_and_resolves(cluster, receiver):
    # stay inside one clock hour: the spike must be judged as the current hour
    if 3600 - time.time() % 3600 < 40:
        time.sleep(3600 - time.time() % 3600 + 1)
    # a model priced at 1 USD per output token: a runaway agent in miniature
    priced = "- {provider: openai, model: gpt-4o-agent, input_usd_per_mtok: 0, output_usd_per_mtok: 1000000}\n"
    # quiet tenants beside it: one half an hour off UTC, one named NULL, and
    # enough others that the evaluator's model cache has to grow
    quiet = ["beta", "NULL"] + [f"q{i:02d}" for i in range(30)]
    tenants = "tenants:\n- {id: beta, time_zone: Asia/Kolkata}\n- {id: 'NULL'}\n" + "".join(
        f"- {{id: {t}}}\n" for t in quiet[2:])
    # the ledger holds three weeks before the rule exists (a model without
    # enough history is only looked at again ten minutes later)
    seed_hourly_baseline(cluster, ["acme_corp"] + quiet, 10, 21)
    secrets = cluster.apply(mock_provider_yaml(cluster.mock_port) + priced + tenants + key_yaml(100000) + f"""\
alerts:
  sinks:
  - {{name: ops, kind: webhook, url: "{receiver.url('/hook')}", secret_env: ALERT_HMAC_SECRET}}
  rules:
  - {{name: runaway-spend, kind: spend_anomaly, scope: {{all_tenants: true}}, sensitivity: 3.0, min_hourly_usd: 5, sinks: [ops]}}
""",
        env={"ALERT_HMAC_SECRET": HMAC_SECRET})
    dp = cluster.start_dataplane("dp-spike")
    cluster.wait_ready(dp)
    time.sleep(2.5)
    assert receiver.received() == []                           # three weeks of normal spend: quiet
    # one request through the data plane to the mock: 300 output tokens, 300 USD
    # in one hour against ~10 USD usually
    resp = chat(dp.api_port, secrets["vk_acme_prod"], model="gpt-4o-agent", max_tokens=300)
    assert resp.status == 200 and resp.json()["usage"]["completion_tokens"] == 300, resp.body
    wait_count(receiver, "/hook", 1)
    fired = bodies(receiver, "/hook")[0]
    assert fired["event"] == "fire" and fired["rule_kind"] == "spend_anomaly" and fired["severity"] == "warning"
    assert fired["scope"] == {"kind": "tenant", "id": "acme_corp"} and fired["instance"] == ""
    assert fired["details"]["basis"] == "current_hour" and fired["details"]["observed_usd"] == "300"
    assert fired["details"]["score"] >= 3 and fired["details"]["history_weeks"] >= 2
    time.sleep(2)
    assert len(receiver.received("/hook")) == 1                # firing: not sent again, the others quiet
    evaluated = cluster.sql("SELECT scope, status FROM alert_state WHERE rule = 'runaway-spend'").split()
    assert evaluated == ["tenant/acme_corp|firing"]

    # the other two tenants spike as well (straight into the ledger): each is
    # judged on its own history and its own hour
    for tenant in ("beta", "NULL"):
        cluster.sql("INSERT INTO usage_minute (minute, tenant_id, key_id, provider, model, requests, cost_nano)"
                    f" VALUES (date_trunc('minute', now()), '{tenant}', 'vk_{tenant}', 'openai', 'gpt-4o', 1,"
                    f" {250 * USD})")
    wait_count(receiver, "/hook", 3)
    assert sorted(b["scope"]["id"] for b in bodies(receiver, "/hook")[1:]) == ["NULL", "beta"]

    # the spikes are withdrawn (as a correction would): the hour is normal again
    cluster.sql("DELETE FROM usage_minute WHERE minute >= now() - interval '1 hour' AND cost_nano >= 100000000000")
    wait_count(receiver, "/hook", 6)
    resolved = [b for b in bodies(receiver, "/hook")[3:] if b["scope"]["id"] == "acme_corp"][0]
    assert all(b["event"] == "resolve" for b in bodies(receiver, "/hook")[3:])
    assert resolved["dedup_key"] == fired["dedup_key"]
    assert resolved["fired_at"] == fired["fired_at"]
    state = cluster.sql("SELECT status FROM alert_state WHERE rule = 'runaway-spend'").split()
    assert state == ["resolved"] * 3


def test_two_controlplane_replicas_deliver_each_event_once(cluster, receiver, pb):
    second = cluster.start_controlplane_replica("controlplane-2")
    apply(cluster, receiver, mock_provider_yaml(cluster.mock_port) + key_yaml(100) + alerts_yaml(receiver, sinks=("ops",)))

    def leaders():
        n = 0
        for port in (cluster.cp_http_port, second.http_port):
            if "sluice_controlplane_alert_leader 1" in http_request(port, "GET", "/metrics").body.decode():
                n += 1
        return n

    wait_for(lambda: leaders() == 1, 10, what="one alert leader")
    rep = Reporter(cluster, pb, port=second.grpc_port)
    rep.spend(55)
    wait_count(receiver, "/hook", 1)
    time.sleep(2.5)
    assert len(receiver.received("/hook")) == 1
    assert leaders() == 1

    # the leader goes away; the other replica takes over and the next event is sent once
    leader_was_first = "sluice_controlplane_alert_leader 1" in http_request(
        cluster.cp_http_port, "GET", "/metrics").body.decode()
    survivor = second if leader_was_first else cluster.cp
    survivor_http = second.http_port if leader_was_first else cluster.cp_http_port
    (cluster.cp if leader_was_first else second).stop()
    wait_for(lambda: "sluice_controlplane_alert_leader 1" in http_request(survivor_http, "GET", "/metrics")
             .body.decode(), 10, what="the surviving replica to lead")
    rep2 = Reporter(cluster, pb, port=second.grpc_port if leader_was_first else cluster.grpc_port)
    rep2.spend(30)
    wait_count(receiver, "/hook", 2)
    time.sleep(2.5)
    got = bodies(receiver, "/hook")
    assert [g["details"]["threshold"] for g in got] == ["0.5", "0.8"]
    assert int(cluster.sql("SELECT count(*) FROM alert_events").strip()) == 2
    assert survivor.alive()
    rep.close()
    rep2.close()


def test_circuit_open_fires_from_a_dataplane_breaker(cluster, receiver):
    """A data plane reports its open circuit breakers with its usage reports;
    the control plane records them in provider_health and the circuit_open
    rule fires on them."""
    dead = free_port()                                            # nothing listens here
    text = f"""\
providers:
- name: dead
  kind: openai_compatible
  base_url: http://127.0.0.1:{dead}/v1
  keys:
  - {{id: main, secret_env: MOCK_API_KEY}}
virtual_keys:
- id: vk_circuit
  customer_id: acme_corp
  allowed_providers: [dead]
alerts:
  sinks:
  - {{name: ops, kind: webhook, url: "{receiver.url('/hook')}", secret_env: ALERT_HMAC_SECRET}}
  rules:
  - {{name: dead-circuit, kind: circuit_open, scope: {{provider: dead}}, sinks: [ops]}}
"""
    env = {"MOCK_API_KEY": cluster.mock_key, "ALERT_HMAC_SECRET": HMAC_SECRET}
    path = cluster._write("circuit.yaml", text)
    secrets_path = cluster.path("circuit.secrets")
    cluster.ctl("apply", "-f", path, "--secrets-out", secrets_path, env=env)
    with open(secrets_path) as f:
        secret = dict(line.split() for line in f if line.strip())["vk_circuit"]
    dp = cluster.start_dataplane("dp-circuit")
    cluster.wait_ready(dp)
    for _ in range(3):                                            # 4 attempts each: the breaker opens after 5
        body = {"model": "dead/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        resp = http_request(dp.api_port, "POST", "/v1/chat/completions", body=body,
                            headers={"Authorization": f"Bearer {secret}"})
        assert resp.status in (502, 503), resp.body
    wait_for(lambda: cluster.sql("SELECT state FROM provider_health WHERE provider = 'dead'").strip() == "open",
             15, interval=0.1, what="the open circuit in provider_health")
    wait_count(receiver, "/hook", 1)
    event = bodies(receiver, "/hook")[0]
    assert event["rule"] == "dead-circuit" and event["status"] == "firing", event
    assert "dead" in event["summary"], event
