# shellcheck shell=bash
# scripts/lib/lambda-venv.sh: the AWS Lambda tools in a virtualenv of their own, installed once
# and skipped when present: cargo-lambda (and its zig), cfn-lint and aws-sam-translator, pinned
# here. Sourced (after scripts/lib/toolchain.sh) by scripts/test-lambda and scripts/dev --lambda.
#
#   es_ensure_lambda_venv   installs what is missing (pip; python3-venv from Debian if needed)
#   $ES_LAMBDA_VENV_DIR     the virtualenv: ES_LAMBDA_VENV, else
#                           ${XDG_CACHE_HOME:-$HOME/.cache}/edge-session/venv

ES_CARGO_LAMBDA_VERSION=1.9.2
ES_CFN_LINT_VERSION=1.58.0
ES_SAM_TRANSLATOR_VERSION=1.115.0
ES_LAMBDA_VENV_DIR="${ES_LAMBDA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-session/venv}"

# True when the virtualenv has the three tools at their pinned versions.
es_lambda_venv_ready() {
  local venv=$ES_LAMBDA_VENV_DIR
  [[ -x "$venv/bin/python" && -x "$venv/bin/cargo-lambda" && -x "$venv/bin/cfn-lint" ]] || return 1
  "$venv/bin/python" - "$ES_CARGO_LAMBDA_VERSION" "$ES_CFN_LINT_VERSION" "$ES_SAM_TRANSLATOR_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
want = dict(zip(["cargo-lambda", "cfn-lint", "aws-sam-translator"], sys.argv[1:]))
sys.exit(0 if all(version(p) == v for p, v in want.items()) else 1)
PY
}

# es_ensure_lambda_venv [PIP_LOG]: installs the tools unless they are there (one install at a
# time: a lock next to the virtualenv); pip's output goes to PIP_LOG (default: a temp file),
# whose end is shown on failure.
es_ensure_lambda_venv() {
  local venv=$ES_LAMBDA_VENV_DIR pip_log=${1:-}
  if es_lambda_venv_ready; then
    _es_log "venv $venv: present (cargo-lambda $ES_CARGO_LAMBDA_VERSION, cfn-lint $ES_CFN_LINT_VERSION, aws-sam-translator $ES_SAM_TRANSLATOR_VERSION)"
    return 0
  fi
  local py=/usr/bin/python3
  [[ -x $py ]] || py=$(command -v python3) || { _es_err "python3 not found"; return 1; }
  if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
    es_apt_install python3-venv || return 1
  fi
  [[ -n "$pip_log" ]] || pip_log=$(mktemp "${TMPDIR:-/tmp}/edge-session-pip.XXXXXX")
  _es_log "venv $venv: installing cargo-lambda, cfn-lint, aws-sam-translator (pip, about 40 s)"
  mkdir -p "$(dirname "$venv")"
  (
    exec 9>"$venv.lock"
    flock 9
    es_lambda_venv_ready && exit 0
    [[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv" || exit 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "cargo-lambda==$ES_CARGO_LAMBDA_VERSION" "cfn-lint==$ES_CFN_LINT_VERSION" \
      "aws-sam-translator==$ES_SAM_TRANSLATOR_VERSION" >"$pip_log" 2>&1 ||
      { tail -n 20 "$pip_log" >&2; exit 1; }
  ) || return 1
  es_lambda_venv_ready
}
