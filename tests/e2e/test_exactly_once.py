"""Exactly-once usage under failures: with traffic running, kill -9 the
control plane and restart it, restart PostgreSQL, SIGTERM one data plane,
kill -9 another (with a spool directory) and restart it; afterwards the
ledger equals, token for token and nano-dollar for nano-dollar, what the
mock reported in the responses the clients received whole with status 200.

Requests in flight on the killed data plane fail at the client and are
counted on neither side: the client counts only complete responses, and
the data plane journals a request just before it hands the bytes that
complete the response to the socket (so a response a client received
whole is never missing from the ledger)."""

import json
import os
import random
import signal
import threading
import time

from conftest import mock_provider_yaml
from harness import http_request, sse_events, wait_for

KEY = "vk_exact"
# catalog prices in micro-USD per million tokens: (input, cached input, output)
PRICES = {
    "gpt-4o": (2_500_000, 1_250_000, 10_000_000),
    "gpt-4o-mini": (150_000, 150_000, 600_000),
}
TRAFFIC_SECONDS = 16
CLIENT_THREADS = 4


def cost_nano(tokens, micro_per_mtok):
    """Integer nano-USD for tokens at a price, rounded half up (sl_cost_nano)."""
    if tokens <= 0 or micro_per_mtok <= 0:
        return 0
    return (tokens * micro_per_mtok + 500) // 1000


def request_cost(model, prompt, cached, completion):
    p_in, p_cached, p_out = PRICES[model]
    return cost_nano(prompt - cached, p_in) + cost_nano(cached, p_cached) + cost_nano(completion, p_out)


