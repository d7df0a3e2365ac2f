# shellcheck shell=bash
# scripts/lib/toolchain.sh: idempotent install/toolchain helpers for scripts/test, scripts/dev, .ci/run.
#
# Source it; sourcing only defines functions and a few private variables (no commands run, shell
# options untouched). Every function works under `set -euo pipefail` and without it, returns non-zero
# on failure, and is idempotent: it checks first and prints one short `[setup] ...` line per step on
# stderr (stdout is kept for values, e.g. `port=$(es_free_port)`).
#
#   es_apt_install PKG...           install the missing Debian packages (apt-get update at most once)
#   es_ensure_redis                 redis-server, redis-tools, redis-sentinel; never leaves a Debian service on
#   es_ensure_wasm32                a wasm32-unknown-unknown toolchain; exports ES_WASM_ROUTE=rustup|debian
#   es_wasm_cargo ARGS...           cargo ARGS... with the active wasm route's toolchain/environment
#   es_wasm_exec CMD [ARGS...]      run any command (e.g. worker-build) in that environment
#   es_wasm_env                     print `export ...` lines for it: eval "$(es_wasm_env)"
#   es_ensure_node_modules DIR      npm ci (or npm install without a lock) when node_modules is stale
#   es_ensure_cargo_tool NAME VERSION [BIN [INSTALL_ARGS...]]
#                                            cargo install NAME --version VERSION unless BIN has it
#   es_free_port                    print a free TCP port on 127.0.0.1
#   es_wait_port PORT [TIMEOUT_S]   wait (default 30 s) until 127.0.0.1:PORT accepts connections
#
# Environment knobs:
#   ES_FORCE_WASM_FALLBACK=1   skip rustup and use the Debian rustc-web route (for testing it)
#   ES_WASM_RETRY_RUSTUP=1     retry `rustup target add` even if the Debian route is already set up
#   ES_RUSTUP_TIMEOUT=180      seconds allowed for `rustup target add wasm32-unknown-unknown`
#   ES_WASM_LD=/path/wasm-ld   linker for the Debian route (default: wasm-ld from PATH / lld-N)
#   ES_CACHE_DIR               scratch/cache/logs (default ${XDG_CACHE_HOME:-$HOME/.cache}/edge-session)
# See docs: /work/shared/docs/toolchain.md (wasm32 fallback via Debian's Rust).

if [ -z "${BASH_VERSION:-}" ]; then
  echo "scripts/lib/toolchain.sh: needs bash (source it from a bash script)" >&2
  return 1
fi
if [[ -n "${_ES_TOOLCHAIN_SH_LOADED:-}" ]]; then
  return 0
fi
_ES_TOOLCHAIN_SH_LOADED=1
_ES_TOOLCHAIN_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_ES_REPO_ROOT="$(cd "${_ES_TOOLCHAIN_LIB_DIR}/../.." && pwd)"
_ES_WASM_TARGET=wasm32-unknown-unknown
# Bump when the Debian-route std build recipe changes: installed std libs with another stamp get rebuilt.
_ES_WASM_STD_RECIPE=2

# ---------------------------------------------------------------------------------------------
# private helpers

_es_log() { printf '[setup] %s\n' "$*" >&2; }
_es_err() { printf '[setup] ERROR: %s\n' "$*" >&2; }

_es_cache_dir() {
  local d="${ES_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-session}"
  mkdir -p "$d/logs" || return 1
  printf '%s\n' "$d"
}

# _es_as_root CMD...: run as root (directly when root, else via sudo; non-interactive without a tty).
_es_as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    if [[ -t 0 ]]; then sudo "$@"; else sudo -n "$@"; fi
  else
    _es_err "need root for: $* (not root and no sudo)"
    return 1
  fi
}

# _es_run_logged NAME CMD...: run CMD with output to a log file; on failure show its tail.
_es_run_logged() {
  local name="$1" cache log rc=0
  shift
  cache="$(_es_cache_dir)" || return 1
  log="$cache/logs/$name.log"
  "$@" >"$log" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    _es_err "$name failed (exit $rc); last lines of $log:"
    tail -n 40 "$log" >&2 || true
  fi
  return "$rc"
}

