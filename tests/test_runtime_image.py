"""The Dockerfile's runtime stage, proven without a container engine.

Every step is read from the Dockerfile, not repeated here: the runtime stage's pip commands
make a fresh venv (tests/runtime_venv.py), its COPY lines fill a read-only image root, the export
stage's RUN line writes the model it copies, and its ENV, USER, WORKDIR and CMD start Gunicorn
as the unprivileged uid. Image paths map to this machine: pip's prefix /usr/local to the venv,
/tmp to a fresh folder owned by that uid, every other absolute path into the image root.
`/readyz` and a `/predict` of a real photo then show that serving needs nothing the stage lacks.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from devtools.servers import free_port, running, wait_for, wait_for_every_worker, worker_pids
from tests.dockerfile import (
    ROOT,
    copy_sources,
    dockerignore_rules,
    env_of,
    in_build_order,
    lineage,
    stages,
)
from tests.runtime_venv import as_user, ensure_runtime_venv, pip_steps

# Creating the venv the first time takes minutes (several GB of local wheels).
pytestmark = pytest.mark.timeout(1800)

EXPORT_ONLY = ("timm", "torchvision", "onnx")
PIP_PREFIX = "/usr/local"  # where pip installs in python:3.11-slim (the venv here)


@pytest.fixture(scope="module")
def runtime() -> list[tuple[str, str]]:
    return in_build_order(lineage(stages(), "runtime"))


@pytest.fixture(scope="module")
def user(runtime) -> tuple[int, int]:
    (*_, last) = [a for k, a in runtime if k == "USER"]
    uid, gid = (int(part) for part in last.split(":"))
    assert uid != 0
    return uid, gid


@pytest.fixture(scope="module")
def venv(request, user) -> Path:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def report(line: str) -> None:
        reporter.write_line(f"[runtime image] {line}")

    return ensure_runtime_venv(*user, report=report)


def world_readable_temp(prefix: str) -> Path:
    """A folder the unprivileged uid can enter (pytest's own tmp_path is mode 700)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


def remove_tree(folder: Path) -> None:
    subprocess.run(["chmod", "-R", "u+w", str(folder)], check=False)
    shutil.rmtree(folder, ignore_errors=True)


def run_export_stage(output_root: Path, scratch: Path) -> None:
    """The export stage's model-writing RUN line, random weights, in this (superset) venv."""
    assert "-r requirements-export.txt" in (ROOT / "requirements-dev.txt").read_text()
    export = in_build_order(lineage(stages(), "export"))
    (command,) = [a for k, a in export if k == "RUN" and "midas_service export" in a]
    command = command.replace("/tmp/", f"{scratch}/")  # first: output_root may lie in /tmp
    command = command.replace(" /models/", f" {output_root}/models/")
    env = {
        **os.environ,
        **env_of(lineage(stages(), "export")),
        "MIDAS_WEIGHTS": "random",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    subprocess.run(["sh", "-c", command], cwd=ROOT, env=env, check=True)


def ignored_by_dockerignore() -> list[str]:
    """The `**/pattern` exclusions that apply inside the copied folders."""
    return [rule[3:] for rule in dockerignore_rules() if rule.startswith("**/")]


def build_image_root(runtime, image: Path, scratch: Path) -> tuple[str, Path]:
    """Replay WORKDIR and COPY of the runtime stage into ``image``; (WORKDIR, its folder)."""
    pip_runs = pip_steps()[1]
    ignore = shutil.ignore_patterns(*ignored_by_dockerignore())
    workdir = "/"
    exported: Path | None = None
    for keyword, argument in runtime:
        if keyword == "WORKDIR":
            workdir = argument
            (image / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            sources, destination, from_stage = copy_sources(argument)
            assert from_stage in (None, "export"), argument
            if from_stage == "export" and exported is None:
                exported = scratch / "export-root"
                run_export_stage(exported, scratch)
            context = exported if from_stage else ROOT
            target = image / os.path.join(workdir, destination).lstrip("/")
            for source in sources:
                origin = context / source.lstrip("/")
                if origin.is_dir():
                    shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(origin, target / origin.name)
        elif keyword == "RUN":
            # pip steps are the venv; user creation is the uid we run as. Anything else is new
            # and must be replayed here before this test can vouch for the image.
            normalised = re.sub(r"--(?:extra-)?index-url[= ]\S+\s*", "", argument)
            folder = re.fullmatch(r"mkdir -p (/\S+) && chown 10001:10001 \1", argument)
            if folder:  # a folder the service user may write (the job store): ours here too
                (image / folder.group(1).lstrip("/")).mkdir(parents=True, exist_ok=True)
                continue
            assert normalised in pip_runs or "useradd" in argument, f"RUN not replayed: {argument}"
    return workdir, image / workdir.lstrip("/")


def image_env(runtime, image: Path, venv: Path, writable_tmp: Path, port: int) -> dict[str, str]:
    """The image's ENV with its paths mapped onto this machine, plus what `docker run` adds."""
    env: dict[str, str] = {}
    for name, value in env_of(lineage(stages(), "runtime")).items():
        if value.startswith(PIP_PREFIX + "/"):
            value = str(venv / value.removeprefix(PIP_PREFIX + "/"))
        elif value.startswith("/tmp/"):
            value = str(writable_tmp / value.removeprefix("/tmp/"))
        elif value.startswith("/"):
            value = str(image / value.lstrip("/"))
        env[name] = value
    (exposed,) = [a for k, a in runtime if k == "EXPOSE"]
    assert env["GUNICORN_BIND"] == f"0.0.0.0:{exposed}", "the image must listen on its EXPOSE"
    env["GUNICORN_BIND"] = f"127.0.0.1:{port}"
    return {
        **env,
        "PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/nonexistent",
        "LANG": "C.UTF-8",
        "TMPDIR": str(writable_tmp),
        "MIDAS_RANDOM_WEIGHTS": "1",  # docker run -e ..., for an image built with random weights
    }


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def served(runtime, user, venv, tmp_path_factory) -> Iterator[dict[str, object]]:
    """Gunicorn started by the image's CMD, as the image's USER, on a read-only image root."""
    image, scratch, writable_tmp = (
        world_readable_temp("midas-image-"),
        world_readable_temp("midas-export-"),
        world_readable_temp("midas-tmp-"),
    )
    try:
        workdir, app_dir = build_image_root(runtime, image, scratch)
        subprocess.run(["chmod", "-R", "a-w,a+rX", str(image)], check=True)  # root-owned, r/o
        os.chown(writable_tmp, *user)  # the container's /tmp (an emptyDir in k8s)
        port = free_port()
        env = image_env(runtime, image, venv, writable_tmp, port)
        (cmd,) = [a for k, a in runtime if k == "CMD"]
        before = files_under(image)
        with running(
            [*as_user(*user), *json.loads(cmd)],
            tmp_path_factory.mktemp("runtime-image") / "gunicorn.log",
            None,
            cwd=app_dir,
            env=env,
        ) as process:
            url = f"http://127.0.0.1:{port}"
            wait_for(f"{url}/readyz", process, timeout=180)
            wait_for_every_worker(url, process)
            yield {
                "url": url,
                "process": process,
                "env": env,
                "image": image,
                "workdir": workdir,
                "before": before,
            }
    finally:
        remove_tree(image)
        remove_tree(scratch)
        remove_tree(writable_tmp)


def test_runtime_venv_has_no_export_dependencies(venv):
    code = (
        "import importlib.util, json, torch; "
        f"print(json.dumps([[n, importlib.util.find_spec(n) is not None] for n in {EXPORT_ONLY!r}]"
        " + [['torch', torch.__version__]]))"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    found = dict(json.loads(result.stdout))
    assert (
        found.pop("torch").split("+")[0]
        == re.search(r"^torch==(\S+)", (ROOT / "requirements.txt").read_text(), flags=re.M)[1]
    )
    assert found == dict.fromkeys(EXPORT_ONLY, False)


def test_the_image_root_is_read_only_for_the_service_user(served, user):
    app_dir = Path(served["image"]) / str(served["workdir"]).lstrip("/")
    attempt = subprocess.run(
        [*as_user(*user), "sh", "-c", f"touch {app_dir}/written"], capture_output=True, check=False
    )
    assert attempt.returncode != 0 and b"Permission denied" in attempt.stderr


def colormap_levels(picture: np.ndarray) -> np.ndarray:
    """The Inferno table index (0-255) of each BGR pixel; -1 for a colour not in the table."""
    table = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)
    keys = table.reshape(256, 3).astype(np.int64) @ np.array([65536, 256, 1])
    order = np.argsort(keys)
    pixels = picture.reshape(-1, 3).astype(np.int64) @ np.array([65536, 256, 1])
    found = np.clip(np.searchsorted(keys[order], pixels), 0, 255)
    levels = np.where(keys[order][found] == pixels, order[found], -1)
    return levels.reshape(picture.shape[:2])


def test_readyz_and_predict_from_the_runtime_stage(served, jpeg_640x480):
    url, env = served["url"], served["env"]
    ready = requests.get(f"{url}/readyz", timeout=10).json()
    assert ready["ready"] is True and ready["backend"] == env["MIDAS_BACKEND"]
    assert ready["untrained"] is True  # the export stage ran with MIDAS_WEIGHTS=random
    assert ready["openmp"] == f"intel (KMP_BLOCKTIME={env['KMP_BLOCKTIME']})"
    answer = requests.post(
        f"{url}/predict",
        data=jpeg_640x480,
        params={"format": "png"},
        headers={"Content-Type": "image/jpeg"},
        timeout=60,
    )
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
    served_picture = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
    # The same photo through the same model file in this process (the full dev venv).
    from midas_service.images.decode import decode_image
    from midas_service.images.visualize import heatmap
    from midas_service.inference.engines import load_engine
    from midas_service.inference.pipeline import DepthEstimator

    engine = load_engine(Path(env["MIDAS_MODEL_PATH"]), env["MIDAS_BACKEND"], threads=2)
    rgb = decode_image(jpeg_640x480, 1 << 24, 1 << 24)
    expected_depth = DepthEstimator(engine).predict(rgb)
    # The numbers: the image's venv (its own install of the pinned torch) agrees with this one.
    raw = requests.post(
        f"{url}/predict",
        data=jpeg_640x480,
        params={"output": "depth", "format": "npy"},
        headers={"Content-Type": "image/jpeg"},
        timeout=60,
    )
    served_depth = np.load(io.BytesIO(raw.content))
    span = float(expected_depth.max() - expected_depth.min())
    assert np.abs(served_depth - expected_depth).max() <= 1e-3 * span
    # The picture: each pixel is an entry of the Inferno table, the one the numbers pick, or
    # its neighbour where a depth sits on the boundary between two of the 256 levels.
    expected = heatmap(expected_depth)
    assert served_picture.shape == expected.shape == (480, 640, 3)
    levels = colormap_levels(served_picture)
    assert (levels >= 0).all()  # every colour is in the table: nothing else was painted
    difference = np.abs(levels - colormap_levels(expected))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01
    assert served_picture.std() > 10  # a real heatmap, not a flat picture


def test_upload_page_and_its_stylesheet(served):
    page = requests.get(f"{served['url']}/", timeout=30)
    assert page.status_code == 200 and "<form" in page.text
    css = requests.get(f"{served['url']}/static/style.css", timeout=30)
    assert css.status_code == 200 and css.text == (ROOT / "static" / "style.css").read_text()


def test_workers_run_unprivileged_with_intel_openmp(served, user, venv):
    workers = worker_pids(served["process"])
    assert len(workers) >= 1
    preload = served["env"]["LD_PRELOAD"]
    assert preload == str(venv / "lib" / "libiomp5.so") and Path(preload).is_file()
    for pid in (served["process"].pid, *workers):
        status = Path(f"/proc/{pid}/status").read_text()
        uids = re.search(r"^Uid:\s+(.*)$", status, flags=re.M)[1].split()
        assert set(uids) == {str(user[0])}, f"pid {pid} runs as {uids}"
        assert re.search(r"^CapEff:\s+0+$", status, flags=re.M), "no capabilities left"
    for pid in workers:
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert preload in maps, f"worker {pid} does not have libiomp5 mapped"
        assert "timm" not in maps and "torchvision" not in maps


def test_serving_wrote_nothing_into_the_image(served):
    assert files_under(Path(served["image"])) == served["before"]
