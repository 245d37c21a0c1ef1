"""Benchmark of Sluice on loopback, driven with wrk.

Sections (all by default; --only picks some):
  openai     the mock provider direct vs through one data plane: non-streaming
             and streaming chat completions at concurrency 1, 16 and 64
             (requests/s, p50/p99, the ratio through/direct, data plane RSS).
  providers  the same OpenAI-format request through the data plane to each
             provider kind (openai pass-through, anthropic, bedrock, vertex)
             and direct to the mock in that provider's own API and auth:
             streaming (64 output tokens) at concurrency 1 and 16 and
             non-streaming at 16; the gateway's added latency per chunk and
             its CPU per request, against the OpenAI pass-through.
  quota      a key with a budget and a requests-per-minute limit (high enough
             that nothing is refused, so every request reserves and settles on
             leases) against a key without quotas, same load.
  reports    the control plane's report-apply rate: concurrent fake nodes send
             Sync.Report with N usage entries each; usage rows applied per
             second and report latency, keys without and with quotas.
  alerts     a spend_anomaly rule over all tenants (--alert-tenants of them,
             six weeks of hourly spend each in the ledger): the evaluation
             pass that learns every tenant's baseline, then the passes that
             only decide (sluice_controlplane_alert_evaluation_duration_seconds).

Prints a table per section and writes every number as JSON (--out).
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

from harness import (BUILD, REPO, Cluster, Postgres, Receiver, binary, chat, http_request,  # noqa: E402
                     mock_provider, wait_for)

SECTIONS = ("openai", "providers", "quota", "reports", "alerts")
PROMPT = "Say hello to the benchmark in a few words"
OUT_TOKENS = 64                       # output tokens (= content chunks) per provider request
AWS_KEY_ID = "AKIAMOCKLLMTEST00001"   # the mock's default (test-only) Bedrock credentials
AWS_SECRET = "mockllm/TEST/secret/0000000000000000000000"
AWS_REGION = "us-east-1"
VERTEX_PROJECT, VERTEX_LOCATION = "bench-project", "us-central1"
REPORT_KEYS = 1000                    # keys per set in the reports section

# provider name -> model served by that provider
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-6",
          "bedrock": "anthropic.claude-3-5-sonnet-20240620-v1:0", "vertex": "gemini-2.0-flash"}


def config_yaml(port, sa):
    """The bench tenant, its keys and the four providers, all served by the mock
    at port (sa: the Vertex service-account file)."""
    aws_key = "{access_key_id_env: BENCH_AWS_KEY_ID, secret_access_key_env: BENCH_AWS_SECRET}"
    vertex_key = f'{{id: sa, service_account_file: "{sa}"}}'
    vertex_params = (f'{{project: {VERTEX_PROJECT}, location: {VERTEX_LOCATION}, '
                     f'token_uri: "http://127.0.0.1:{port}/token"}}')
    return f"""\
tenants:
- {{id: bench, name: Benchmark}}
providers:
{mock_provider("openai", "openai", port)}
{mock_provider("anthropic", "anthropic", port)}
{mock_provider("bedrock", "bedrock", port, aws_key, params=f"{{region: {AWS_REGION}}}")}
{mock_provider("vertex", "vertex", port, vertex_key, params=vertex_params)}
models:
- {{provider: openai, model: gpt-4o, input_usd_per_mtok: 2.50, output_usd_per_mtok: 10.00}}
- {{provider: anthropic, model: claude-sonnet-4-6, input_usd_per_mtok: 3, output_usd_per_mtok: 15}}
- {{provider: bedrock, model: "anthropic.claude-3-5-sonnet-20240620-v1:0", input_usd_per_mtok: 3, output_usd_per_mtok: 15}}
- {{provider: vertex, model: gemini-2.0-flash, input_usd_per_mtok: 1.25, output_usd_per_mtok: 10}}
virtual_keys:
- id: vk_bench
  customer_id: bench
  allowed_providers: [openai]
- id: vk_providers
  customer_id: bench
  allowed_providers: [openai, anthropic, bedrock, vertex]
- id: vk_quota
  customer_id: bench
  allowed_providers: [openai]
  budget: {{max_per_month_usd: 1000000, reset_duration: monthly}}
  rate_limit: {{requests_per_minute: 100000000}}
"""


# ---- measuring ------------------------------------------------------------------------------------

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK     # fields 14 and 15 of proc(5)


def run_wrk(url, conns, duration, script, env):
    threads = 1 if conns == 1 else 2
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s", "--timeout", "10s",
                          "-s", os.path.join(HERE, script), url],
                         capture_output=True, text=True, env=dict(os.environ, **env), timeout=duration + 60)
    line = [l for l in out.stdout.splitlines() if l.startswith("BENCH ")]
    if out.returncode != 0 or not line:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(line[0][6:])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def wrk(port, key, stream, conns, duration, auth_key):
    """The original table's request (chat.lua): 16 tokens, OpenAI format."""
    return run_wrk(f"http://127.0.0.1:{port}/v1/chat/completions", conns, duration, "chat.lua",
                   {"BENCH_KEY": auth_key, "BENCH_STREAM": "1" if stream else "0"})


