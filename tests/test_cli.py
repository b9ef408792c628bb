import os
import shutil
import subprocess
import sys

import cv2
import numpy as np

from devtools.support import ROOT


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "midas_service", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
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
        f"chelsea{suffix}" for suffix in ("-depth.png", "-depth16.png", ".npy", ".pfm", "-side.png")
    }
    assert {p.name for p in out.iterdir()} == {*expected, "nested"}
    assert {p.name for p in (out / "nested").iterdir()} == {
        f"rocket{suffix}" for suffix in ("-depth.png", "-depth16.png", ".npy", ".pfm", "-side.png")
    }
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


def predict_npy(model_path, out, *inputs, extra=()):
    return run_cli(
        "predict", *inputs, "--model", model_path, "--output-dir", out, "--save", "npy", *extra
    )


def test_same_names_in_sub_folders_keep_every_result(model_path, photo_dir, tmp_path):
    inputs = tmp_path / "in"
    for folder, photo in (("a", "chelsea"), ("b", "coffee")):
        (inputs / folder).mkdir(parents=True)
        shutil.copy(photo_dir / f"{photo}.png", inputs / folder / "x.png")
    shutil.copy(photo_dir / "rocket.png", inputs / "x.jpg")  # PNG bytes, any extension
    out = tmp_path / "out"
    result = predict_npy(model_path, out, inputs)
    assert result.returncode == 0, result.stderr
    assert "3 images done, 0 failed" in result.stderr
    shapes = {str(p.relative_to(out)): np.load(p).shape for p in out.rglob("*.npy")}
    assert shapes == {"a/x.npy": (300, 451), "b/x.npy": (400, 600), "x.npy": (427, 640)}


def test_colliding_inputs_are_refused_before_any_work(model_path, photo_dir, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(photo_dir / "coffee.png", tmp_path / folder / "x.png")
    out = tmp_path / "out"
    result = predict_npy(model_path, out, tmp_path / "a" / "x.png", tmp_path / "b" / "x.png")
    assert result.returncode == 2
    assert "two inputs would write the same output" in result.stderr
    assert str(out / "x.npy") in result.stderr and str(tmp_path / "b" / "x.png") in result.stderr
    assert not out.exists()


def test_existing_outputs_are_kept_unless_overwrite(model_path, photo_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "coffee.npy").write_bytes(b"precious")
    refused = predict_npy(model_path, out, photo_dir / "coffee.png")
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert str(out / "coffee.npy") in refused.stderr
    assert (out / "coffee.npy").read_bytes() == b"precious"
    replaced = predict_npy(model_path, out, photo_dir / "coffee.png", extra=["--overwrite"])
    assert replaced.returncode == 0, replaced.stderr
    assert np.load(out / "coffee.npy").shape == (400, 600)


def test_non_finite_depth_names_the_file_and_fails(broken_model_path, photo_dir, tmp_path):
    result = run_cli(
        "predict",
        photo_dir / "coffee.png",
        "--model",
        broken_model_path,
        "--backend",
        "torchscript",
        "--output-dir",
        tmp_path / "out",
    )
    assert result.returncode == 1
    assert "coffee.png" in result.stderr and "non-finite" in result.stderr
    assert "0 images done, 1 failed" in result.stderr
    assert not list((tmp_path / "out").glob("*"))


def test_model_without_metadata_is_refused_unless_allowed(bare_model_path, photo_dir, tmp_path):
    refused = predict_npy(bare_model_path, tmp_path / "out", photo_dir / "coffee.png")
    assert refused.returncode == 2 and "MIDAS_ALLOW_NO_METADATA=1" in refused.stderr
    allowed = run_cli(
        "predict",
        photo_dir / "coffee.png",
        "--model",
        bare_model_path,
        "--output-dir",
        tmp_path / "out",
        env={**os.environ, "MIDAS_ALLOW_NO_METADATA": "1"},
    )
    assert allowed.returncode == 0, allowed.stderr


def test_every_save_kind_is_checked_for_an_existing_output(model_path, photo_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "coffee.pfm").write_bytes(b"precious")  # only the second --save kind exists
    refused = run_cli(
        "predict", photo_dir / "coffee.png", "--model", model_path, "--output-dir", out,
        "--save", "npy,pfm",
    )  # fmt: skip
    assert refused.returncode == 2 and str(out / "coffee.pfm") in refused.stderr
    assert (out / "coffee.pfm").read_bytes() == b"precious" and not (out / "coffee.npy").exists()


def test_an_input_photo_is_never_written_over(model_path, photo_dir, tmp_path):
    """Outputs beside the photos, --overwrite on: a photo named like an output is kept."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photo_dir / "coffee.png", folder / "holiday.png")
    shutil.copy(photo_dir / "chelsea.png", folder / "holiday-depth.png")
    photos = {path.name: path.read_bytes() for path in folder.iterdir()}
    result = run_cli(
        "predict", folder / "holiday.png", folder / "holiday-depth.png", "--model", model_path,
        "--output-dir", folder, "--overwrite",
    )  # fmt: skip
    assert result.returncode == 2
    assert "would replace an input photo" in result.stderr and "holiday-depth.png" in result.stderr
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == photos


def test_a_rerun_in_the_same_folder_skips_its_own_outputs(model_path, photo_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photo_dir / "coffee.png", folder / "holiday.png")
    saves = "heatmap,png16,side,npy"
    first = run_cli(
        "predict", folder, "--model", model_path, "--output-dir", folder, "--save", saves
    )
    assert first.returncode == 0, first.stderr
    made = {"holiday-depth.png", "holiday-depth16.png", "holiday-side.png", "holiday.npy"}
    assert {path.name for path in folder.iterdir()} == {"holiday.png", *made}
    again = run_cli(
        "predict", folder, "--model", model_path, "--output-dir", folder, "--save", saves,
        "--overwrite",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "1 images done" in again.stderr and "skipping 3 outputs" in again.stderr
    assert {path.name for path in folder.iterdir()} == {"holiday.png", *made}
    depth16 = cv2.imread(str(folder / "holiday-depth16.png"), cv2.IMREAD_UNCHANGED)
    assert depth16.dtype == np.uint16 and depth16.shape == (400, 600)


def test_a_bad_setting_is_one_line_even_for_help():
    result = run_cli("predict", "--help", env={**os.environ, "MIDAS_THREADS": "two"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "ERROR configuration: MIDAS_THREADS must be a whole number, got 'two'"
    ]


def test_an_untrained_model_is_refused_as_the_service_refuses_it(
    random_model_path, photo_dir, tmp_path
):
    args = ("predict", photo_dir / "coffee.png", "--model", random_model_path, "--save", "npy")
    env = {key: value for key, value in os.environ.items() if key != "MIDAS_RANDOM_WEIGHTS"}
    refused = run_cli(*args, "--output-dir", tmp_path / "refused", env=env)
    assert refused.returncode == 2 and "MIDAS_RANDOM_WEIGHTS=1" in refused.stderr
    assert not (tmp_path / "refused").exists()
    allowed = run_cli(
        *args, "--output-dir", tmp_path / "allowed", env={**env, "MIDAS_RANDOM_WEIGHTS": "1"}
    )
    assert allowed.returncode == 0, allowed.stderr
    assert np.load(tmp_path / "allowed" / "coffee.npy").shape == (400, 600)
