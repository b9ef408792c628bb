"""A virtual environment holding exactly what the Dockerfile's runtime stage installs.

The pip commands of the runtime stage's lineage are read from the Dockerfile and replayed in a
fresh venv, with the files those stages COPY before them (requirements.txt) and their ENV.
Nothing else is installed: no test tools, no export dependencies.

One difference is forced by this machine: the PyTorch CPU wheel index cannot be reached, so
``--index-url``/``--extra-index-url`` options are dropped and pip's configured indexes answer
(here local wheels: torch is PyPI's build of the same pinned version).

The venv is cached like the project's own (scripts/env.sh), keyed by the Python version, the
replayed instructions and the files they copy:

    ${MIDAS_RUNTIME_VENV_ROOT:-/var/tmp/midas-service}/runtime-venv-<hash>

It is not under ~/.cache because the tests run it as an unprivileged uid, which cannot enter a
mode-700 home. Older ``runtime-venv-*`` folders under that root are deleted (several GB each).
The base interpreter must be the Dockerfile's Python version, not a venv, and runnable by that
uid: ``MIDAS_RUNTIME_PYTHON`` names one, otherwise the first usable of /usr/local/bin/python3.X,
/usr/bin/python3.X and python3.X on PATH is taken.

    python -m tests.runtime_venv     # create it now (minutes the first time), print its path
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.dockerfile import ROOT, copy_sources, env_of, in_build_order, lineage, stages

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/var/tmp/midas-service"
RUNTIME_STAGE = "runtime"
UNPRIVILEGED = (10001, 10001)  # the image's USER; overridden by the test from the Dockerfile


def as_user(uid: int, gid: int) -> list[str]:
    """Command prefix that runs the rest as uid:gid with no supplementary groups."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]


def python_version() -> str:
    """'3.11' from the base image of the runtime stage (python:3.11-slim)."""
    base = lineage(stages(), RUNTIME_STAGE)[-1].base
    match = re.fullmatch(r"python:(\d+\.\d+)[-\w.]*", base)
    assert match, f"cannot tell the Python version of base image {base}"
    return match[1]


def pip_steps() -> tuple[list[str], list[str], dict[str, str]]:
    """(files COPY'd before the last pip RUN, those pip RUN lines runnable here, stage ENV)."""
    instructions = in_build_order(lineage(stages(), RUNTIME_STAGE))
    last_pip = max(i for i, (k, a) in enumerate(instructions) if k == "RUN" and "pip install" in a)
    files, runs = [], []
    for keyword, argument in instructions[: last_pip + 1]:
        if keyword == "COPY":
            sources, _, from_stage = copy_sources(argument)
            assert from_stage is None, "a pip step depends on another stage"
            files.extend(sources)
        elif keyword == "RUN" and "pip install" in argument:
            runs.append(re.sub(r"--(?:extra-)?index-url[= ]\S+\s*", "", argument))
    env = env_of(lineage(stages(), RUNTIME_STAGE)[-1:])  # the base stage's ENV
    return files, runs, env


def cache_key() -> str:
    files, runs, _ = pip_steps()
    digest = hashlib.sha256(python_version().encode())
    for run in runs:
        digest.update(run.encode())
    for name in files:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()[:12]


def venv_root() -> Path:
    return Path(os.environ.get("MIDAS_RUNTIME_VENV_ROOT", DEFAULT_ROOT))


def world_reachable(path: Path) -> bool:
    """Every folder above the real file is enterable by others (no mode-700 home on the way)."""
    real = path.resolve()
    return all(parent.stat().st_mode & 0o001 for parent in real.parents)


def runs_as(python: str, uid: int, gid: int, version: str) -> bool:
    check = f"import sys; sys.exit(not sys.version.startswith('{version}.'))"
    result = subprocess.run(
        [*as_user(uid, gid), python, "-c", check], capture_output=True, check=False
    )
    return result.returncode == 0


def base_python(uid: int, gid: int) -> str:
    """A Python of the image's version, not inside a venv, that ``uid`` can reach and run."""
    version = python_version()
    if os.environ.get("MIDAS_RUNTIME_PYTHON"):
        candidates = [os.environ["MIDAS_RUNTIME_PYTHON"]]
    else:
        candidates = [
            f"/usr/local/bin/python{version}",
            f"/usr/bin/python{version}",
            shutil.which(f"python{version}") or "",
        ]
    for candidate in candidates:
        path = Path(candidate)
        if (
            candidate
            and path.exists()
            and not (path.parent.parent / "pyvenv.cfg").exists()
            and world_reachable(path)
            and runs_as(candidate, uid, gid, version)
        ):
            return candidate
    raise RuntimeError(
        f"no Python {version} that uid {uid} can run among {candidates}; "
        "set MIDAS_RUNTIME_PYTHON to one (outside a mode-700 home, not a venv)"
    )


def ensure_runtime_venv(
    uid: int = UNPRIVILEGED[0],
    gid: int = UNPRIVILEGED[1],
    report: Callable[[str], None] = log.warning,
) -> Path:
    """The cached runtime venv, created first if missing (several minutes, several GB)."""
    root = venv_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"runtime-venv-{cache_key()}"
    with open(root / ".runtime-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be creating it
        if (venv / ".complete").exists():
            return venv
        _create(venv, uid, gid, report)
    return venv


def _create(venv: Path, uid: int, gid: int, report: Callable[[str], None]) -> None:
    files, runs, stage_env = pip_steps()
    python = base_python(uid, gid)
    report(f"creating the runtime-image venv {venv} with {python} (first run: minutes, ~6 GB)")
    start = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    for old in venv.parent.glob("runtime-venv-*"):
        if old != venv and old.is_dir():
            report(f"deleting the runtime venv of older requirements {old}")
            shutil.rmtree(old, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    env = {
        **os.environ,
        **stage_env,
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "VIRTUAL_ENV": str(venv),
    }
    env.pop("PYTHONPATH", None)
    log_path = venv.parent / f"{venv.name}.log"
    with tempfile.TemporaryDirectory() as context, open(log_path, "wb") as pip_log:
        for name in files:
            shutil.copy(ROOT / name, Path(context) / name)
        for run in runs:
            report(f"  RUN {run}")
            result = subprocess.run(
                ["sh", "-c", run], cwd=context, env=env, stdout=pip_log, stderr=pip_log
            )
            if result.returncode:
                raise RuntimeError(f"{run!r} failed with {result.returncode}; see {log_path}")
    # Readable by the unprivileged uid whatever the umask; writable by root only.
    subprocess.run(["chmod", "-R", "a+rX,go-w", str(venv)], check=True)
    (venv / ".complete").touch()
    report(f"runtime venv ready in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("%s", ensure_runtime_venv(report=log.info))
