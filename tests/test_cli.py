import shutil
import subprocess
import sys

import numpy as np

from tests.support import ROOT


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "midas_service", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_folder_with_a_corrupt_file_reports_it_and_exits_1(model_path, photo_dir, tmp_path):
    inputs = tmp_path / "in"
    nested = inputs / "nested"
    nested.mkdir(parents=True)
    shutil.copy(photo_dir / "chelsea.png", inputs / "chelsea.png")
    shutil.copy(photo_dir / "rocket.png", nested / "rocket.png")
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (inputs / "notes.txt").write_text("not an image, and not an image extension")
    out = tmp_path / "out"
    result = run_cli(
        "predict",
        inputs,
        "--model",
        model_path,
        "--output-dir",
        out,
        "--save",
        "heatmap,png16,npy,pfm,side",
        "--colormap",
        "magma",
    )
    assert result.returncode == 1
    assert "broken.jpg" in result.stderr
    assert "2 images done, 1 failed" in result.stderr and "ms/image" in result.stderr
    expected = {
        f"{stem}{suffix}"
        for stem in ("chelsea", "rocket")
        for suffix in ("-depth.png", ".png", ".npy", ".pfm", "-side.png")
    }
    assert {p.name for p in out.iterdir()} == expected
    assert np.load(out / "chelsea.npy").shape == (300, 451)


def test_all_good_inputs_exit_0(model_path, photo_dir, tmp_path):
    result = run_cli(
        "predict",
        photo_dir / "coffee.png",
        "--model",
        model_path,
        "--output-dir",
        tmp_path,
        "--backend",
        "torchscript",
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "coffee-depth.png").is_file()


def test_help_documents_every_option():
    result = run_cli("predict", "--help")
    for word in (
        "--model",
        "--output-dir",
        "--save",
        "--colormap",
        "--backend",
        "--threads",
        "heatmap",
        "png16",
        "npy",
        "pfm",
        "side",
        "-depth.png",
        "recursively",
    ):
        assert word in result.stdout


def test_unknown_output_kind_is_rejected(model_path, tmp_path):
    result = run_cli(
        "predict",
        tmp_path,
        "--model",
        model_path,
        "--output-dir",
        tmp_path,
        "--save",
        "heatmap,gif",
    )
    assert result.returncode == 2 and "gif" in result.stderr
