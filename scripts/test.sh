#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --train
. .venv/bin/activate
export STREETWATCH_ASSETS_DIR="${STREETWATCH_ASSETS_DIR:-$(cd .. && pwd)/shared/assets}"
export STREETWATCH_MODEL_DIR="${STREETWATCH_MODEL_DIR:-$STREETWATCH_ASSETS_DIR}"
python -m pytest "$@"
