"""``pip install .`` gives a ``midas-depth`` command and a service that runs from any directory.

The wheel is built from a copy of the tree (no build/ or egg-info left in the checkout) and
installed without dependencies into a fresh venv that sees the project venv's packages through
a .pth file, so the check takes seconds instead of a 6 GB install.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from devtools.support import ROOT

PIP = (sys.executable, "-m", "pip")
SOURCES = ("midas_service", "templates", "static", "setup.py", "pyproject.toml", "requirements.txt")

SERVE_FROM_ELSEWHERE = r"""
import sys
from pathlib import Path
import midas_service
from midas_service.config import Settings
from midas_service.web import create_app

installed = Path(midas_service.__file__).parent
app = create_app(Settings(model_path=Path("nowhere.pt")), load_model=False)
assert Path(app.template_folder) == installed / "templates", app.template_folder
client = app.test_client()
page = client.get("/")
assert page.status_code == 200 and 'name="image"' in page.get_data(as_text=True)
script = client.get("/static/app.js")
assert script.status_code == 200 and b"import" in script.data
from midas_service.inference import deviation
photos = deviation.photos_in()  # the bf16 gate's photos: package data, not the checkout's
assert [p.name for p in photos] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"], photos
assert all(p.is_relative_to(installed) for p in photos), photos
print("served from", installed)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [*PIP, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        check=True,
        timeout=120,
    )
    (built,) = out.glob("midas_service-*.whl")
    return built


def test_the_wheel_holds_the_package_its_data_and_the_command(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in (ROOT / "templates").rglob("*"), (ROOT / "static").rglob("*"):
        for path in asset:
            if path.is_file():
                assert f"midas_service/{path.relative_to(ROOT)}" in names, path
    assert "midas_service/export/midas_v21_small_256.keys.tsv" in names
    for module in ROOT.joinpath("midas_service").rglob("*.py"):
        assert str(module.relative_to(ROOT)) in names, module
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "midas-depth = midas_service.cli:main" in text
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Requires-Dist: torch==" in requires  # the pinned set of requirements.txt


def test_installed_command_and_service_run_from_another_directory(wheel: Path, tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The project venv's packages (torch, flask, ...) without installing them again.
    Path(purelib, "project-venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [*PIP, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=120,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = {"cwd": elsewhere, "env": env, "capture_output": True, "text": True, "timeout": 120}
    helped = subprocess.run([venv / "bin" / "midas-depth", "--help"], **run)
    assert helped.returncode == 0, helped.stderr
    assert "predict" in helped.stdout and "export" in helped.stdout
    module = subprocess.run([python, "-m", "midas_service", "predict", "--help"], **run)
    assert module.returncode == 0 and "--output-dir" in module.stdout, module.stderr
    served = subprocess.run([python, "-c", SERVE_FROM_ELSEWHERE], **run)
    assert served.returncode == 0, served.stderr[-3000:]
    assert served.stdout.startswith(f"served from {purelib}"), served.stdout