def wrk_request(req, conns, duration, cpu_pid=None):
    """req: {"url", "body", "headers"}. With cpu_pid, adds that process's CPU
    seconds during the run and CPU microseconds per request."""
    env = {"BENCH_BODY": req["body"], "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in req["headers"].items())}
    before = cpu_seconds(cpu_pid) if cpu_pid else 0
    r = run_wrk(req["url"], conns, duration, "request.lua", env)
    if cpu_pid:
        r["cpu_s"] = cpu_seconds(cpu_pid) - before
        r["cpu_us_per_req"] = r["cpu_s"] * 1e6 / r["requests"] if r["requests"] else 0
    return r


def errors_of(r):
    return r["non2xx"] + r["errors_read"] + r["errors_timeout"] + r["errors_connect"]


def metrics_text(port):
    resp = http_request(port, "GET", "/metrics")
    return resp.body.decode() if resp.status == 200 else ""


def metric_values(text, name):
    """{labels: value} of a metric's samples ("" for no labels)."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            rest = line[len(name):]
            if rest[:1] not in ("{", " "):
                continue
            labels, _, value = rest.rpartition(" ")
            out[labels.strip()] = float(value)
    return out


def hist_mean_us(before, after, name):
    """Mean of a histogram's observations between two scrapes, microseconds."""
    count = sum(metric_values(after, name + "_count").values()) - sum(metric_values(before, name + "_count").values())
    total = sum(metric_values(after, name + "_sum").values()) - sum(metric_values(before, name + "_sum").values())
    return total / count * 1e6 if count else None


def hist_quantile(buckets, q):
    """Upper bound of the bucket holding quantile q: buckets {le: count} cumulative."""
    items = sorted(((float("inf") if le == "+Inf" else float(le)), c) for le, c in buckets.items())
    if not items or items[-1][1] <= 0:
        return None
    target = q * items[-1][1]
    for le, c in items:
        if c >= target:
            return le
    return None


def percentile(values, q):
    if not values:
        return 0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# ---- provider requests (through the data plane, and direct in each provider's own API) ----------

def sigv4_headers(host, path, body, key_id, secret, region, service="bedrock"):
    """AWS Signature Version 4 headers for a POST of body to path (the raw,
    already percent-encoded path; SigV4 encodes each segment once more)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body.encode()).hexdigest()
    headers = {"content-type": "application/json", "host": host, "x-amz-content-sha256": payload_hash,
               "x-amz-date": amz_date}
    names = sorted(headers)
    canonical_uri = "/".join(urllib.parse.quote(seg, safe="-_.~") for seg in path.split("/"))
    canonical = "\n".join(["POST", canonical_uri, "", "".join(f"{n}:{headers[n]}\n" for n in names),
                           ";".join(names), payload_hash])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={';'.join(names)}, "
                                f"Signature={signature}")
    return headers


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def google_access_token(mock_port, sa_path, workdir):
    """An access token from the mock's OAuth endpoint: a JWT-bearer grant
    signed (RS256, openssl) with the service account's key."""
    with open(sa_path) as f:
        sa = json.load(f)
    key_path = os.path.join(workdir, "sa-key.pem")
    with open(key_path, "w") as f:
        f.write(sa["private_key"])
    os.chmod(key_path, 0o600)
    now = int(time.time())
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": sa["private_key_id"]}).encode())
    claims = b64url(json.dumps({"iss": sa["client_email"], "scope": "https://www.googleapis.com/auth/cloud-platform",
                                "aud": sa["token_uri"], "iat": now, "exp": now + 3600}).encode())
    signing_input = f"{header}.{claims}".encode()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_path], input=signing_input,
                         capture_output=True, check=True).stdout
    form = urllib.parse.urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                   "assertion": f"{header}.{claims}.{b64url(sig)}"})
    resp = http_request(mock_port, "POST", "/token", body=form,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    if resp.status != 200:
        raise RuntimeError(f"mock token endpoint: {resp.status} {resp.body[:300]}")
    return resp.json()["access_token"]


def gateway_request(port, key, provider, stream):
    body = {"model": MODELS[provider], "max_tokens": OUT_TOKENS, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body["stream"] = True
    return {"url": f"http://127.0.0.1:{port}/v1/chat/completions", "body": json.dumps(body),
            "headers": {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}}


def direct_request(ctx, provider, stream):
    """The same request in the provider's own API and auth, straight to the mock
    (what the data plane sends upstream, give or take field order)."""
    port = ctx["mock_port"]
    origin = f"http://127.0.0.1:{port}"
    model = MODELS[provider]
    if provider == "openai":
        body = {"model": model, "max_tokens": OUT_TOKENS, "messages": [{"role": "user", "content": PROMPT}]}
        if stream:       # the data plane asks for the usage chunk upstream
            body.update(stream=True, stream_options={"include_usage": True})
        return {"url": f"{origin}/v1/chat/completions", "body": json.dumps(body),
                "headers": {"Content-Type": "application/json", "Authorization": f"Bearer {ctx['mock_key']}"}}
    if provider == "anthropic":
        body = {"model": model, "max_tokens": OUT_TOKENS, "messages": [{"role": "user", "content": PROMPT}]}
        if stream:
            body["stream"] = True
        return {"url": f"{origin}/v1/messages", "body": json.dumps(body),
                "headers": {"Content-Type": "application/json", "x-api-key": ctx["mock_key"],
                            "anthropic-version": "2023-06-01"}}
    if provider == "bedrock":
        body = json.dumps({"messages": [{"role": "user", "content": [{"text": PROMPT}]}],
                           "inferenceConfig": {"maxTokens": OUT_TOKENS}})
        path = f"/model/{urllib.parse.quote(model, safe='')}/{'converse-stream' if stream else 'converse'}"
        # signed once: the mock accepts a signature for 15 minutes and does not check replays
        headers = sigv4_headers(f"127.0.0.1:{port}", path, body, AWS_KEY_ID, AWS_SECRET, AWS_REGION)
        return {"url": origin + path, "body": body, "headers": headers}
    if provider == "vertex":
        body = json.dumps({"contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
                           "generationConfig": {"maxOutputTokens": OUT_TOKENS}})
        path = (f"/v1/projects/{VERTEX_PROJECT}/locations/{VERTEX_LOCATION}/publishers/google/models/{model}"
                + (":streamGenerateContent?alt=sse" if stream else ":generateContent"))
        return {"url": origin + path, "body": body,
                "headers": {"Content-Type": "application/json", "Authorization": f"Bearer {ctx['google_token']}"}}
    raise ValueError(provider)


def check_direct(req):
    """One request with Python's client: the direct request must succeed."""
    u = urllib.parse.urlsplit(req["url"])
    path = u.path + (f"?{u.query}" if u.query else "")
    resp = http_request(u.port, "POST", path, body=req["body"], headers=req["headers"])
    if resp.status != 200:
        raise RuntimeError(f"direct {req['url']}: {resp.status} {resp.body[:300]}")


# ---- sections -------------------------------------------------------------------------------------

def section_openai(ctx, args):
    key, dp, mock_port = ctx["keys"]["vk_bench"], ctx["dp"], ctx["mock_port"]
    rows = []
    for stream in (False, True):
        for conns in (1, 16, 64):
            direct = wrk(mock_port, key, stream, conns, args.duration, ctx["mock_key"])
            via = wrk(dp.api_port, key, stream, conns, args.duration, key)
            rss, hwm = rss_kib(dp.popen.pid)
            rows.append({"stream": stream, "connections": conns, "direct": direct, "sluice": via,
                         "ratio_rps": via["rps"] / direct["rps"] if direct["rps"] else 0,
                         "added_p50_us": via["p50_us"] - direct["p50_us"],
                         "dataplane_rss_kib": rss, "dataplane_peak_rss_kib": hwm})
    print(f"\n== openai: mock provider direct vs through one data plane ({args.threads} worker thread(s)), "
          f"{args.duration}s per row, 16 output tokens")
    print(f"{'mode':<10}{'conns':>6} | {'direct rps':>11}{'p50':>9}{'p99':>9} | {'sluice rps':>11}{'p50':>9}"
          f"{'p99':>9} | {'ratio':>6}{'+p50':>8} | {'RSS MiB':>8}")
    for r in rows:
        d, s = r["direct"], r["sluice"]
        print(f"{'stream' if r['stream'] else 'json':<10}{r['connections']:>6} | {d['rps']:>11.0f}"
              f"{d['p50_us'] / 1000:>7.2f}ms{d['p99_us'] / 1000:>7.2f}ms | {s['rps']:>11.0f}"
              f"{s['p50_us'] / 1000:>7.2f}ms{s['p99_us'] / 1000:>7.2f}ms | {r['ratio_rps']:>6.2f}"
              f"{r['added_p50_us']:>6d}us | {r['dataplane_rss_kib'] / 1024:>8.1f}")
        if d["non2xx"] or s["non2xx"] or s["errors_read"] or s["errors_timeout"]:
            print(f"    errors: direct non2xx={d['non2xx']} sluice non2xx={s['non2xx']} read={s['errors_read']} "
                  f"timeout={s['errors_timeout']}")
    print(f"data plane RSS idle after warm-up: {ctx['rss_idle_kib'] / 1024:.1f} MiB")
    return rows


PROVIDER_CASES = ((True, 1), (True, 16), (False, 16))     # (stream, connections)


def section_providers(ctx, args):
    key, dp = ctx["keys"]["vk_providers"], ctx["dp"]
    rows = []
    for provider in MODELS:
        for stream, conns in PROVIDER_CASES:
            direct_req = direct_request(ctx, provider, stream)
            check_direct(direct_req)
            direct = wrk_request(direct_req, conns, args.duration)
            m_before = metrics_text(dp.admin_port)
            via = wrk_request(gateway_request(dp.api_port, key, provider, stream), conns, args.duration,
                              cpu_pid=dp.popen.pid)
            via["overhead_mean_us"] = hist_mean_us(m_before, metrics_text(dp.admin_port),
                                                   "sluice_gateway_overhead_seconds")
            rows.append({"provider": provider, "stream": stream, "connections": conns, "output_tokens": OUT_TOKENS,
                         "direct": direct, "sluice": via,
                         "added_p50_us": via["p50_us"] - direct["p50_us"],
                         "added_mean_us": via["mean_us"] - direct["mean_us"]})
    base = {(r["stream"], r["connections"]): r for r in rows if r["provider"] == "openai"}
    for r in rows:
        b = base[(r["stream"], r["connections"])]["sluice"]
        s = r["sluice"]
        r["cpu_vs_openai"] = s["cpu_us_per_req"] / b["cpu_us_per_req"] if b["cpu_us_per_req"] else 0
        r["cpu_extra_us_per_req"] = s["cpu_us_per_req"] - b["cpu_us_per_req"]
        if r["stream"]:
            r["added_us_per_chunk"] = r["added_p50_us"] / OUT_TOKENS
            r["cpu_extra_us_per_chunk"] = r["cpu_extra_us_per_req"] / OUT_TOKENS
    print(f"\n== providers: OpenAI-format requests through the data plane to each provider kind vs direct to the "
          f"mock in that provider's API; {OUT_TOKENS} output tokens, {args.duration}s per row")
    print(f"{'provider':<10}{'mode':<7}{'conns':>5} | {'direct rps':>10}{'p50':>9}{'p99':>9} | {'sluice rps':>10}"
          f"{'p50':>9}{'p99':>9} | {'+p50':>8}{'+/chunk':>9}{'gw ovh':>8} | "
          f"{'CPU/req':>8}{'x openai':>9}{'+/chunk':>9}")
    for r in rows:
        d, s = r["direct"], r["sluice"]
        per_chunk = f"{r['added_us_per_chunk']:>7.1f}us" if r["stream"] else f"{'-':>9}"
        cpu_chunk = f"{r['cpu_extra_us_per_chunk']:>7.2f}us" if r["stream"] else f"{'-':>9}"
        ovh = f"{s['overhead_mean_us']:>6.0f}us" if s.get("overhead_mean_us") is not None else f"{'-':>8}"
        print(f"{r['provider']:<10}{'stream' if r['stream'] else 'json':<7}{r['connections']:>5} | "
              f"{d['rps']:>10.0f}{d['p50_us'] / 1000:>7.2f}ms{d['p99_us'] / 1000:>7.2f}ms | "
              f"{s['rps']:>10.0f}{s['p50_us'] / 1000:>7.2f}ms{s['p99_us'] / 1000:>7.2f}ms | "
              f"{r['added_p50_us']:>6.0f}us{per_chunk}{ovh} | {s['cpu_us_per_req']:>6.0f}us{r['cpu_vs_openai']:>8.2f}x"
              f"{cpu_chunk}")
        if errors_of(d) or errors_of(s):
            print(f"    errors: direct {errors_of(d)} (non2xx {d['non2xx']}), sluice {errors_of(s)} "
                  f"(non2xx {s['non2xx']}, read {s['errors_read']}, timeout {s['errors_timeout']})")
    print("+p50: median latency through minus direct; +/chunk: that divided by the output tokens (one content\n"
          "chunk each; meaningful at 1 connection, queueing dominates at 16); gw ovh: the data plane's own mean\n"
          "of sluice_gateway_overhead_seconds (request time minus the upstream exchange) over the run.\n"
          "CPU/req: data plane utime+stime per request; x openai and +/chunk (CPU): against the OpenAI\n"
          "pass-through in the same mode.")
    return rows


def quota_counters(before, after):
    """Deltas of the data plane's quota counters between two scrapes."""
    out = {}
    for name, short in (("sluice_quota_waits_total", "waits"), ("sluice_quota_open_admissions_total", "open"),
                        ("sluice_quota_overrun_total", "overruns"), ("sluice_quota_rejections_total", "rejected")):
        a, b = metric_values(after, name), metric_values(before, name)
        for labels, v in a.items():
            kind = labels.split('"')[1] if '"' in labels else ""
            out[f"{short}_{kind}" if kind else short] = v - b.get(labels, 0)
    return out


def quota_compare(conns, rnd, u, q):
    return {"connections": conns, "round": rnd, "unlimited": u, "quota": q,
            "rps_ratio": q["rps"] / u["rps"] if u["rps"] else 0,
            "added_p50_us": q["p50_us"] - u["p50_us"], "added_p99_us": q["p99_us"] - u["p99_us"],
            "cpu_extra_us_per_req": q["cpu_us_per_req"] - u["cpu_us_per_req"]}


def section_quota(ctx, args):
    dp = ctx["dp"]
    keys = {"unlimited": ctx["keys"]["vk_bench"], "quota": ctx["keys"]["vk_quota"]}

    def request(kind):
        return {"url": f"http://127.0.0.1:{dp.api_port}/v1/chat/completions",
                "body": json.dumps({"model": "gpt-4o", "max_tokens": 16,
                                    "messages": [{"role": "user", "content": PROMPT}]}),
                "headers": {"Content-Type": "application/json", "Authorization": f"Bearer {keys[kind]}"}}

    # cold start: the first requests on the key wait for its first grants
    # while lease sizes grow to follow the rate (a few seconds); recorded
    # apart, and the runs after it measure the steady state
    m0 = metrics_text(dp.admin_port)
    cold = wrk_request(request("quota"), 16, max(4, args.duration), cpu_pid=dp.popen.pid)
    time.sleep(0.5)
    before = metrics_text(dp.admin_port)
    cold["quota_waits"] = quota_counters(m0, before)["waits"]
    rows = []
    rounds = range(1, args.rounds + 1)
    for conns in (1, 16):
        for rnd in rounds:
            for kind in ("unlimited", "quota"):
                t0 = time.time()
                r = wrk_request(request(kind), conns, args.duration, cpu_pid=dp.popen.pid)
                r["minute_rollover"] = int(t0) // 60 != int(time.time()) // 60
                rows.append({"key": kind, "connections": conns, "round": rnd, "sluice": r})
    time.sleep(0.5)
    counters = quota_counters(before, metrics_text(dp.admin_port))
    windows = ctx["cluster"].sql("SELECT q.metric || '/' || q.\"window\", count(*), sum(w.used) FROM quota_windows w "
                                 "JOIN quotas q ON q.id = w.quota_id WHERE q.scope_kind = 'virtual_key' "
                                 "AND q.scope_id = 'vk_quota' GROUP BY 1 ORDER BY 1")
    summary = []
    for conns in (1, 16):
        for rnd in rounds:
            u = next(r["sluice"] for r in rows if (r["key"], r["connections"], r["round"]) == ("unlimited", conns, rnd))
            q = next(r["sluice"] for r in rows if (r["key"], r["connections"], r["round"]) == ("quota", conns, rnd))
            summary.append(quota_compare(conns, rnd, u, q))
        if args.rounds > 1:        # the median of each number over the rounds
            runs = [x for x in summary if x["connections"] == conns and x["round"] != "median"]
            fields = ("rps", "p50_us", "p99_us", "cpu_us_per_req")
            u = {k: percentile([x["unlimited"][k] for x in runs], 0.5) for k in fields}
            q = {k: percentile([x["quota"][k] for x in runs], 0.5) for k in fields}
            for d in (u, q):
                d.update(non2xx=0, errors_read=0, errors_timeout=0, errors_connect=0)
            summary.append(quota_compare(conns, "median", u, q))
    print(f"\n== quota: key with budget + requests_per_minute vs key without quotas, OpenAI pass-through, "
          f"16 output tokens, {args.duration}s per run, runs alternate, {args.rounds} round(s)")
    print(f"{'conns':>5}{'round':>8} | {'unlimited rps':>13}{'p50':>9}{'p99':>9}{'CPU/req':>9} | {'quota rps':>10}"
          f"{'p50':>9}{'p99':>9}{'CPU/req':>9} | {'ratio':>6}{'+p50':>9}{'+p99':>10}{'+CPU':>8}")
    for s in summary:
        u, q = s["unlimited"], s["quota"]
        mark = "*" if q.get("minute_rollover") else " "
        print(f"{s['connections']:>5}{s['round']:>7}{mark} | {u['rps']:>13.0f}{u['p50_us'] / 1000:>7.2f}ms"
              f"{u['p99_us'] / 1000:>7.2f}ms{u['cpu_us_per_req']:>7.0f}us | {q['rps']:>10.0f}"
              f"{q['p50_us'] / 1000:>7.2f}ms{q['p99_us'] / 1000:>7.2f}ms{q['cpu_us_per_req']:>7.0f}us | "
              f"{s['rps_ratio']:>6.2f}{s['added_p50_us']:>7.0f}us{s['added_p99_us']:>8.0f}us"
              f"{s['cpu_extra_us_per_req']:>6.0f}us")
        if errors_of(u) or errors_of(q):
            print(f"    errors: unlimited {errors_of(u)}, quota {errors_of(q)} (non2xx {q['non2xx']})")
    print(f"cold start (fresh key, 16 connections, first {max(4, args.duration)}s): {cold['rps']:.0f} rps, "
          f"p50 {cold['p50_us'] / 1000:.2f}ms, p99 {cold['p99_us'] / 1000:.2f}ms, {cold['quota_waits']:.0f} waits "
          f"for a grant, non2xx {cold['non2xx']}")
    if any(s["quota"].get("minute_rollover") for s in summary):
        print("* the quota key's run crossed a minute boundary (a new requests_per_minute window)")
    print("data plane quota counters during the measured runs: "
          + ", ".join(f"{k}={v:.0f}" for k, v in counters.items()))
    print("vk_quota windows (metric/window|windows|used): " + " ".join(windows.split()))
    return {"runs": summary, "cold": cold, "counters": counters, "windows": windows.split()}


def report_docs(n_keys):
    """Two sets of keys on one tenant: rk_* without quotas, bk_* with a monthly
    budget and a requests-per-minute limit (every entry also counts in two
    quota windows)."""
    lines = ["virtual_keys:"]
    for i in range(n_keys):
        lines.append(f"- {{id: rk_{i:05d}, customer_id: bench}}")
    for i in range(n_keys):
        lines.append(f"- {{id: bk_{i:05d}, customer_id: bench, budget: {{max_per_month_usd: 1000000, "
                     f"reset_duration: monthly}}, rate_limit: {{requests_per_minute: 100000000}}}}")
    return "\n".join(lines) + "\n"


def load_pb(workdir):
    out = os.path.join(workdir, "pb")
    os.makedirs(out, exist_ok=True)
    protos = ["sluice/config/v1/config.proto", "sluice/sync/v1/sync.proto"]
    subprocess.run(["protoc", "-I", os.path.join(REPO, "proto"), "--python_out", out] + protos, check=True)
    sys.path.insert(0, out)
    from sluice.sync.v1 import sync_pb2  # noqa: E402
    return sync_pb2


REPORT_VALUES = {"requests": 3, "errors": 0, "input_tokens": 300, "cached_input_tokens": 0, "output_tokens": 120,
                 "cost_nano": 2100000}


def report_run(ctx, pb, prefix, entries, senders, duration):
    """`senders` fake nodes, each sending reports of `entries` usage entries
    back to back for `duration` seconds. Each node reports its own slice of
    the prefix's keys (no two nodes touch the same ledger row or quota
    window); a report holds every key of the slice once per model
    (bench-m0, bench-m1, ... as many as it takes), current minute, provider
    openai. Returns throughput, latency and the server histogram's view."""
    import grpc
    cluster = ctx["cluster"]
    minute = int(time.time()) // 60 * 60
    per_sender = REPORT_KEYS // senders

    def blob(s, b):
        es = [pb.UsageEntry(key_id=f"{prefix}_{s * per_sender + (b * entries + j) % per_sender:05d}",
                            tenant_id="bench", provider="openai",
                            model=f"bench-m{((b * entries + j) // per_sender) % max(1, -(-entries // per_sender))}",
                            minute_unix=minute, **REPORT_VALUES) for j in range(entries)]
        return pb.UsageReport(entries=es).SerializeToString()

    blobs = [[blob(s, b) for b in range(4)] for s in range(senders)]
    hist_name = "sluice_controlplane_report_apply_duration_seconds"
    m_before = metrics_text(cluster.cp_http_port)
    latencies = [[] for _ in range(senders)]
    failures = [0] * senders
    boot = os.urandom(6).hex()
    start_evt = threading.Event()
    deadline = [0.0]

    def sender(s):
        channel = grpc.insecure_channel(f"127.0.0.1:{cluster.grpc_port}")
        call = channel.unary_unary("/sluice.sync.v1.Sync/Report", request_serializer=lambda b: b,
                                   response_deserializer=pb.ReportAck.FromString)
        md = [("authorization", f"Bearer {cluster.node_token}")]
        seq = 0
        start_evt.wait()
        while time.monotonic() < deadline[0]:
            seq += 1
            # a report is its header fields followed by its entries: concatenated
            # protobuf messages merge, so the entries are serialized once
            head = pb.UsageReport(node_id=f"bench-reporter-{s}", boot_id=boot, seq=seq,
                                  sent_unix_ms=int(time.time() * 1000)).SerializeToString()
            t0 = time.monotonic()
            try:
                call(head + blobs[s][seq % len(blobs[s])], metadata=md, timeout=60)
                latencies[s].append(time.monotonic() - t0)
            except grpc.RpcError as e:
                failures[s] += 1
                if failures[s] == 1:
                    print(f"    report failed: {e.code()} {e.details()}", file=sys.stderr)
        channel.close()

    threads = [threading.Thread(target=sender, args=(s,)) for s in range(senders)]
    for t in threads:
        t.start()
    t_start = time.monotonic()
    deadline[0] = t_start + duration
    start_evt.set()
    for t in threads:
        t.join()
    wall = time.monotonic() - t_start
    m_after = metrics_text(cluster.cp_http_port)
    lat = [x for xs in latencies for x in xs]
    reports = len(lat)
    row = {"prefix": prefix, "quotas": prefix == "bk", "entries_per_report": entries, "senders": senders,
           "reports": reports, "failed": sum(failures), "wall_s": wall,
           "reports_per_s": reports / wall, "rows_per_s": reports * entries / wall,
           "p50_ms": percentile(lat, 0.5) * 1000, "p99_ms": percentile(lat, 0.99) * 1000}
    # the server's histogram, this run's part
    hb = {k: v for k, v in metric_values(m_before, hist_name + "_bucket").items()}
    ha = {k: v for k, v in metric_values(m_after, hist_name + "_bucket").items()}
    if ha:
        delta = {}
        for labels, v in ha.items():
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            delta[le] = v - hb.get(labels, 0)
        cnt = sum(metric_values(m_after, hist_name + "_count").values()) - \
            sum(metric_values(m_before, hist_name + "_count").values())
        tot = sum(metric_values(m_after, hist_name + "_sum").values()) - \
            sum(metric_values(m_before, hist_name + "_sum").values())
        row["server"] = {"count": cnt, "mean_ms": tot / cnt * 1000 if cnt else None,
                         "p50_le_ms": (hist_quantile(delta, 0.5) or 0) * 1000,
                         "p99_le_ms": (hist_quantile(delta, 0.99) or 0) * 1000}
    return row


def section_reports(ctx, args):
    pb = load_pb(ctx["work"])
    cluster = ctx["cluster"]
    t0 = time.monotonic()
    cluster.apply(report_docs(REPORT_KEYS), name="report-keys.yaml")
    setup_s = time.monotonic() - t0
    rows = []
    for prefix in ("rk", "bk"):
        for entries in args.report_entries:
            rows.append(report_run(ctx, pb, prefix, entries, args.report_senders, args.duration))
    # exactly once: the ledger holds every entry of every acknowledged report
    total = cluster.sql("SELECT coalesce(sum(requests), 0) FROM usage_minute WHERE key_id LIKE 'rk\\_%' "
                        "OR key_id LIKE 'bk\\_%'").strip()
    expected = sum(r["reports"] * r["entries_per_report"] for r in rows) * REPORT_VALUES["requests"]
    ledger_ok = int(total) == expected
    ledger_rows = int(cluster.sql("SELECT count(*) FROM usage_minute WHERE key_id LIKE 'rk\\_%' "
                                  "OR key_id LIKE 'bk\\_%'").strip())
    print(f"\n== reports: Sync.Report straight to the control plane, {args.report_senders} concurrent fake nodes, "
          f"{args.duration}s per row; {REPORT_KEYS} keys per set (bk_* each with a budget and a rate limit)")
    print(f"{'keys':<16}{'entries':>8} | {'reports/s':>10}{'rows/s':>9}{'p50':>10}{'p99':>10} | "
          f"{'server mean':>12}{'p50<=':>9}{'p99<=':>9}")
    for r in rows:
        sv = r.get("server") or {}
        mean = f"{sv['mean_ms']:>10.1f}ms" if sv.get("mean_ms") is not None else f"{'-':>12}"
        print(f"{'with quotas' if r['quotas'] else 'no quotas':<16}{r['entries_per_report']:>8} | "
              f"{r['reports_per_s']:>10.1f}{r['rows_per_s']:>9.0f}{r['p50_ms']:>8.1f}ms{r['p99_ms']:>8.1f}ms | "
              f"{mean}{sv.get('p50_le_ms', 0):>7.0f}ms{sv.get('p99_le_ms', 0):>7.0f}ms")
        if r["failed"]:
            print(f"    {r['failed']} reports failed")
    print(f"ledger check: {'ok' if ledger_ok else 'MISMATCH'} (requests {total}, expected {expected}); "
          f"{ledger_rows} ledger rows upserted into; key setup (apply of {2 * REPORT_KEYS} keys) took {setup_s:.1f}s")
    print("rows/s: usage entries (= ledger row upserts) acknowledged per second; p50/p99: report round trip at "
          "the sender;\nserver: sluice_controlplane_report_apply_duration_seconds over the run (p50<=/p99<= are "
          "bucket bounds).")
    return {"runs": rows, "ledger_ok": ledger_ok, "ledger_requests": int(total), "expected_requests": expected,
            "ledger_rows": ledger_rows, "key_setup_s": setup_s}


# ---- alerts: spend_anomaly over many tenants --------------------------------------------------------

ALERT_EVAL = "sluice_controlplane_alert_evaluation_duration_seconds"


def eval_passes(cluster):
    text = metrics_text(cluster.cp_http_port)
    return (sum(metric_values(text, ALERT_EVAL + "_count").values()),
            sum(metric_values(text, ALERT_EVAL + "_sum").values()))


def section_alerts(ctx, args):
    cluster, n = ctx["cluster"], args.alert_tenants
    t0 = time.monotonic()
    cluster.apply("tenants:\n" + "".join(f"- {{id: at_{i:05d}}}\n" for i in range(n)), name="alert-tenants.yaml")
    # six weeks of completed hours per tenant, with a daily cycle
    cluster.sql("SELECT sluice_ensure_usage_partition(now() - interval '43 days')")
    cluster.sql(f"""
        INSERT INTO usage_minute (minute, tenant_id, key_id, provider, model, requests, cost_nano)
        SELECT h, 'at_' || lpad(t::text, 5, '0'), 'atk_' || t, 'openai', 'gpt-4o', 10,
               ((5 + t % 7) * 1000000000.0 * (1 + 0.4 * sin(extract(hour FROM h)::float8 * pi() / 12)))::bigint
        FROM generate_series(0, {n - 1}) AS t,
             generate_series(date_trunc('hour', now()) - interval '42 days',
                             date_trunc('hour', now()) - interval '1 hour', interval '1 hour') AS h""")
    cluster.sql("ANALYZE usage_minute")
    rows = int(cluster.sql("SELECT count(*) FROM usage_minute WHERE tenant_id LIKE 'at\\_%'").strip())
    setup_s = time.monotonic() - t0
    recv = Receiver().start()
    try:
        before = eval_passes(cluster)
        cluster.apply(f"""\
alerts:
  sinks:
  - {{name: bench-hook, kind: webhook, url: "{recv.url('/hook')}"}}
  rules:
  - {{name: bench-anomaly, kind: spend_anomaly, scope: {{all_tenants: true}}, sinks: [bench-hook]}}
""", name="alert-rule.yaml")
        # the first pass with the rule learns every baseline; passes before the
        # apply (no rule) are nearly free, so wait until states are evaluated
        wait_for(lambda: eval_passes(cluster)[0] >= before[0] + 2, 600, interval=0.2, what="the first passes")
        first = eval_passes(cluster)
        passes = max(3, args.duration)
        wait_for(lambda: eval_passes(cluster)[0] >= first[0] + passes, 600, interval=0.2, what="steady passes")
        steady = eval_passes(cluster)
        fired = len(recv.received("/hook"))
    finally:
        recv.stop()
    cold_s = first[1] - before[1]
    steady_ms = (steady[1] - first[1]) / (steady[0] - first[0]) * 1e3
    print(f"\n== alerts: spend_anomaly over all tenants, {n} tenants x 6 weeks of hourly spend ({rows} ledger rows, "
          f"setup {setup_s:.0f}s)")
    print(f"first passes (learning every baseline): {cold_s:.2f}s; steady pass: {steady_ms:.1f} ms "
          f"({steady_ms * 1e3 / n:.0f} us per tenant); events fired: {fired} (expected 0: nothing is anomalous)")
    return {"tenants": n, "ledger_rows": rows, "cold_passes_s": cold_s, "steady_pass_ms": steady_ms,
            "events_fired": fired}


# ---- main -----------------------------------------------------------------------------------------

def parse_only(values):
    out = []
    for v in values or []:
        for s in v.split(","):
            s = s.strip()
            if s not in SECTIONS:
                raise argparse.ArgumentTypeError(f"unknown section {s!r} (one of {', '.join(SECTIONS)})")
            if s not in out:
                out.append(s)
    return out or list(SECTIONS)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    ap.add_argument("--out", default=os.path.join(BUILD, "bench.json"))
    ap.add_argument("--threads", type=int, default=1, help="data plane worker threads")
    ap.add_argument("--only", action="append", metavar="SECTION",
                    help=f"run only these sections ({'|'.join(SECTIONS)}; repeat or comma-separate)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating rounds of the quota section (its table adds the median)")
    ap.add_argument("--report-entries", default="100,1000",
                    help="usage entries per report in the reports section (comma-separated)")
    ap.add_argument("--report-senders", type=int, default=4, help="concurrent fake nodes in the reports section")
    ap.add_argument("--alert-tenants", type=int, default=1000, help="tenants in the alerts section")
    args = ap.parse_args()
    try:
        sections = parse_only(args.only)
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    args.report_entries = [int(x) for x in args.report_entries.split(",") if x.strip()]
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")

    work = tempfile.mkdtemp(prefix="sluice-bench-")
    os.chmod(work, 0o755)
    began = time.monotonic()
    pg = Postgres(work)
    cluster = None
    results = {}
    ctx = {"work": work}
    if "alerts" in sections:
        os.environ["SLUICE_ALERT_INTERVAL"] = "1s"       # the control plane evaluates every second
    try:
        cluster = Cluster(pg, work)
        ctx["cluster"] = cluster
        # one mock serving every provider API, its token endpoint trusting a fresh service account
        sa = cluster.path("bench-sa.json")
        subprocess.run([binary("sluice-mockllm"), "--make-service-account", sa], check=True)
        mock = cluster._start("mockllm-bench", [binary("sluice-mockllm"), "--listen", "127.0.0.1:0",
                                                "--api-key", cluster.mock_key, "--google-sa", sa])
        ctx.update(mock_port=mock.ports[0], mock_key=cluster.mock_key)
        os.environ.update(BENCH_AWS_KEY_ID=AWS_KEY_ID, BENCH_AWS_SECRET=AWS_SECRET)
        ctx["keys"] = cluster.apply(config_yaml(ctx["mock_port"], sa))
        dp = cluster.start_dataplane("bench-1", threads=args.threads, extra=["--request-log", "off"])
        cluster.wait_ready(dp)
        ctx["dp"] = dp
        assert chat(dp.api_port, ctx["keys"]["vk_bench"]).status == 200
        if "providers" in sections:
            ctx["google_token"] = google_access_token(ctx["mock_port"], sa, work)
            for provider, model in MODELS.items():     # warm-up; vertex waits for the data plane's access token
                wait_for(lambda: chat(dp.api_port, ctx["keys"]["vk_providers"], model=model,
                                      max_tokens=4).status == 200, 15, interval=0.2, what=f"{provider} through sluice")
        ctx["rss_idle_kib"] = rss_kib(dp.popen.pid)[0]
        for name in sections:
            results[name] = globals()[f"section_{name}"](ctx, args)
    finally:
        if cluster:
            cluster.stop_all()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    doc = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
           "cpus": os.cpu_count(), "loadavg": os.getloadavg(), "duration_s": args.duration,
           "dataplane_threads": args.threads, "sections": sections, "dataplane_rss_idle_kib": ctx.get("rss_idle_kib"),
           "elapsed_s": time.monotonic() - began}
    if "openai" in results:
        doc["results"] = results["openai"]          # the original table, under its original name
    for name in ("providers", "quota", "reports", "alerts"):
        if name in results:
            doc[name] = results[name]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"\n{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"took {doc['elapsed_s']:.0f}s; wrote {args.out}")


if __name__ == "__main__":
    main()
