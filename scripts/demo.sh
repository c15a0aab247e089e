#!/usr/bin/env bash
# Set up (if needed) and run the demo: embedded broker, SQLite, an edge worker replaying real
# footage, and the review queue on http://127.0.0.1:8000 (the login is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
export STREETWATCH_ASSETS_DIR="${STREETWATCH_ASSETS_DIR:-$(cd .. && pwd)/shared/assets}"
export STREETWATCH_MODEL_DIR="${STREETWATCH_MODEL_DIR:-$STREETWATCH_ASSETS_DIR}"
exec central demo "$@"
