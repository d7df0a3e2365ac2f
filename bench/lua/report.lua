-- Appended to every request script by bench/run: one machine-readable summary line on stdout.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH requests=%d duration_us=%d status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d p50_us=%d p99_us=%d mean_us=%.1f\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
