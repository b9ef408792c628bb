# shellcheck shell=bash
# Sourced by scripts/serve.sh, scripts/test.sh and scripts/bench.sh: makes (or reuses) the
# project's virtual environment and puts it first on PATH.
#
# The venv lives outside the clone, keyed by the requirements files, so repeat runs are fast:
#   ${MIDAS_VENV_ROOT:-~/.cache/midas-service}/venv-<hash of requirements*.txt>
# Note: on x86_64 pip takes torch 2.14.1 (a CUDA build that runs on the CPU, ~6 GB) because
# that is what installs beside torchvision here; the Dockerfile uses the CPU wheels instead.

set -euo pipefail

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

log() { printf '[midas] %s\n' "$*" >&2; }

ensure_apt_packages() {
    # ensure_apt_packages COMMAND:PACKAGE ... installs the packages whose command is missing.
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    log "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_venv() {
    local key venv
    key="$(cat "$PROJECT_ROOT"/requirements*.txt | sha256sum | cut -c1-12)"
    venv="${MIDAS_VENV_ROOT:-$HOME/.cache/midas-service}/venv-$key"
    if [ ! -f "$venv/.complete" ]; then
        log "creating $venv (first run: several minutes, ~6 GB)"
        rm -rf "$venv"
        mkdir -p "$(dirname "$venv")"
        # Venvs of older requirements are ~6 GB each: keep only the current one.
        find "$(dirname "$venv")" -maxdepth 1 -type d -name 'venv-????????????' \
            ! -path "$venv" -exec rm -rf {} +
        "$PYTHON" -m venv "$venv"
        "$venv/bin/pip" install -q --upgrade pip
        "$venv/bin/pip" install -q -r "$PROJECT_ROOT/requirements-dev.txt"
        touch "$venv/.complete"
    fi
    export PATH="$venv/bin:$PATH"
    export VIRTUAL_ENV="$venv"
}
