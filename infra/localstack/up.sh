#!/usr/bin/env bash
# Starts LocalStack in the background (127.0.0.1:${SLUICE_LOCALSTACK_PORT:-4566}, state in .localstack/)
# and waits until it is healthy. Already healthy: does nothing. See ctl.py for the settings.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/setup.sh"
exec "${SLUICE_CACHE:-$HOME/.cache/sluice}/venv/bin/python" "$here/ctl.py" up
