"""Shared fixtures: random official-layout weights saved to a file, and a model exported from it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from devtools.support import export_model, photo_640x480_jpeg
from midas_service.inference.engines import BACKENDS, DEFAULT_BACKEND

PHOTO_NAMES = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights of exactly the official layout, as a plain state-dict file."""
    import torch

    from midas_service.export.weights import random_state_dict

    path = tmp_path_factory.mktemp("weights") / "midas_v21_small_256.pt"
    torch.save(random_state_dict(seed=1), path)
    return path


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory, weights_file: Path) -> Path:
    """TorchScript + ONNX exported by the real script from ``weights_file``."""
    output = tmp_path_factory.mktemp("model") / "midas_small.pt"
    return export_model(output, "--weights", str(weights_file))


@pytest.fixture(scope="session")
def random_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model exported with --random-weights: its metadata says untrained."""
    output = tmp_path_factory.mktemp("random-model") / "random.pt"
    return export_model(output, "--random-weights")


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-image's real photos, written losslessly as PNG."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTO_NAMES:
        rgb = getattr(data, name)()
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="session")
def jpeg_640x480() -> bytes:
    return photo_640x480_jpeg()


def range_error(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| as a fraction of the expected map's value range."""
    span = float(expected.max() - expected.min())
    return float(np.abs(got.astype(np.float64) - expected).max()) / span


def load_app(model_path: Path, backend: str):
    """The Flask app from the factory with the random-weights model loaded (no Gunicorn)."""
    from midas_service.config import Settings
    from midas_service.web import create_app

    # No result cache: these tests exercise the pipeline (tests/test_cache.py tests the cache).
    settings = Settings(
        model_path=model_path,
        backend=backend,
        allow_untrained=True,
        warmup_runs=1,
        max_upload_mb=2,
        cache_mb=0,
    )
    app = create_app(settings, load_model=False)
    app.config["TESTING"] = True
    app.extensions["midas_runtime"].load()
    assert app.extensions["midas_runtime"].ready
    return app


@pytest.fixture(scope="session")
def app(model_path: Path):
    """The app on the default backend: for tests of parsing, refusals, documents and headers,
    whose answers do not depend on which engine computes."""
    return load_app(model_path, DEFAULT_BACKEND)


@pytest.fixture(scope="session", params=BACKENDS)
def loaded_app(request: pytest.FixtureRequest, model_path: Path, app):
    """The app once per backend: for tests that compare what the engine computed."""
    return app if request.param == DEFAULT_BACKEND else load_app(model_path, request.param)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def backend_client(loaded_app):
    return loaded_app.test_client()


@pytest.fixture(scope="session")
def bare_model_path(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> Path:
    """``model_path``'s networks saved again without the export's metadata (both backends)."""
    import onnx
    import torch

    bare = tmp_path_factory.mktemp("bare-model") / "bare.pt"
    torch.jit.save(torch.jit.load(str(model_path)), str(bare))  # no _extra_files
    proto = onnx.load(str(model_path.with_suffix(".onnx")))
    del proto.metadata_props[:]
    onnx.save(proto, str(bare.with_suffix(".onnx")))
    return bare


@pytest.fixture(scope="session")
def broken_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TorchScript model (with export metadata) whose depth has one infinite value."""
    import json

    import torch

    class InfiniteCorner(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            depth = x[:, 0] * 0.0 + 1.0
            depth[:, 0, 0] = float("inf")
            return depth

    path = tmp_path_factory.mktemp("broken-model") / "broken.pt"
    metadata = {"untrained": False, "weights_sha256": "0" * 64, "model": "broken on purpose"}
    torch.jit.save(
        torch.jit.script(InfiniteCorner()),
        str(path),
        _extra_files={"midas.json": json.dumps(metadata)},
    )
    return path


# The job tests' shared fixtures: one folder, one Redis and one job store per test module.
@pytest.fixture(scope="module")
def workdir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])


@pytest.fixture(scope="module")
def redis_url(workdir: Path):
    from devtools.servers import redis_server

    with redis_server(workdir) as url:
        yield url


@pytest.fixture(scope="module")
def jobs_dir(workdir: Path) -> Path:
    return workdir / "store"