# Milliseconds since the epoch (bash >= 5 has EPOCHREALTIME).
_es_now_ms() {
  local t="${EPOCHREALTIME:-}"
  if [[ -n "$t" ]]; then
    t="${t/[.,]/}"
    printf '%s\n' "$((10#${t} / 1000))"
  else
    printf '%s\n' "$(($(date +%s) * 1000))"
  fi
}

# ---------------------------------------------------------------------------------------------
# es_apt_install PKG...

_es_dpkg_installed() {
  local st
  st="$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" || return 1
  [[ "$st" == installed ]]
}

es_apt_install() {
  local p missing=()
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    _es_err "es_apt_install: dpkg-query/apt-get not found (Debian/Ubuntu only); install $* by hand"
    return 1
  fi
  for p in "$@"; do
    if _es_dpkg_installed "$p"; then
      _es_log "$p: present"
    else
      missing+=("$p")
    fi
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0

  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q
    -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  if [[ -z "${_ES_APT_UPDATED:-}" ]]; then
    _es_log "apt-get update"
    _es_run_logged apt-update _es_as_root "${apt[@]}" update || return 1
    export _ES_APT_UPDATED=1 # once per run, including child scripts
  fi
  _es_log "installing ${missing[*]} (apt)"
  _es_run_logged apt-install _es_as_root "${apt[@]}" install --no-install-recommends "${missing[@]}" ||
    return 1
  for p in "${missing[@]}"; do
    if ! _es_dpkg_installed "$p"; then
      _es_err "$p: still not installed after apt-get install"
      return 1
    fi
  done
  _es_log "installed ${missing[*]}"
}

# ---------------------------------------------------------------------------------------------
# es_ensure_redis
#
# Why not policy-rc.d: it only blocks the *start* (invoke-rc.d / deb-systemd-invoke), not the
# `systemctl enable` done by the postinst, so the service would still come up at the next boot;
# it is machine-global (affects any concurrent dpkg run); a pre-existing one (Docker images ship
# an `exit 101` one) must not be clobbered; and one left behind by an interrupted run silently
# breaks every later package's service on a developer machine. Instead: when (and only when) this
# call installed redis-server, disable and stop the Debian service right after. Our tests start
# their own redis-server instances on free ports and never use it.

_es_stop_debian_redis_service() {
  local service="${1:-redis-server}"
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    _es_log "$service: disabling and stopping the Debian service (tests run their own)"
    _es_as_root systemctl disable --now "$service.service" >/dev/null 2>&1 || true
  else
    if command -v update-rc.d >/dev/null 2>&1; then
      _es_as_root update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
    local pid=""
    [[ -r "/run/redis/$service.pid" ]] && pid="$(cat "/run/redis/$service.pid" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      _es_log "$service: stopping the Debian service started by the package (tests run their own)"
      _es_as_root "/etc/init.d/$service" stop >/dev/null 2>&1 || true
    fi
  fi
}

# redis-sentinel is for the failover test (tests/cluster.rs); like redis-server, its Debian
# service is stopped right after this call installed it (it would hold port 26379).
es_ensure_redis() {
  local had_server=0 had_sentinel=0
  _es_dpkg_installed redis-server && had_server=1
  _es_dpkg_installed redis-sentinel && had_sentinel=1
  es_apt_install redis-server redis-tools redis-sentinel || return 1
  if [[ $had_server -eq 0 ]]; then
    _es_stop_debian_redis_service redis-server
  fi
  if [[ $had_sentinel -eq 0 ]]; then
    _es_stop_debian_redis_service redis-sentinel
  fi
  local tool
  for tool in redis-server redis-cli redis-sentinel; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      _es_err "$tool not on PATH after install"
      return 1
    fi
  done
}

# ---------------------------------------------------------------------------------------------
# es_ensure_wasm32 / es_wasm_cargo / es_wasm_exec / es_wasm_env

