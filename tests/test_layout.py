"""The boundaries of the layout (docs/architecture.md).

In fresh interpreters:
- Serving never imports the export side: the app, the Gunicorn worker side and the CLI's predict
  path, run for real on each backend, leave timm, torchvision, onnx and midas_service.export
  unloaded (the runtime image does not have them).
- The Gunicorn master imports exactly what gunicorn.conf.py's docstring lists.

From the source (every import, at the top or inside a function):
- The core imports no front end; nothing outside web/ imports web/; the job worker reaches
  neither web/ nor Flask.
- Only config.py reads settings from the environment; only loading.py builds a serving engine.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.support import ROOT
from midas_service.inference.engines import BACKENDS

EXPORT_SIDE = ("timm", "torchvision", "onnx", "midas_service.export")
MASTER_FORBIDDEN = ("torch", "onnxruntime", "openvino", "cv2", "numpy", "PIL", "flask")

SERVING = r"""
import io, json, sys
from pathlib import Path
import cv2, numpy as np

import app  # the WSGI entry point: create_app() with the model loading in the background
from midas_service.serving import admission, lifecycle, worker  # noqa: F401
from midas_service import cli

runtime = app.app.extensions["midas_runtime"]
runtime.wait(120)
photo = np.zeros((48, 64, 3), np.uint8)
photo[:, 32:] = 200
ok, jpeg = cv2.imencode(".jpg", photo)
answer = app.app.test_client().post("/predict?output=depth", data=jpeg.tobytes(),
                                    content_type="image/jpeg")
assert answer.status_code == 200, answer.get_data(as_text=True)
depth = np.load(io.BytesIO(answer.data))
folder = Path(sys.argv[1])
cv2.imwrite(str(folder / "photo.png"), photo)
code = cli.main(["predict", str(folder / "photo.png"), "--model", sys.argv[2],
                 "--backend", sys.argv[3], "--output-dir", str(folder / "out"), "--save", "npy"])
assert code == 0
assert np.load(folder / "out" / "photo.npy").shape == depth.shape == (48, 64)
print(json.dumps(sorted(sys.modules)))
"""

# Gunicorn reads its config file like this (gunicorn.config.get_config_from_filename), then
# calls the hooks the master runs: on_starting, when_ready's model check, child_exit's import.
MASTER = r"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("__config__", "gunicorn.conf.py")
conf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conf)
from midas_service.serving import lifecycle
lifecycle.check_model_file(conf._service)
from prometheus_client import multiprocess  # noqa: F401  (child_exit)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_modules(script: str, env: dict[str, str], *args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def packages(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.mark.parametrize("backend", BACKENDS)
def test_serving_never_imports_the_export_side(backend, model_path: Path, tmp_path: Path):
    env = {
        "MIDAS_MODEL_PATH": str(model_path),
        "MIDAS_BACKEND": backend,
        "MIDAS_WARMUP_RUNS": "1",
        "MIDAS_THREADS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    (tmp_path / "metrics").mkdir()
    modules = loaded_modules(SERVING, env, str(tmp_path), str(model_path), backend)
    assert f"midas_service.inference.engines.{backend}" in modules  # the engine really ran
    assert packages(modules, EXPORT_SIDE) == []


def documented_master_modules() -> set[str]:
    """The list in gunicorn.conf.py's docstring, under "The master imports exactly"."""
    source = (ROOT / "gunicorn.conf.py").read_text()
    docstring = source.split('"""', 2)[1]
    listed = docstring.split("The master imports exactly", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"\bmidas_service(?:\.\w+)*", listed))


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_master_imports_exactly_what_gunicorn_conf_says(backend, model_path: Path):
    env = {"MIDAS_MODEL_PATH": str(model_path), "MIDAS_BACKEND": backend}
    modules = loaded_modules(MASTER, env)
    project = {m for m in modules if m.split(".")[0] == "midas_service"}
    engine = f"midas_service.inference.engines.{backend}"
    assert engine in project  # the model-file check reads the backend's metadata
    # OpenVINO compiles the same ONNX file: its check reuses ONNX Runtime's header check.
    shared = {"midas_service.inference.engines.onnxruntime"} if backend == "openvino" else set()
    documented = documented_master_modules()
    assert project - {engine} - shared == documented
    assert packages(modules, MASTER_FORBIDDEN) == []
    stdlib = set(sys.stdlib_module_names) | {"__main__", "_distutils_hack"}
    third_party = {m.split(".")[0] for m in modules} - stdlib - {"midas_service"}
    assert third_party <= {"gunicorn", "prometheus_client"}


