"""Real Gunicorn and nginx processes on free loopback ports, for end-to-end tests and the bench."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from string import Template

import requests

from midas_service import openmp
from tests.support import ROOT

NGINX_TEMPLATE = ROOT / "nginx" / "midas.conf.template"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, status: int = 200, timeout: float = 60) -> float:
    """Poll ``url`` until it answers ``status``; fail early if the process died. Seconds taken."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=2).status_code == status:
                return time.monotonic() - start
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or too busy loading to answer within 2 s
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer {status} within {timeout} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running(
    args: list[str], log_path: Path, ready_url: str | None, **popen: object
) -> Iterator[subprocess.Popen]:
    """Start ``args`` with output to ``log_path``, wait until ``ready_url`` is 200, stop after."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **popen)
        try:
            if ready_url:
                wait_for(ready_url, process)
            yield process
        finally:
            stop(process)


@contextmanager
def gunicorn(
    model_path: Path, workdir: Path, *, workers: int = 2, wait: bool = True, **env: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Gunicorn with gunicorn.conf.py serving ``model_path``; yields (base URL, process)."""
    port = free_port()
    environment = {
        **os.environ,
        **openmp.recommended_environment(),  # as scripts/serve.sh and the image set it
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(workers),
        "MIDAS_MODEL_PATH": str(model_path),
        "MIDAS_RANDOM_WEIGHTS": "1",
        # This CPU is shared by other jobs and can be many times slower than a real node: shed
        # only what waits 10 s. tests/test_lifecycle.py tests shedding with its own values.
        "MIDAS_QUEUE_TIMEOUT_S": "10",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
        **env,
    }
    with running(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
        workdir / f"gunicorn-{port}.log",
        f"http://127.0.0.1:{port}/readyz" if wait else None,
        cwd=ROOT,
        env=environment,
    ) as process:
        yield f"http://127.0.0.1:{port}", process


def render_nginx_conf(workdir: Path, port: int, upstream: str, max_upload_mb: str) -> Path:
    """A complete nginx.conf around the project's template, with every path inside workdir."""
    server_block = Template(NGINX_TEMPLATE.read_text()).safe_substitute(
        NGINX_PORT=f"127.0.0.1:{port}",
        MIDAS_UPSTREAM=upstream,
        MIDAS_MAX_UPLOAD_MB=max_upload_mb,
        MIDAS_STATIC_ROOT=str(ROOT / "static"),
    )
    (workdir / "midas.conf").write_text(server_block)
    temp = workdir / "nginx-temp"
    temp.mkdir(exist_ok=True)
    os.chmod(temp, 0o777)  # nginx workers may run as nobody when started by root
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {workdir}/midas.conf;
}}
"""
    )
    return conf


@contextmanager
def nginx(upstream_url: str, workdir: Path, max_upload_mb: str = "10") -> Iterator[str]:
    """The real nginx binary in front of ``upstream_url``; yields its base URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    upstream = upstream_url.removeprefix("http://")
    conf = render_nginx_conf(workdir, port, upstream, max_upload_mb)
    with running(
        [binary, "-c", str(conf), "-p", str(workdir)],
        workdir / "nginx.log",
        f"http://127.0.0.1:{port}/healthz",
    ):
        yield f"http://127.0.0.1:{port}"
