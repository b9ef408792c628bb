#!/usr/bin/env bash
# The README's start command as a stranger meets it: a fresh clone of the committed tree and a
# brand-new HOME (no venv, no pip cache, no model), in smoke mode (random weights, no network).
# Passes once /readyz answers 200; then stops the service and removes everything it made.
#   ./scripts/smoke_fresh_machine.sh     (scripts/test.sh runs it when CI=true)
# MIDAS_SMOKE_TIMEOUT_S (default 900) bounds the wait, venv creation included.
# MIDAS_SMOKE_MIN_FREE_GB (default 12): the export venv (PyPI's CUDA torch, ~6.5 GB) and the
# serving venv (~1.8 GB) are built under TMPDIR; with less free space pip fails half-way with
# "No space left on device", so the smoke says so before it starts.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
timeout_s="${MIDAS_SMOKE_TIMEOUT_S:-900}"
min_free_gb="${MIDAS_SMOKE_MIN_FREE_GB:-12}"
tmp="${TMPDIR:-/tmp}"

log() { printf '[smoke] %s\n' "$*" >&2; }

free_gb="$(df -Pk "$tmp" | awk 'NR == 2 { print int($4 / 1048576) }')"
if [ "$free_gb" -lt "$min_free_gb" ]; then
    log "FAILED: $free_gb GB free under $tmp, the fresh-machine venvs need about $min_free_gb GB"
    exit 1
fi

work="$(mktemp -d)"
server_pid=""

cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM -- "-$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
git clone --quiet "$root" "$work/clone"
mkdir "$work/home"
log "fresh clone, HOME=$work/home: MIDAS_RANDOM_WEIGHTS=1 ./scripts/serve.sh on port $port"
start=$(date +%s)
# A new session (setsid) so the whole process group can be stopped; only the variables a new
# user would have: no venv on PATH, no MIDAS_*.
setsid env -i HOME="$work/home" PATH="/usr/local/bin:/usr/bin:/bin" LANG=C.UTF-8 \
    MIDAS_RANDOM_WEIGHTS=1 GUNICORN_BIND="127.0.0.1:$port" \
    "$work/clone/scripts/serve.sh" >"$work/serve.log" 2>&1 &
server_pid=$!

url="http://127.0.0.1:$port/readyz"
while true; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        tail -n 40 "$work/serve.log" >&2
        log "FAILED: serve.sh exited before /readyz answered 200"
        exit 1
    fi
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)" = "200" ]; then
        break
    fi
    if [ $(($(date +%s) - start)) -ge "$timeout_s" ]; then
        tail -n 40 "$work/serve.log" >&2
        log "FAILED: /readyz not 200 within $timeout_s s"
        exit 1
    fi
    sleep 1
done
ready="$(curl -s "$url")"
log "ready in $(($(date +%s) - start)) s (venv, export and start included)"
# serve.sh must hand TorchScript workers Intel OpenMP (midas_service/inference/openmp.py).
if ! grep -q '"openmp":"intel (KMP_BLOCKTIME=1)"' <<<"$ready"; then
    log "FAILED: the worker does not run Intel OpenMP with KMP_BLOCKTIME=1: $ready"
    exit 1
fi
