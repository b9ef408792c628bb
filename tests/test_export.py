"""The exported files: metadata inside, and numbers equal to the eager model at many sizes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from midas_service.export.exporter import (
    CHECK_TOLERANCE,
    ExportCheckFailed,
    check_export,
    unpadded_stride2_convs,
)
from midas_service.export.network import build_model
from midas_service.export.weights import random_state_dict, read_state_dict, sha256_of
from midas_service.inference.engines import BACKENDS, load_engine
from tests.conftest import range_error


@pytest.fixture(scope="module")
def eager(weights_file):
    model = build_model()
    model.load_state_dict(read_state_dict(weights_file), strict=True)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_metadata_travels_inside_the_file(model_path, weights_file, backend):
    metadata = load_engine(model_path, backend).metadata
    assert metadata["weights_sha256"] == sha256_of(weights_file)
    assert metadata["untrained"] is False
    assert metadata["torch_version"] == torch.__version__
    assert {"weights_source", "exported_at", "input_rule"} <= set(metadata)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("height", "width"), [(256, 256), (192, 256), (256, 192), (160, 256), (32, 256), (256, 64)]
)
def test_traced_at_one_size_is_right_at_every_multiple_of_32(
    model_path, eager, backend, height, width
):
    engine = load_engine(model_path, backend)
    batch = torch.randn(
        1, 3, height, width, generator=torch.Generator().manual_seed(height + width)
    )
    with torch.no_grad():
        expected = eager(batch).numpy()
    got = engine.infer(batch.numpy())
    assert got.shape == expected.shape
    assert range_error(got, expected) <= CHECK_TOLERANCE


def test_stride2_layers_without_padding_copies_compute_the_same(eager, model_path):
    import copy

    unpadded = unpadded_stride2_convs(copy.deepcopy(eager))
    assert not any(type(m).__name__ == "Conv2dSame" for m in unpadded.modules())
    for height, width in [(256, 256), (192, 256), (32, 64), (96, 32)]:
        batch = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(width))
        with torch.no_grad():
            assert range_error(unpadded(batch).numpy(), eager(batch).numpy()) <= 1e-5
    # The served file has the plain convolutions: no padding op copies an activation. Each of
    # the 97 convolutions it runs is packed, with its batch norm and activation folded in.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        graph = str(torch.jit.load(str(model_path)).inlined_graph)
    assert "aten::pad" not in graph and "constant_pad_nd" not in graph
    assert graph.count("mkldnn::_convolution_pointwise") == 97
    for unfused in ("aten::_convolution", "batch_norm", "hardtanh", "clamp"):
        assert unfused not in graph


def test_self_check_fails_loudly_for_a_different_model(model_path):
    other = build_model()
    other.load_state_dict(random_state_dict(seed=99))
    with pytest.raises(ExportCheckFailed, match="differs from the eager model"):
        check_export(other, model_path, "torchscript")


def test_backends_agree_on_a_real_photo(model_path, photo_dir):
    from midas_service.images.decode import read_image_file
    from midas_service.inference.pipeline import DepthEstimator

    rgb = read_image_file(photo_dir / "coffee.png")
    reference, *others = [DepthEstimator(load_engine(model_path, b)).predict(rgb) for b in BACKENDS]
    assert others and np.isfinite(reference).all()
    for backend, depth in zip(BACKENDS[1:], others, strict=True):
        assert range_error(depth, reference) <= 1e-4, backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_file_without_export_metadata_is_refused_unless_allowed(bare_model_path, backend):
    from midas_service.inference.engines import MissingMetadata

    with pytest.raises(MissingMetadata, match=r"no export metadata.*MIDAS_ALLOW_NO_METADATA=1"):
        load_engine(bare_model_path, backend)
    engine = load_engine(bare_model_path, backend, allow_no_metadata=True)
    assert "untrained" not in engine.metadata
    assert engine.infer(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 64, 64)


@pytest.mark.parametrize("name", ["m.ts", "m", "m.onnx"])
def test_export_refuses_an_output_name_it_would_not_honour(tmp_path, name):
    import subprocess

    from devtools.support import EXPORT, ROOT

    result = subprocess.run(
        [
            *EXPORT,
            "--random-weights",
            "--output",
            str(tmp_path / name),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "--output must end in .pt" in result.stderr and name in result.stderr
    assert list(tmp_path.iterdir()) == []
