"""The service's numbers against an independent reimplementation of the reference MiDaS pipeline.

The reference below is written from the shared notes, the way upstream MiDaS runs: float64
image, OpenCV bicubic resize, ImageNet normalisation, the eager network, torch bicubic upsample.
It shares nothing with the service's preprocessing, engine or postprocessing.
"""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from devtools.support import ROOT
from midas_service.export.network import build_model
from midas_service.export.weights import read_state_dict
from tests.conftest import PHOTO_NAMES, range_error


def reference_size(height: int, width: int) -> tuple[int, int]:
    scale = min(256 / height, 256 / width)
    sides = []
    for side in (height * scale, width * scale):
        fitted = np.round(side / 32) * 32
        if fitted > 256:
            fitted = np.floor(side / 32) * 32
        sides.append(max(int(fitted), 32))
    return sides[0], sides[1]


def reference_depth(model: torch.nn.Module, path: str) -> np.ndarray:
    rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB) / 255.0  # float64, like upstream
    height, width = rgb.shape[:2]
    net_h, net_w = reference_size(height, width)
    resized = cv2.resize(rgb, (net_w, net_h), interpolation=cv2.INTER_CUBIC)
    normalised = (resized - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    batch = torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1))).float()[None]
    with torch.no_grad():
        prediction = model(batch)
        depth = F.interpolate(
            prediction.unsqueeze(1), size=(height, width), mode="bicubic", align_corners=False
        )
    return depth.squeeze().numpy()


@pytest.fixture(scope="module")
def predictions(model_path, photo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "midas_service",
            "predict",
            str(photo_dir),
            "--model",
            str(model_path),
            "--output-dir",
            str(out),
            "--save",
            "npy",
        ],
        check=True,
        cwd=ROOT,
    )
    return out


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_predict_matches_the_reference_pipeline(name, weights_file, photo_dir, predictions):
    model = build_model()
    model.load_state_dict(read_state_dict(weights_file), strict=True)
    expected = reference_depth(model, str(photo_dir / f"{name}.png"))
    got = np.load(predictions / f"{name}.npy")
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert range_error(got, expected) <= 1e-3


def test_http_depth_matches_the_reference_pipeline(backend_client, weights_file, photo_dir):
    import io

    model = build_model()
    model.load_state_dict(read_state_dict(weights_file), strict=True)
    path = photo_dir / "astronaut.png"
    expected = reference_depth(model, str(path))
    response = backend_client.post(
        "/predict?output=depth", data=path.read_bytes(), content_type="image/png"
    )
    got = np.load(io.BytesIO(response.data))
    assert range_error(got, expected) <= 1e-3
