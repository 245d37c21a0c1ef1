-- wrk script: POST a chat completion; prints one JSON line of results.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
if os.getenv("BENCH_STREAM") == "1" then
  wrk.body = '{"model":"gpt-4o","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"Say hello to the benchmark in a few words"}]}'
else
  wrk.body = '{"model":"gpt-4o","max_tokens":16,"messages":[{"role":"user","content":"Say hello to the benchmark in a few words"}]}'
end

done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,"errors_timeout":%d,"non2xx":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.timeout,
    non2xx, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
