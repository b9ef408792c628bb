#!/usr/bin/env bash
# Set up everything and run the checks: ruff, then the whole pytest suite.
#   ./scripts/test.sh [pytest args]
source "$(dirname "$0")/env.sh"
ensure_apt_packages nginx:nginx wrk:wrk chromium:chromium chromedriver:chromium-driver
ensure_venv
cd "$PROJECT_ROOT"
ruff check .
ruff format --check .
python -m pytest "$@"
