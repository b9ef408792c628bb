import subprocess

from devtools.support import EXPORT, ROOT
from midas_service.inference.engines import BACKENDS, load_engine


def test_random_weights_export_is_marked_untrained(random_model_path):
    for backend in BACKENDS:
        assert load_engine(random_model_path, backend).metadata["untrained"] is True


def test_no_onnx_skips_the_onnx_file(tmp_path):
    output = tmp_path / "random.pt"
    result = subprocess.run(
        [
            *EXPORT,
            "--random-weights",
            "--no-onnx",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert "MEANINGLESS" in result.stderr
    assert output.is_file() and not output.with_suffix(".onnx").exists()


def test_missing_weights_file_is_one_clear_line(tmp_path):
    result = subprocess.run(
        [
            *EXPORT,
            "--weights",
            str(tmp_path / "absent.pt"),
            "--output",
            str(tmp_path / "m.pt"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "weights file not found" in result.stderr and "Traceback" not in result.stderr
