#!/usr/bin/env bash
# Set up (venv, wrk, nginx) and run the benchmark: ./scripts/bench.sh [devtools/bench.py options]
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
ensure_apt_packages nginx:nginx wrk:wrk
ensure_venv
cd "$PROJECT_ROOT"
python -m devtools.bench "$@"
