# shellcheck shell=bash
# Sourced by scripts/serve.sh, scripts/test.sh and scripts/bench.sh: makes (or reuses) the
# project's virtual environment and puts it first on PATH.
#
# The venvs live outside the clone, keyed by the requirements files, so repeat runs are fast:
#   ${MIDAS_VENV_ROOT:-~/.cache/midas-service}/venv-<hash>          dev: tests, export, bench
#   ${MIDAS_VENV_ROOT:-~/.cache/midas-service}/venv-serve-<hash>    serving only (scripts/serve.sh)
#   ${MIDAS_VENV_ROOT:-~/.cache/midas-service}/venv-export-<hash>   export only (serve.sh, once)
# The serving venv is requirements.txt with torch's CPU build, as in the image; the dev and
# export venvs add requirements-export.txt (timm, torchvision and the torch they need).

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

# PyTorch's CPU wheels; where that index cannot be reached, pip's configured index answers.
TORCH_CPU_INDEX="${MIDAS_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

ensure_venv() {
    # ensure_venv [dev|serve|export]: make (or reuse) that venv and put it first on PATH.
    local kind="${1:-dev}" key venv name pattern
    case "$kind" in
        dev)
            key="$(cat "$PROJECT_ROOT"/requirements*.txt | sha256sum | cut -c1-12)"
            name="venv-$key" pattern='venv-????????????' ;;
        serve | export)
            local files=("$PROJECT_ROOT/requirements.txt")
            [ "$kind" = export ] && files+=("$PROJECT_ROOT/requirements-export.txt")
            key="$(cat "${files[@]}" | sha256sum | cut -c1-12)"
            name="venv-$kind-$key" pattern="venv-$kind-????????????" ;;
        *) log "ensure_venv: unknown kind $kind"; return 2 ;;
    esac
    venv="${MIDAS_VENV_ROOT:-$HOME/.cache/midas-service}/$name"
    if [ ! -f "$venv/.complete" ]; then
        log "creating $venv (first run: several minutes)"
        rm -rf "$venv"
        mkdir -p "$(dirname "$venv")"
        # Venvs of older requirements of the same kind are large: keep only the current one.
        find "$(dirname "$venv")" -maxdepth 1 -type d -name "$pattern" \
            ! -path "$venv" -exec rm -rf {} +
        "$PYTHON" -m venv "$venv"
        "$venv/bin/pip" install -q --upgrade pip
        local serving=(-r "$PROJECT_ROOT/requirements.txt")
        if [ "$kind" = serve ]; then
            # One quick try at the CPU index (an offline machine would retry it for minutes);
            # its resolver errors when unreachable would only mislead, so one line says it.
            if ! "$venv/bin/pip" install -q --retries 0 --timeout 10 \
                --index-url "$TORCH_CPU_INDEX" torch -c "$PROJECT_ROOT/requirements.txt" \
                2>/dev/null; then
                log "torch CPU index $TORCH_CPU_INDEX not reachable: pip's configured index"
                "$venv/bin/pip" install -q torch -c "$PROJECT_ROOT/requirements.txt"
            fi
        else
            # The serving pins without their torch: the export stack needs a newer one.
            grep -v '^torch==' "$PROJECT_ROOT/requirements.txt" >"$venv/serving-requirements.txt"
            serving=(-r "$venv/serving-requirements.txt")
        fi
        case "$kind" in
            dev) "$venv/bin/pip" install -q "${serving[@]}" -r "$PROJECT_ROOT/requirements-dev.txt" ;;
            export) "$venv/bin/pip" install -q "${serving[@]}" -r "$PROJECT_ROOT/requirements-export.txt" ;;
            serve) "$venv/bin/pip" install -q "${serving[@]}" ;;
        esac
        touch "$venv/.complete"
    fi
    export PATH="$venv/bin:$PATH"
    export VIRTUAL_ENV="$venv"
}
