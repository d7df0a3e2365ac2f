# bench/lib.sh: the stacks' processes, shared by bench/run and bench/redis-cost (sourced).
#
# The caller sets: BENCH_DIR, BIN (the release binaries), TMP (logs), SECRET (SESSION_SECRETS),
# REDIS_URL, REDIS_PORT, REST_TOKEN, and the arrays STACK_PIDS=() (stopped by stop_stack) before
# calling start_stack. `rcli` must run redis-cli against the bench's Redis.
# shellcheck shell=bash

# start_bg NAME PORT CMD...: start CMD in the background (log in $TMP/NAME.log), wait for PORT.
start_bg() {
  local name="$1" port="$2"
  shift 2
  "$@" >"$TMP/$name.log" 2>&1 &
  STACK_PIDS+=($!)
  if ! es_wait_port "$port" 60; then
    echo "bench: $name did not start; its log:" >&2
    tail -n 30 "$TMP/$name.log" >&2
    exit 1
  fi
}

stop_stack() {
  local pid
  for pid in "${STACK_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  STACK_PIDS=()
  REST_PORT=""
}

# start_stack NAME: starts it and sets PORT.
start_stack() {
  local name="$1" origin
  PORT="$(es_free_port)"
  case "$name" in
    es-direct)
      start_bg es-direct "$PORT" env SESSION_SECRETS="$SECRET" SESSION_BACKEND=direct \
        REDIS_URL="$REDIS_URL" "$BIN/es-app" "127.0.0.1:$PORT" ;;
    es-rest)
      REST_PORT="$(es_free_port)"
      start_bg upstash-local "$REST_PORT" "$BIN/upstash-local" --listen "127.0.0.1:$REST_PORT" \
        --redis-url "$REDIS_URL" --token "$REST_TOKEN" --enable-faults
      start_bg es-rest "$PORT" env SESSION_SECRETS="$SECRET" SESSION_BACKEND=rest \
        UPSTASH_REDIS_REST_URL="http://127.0.0.1:$REST_PORT" UPSTASH_REDIS_REST_TOKEN="$REST_TOKEN" \
        "$BIN/es-app" "127.0.0.1:$PORT" ;;
    tower)
      start_bg tower "$PORT" env REDIS_URL="$REDIS_URL" "$BIN/tower-app" "127.0.0.1:$PORT" ;;
    express)
      start_bg express "$PORT" env REDIS_URL="$REDIS_URL" NODE_ENV=production \
        node "$BENCH_DIR/express/app.mjs" "$PORT" ;;
    gateway)
      origin="$(es_free_port)"
      start_bg trivial-origin "$origin" "$BIN/trivial-origin" "127.0.0.1:$origin"
      start_bg gateway "$PORT" env ORIGIN_URL="http://127.0.0.1:$origin" SESSION_SECRETS="$SECRET" \
        SESSION_BACKEND=direct REDIS_URL="$REDIS_URL" GATEWAY_LOG=error \
        "$BIN/edge-session-host" --listen "127.0.0.1:$PORT" ;;
    origin)
      start_bg origin "$PORT" "$BIN/trivial-origin" "127.0.0.1:$PORT" ;;
    limit)
      start_bg limit "$PORT" env REDIS_URL="$REDIS_URL" "$BIN/limit-app" "127.0.0.1:$PORT" ;;
    *) echo "bench: unknown stack $name" >&2; exit 2 ;;
  esac
}

# login_cookie: logs a new user in and prints the `Cookie` header value the browser would send
# back (every cookie set), or `none=1` when the stack sets none (origin alone, the limit).
login_cookie() {
  local user="$1" cookies
  cookies="$(curl -sS -D - -o /dev/null -X POST "http://127.0.0.1:$PORT/login?user=$user" |
    tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: *\([^;]*\).*/\1/p' | paste -sd';' | sed 's/;/; /g')"
  printf '%s\n' "${cookies:-none=1}"
}

# commandstats: `name calls` per command, sorted by name (for join).
commandstats() { rcli INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1 \2/p' | sort; }
