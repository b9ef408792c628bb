#!/usr/bin/env bash
# Set up and start the service on http://127.0.0.1:8000 (Gunicorn; see docs/operations.md for nginx).
#   ./scripts/serve.sh                          # official weights (downloaded once, cached)
#   MIDAS_WEIGHTS_FILE=path/to/midas_v21_small_256.pt ./scripts/serve.sh
#   MIDAS_RANDOM_WEIGHTS=1 ./scripts/serve.sh   # offline smoke run: MEANINGLESS depth
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
cd "$PROJECT_ROOT"

model="${MIDAS_MODEL_PATH:-models/midas_small.pt}"
random="${MIDAS_RANDOM_WEIGHTS:-0}"
export MIDAS_MODEL_PATH="$model"

if [ ! -f "$model" ] || [ ! -f "${model%.pt}.onnx" ]; then (
    # The export needs timm and torchvision: its own venv, used once; the service runs without.
    ensure_venv export
    if [ "$random" = "1" ]; then
        log "exporting a RANDOM-weights model to $model (smoke mode: depth is meaningless)"
        python -m midas_service export --random-weights --output "$model"
    elif [ -n "${MIDAS_WEIGHTS_FILE:-}" ]; then
        python -m midas_service export --weights "$MIDAS_WEIGHTS_FILE" --output "$model"
    elif ! python -m midas_service export --output "$model"; then
        log "no model: put the official checkpoint somewhere and run"
        log "    MIDAS_WEIGHTS_FILE=/path/to/midas_v21_small_256.pt ./scripts/serve.sh"
        log "or try the service with random weights (meaningless depth):"
        log "    MIDAS_RANDOM_WEIGHTS=1 ./scripts/serve.sh"
        exit 1
    fi
); fi

ensure_venv serve  # requirements.txt only, torch's CPU build

export GUNICORN_BIND="${GUNICORN_BIND:-127.0.0.1:8000}"
# TorchScript workers: Intel OpenMP preloaded with a 1 ms block time (midas_service/inference/openmp.py).
eval "$(python -m midas_service.inference.openmp)"
log "serving $model on http://$GUNICORN_BIND (Ctrl-C to stop)"
exec gunicorn -c gunicorn.conf.py app:app