_es_rustup_has_wasm() {
  local out
  command -v rustup >/dev/null 2>&1 || return 1
  out="$(cd "$_ES_REPO_ROOT" && rustup target list --installed 2>/dev/null)" || return 1
  [[ $'\n'"$out"$'\n' == *$'\n'"$_ES_WASM_TARGET"$'\n'* ]]
}

# Prints the wasm-ld to use with Debian's rustc (it has no rust-lld).
_es_wasm_ld() {
  local c
  if [[ -n "${ES_WASM_LD:-}" ]]; then
    printf '%s\n' "$ES_WASM_LD"
    return 0
  fi
  for c in /usr/bin/wasm-ld "$(command -v wasm-ld 2>/dev/null || true)"; do
    if [[ -n "$c" && -x "$c" ]]; then
      printf '%s\n' "$c"
      return 0
    fi
  done
  # lld-N packages without the unversioned `lld` one: take the newest.
  c="$(find /usr/bin -maxdepth 1 -name 'wasm-ld-[0-9]*' 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$c" ]] || return 1
  printf '%s\n' "$c"
}

_es_debian_std_stamp() {
  printf '%s recipe=%s\n' "$(/usr/bin/rustc -V)" "$_ES_WASM_STD_RECIPE"
}

_es_debian_wasm_libdir() {
  /usr/bin/rustc --print target-libdir --target "$_ES_WASM_TARGET" 2>/dev/null
}

# True when Debian's rustc has a usable wasm32 std (built by us for this exact rustc version).
_es_debian_wasm_ready() {
  local libdir stamp f
  [[ -x /usr/bin/rustc && -x /usr/bin/cargo ]] || return 1
  libdir="$(_es_debian_wasm_libdir)" || return 1
  [[ -n "$libdir" ]] || return 1
  for f in "$libdir"/libstd-*.rlib; do
    [[ -e "$f" ]] || return 1
    break
  done
  # Our stamp: rustc version + recipe. A libdir without one was built by hand (docs/toolchain.md): keep it.
  if [[ -f "$libdir/.es-rustc-version" ]]; then
    stamp="$(cat "$libdir/.es-rustc-version")"
    [[ "$stamp" == "$(_es_debian_std_stamp)" ]] || return 1
  fi
  return 0
}

