#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --train
. .venv/bin/activate
export STREETWATCH_ASSETS_DIR="${STREETWATCH_ASSETS_DIR:-$(cd .. && pwd)/shared/assets}"
export STREETWATCH_MODEL_DIR="${STREETWATCH_MODEL_DIR:-$STREETWATCH_ASSETS_DIR}"
if [ $# -gt 0 ]; then
  exec python -m pytest "$@"
fi
# The whole suite: the retraining tests (CPU-bound model training, no broker, their own database
# schemas) run beside the rest, which mostly waits on browsers, brokers and child processes; side by
# side the suite fits CI's 30 minutes on two cores.
training_log=$(mktemp)
python -m pytest -p no:cacheprovider tests/training >"$training_log" 2>&1 &
training=$!
status=0
python -m pytest --ignore=tests/training || status=$?
wait "$training" || status=$?
echo "---- tests/training (run alongside) ----"
cat "$training_log"
rm -f "$training_log"
exit "$status"
