#!/usr/bin/env bash
# Installs what sluice needs into one Python 3.13 venv at $SLUICE_CACHE/venv.
# Idempotent: a re-run with nothing changed takes about a second.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
venv="$cache/venv"
mkdir -p "$cache"

# shellcheck source=venv.sh
. "$here/venv.sh"
ensure_venv

# Re-install only when a requirements file changed since the last successful run.
stamp="$venv/.sluice-tools.sha"
want="$(cat "$here/requirements-tools.txt" "$here/localstack/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing tools into $venv"
  "$venv/bin/pip" install -q -r "$here/requirements-tools.txt"
  echo "$want" > "$stamp"
fi

# checkov in a venv of its own: its pins (boto3/botocore 1.35, networkx 2) would break LocalStack's.
checkov_venv="$cache/checkov-venv"
stamp="$checkov_venv/.sluice-checkov.sha"
want="$(sha256sum < "$here/requirements-checkov.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing checkov into $checkov_venv"
  [ -x "$checkov_venv/bin/python" ] || "$(find_python)" -m venv "$checkov_venv"
  "$checkov_venv/bin/pip" install -q -r "$here/requirements-checkov.txt"
  echo "$want" > "$stamp"
fi

# LocalStack, its offline packages and the host executor plugin.
bash "$here/localstack/setup.sh"

# --- cargo-fuzz (just fuzz, fuzz/run.sh) -------------------------------------------------
# Pinned, built once from crates.io into the cache; a re-run only asks its version.
cargo_fuzz_version=0.13.2
cargo_tools="$cache/cargo-tools"
if [ "$("$cargo_tools/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  echo "setup: installing cargo-fuzz $cargo_fuzz_version into $cargo_tools"
  env -u CARGO_TARGET_DIR cargo install --locked --quiet --force \
    "cargo-fuzz@$cargo_fuzz_version" --root "$cargo_tools"
fi
# --- end cargo-fuzz -----------------------------------------------------------------------