_es_build_debian_wasm_std() {
  local cache libdir ld src tgt f n=0 started
  cache="$(_es_cache_dir)" || return 1
  ld="$(_es_wasm_ld)" || { _es_err "no wasm-ld found (install lld)"; return 1; }
  libdir="$(_es_debian_wasm_libdir)" || { _es_err "/usr/bin/rustc --print target-libdir failed"; return 1; }
  src="$cache/wasm-std-probe"
  tgt="$cache/wasm-std-target"
  started="$(_es_now_ms)"
  _es_log "wasm32 std for Debian rustc: building with -Zbuild-std (about 1 min, log: $cache/logs/wasm-std-build.log)"
  rm -rf "$src" "$tgt" || return 1
  mkdir -p "$src" || return 1
  cp -R "$_ES_TOOLCHAIN_LIB_DIR/wasm-std-probe/." "$src/" || return 1
  # Clean environment for the std build: none of the caller's flags/target dir/toolchain overrides.
  # -Cembed-bitcode=yes (as in rustup's std): without it Cargo builds std with embed-bitcode=no and
  # every later `lto = true` build fails with "failed to get bitcode from object file for LTO".
  _es_run_logged wasm-std-build \
    env -u CARGO_ENCODED_RUSTFLAGS -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER \
    -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET_DIR -u CARGO_BUILD_TARGET -u RUSTUP_TOOLCHAIN \
    -u CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS \
    RUSTFLAGS="-Cembed-bitcode=yes" \
    PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$ld" \
    /usr/bin/cargo build --release --manifest-path "$src/Cargo.toml" --target-dir "$tgt" \
    --target "$_ES_WASM_TARGET" -Zbuild-std=std,panic_abort || return 1
  local rlibs=("$tgt/$_ES_WASM_TARGET/release/deps/"*.rlib)
  if [[ ! -e "${rlibs[0]}" ]]; then
    _es_err "the std build produced no rlibs in $tgt/$_ES_WASM_TARGET/release/deps"
    return 1
  fi
  _es_as_root mkdir -p "$libdir" || return 1
  # Replacing an older std: crates compiled against it and cached in a target dir would fail with
  # E0460 ("found possibly newer version of crate core") on the next partial rebuild, and Cargo's
  # fingerprints do not notice a changed sysroot. Drop the default Debian-route target dir.
  local old_std=("$libdir"/libstd-*.rlib)
  if [[ -e "${old_std[0]}" && -d "$_ES_REPO_ROOT/target/wasm-debian" ]]; then
    _es_log "wasm32 std replaced: removing stale $_ES_REPO_ROOT/target/wasm-debian"
    rm -rf "$_ES_REPO_ROOT/target/wasm-debian" || return 1
  fi
  _es_as_root rm -f "$libdir"/*.rlib "$libdir/.es-rustc-version" || return 1
  # libstd last: its presence is what marks the libdir complete.
  for f in "${rlibs[@]}"; do
    [[ "$(basename "$f")" == libstd-*.rlib ]] && continue
    _es_as_root cp "$f" "$libdir/" || return 1
    n=$((n + 1))
  done
  for f in "${rlibs[@]}"; do
    [[ "$(basename "$f")" == libstd-*.rlib ]] || continue
    _es_as_root cp "$f" "$libdir/" || return 1
    n=$((n + 1))
  done
  _es_debian_std_stamp | _es_as_root tee "$libdir/.es-rustc-version" >/dev/null || return 1
  rm -rf "$tgt" "$src"
  _es_log "wasm32 std for Debian rustc: installed $n rlibs into $libdir ($(( ($(_es_now_ms) - started) / 1000 )) s)"
}

_es_setup_debian_wasm() {
  local cache lock
  es_apt_install rustc-web cargo-web rust-web-src lld || return 1
  if _es_debian_wasm_ready; then
    _es_log "wasm32 std for Debian rustc ($(/usr/bin/rustc -V | cut -d' ' -f2)): present"
    return 0
  fi
  cache="$(_es_cache_dir)" || return 1
  lock="$cache/wasm-std.lock"
  # Serialise concurrent setups (two scripts at once); re-check under the lock.
  (
    exec 9>"$lock"
    flock 9 || exit 1
    if _es_debian_wasm_ready; then
      _es_log "wasm32 std for Debian rustc: present (built concurrently)"
      exit 0
    fi
    _es_build_debian_wasm_std
  ) || return 1
  _es_debian_wasm_ready || { _es_err "wasm32 std for Debian rustc: not usable after the build"; return 1; }
}

es_ensure_wasm32() {
  local t0 rc=0
  if [[ "${ES_FORCE_WASM_FALLBACK:-0}" == 1 ]]; then
    _es_log "wasm32: ES_FORCE_WASM_FALLBACK=1, using the Debian rustc-web route"
  elif _es_rustup_has_wasm; then
    _es_log "wasm32 (rustup target $_ES_WASM_TARGET): present"
    export ES_WASM_ROUTE=rustup
    return 0
  elif [[ "${ES_WASM_RETRY_RUSTUP:-0}" != 1 ]] && _es_debian_wasm_ready && _es_wasm_ld >/dev/null; then
    # An earlier run fell back already; do not wait for rustup again (ES_WASM_RETRY_RUSTUP=1 does).
    _es_log "wasm32 (Debian rustc-web route, set up earlier): present"
    export ES_WASM_ROUTE=debian
    return 0
  elif command -v rustup >/dev/null 2>&1; then
    _es_log "wasm32: rustup target add $_ES_WASM_TARGET (timeout ${ES_RUSTUP_TIMEOUT:-180} s)"
    t0="$(_es_now_ms)"
    (cd "$_ES_REPO_ROOT" && timeout -k 10 "${ES_RUSTUP_TIMEOUT:-180}" rustup target add "$_ES_WASM_TARGET" </dev/null >&2) || rc=$?
    if [[ $rc -eq 0 ]] && _es_rustup_has_wasm; then
      _es_log "wasm32: rustup target installed ($(( ($(_es_now_ms) - t0) / 1000 )) s)"
      export ES_WASM_ROUTE=rustup
      return 0
    fi
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
      _es_log "wasm32: rustup target add timed out; falling back to Debian's rustc-web"
    else
      _es_log "wasm32: rustup target add failed (exit $rc); falling back to Debian's rustc-web"
    fi
  else
    _es_log "wasm32: no rustup; using Debian's rustc-web"
  fi
  _es_setup_debian_wasm || return 1
  export ES_WASM_ROUTE=debian
}

# Fills the array named by $1 with NAME=VALUE pairs for the active route.
_es_wasm_env_pairs() {
  local -n _out="$1"
  local ld
  _out=()
  if [[ -z "${ES_WASM_ROUTE:-}" ]]; then
    es_ensure_wasm32 || return 1
  fi
  case "$ES_WASM_ROUTE" in
    rustup)
      _out=(ES_WASM_ROUTE=rustup)
      ;;
    debian)
      ld="$(_es_wasm_ld)" || { _es_err "no wasm-ld found (install lld)"; return 1; }
      # /usr/bin first: worker-build & co. run plain `cargo`/`rustc` from PATH. The Debian rustc
      # (1.96) must not share a target dir with rustup's (1.95): different rlib metadata.
      _out=(ES_WASM_ROUTE=debian
        "PATH=/usr/bin:${PATH}"
        RUSTC=/usr/bin/rustc
        CARGO=/usr/bin/cargo
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=${ld}"
        "CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${_ES_REPO_ROOT}/target/wasm-debian}")
      ;;
    *)
      _es_err "ES_WASM_ROUTE=${ES_WASM_ROUTE} (expected rustup or debian)"
      return 1
      ;;
  esac
}

# es_wasm_env: print `export NAME=VALUE` lines; use as  eval "$(es_wasm_env)".
es_wasm_env() {
  local pairs=() kv
  _es_wasm_env_pairs pairs || return 1
  for kv in "${pairs[@]}"; do
    printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
}

# es_wasm_exec CMD [ARGS...]: run CMD (command or function) in a subshell with the wasm environment.
es_wasm_exec() {
  local pairs=()
  [[ $# -gt 0 ]] || { _es_err "usage: es_wasm_exec CMD [ARGS...]"; return 2; }
  _es_wasm_env_pairs pairs || return 1
  (
    local kv
    for kv in "${pairs[@]}"; do
      export "${kv?}"
    done
    # Toolchain overrides from an outer rustup-run cargo must not leak into the Debian route.
    if [[ "$ES_WASM_ROUTE" == debian ]]; then
      unset RUSTUP_TOOLCHAIN RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTDOC
    fi
    "$@"
  )
}

# es_wasm_cargo ARGS...: e.g. es_wasm_cargo check --target wasm32-unknown-unknown -p edge-session
es_wasm_cargo() {
  if [[ -z "${ES_WASM_ROUTE:-}" ]]; then
    es_ensure_wasm32 || return 1
  fi
  if [[ "$ES_WASM_ROUTE" == debian ]]; then
    es_wasm_exec /usr/bin/cargo "$@"
  else
    es_wasm_exec cargo "$@"
  fi
}

# ---------------------------------------------------------------------------------------------
# es_ensure_node_modules DIR

es_ensure_node_modules() {
  local dir="${1:?usage: es_ensure_node_modules DIR}" stamp lock="" mode
  [[ -f "$dir/package.json" ]] || { _es_err "$dir/package.json not found"; return 1; }
  stamp="$dir/node_modules/.es-installed"
  [[ -f "$dir/package-lock.json" ]] && lock="$dir/package-lock.json"
  if [[ -f "$stamp" && ! "$dir/package.json" -nt "$stamp" && ( -z "$lock" || ! "$lock" -nt "$stamp" ) ]]; then
    _es_log "node_modules in $dir: present"
    return 0
  fi
  command -v npm >/dev/null 2>&1 || { _es_err "npm not found"; return 1; }
  if [[ -n "$lock" ]]; then mode=ci; else mode=install; fi
  _es_log "node_modules in $dir: npm $mode"
  (
    cd "$dir" &&
      npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false \
        npm_config_progress=false npm "$mode" --no-fund --no-audit </dev/null >&2
  ) || { _es_err "npm $mode in $dir failed"; return 1; }
  mkdir -p "$dir/node_modules" && touch "$stamp"
}

# ---------------------------------------------------------------------------------------------
# es_ensure_cargo_tool NAME VERSION [BIN [INSTALL_ARGS...]]
# INSTALL_ARGS go to `cargo install` (e.g. --no-default-features --features strip).

# True when `BIN --version` output has VERSION as a whole word (optionally prefixed by v).
_es_tool_has_version() {
  local bin="$1" want="$2" out w words=()
  out="$("$bin" --version 2>/dev/null)" || return 1
  read -ra words <<<"${out//$'\n'/ }"
  for w in "${words[@]}"; do
    [[ "${w#v}" == "$want" ]] && return 0
  done
  return 1
}

es_ensure_cargo_tool() {
  local name="${1:?usage: es_ensure_cargo_tool NAME VERSION [BIN]}"
  local version="${2:?usage: es_ensure_cargo_tool NAME VERSION [BIN]}"
  local bin="${3:-$1}" path="" t0
  local extra=("${@:4}")
  path="$(command -v "$bin" 2>/dev/null || true)"
  [[ -z "$path" && -x "${CARGO_HOME:-$HOME/.cargo}/bin/$bin" ]] && path="${CARGO_HOME:-$HOME/.cargo}/bin/$bin"
  if [[ -n "$path" ]] && _es_tool_has_version "$path" "$version"; then
    _es_log "$name $version: present"
    return 0
  fi
  _es_log "$name $version: cargo install (can take several minutes)"
  t0="$(_es_now_ms)"
  # Native tool: use the normal (rustup) cargo, whatever wasm environment the caller may have.
  env -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
    cargo install "$name" --version "$version" "${extra[@]}" </dev/null >&2 ||
    { _es_err "cargo install $name --version $version failed"; return 1; }
  path="$(command -v "$bin" 2>/dev/null || printf '%s' "${CARGO_HOME:-$HOME/.cargo}/bin/$bin")"
  if ! _es_tool_has_version "$path" "$version"; then
    _es_err "$path --version does not report $version after install"
    return 1
  fi
  _es_log "$name $version: installed ($(( ($(_es_now_ms) - t0) / 1000 )) s)"
}

# ---------------------------------------------------------------------------------------------
# es_free_port / es_wait_port

es_free_port() {
  local py=""
  # The system python3 starts in ~50 ms; a pyenv shim in front of it takes ~200 ms.
  if [[ -x /usr/bin/python3 ]]; then py=/usr/bin/python3; else py="$(command -v python3 2>/dev/null || true)"; fi
  if [[ -n "$py" ]]; then
    "$py" -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
    return
  fi
  # No python3: random high ports until one refuses a connection (nothing listening).
  local p i
  for i in $(seq 1 200); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      printf '%s\n' "$p"
      return 0
    fi
    : "$i"
  done
  _es_err "es_free_port: no free port found"
  return 1
}

es_wait_port() {
  local port="${1:?usage: es_wait_port PORT [TIMEOUT_S]}" timeout_s="${2:-30}" deadline
  deadline=$(($(_es_now_ms) + timeout_s * 1000))
  while :; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if (($(_es_now_ms) >= deadline)); then
      _es_err "es_wait_port: nothing accepted connections on 127.0.0.1:$port within ${timeout_s} s"
      return 1
    fi
    sleep 0.1
  done
}
