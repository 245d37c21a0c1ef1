"""Benchmark: the mock provider direct vs through the data plane, with wrk.

Non-streaming and streaming chat completions at concurrency 1, 16 and 64.
Prints a table (requests/s, p50/p99 latency, the ratio through/direct, and
the data plane's resident memory) and writes the numbers as JSON.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

from harness import REPO, Cluster, Postgres, chat  # noqa: E402

KEYS_YAML = """\
tenants:
- {{id: bench, name: Benchmark}}
providers:
- name: openai
  kind: openai
  base_url: http://127.0.0.1:{port}/v1
  keys:
  - secret_env: MOCK_API_KEY
models:
- {{provider: openai, model: gpt-4o, input_usd_per_mtok: 2.50, output_usd_per_mtok: 10.00}}
virtual_keys:
- id: vk_bench
  customer_id: bench
  allowed_providers: [openai]
"""


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def wrk(port, key, stream, conns, duration, auth_key):
    threads = 1 if conns == 1 else 2
    env = dict(os.environ, BENCH_KEY=auth_key, BENCH_STREAM="1" if stream else "0")
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s", "--timeout", "10s",
                          "-s", os.path.join(HERE, "chat.lua"), f"http://127.0.0.1:{port}/v1/chat/completions"],
                         capture_output=True, text=True, env=env, timeout=duration + 60)
    line = [l for l in out.stdout.splitlines() if l.startswith("BENCH ")]
    if out.returncode != 0 or not line:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(line[0][6:])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench.json"))
    ap.add_argument("--threads", type=int, default=1, help="data plane worker threads")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")

    work = tempfile.mkdtemp(prefix="sluice-bench-")
    os.chmod(work, 0o755)
    pg = Postgres(work)
    results = []
    cluster = None
    try:
        cluster = Cluster(pg, work)
        created = cluster.apply(KEYS_YAML.format(port=cluster.mock_port))
        key = created["vk_bench"]
        dp = cluster.start_dataplane("bench-1", threads=args.threads, extra=["--request-log", "off"])
        cluster.wait_ready(dp)
        assert chat(dp.api_port, key).status == 200
        rss_idle = rss_kib(dp.popen.pid)[0]
        for stream in (False, True):
            for conns in (1, 16, 64):
                direct = wrk(cluster.mock_port, key, stream, conns, args.duration, cluster.mock_key)
                via = wrk(dp.api_port, key, stream, conns, args.duration, key)
                rss, hwm = rss_kib(dp.popen.pid)
                results.append({"stream": stream, "connections": conns, "direct": direct, "sluice": via,
                                "ratio_rps": via["rps"] / direct["rps"] if direct["rps"] else 0,
                                "added_p50_us": via["p50_us"] - direct["p50_us"],
                                "dataplane_rss_kib": rss, "dataplane_peak_rss_kib": hwm})
    finally:
        if cluster:
            cluster.stop_all()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nSluice benchmark: mock provider direct vs through one data plane "
          f"({args.threads} worker thread(s)), {args.duration}s per row, {os.cpu_count()} CPUs, loopback")
    print(f"{'mode':<10}{'conns':>6} | {'direct rps':>11}{'p50':>9}{'p99':>9} | {'sluice rps':>11}{'p50':>9}"
          f"{'p99':>9} | {'ratio':>6}{'+p50':>8} | {'RSS MiB':>8}")
    for r in results:
        d, s = r["direct"], r["sluice"]
        print(f"{'stream' if r['stream'] else 'json':<10}{r['connections']:>6} | {d['rps']:>11.0f}"
              f"{d['p50_us'] / 1000:>7.2f}ms{d['p99_us'] / 1000:>7.2f}ms | {s['rps']:>11.0f}"
              f"{s['p50_us'] / 1000:>7.2f}ms{s['p99_us'] / 1000:>7.2f}ms | {r['ratio_rps']:>6.2f}"
              f"{r['added_p50_us']:>6d}us | {r['dataplane_rss_kib'] / 1024:>8.1f}")
        if d["non2xx"] or s["non2xx"] or s["errors_read"] or s["errors_timeout"]:
            print(f"    errors: direct non2xx={d['non2xx']} sluice non2xx={s['non2xx']} read={s['errors_read']} "
                  f"timeout={s['errors_timeout']}")
    print(f"data plane RSS idle after warm-up: {rss_idle / 1024:.1f} MiB")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
                   "cpus": os.cpu_count(), "duration_s": args.duration, "dataplane_threads": args.threads,
                   "dataplane_rss_idle_kib": rss_idle, "results": results}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
