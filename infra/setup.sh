#!/usr/bin/env bash
# Installs what sluice needs into one Python 3.13 venv at $SLUICE_CACHE/venv.
# Idempotent: a re-run with nothing changed takes about a second.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
venv="$cache/venv"
mkdir -p "$cache"

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

if [ ! -x "$venv/bin/python" ]; then
  py="$(find_python)"
  echo "setup: creating venv $venv with $py"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi

# Re-install only when a requirements file changed since the last successful run.
stamp="$venv/.sluice-tools.sha"
want="$(cat "$here/requirements-tools.txt" "$here/localstack/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing tools into $venv"
  "$venv/bin/pip" install -q -r "$here/requirements-tools.txt"
  echo "$want" > "$stamp"
fi

if [ -f "$here/localstack/setup.sh" ]; then
  bash "$here/localstack/setup.sh"
fi