class Tally:
    """Usage the clients saw, per model: requests, input, cached, output, cost."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_model = {}
        self.failed = 0
        self.non200 = {}

    def add(self, model, usage):
        prompt = int(usage["prompt_tokens"])
        completion = int(usage["completion_tokens"])
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        with self.lock:
            row = self.by_model.setdefault(model, [0, 0, 0, 0, 0])
            row[0] += 1
            row[1] += prompt
            row[2] += cached
            row[3] += completion
            row[4] += request_cost(model, prompt, cached, completion)

    def totals(self):
        with self.lock:
            return {m: tuple(v) for m, v in self.by_model.items()}


def usage_of(resp, stream):
    """The usage the mock reported in a complete 200 response, else None."""
    if resp.status != 200:
        return None
    if not stream:
        return resp.json().get("usage")
    events = sse_events(resp.body)
    if not events or events[-1] != "[DONE]":
        return None  # not whole
    usage = None
    for ev in events[:-1]:
        chunk = json.loads(ev)
        if chunk.get("usage"):
            usage = chunk["usage"]
    return usage


def ledger(cluster):
    rows = cluster.sql(
        "SELECT model, sum(requests), sum(errors), sum(input_tokens), sum(cached_input_tokens),"
        f" sum(output_tokens), sum(cost_nano) FROM usage_minute WHERE key_id = '{KEY}' GROUP BY model")
    out = {}
    for line in rows.splitlines():
        if line.strip():
            model, req, err, inp, cached, outp, cost = line.split("|")
            out[model] = (int(req), int(inp), int(cached), int(outp), int(cost), int(err))
    return out


def compare(client, led):
    """Mismatch lines (empty when the ledger equals the clients' sums)."""
    lines = []
    names = ("requests", "input_tokens", "cached_input_tokens", "output_tokens", "cost_nano")
    for model in sorted(set(client) | set(led)):
        c = client.get(model, (0, 0, 0, 0, 0))
        g = led.get(model, (0, 0, 0, 0, 0, 0))
        for i, name in enumerate(names):
            if c[i] != g[i]:
                lines.append(f"  {KEY} {model} {name}: clients {c[i]}, ledger {g[i]} (diff {g[i] - c[i]:+d})")
        if g[5] != 0:
            lines.append(f"  {KEY} {model} errors: ledger {g[5]} (clients saw only whole 200 responses)")
    return lines


def test_ledger_equals_client_usage_through_kills_and_restarts(cluster):
    created = cluster.apply(mock_provider_yaml(cluster.mock_port) + f"""\
virtual_keys:
- id: {KEY}
  customer_id: acme_exact
  allowed_providers: [openai]
""")
    secret = created[KEY]
    spool1, spool2 = cluster.path("spool-dp1"), cluster.path("spool-dp2")
    dps = {
        "dp1": cluster.start_dataplane("dp1", extra=["--spool-dir", spool1]),
        "dp2": cluster.start_dataplane("dp2", extra=["--spool-dir", spool2]),
        "dp3": cluster.start_dataplane("dp3", extra=["--drain-timeout", "10"]),
    }
    for dp in dps.values():
        cluster.wait_ready(dp)

    live_lock = threading.Lock()
    live = {name: dp.api_port for name, dp in dps.items()}
    tally = Tally()
    stop = threading.Event()

    def client(seed):
        rnd = random.Random(seed)
        while not stop.is_set():
            with live_lock:
                ports = list(live.values())
            if not ports:
                time.sleep(0.01)
                continue
            port = rnd.choice(ports)
            model = rnd.choice(sorted(PRICES))
            stream = rnd.random() < 0.5
            body = {"model": model, "messages": [{"role": "user", "content": "count " * rnd.randint(1, 40)}],
                    "max_tokens": rnd.randint(5, 60)}
            if stream:
                body["stream"] = True
                body["stream_options"] = {"include_usage": True}
            try:
                resp = http_request(port, "POST", "/v1/chat/completions", body=body, timeout=20,
                                    headers={"Authorization": f"Bearer {secret}",
                                             "Content-Type": "application/json"})
            except Exception:  # refused, reset, cut short: the client did not get it
                with tally.lock:
                    tally.failed += 1
                continue
            usage = usage_of(resp, stream)
            if usage is None:
                with tally.lock:
                    tally.non200[resp.status] = tally.non200.get(resp.status, 0) + 1
                continue
            tally.add(model, usage)
            time.sleep(0.002)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENT_THREADS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()

    def at(second):
        delay = t0 + second - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    events = []
    # the control plane dies: reports fail and queue (dp1/dp2 spool them)
    at(2)
    cluster.restart_controlplane(down_seconds=2.0)
    events.append("control plane killed and restarted")
    # PostgreSQL restarts under the control plane
    at(6)
    cluster.pg.restart(down_seconds=1.0)
    events.append("postgres restarted")
    # kill -9 a data plane with a spool directory, mid-traffic, and restart it
    at(9)
    dps["dp1"].kill()
    with live_lock:
        del live["dp1"]
    events.append("dp1 killed")
    time.sleep(0.5)
    dps["dp1"] = cluster.start_dataplane("dp1", extra=["--spool-dir", spool1])
    cluster.wait_ready(dps["dp1"])
    with live_lock:
        live["dp1"] = dps["dp1"].api_port
    events.append("dp1 restarted")
    # SIGTERM a data plane: it finishes what it started and flushes its usage
    at(12)
    with live_lock:
        del live["dp3"]
    assert dps["dp3"].stop(timeout=30) == 0
    events.append("dp3 stopped")
    at(TRAFFIC_SECONDS)
    stop.set()
    for t in threads:
        t.join(30)
    client_sums = tally.totals()
    total = sum(v[0] for v in client_sums.values())
    assert total > 200, f"too little traffic got through: {client_sums}, failed {tally.failed}, {tally.non200}"

    # every data plane still running reports what it has; the ledger must
    # reach the clients' sums and stay there
    mismatch = []

    def converged():
        nonlocal mismatch
        mismatch = compare(client_sums, ledger(cluster))
        return not mismatch

    try:
        wait_for(converged, 25, interval=0.5, what="the ledger to equal the clients' usage")
        time.sleep(1.5)  # late duplicates must change nothing
        mismatch = compare(client_sums, ledger(cluster))
    except AssertionError:
        pass
    led = ledger(cluster)
    detail = "\n".join(
        [f"events: {events}", f"client failures: {tally.failed}, non-200/incomplete: {tally.non200}",
         "recovery: " + "; ".join(line for line in dps["dp1"].log_text().splitlines() if "recovered" in line),
         "clients (requests, input, cached, output, cost_nano) per model:"]
        + [f"  {m}: {v}" for m, v in sorted(client_sums.items())]
        + ["ledger (requests, input, cached, output, cost_nano, errors) per model:"]
        + [f"  {m}: {v}" for m, v in sorted(led.items())])
    assert not mismatch, "ledger differs from what clients received:\n" + "\n".join(mismatch) + "\n" + detail
