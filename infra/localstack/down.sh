#!/usr/bin/env bash
# Stops LocalStack and every process it started (DynamoDB Local, kinesis-mock, function processes):
# SIGTERM, a grace period, SIGKILL; fails if any of them survives.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${SLUICE_CACHE:-$HOME/.cache/sluice}/venv/bin/python"
[ -x "$python" ] || python=python3
exec "$python" "$here/ctl.py" down
