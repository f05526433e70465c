# Sourced by infra/setup.sh and infra/localstack/setup.sh: creates the shared
# Python 3.13 venv at $venv (the caller sets it) when it does not exist yet.
# LocalStack needs 3.13 (3.11 fails at import); SLUICE_PYTHON picks a binary.

find_python() {
  for p in "${SLUICE_PYTHON:-}" python3.13 "$(command -v pyenv >/dev/null 2>&1 && echo "$(pyenv root)/versions/3.13.0/bin/python")"; do
    [ -n "$p" ] || continue
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 13) else 1)' 2>/dev/null; then
      command -v "$p"; return 0
    fi
  done
  echo "setup: Python 3.13 not found (set SLUICE_PYTHON to a python3.13 binary)" >&2
  return 1
}

ensure_venv() {
  if [ ! -x "$venv/bin/python" ]; then
    local py
    py="$(find_python)"
    echo "setup: creating venv $venv with $py"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
  fi
}