def test_scripts_share_helpers_through_devtools_not_tests():
    for script in (ROOT / "scripts").glob("*.py"):
        source = script.read_text()
        assert not re.search(r"^\s*(from|import) tests\b", source, flags=re.M), script
    for helper in (ROOT / "devtools").glob("*.py"):
        assert not re.search(r"^\s*(from|import) tests\b", helper.read_text(), flags=re.M), helper


# --- The core and its front ends (docs/architecture.md), read from the source ---

PACKAGE = ROOT / "midas_service"
FRONT_ENDS = (
    "midas_service.web",
    "midas_service.serving",
    "midas_service.cli",
    "midas_service.__main__",
    "midas_service.engine_options",
    "midas_service.jobs.worker",
    "midas_service.video.command",
    "midas_service.export.command",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    """The midas_service modules ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == "midas_service"}


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
IMPORTS = {name: project_imports(path) for name, path in MODULES.items()}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_core_imports_no_front_end():
    core = [name for name in MODULES if not within(name, FRONT_ENDS)]
    assert "midas_service.loading" in core and "midas_service.jobs.tasks" in core
    wrong = {name: sorted(i for i in IMPORTS[name] if within(i, FRONT_ENDS)) for name in core}
    assert {name: found for name, found in wrong.items() if found} == {}


def test_nothing_outside_web_imports_web():
    outside = [name for name in MODULES if not within(name, ("midas_service.web",))]
    wrong = {n: sorted(i for i in IMPORTS[n] if within(i, ("midas_service.web",))) for n in outside}
    assert {name: found for name, found in wrong.items() if found} == {}


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in MODULES:
            continue
        seen.add(name)
        todo += list(IMPORTS[name])
    return seen


def test_the_job_worker_never_reaches_the_web_side():
    reached = reachable("midas_service.jobs.worker")
    assert {"midas_service.jobs.tasks", "midas_service.loading"} <= reached
    assert not [name for name in reached if within(name, ("midas_service.web",))]
    flask = [
        n for n in reached if re.search(r"^\s*(from|import) flask\b", MODULES[n].read_text(), re.M)
    ]
    assert flask == []


def test_only_the_settings_module_reads_the_environment():
    """Front ends receive settings; a library knob set for OpenCV and the OpenMP runtime's own
    variables (which process it runs in) are the only other touches of os.environ."""
    readers = {
        module_name(path)
        for path in PACKAGE.rglob("*.py")
        if re.search(r"os\.environ|os\.getenv", path.read_text())
    }
    assert readers == {
        "midas_service.config",
        "midas_service.images.decode",  # OPENCV_IO_MAX_IMAGE_PIXELS for OpenCV itself
        "midas_service.inference.openmp",  # LD_PRELOAD, KMP_BLOCKTIME: the process's runtime
    }


def test_only_loading_builds_an_engine():
    callers = {
        module_name(path)
        for path in PACKAGE.rglob("*.py")
        if re.search(r"\bload_engine\(", path.read_text())
    }
    # The export checks the files it wrote by loading them; serving loads through loading.py.
    assert callers == {
        "midas_service.loading",
        "midas_service.inference.engines",
        "midas_service.export.exporter",
    }


def test_scripts_and_devtools_run_with_the_package_as_it_is():
    """No sys.path edits: ``python -m scripts.NAME`` / ``python -m devtools.NAME`` from the
    repository root, or the installed package."""
    for path in [*(ROOT / "scripts").glob("*.py"), *(ROOT / "devtools").glob("*.py")]:
        assert "sys.path" not in path.read_text(), path
