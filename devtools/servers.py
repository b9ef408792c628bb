"""Real Gunicorn and nginx processes on free loopback ports, for end-to-end tests and the bench."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template

import requests

from devtools.support import ROOT
from midas_service.inference import openmp

NGINX_TEMPLATE = ROOT / "nginx" / "midas.conf.template"
NGINX_TLS_TEMPLATE = ROOT / "nginx" / "midas-tls.conf.template"
NGINX_SHARED_TEMPLATES = (
    ROOT / "nginx" / "midas-upstream.inc.template",
    ROOT / "nginx" / "midas-locations.inc.template",
)


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
            pass  # not listening yet, or too busy starting to answer within 2 s
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer {status} within {timeout} s")


def worker_pids(process: subprocess.Popen | int) -> set[int]:
    """The current workers of the Gunicorn master ``process`` (or its pid): its children."""
    pid = process if isinstance(process, int) else process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(pid) for pid in children.read_text().split()}


def wait_for_every_worker(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    """Wait until each current worker of the Gunicorn master ``process`` has answered /readyz
    200 (a first 200 only proves one of them is warm)."""
    deadline = time.monotonic() + timeout
    ready: set[int] = set()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        workers = worker_pids(process)
        if workers and workers <= ready:
            return
        try:
            answer = requests.get(f"{url}/readyz", timeout=2)
            if answer.status_code == 200:
                ready.add(answer.json()["pid"])
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"not every worker behind {url} was ready within {timeout} s")


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
    model_path: Path,
    workdir: Path,
    *,
    workers: int = 2,
    wait: bool = True,
    python: str = sys.executable,
    **env: str,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Gunicorn with gunicorn.conf.py serving ``model_path``; yields (base URL, process).
    ``python``: the interpreter (e.g. the runtime image's venv) that runs it."""
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
        [python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
        workdir / f"gunicorn-{port}.log",
        f"http://127.0.0.1:{port}/readyz" if wait else None,
        cwd=ROOT,
        env=environment,
    ) as process:
        if wait:
            wait_for_every_worker(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}", process


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate (chain) and its key, PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Proxy:
    """A running nginx: its plain-HTTP URL, its HTTPS URL when TLS is on, its folder."""

    http: str
    https: str | None
    folder: Path


def render_nginx_conf(
    folder: Path,
    port: int,
    upstreams: str | Sequence[str],
    max_upload_mb: str,
    tls: TlsFiles | None = None,
    tls_port: int | None = None,
    jobs_max_upload_mb: str = "512",
) -> Path:
    """A complete nginx.conf around the project's templates, with every path inside ``folder``.

    Like the official image: each template is rendered into ``folder/conf.d/`` and nginx.conf
    includes ``conf.d/*.conf``; the server file includes the two ``conf.d/midas-*.inc``.
    """
    addresses = [upstreams] if isinstance(upstreams, str) else list(upstreams)
    values = {
        "NGINX_PORT": f"127.0.0.1:{port}",
        "MIDAS_UPSTREAM_SERVERS": " ".join(
            f"server {a.removeprefix('http://')};" for a in addresses
        ),
        "MIDAS_MAX_UPLOAD_MB": max_upload_mb,
        "MIDAS_JOBS_MAX_UPLOAD_MB": jobs_max_upload_mb,
        "MIDAS_STATIC_ROOT": str(ROOT / "static"),
    }
    server_template = NGINX_TEMPLATE
    if tls is not None:
        server_template = NGINX_TLS_TEMPLATE
        values |= {
            "NGINX_TLS_PORT": f"127.0.0.1:{tls_port}",
            "NGINX_TLS_PUBLIC_PORT": str(tls_port),
            "NGINX_TLS_CERT": str(tls.cert),
            "NGINX_TLS_KEY": str(tls.key),
        }
    conf_d = folder / "conf.d"
    conf_d.mkdir(parents=True, exist_ok=True)
    for template in (*NGINX_SHARED_TEMPLATES, server_template):
        text = Template(template.read_text()).safe_substitute(values)
        missing = sorted(set(re.findall(r"\$\{(\w+)\}", text)))
        assert not missing, f"{template.name} needs {missing}"
        (conf_d / template.name.removesuffix(".template")).write_text(text)
    temp = folder / "nginx-temp"
    temp.mkdir(exist_ok=True)
    # Started by root, nginx runs its workers as nobody, who cannot read a clone or a pytest
    # folder inside a private (0700) directory: keep them as root here, on 127.0.0.1 only.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(
        f"""daemon off;
{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include conf.d/*.conf;
}}
"""
    )
    return conf


@contextmanager
def nginx_proxy(
    upstreams: str | Sequence[str],
    workdir: Path,
    max_upload_mb: str = "10",
    *,
    tls: TlsFiles | None = None,
    ready_status: int = 200,
) -> Iterator[Proxy]:
    """The real nginx binary in front of one or more Gunicorn URLs, optionally with HTTPS.

    Ready when plain-HTTP /healthz answers ``ready_status`` (503 for a dead upstream).
    """
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    tls_port = free_port() if tls else None
    folder = workdir / f"nginx-{port}"
    conf = render_nginx_conf(folder, port, upstreams, max_upload_mb, tls, tls_port)
    with running([binary, "-c", str(conf), "-p", str(folder)], folder / "nginx.log", None) as proc:
        wait_for(f"http://127.0.0.1:{port}/healthz", proc, status=ready_status)
        yield Proxy(
            http=f"http://127.0.0.1:{port}",
            https=f"https://127.0.0.1:{tls_port}" if tls_port else None,
            folder=folder,
        )


@contextmanager
def nginx(
    upstream_url: str | Sequence[str], workdir: Path, max_upload_mb: str = "10"
) -> Iterator[str]:
    """Plain-HTTP nginx in front of ``upstream_url`` (one URL or several); yields its base URL."""
    with nginx_proxy(upstream_url, workdir, max_upload_mb) as proxy:
        yield proxy.http


@contextmanager
def redis_server(workdir: Path, port: int | None = None) -> Iterator[str]:
    """A throwaway redis-server on loopback (no persistence); yields its redis:// URL.

    Pass the ``port`` of a stopped one to bring the "same" server back.
    """
    import redis

    port = port or free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    url = f"redis://127.0.0.1:{port}/0"
    with open(workdir / f"redis-{port}.log", "ab") as log:
        process = subprocess.Popen([*args, "--dir", str(workdir)], stdout=log, stderr=log)
    try:
        client = redis.Redis.from_url(url, socket_timeout=1)
        start = time.monotonic()
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}")
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() - start > 20:
                    raise TimeoutError("redis-server did not answer PING") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        stop(process)
