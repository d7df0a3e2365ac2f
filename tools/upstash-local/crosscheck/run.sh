#!/usr/bin/env bash
# Cross-check upstash-local against the official @upstash/redis client (see crosscheck.mjs).
#
# Installs the pinned npm packages when node_modules is missing or older than the lock file,
# builds upstash-local, starts a private redis-server and upstash-local on free ports, runs the
# script, and always stops what it started. Exit status: the script's (0 only if all passed).
#
# Environment: REDIS_SERVER (default: redis-server on PATH), CARGO_TARGET_DIR (respected).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$(dirname "$here")"
manifest="$crate/Cargo.toml"
redis_server="${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}"

work="$(mktemp -d "${TMPDIR:-/tmp}/upstash-crosscheck.XXXXXX")"
redis_pid=""
endpoint_pid=""
cleanup() {
    for pid in "$endpoint_pid" "$redis_pid"; do
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. npm packages, exactly as locked.
cd "$here"
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp="node_modules/.crosscheck-lock-sha256"
if [ ! -d node_modules ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$lock_sum" ]; then
    echo "crosscheck: npm ci" >&2
    npm ci --no-audit --no-fund >&2
    echo "$lock_sum" > "$stamp"
fi

# 2. The endpoint binary, wherever cargo puts it (CARGO_TARGET_DIR included).
cargo build --quiet --manifest-path "$manifest" -p upstash-local
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$manifest" |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
binary="$target_dir/debug/upstash-local"
[ -x "$binary" ] || { echo "crosscheck: no binary at $binary" >&2; exit 1; }

free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# 3. A redis-server of our own: no persistence, its files in our temp dir. A port picked free can
#    be taken before redis-server binds it, so retry; readiness is read from our own log file.
for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    log="$work/redis-$attempt.log"
    "$redis_server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no --dir "$work" --logfile "$log" &
    redis_pid=$!
    ready=""
    for _ in $(seq 1 200); do
        if ! kill -0 "$redis_pid" 2>/dev/null; then break; fi
        if grep -q "Ready to accept connections" "$log" 2>/dev/null; then ready=1; break; fi
        sleep 0.05
    done
    if [ -n "$ready" ]; then break; fi
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=""
done
[ -n "$redis_pid" ] || { echo "crosscheck: redis-server did not start" >&2; cat "$work"/redis-*.log >&2 || true; exit 1; }

# 4. upstash-local on a port of its choosing (database 0); the start line tells the URL.
token="crosscheck-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
"$binary" --listen 127.0.0.1:0 --redis-url "redis://127.0.0.1:$port/0" --token "$token" \
    > "$work/endpoint.out" 2> "$work/endpoint.err" &
endpoint_pid=$!
url=""
for _ in $(seq 1 200); do
    url="$(sed -n 's/^listening on //p' "$work/endpoint.out" | head -n 1)"
    if [ -n "$url" ] || ! kill -0 "$endpoint_pid" 2>/dev/null; then break; fi
    sleep 0.05
done
[ -n "$url" ] || { echo "crosscheck: upstash-local did not start" >&2; cat "$work/endpoint.err" >&2; exit 1; }
echo "crosscheck: redis-server on port $port, upstash-local at $url" >&2

# 5. The comparison; the direct side uses database 1 of the same redis-server.
status=0
UPSTASH_REDIS_REST_URL="$url" UPSTASH_REDIS_REST_TOKEN="$token" \
    DIRECT_REDIS_URL="redis://127.0.0.1:$port/1" node "$here/crosscheck.mjs" || status=$?
exit "$status"
