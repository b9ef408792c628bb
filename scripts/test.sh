#!/usr/bin/env bash
# Set up everything and run the checks: shellcheck, ruff, mypy, then the whole pytest suite. With
# CI=true (or MIDAS_SMOKE_FRESH=1) it first proves the README's start command on a fresh clone
# with a brand-new HOME (scripts/smoke_fresh_machine.sh, ~2 minutes).
#   ./scripts/test.sh [pytest args]
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
ensure_apt_packages nginx:nginx wrk:wrk chromium:chromium chromedriver:chromium-driver \
    redis-server:redis-server node:nodejs npm:npm ffprobe:ffmpeg

# The Khronos glTF validator (npm) for tests/test_geometry.py, kept outside the clone and keyed
# by its version like the venv.
GLTF_VALIDATOR_VERSION=2.0.0-dev.3.10
ensure_gltf_validator() {
    local folder="${MIDAS_VENV_ROOT:-$HOME/.cache/midas-service}/gltf-validator-$GLTF_VALIDATOR_VERSION"
    if [ ! -f "$folder/.complete" ]; then
        log "installing gltf-validator@$GLTF_VALIDATOR_VERSION into $folder"
        mkdir -p "$folder"
        npm install --prefix "$folder" --no-audit --no-fund --silent \
            "gltf-validator@$GLTF_VALIDATOR_VERSION"
        touch "$folder/.complete"
    fi
    export MIDAS_GLTF_VALIDATOR="$folder/node_modules/gltf-validator"
}
if [ "${CI:-}" = "true" ] || [ "${MIDAS_SMOKE_FRESH:-0}" = "1" ]; then
    "$PROJECT_ROOT/scripts/smoke_fresh_machine.sh"
fi
ensure_venv
ensure_gltf_validator
cd "$PROJECT_ROOT"
shellcheck scripts/*.sh .ci/run
ruff check .
ruff format --check .
mypy
python -m pytest "$@"
