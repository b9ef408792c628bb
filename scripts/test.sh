#!/usr/bin/env bash
# Set up everything and run the checks: shellcheck, ruff, mypy, then the whole pytest suite. With
# CI=true (or MIDAS_SMOKE_FRESH=1) it first proves the README's start command on a fresh clone
# with a brand-new HOME (scripts/smoke_fresh_machine.sh, ~2 minutes).
#   ./scripts/test.sh [pytest args]
set -euo pipefail
# shellcheck source=scripts/env.sh
source "$(dirname "$0")/env.sh"
ensure_apt_packages nginx:nginx wrk:wrk chromium:chromium chromedriver:chromium-driver \
    redis-server:redis-server
if [ "${CI:-}" = "true" ] || [ "${MIDAS_SMOKE_FRESH:-0}" = "1" ]; then
    "$PROJECT_ROOT/scripts/smoke_fresh_machine.sh"
fi
ensure_venv
cd "$PROJECT_ROOT"
shellcheck scripts/*.sh .ci/run
ruff check .
ruff format --check .
mypy
python -m pytest "$@"
