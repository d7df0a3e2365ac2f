# bench/streaming.sh: the streaming rows of bench/run (sourced after lib.sh).
#
# A 64 MiB download (`/stream/download` of the demo origin, 64 KiB chunks, Content-Length)
# fetched with curl on a fresh connection, BENCH_STREAM_RUNS times (default 5) per target:
# time to first byte and MiB/s, medians. Targets, side by side in one run:
#   origin           the demo origin alone
#   host             edge-session-host in front of it (anonymous, and signed in: one load per request)
#   worker           the Worker under workerd (functions/cloudflare-worker/e2e/workerd.mjs:
#                    Miniflare, no wrangler dev proxy) in front of it, on upstash-local; only when
#                    the Worker is built (functions/cloudflare-worker/build, `scripts/build-worker`)
#   worker-origin    a plain JavaScript pass-through Worker under the same workerd, for scale
#
# The caller sets BIN, TMP, SECRET, REDIS_URL, REST_TOKEN, STACK_PIDS, ROOT, BENCH_DIR; needs curl.
# shellcheck shell=bash

STREAM_BYTES=$((64 * 1024 * 1024))

# stream_fetch URL [COOKIE]: `ttfb_s total_s bytes` of one download on a fresh connection.
stream_fetch() {
  local url="$1" cookie="${2:-}"
  curl -sS -o /dev/null ${cookie:+-H "Cookie: $cookie"} \
    -w '%{time_starttransfer} %{time_total} %{size_download}\n' "$url"
}

# stream_measure TARGET VISITOR URL [COOKIE]: appends `target visitor ttfb_ms mib_s` (medians).
stream_measure() {
  local target="$1" visitor="$2" url="$3" cookie="${4:-}" runs="${BENCH_STREAM_RUNS:-5}" i
  local samples="$TMP/stream-$target-$visitor"
  : >"$samples"
  stream_fetch "$url" "$cookie" >/dev/null # warm-up (pools, caches)
  for ((i = 0; i < runs; i++)); do
    stream_fetch "$url" "$cookie" >>"$samples"
  done
  awk -v target="$target" -v visitor="$visitor" -v want="$STREAM_BYTES" '
    { ttfb[NR] = $1 * 1000; mibs[NR] = ($3 / 1048576) / $2; if ($3 != want) short++ }
    function median(a, n,   i, j, t) {
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END { printf "%s\t%s\t%.2f\t%.1f\t%d\n", target, visitor, median(ttfb, NR), median(mibs, NR), short + 0 }
  ' "$samples" >>"$STREAM_RESULTS"
  log "streaming $target ($visitor): $(tail -n 1 "$STREAM_RESULTS" | cut -f3) ms to first byte, $(tail -n 1 "$STREAM_RESULTS" | cut -f4) MiB/s"
}

# stream_cookie BASE: signs a user in through the gateway at BASE; prints the Cookie header value.
stream_cookie() {
  curl -sS -D - -o /dev/null -X POST -H 'sec-fetch-site: same-origin' \
    --data-urlencode 'username=bench' "$1/login" |
    tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: *\([^;]*\).*/\1/p' | paste -sd';' | sed 's/;/; /g'
}

streaming_rows() {
  STREAM_RESULTS="$1"
  printf 'target\tvisitor\tttfb_p50_ms\tmib_s_p50\tshort_downloads\n' >"$STREAM_RESULTS"
  local origin_port host_port rest_port worker_port plain_port cookie path port
  path="/stream/download?bytes=$STREAM_BYTES"
  origin_port="$(es_free_port)"
  start_bg demo-origin "$origin_port" "$BIN/demo-origin" --listen "127.0.0.1:$origin_port"
  stream_measure origin anonymous "http://127.0.0.1:$origin_port$path"

  host_port="$(es_free_port)"
  start_bg stream-host "$host_port" env ORIGIN_URL="http://127.0.0.1:$origin_port" \
    SESSION_SECRETS="$SECRET" SESSION_BACKEND=direct REDIS_URL="$REDIS_URL" GATEWAY_LOG=error \
    "$BIN/edge-session-host" --listen "127.0.0.1:$host_port"
  stream_measure host anonymous "http://127.0.0.1:$host_port$path"
  cookie="$(stream_cookie "http://127.0.0.1:$host_port")"
  stream_measure host signed-in "http://127.0.0.1:$host_port$path" "$cookie"

  if [[ -f "$ROOT/functions/cloudflare-worker/build/worker/shim.mjs" ]] && command -v node >/dev/null; then
    es_ensure_node_modules "$ROOT"
    rest_port="$(es_free_port)"
    start_bg stream-rest "$rest_port" "$BIN/upstash-local" --listen "127.0.0.1:$rest_port" \
      --redis-url "$REDIS_URL" --token "$REST_TOKEN"
    # The e2e tests' workerd runner: the built Worker in each origin mode beside a plain
    # JavaScript Worker; the ORIGIN_URL instance and the plain one are measured.
    local ports=() i
    for i in 1 2 3 4 5 6; do ports+=("$(es_free_port)"); done
    worker_port="${ports[0]}"
    plain_port="${ports[3]}"
    E2E_WORKERD_PORTS="$(IFS=,; echo "${ports[*]}")" \
      ORIGIN_URL="http://127.0.0.1:$origin_port" \
      UPSTASH_REDIS_REST_URL="http://127.0.0.1:$rest_port" UPSTASH_REDIS_REST_TOKEN="$REST_TOKEN" \
      SESSION_SECRETS="$SECRET" ADMIN_TOKEN="bench-admin-token-0123456789" \
      WORKER_SHIM="$ROOT/functions/cloudflare-worker/build/worker/shim.mjs" \
      COMPATIBILITY_DATE="$(sed -n 's/^compatibility_date = "\(.*\)"/\1/p' "$ROOT/wrangler.toml")" \
      node "$ROOT/functions/cloudflare-worker/e2e/workerd.mjs" >"$TMP/workerd.log" 2>&1 &
    STACK_PIDS+=($!)
    for port in "${ports[@]}"; do es_wait_port "$port" 60 || { tail -n 30 "$TMP/workerd.log" >&2; exit 1; }; done
    stream_measure worker anonymous "http://127.0.0.1:$worker_port$path"
    cookie="$(stream_cookie "http://127.0.0.1:$worker_port")"
    stream_measure worker signed-in "http://127.0.0.1:$worker_port$path" "$cookie"
    stream_measure worker-origin anonymous "http://127.0.0.1:$plain_port$path"
  else
    log "streaming: the Worker is not built (scripts/build-worker): no worker rows"
  fi
  stop_stack
}
