"""Export the eager network to TorchScript and ONNX, with metadata, then prove the files match it.

Export-side only (needs timm through :mod:`midas_service.export.network`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from midas_service.export.network import MidasSmall, build_model
from midas_service.export.packed import packed_model
from midas_service.export.weights import Checkpoint
from midas_service.inference.engines import METADATA_FILE, load_engine
from midas_service.inference.preprocess import INPUT_RULE

log = logging.getLogger(__name__)

TRACE_SIZE = (256, 256)
# Packed weights take the layout oneDNN picks for this input (height, width): a 4:3 landscape
# photo, the commonest shape. Other sizes give the same numbers (CHECK_SIZES); the few
# convolutions that want another layout at a size get it when serving (packed_layouts.py).
PACK_SIZE = (192, 256)
# (height, width) pairs the exported files are checked at: square, landscape, portrait, wide.
CHECK_SIZES = ((256, 256), (192, 256), (256, 192), (160, 256))
CHECK_TOLERANCE = 1e-4  # of the eager map's value range
ONNX_OPSET = 17


class ExportCheckFailed(RuntimeError):
    """An exported file does not reproduce the eager network."""


def build_from_checkpoint(checkpoint: Checkpoint) -> MidasSmall:
    model = build_model()
    model.load_state_dict(checkpoint.state_dict, strict=True)
    return model


def metadata_for(checkpoint: Checkpoint) -> dict[str, object]:
    return {
        "model": "MiDaS v2.1 small (midas_v21_small_256)",
        "weights_sha256": checkpoint.sha256,
        "weights_source": checkpoint.source,
        "untrained": checkpoint.untrained,
        "torch_version": torch.__version__,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "input_rule": INPUT_RULE,
    }


def unpadded_stride2_convs(model: MidasSmall) -> MidasSmall:
    """Replace timm's pad-then-convolve stride-2 layers by plain convolutions, in place.

    timm's ``Conv2dSame`` copies the activation into a zero-filled, padded tensor before each of
    the encoder's five stride-2 convolutions; those copies cost ~9 % of the traced network
    (docs/performance.md). On an even-sized input, TensorFlow "same" padding of a k x k
    stride-2 convolution (k odd) is (k-3)/2 zeros before and (k-1)/2 after. A (k+1) x (k+1)
    kernel whose first row and column are zero, with (k-1)/2 zeros on both sides, reads exactly
    the same pixels with the same weights. Every stride-2 layer sees an even size, because the
    network only takes sides that are multiples of 32; the export's check proves the equality.
    """
    for parent in list(model.modules()):
        for name, conv in list(parent.named_children()):
            if type(conv).__name__ != "Conv2dSame":
                continue
            size = conv.kernel_size[0]
            if conv.stride != (2, 2) or conv.dilation != (1, 1) or conv.kernel_size != (size,) * 2:
                raise ValueError(f"unexpected padded convolution {name}: {conv}")
            plain = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                size + 1,
                stride=2,
                padding=(size - 1) // 2,
                groups=conv.groups,
                bias=conv.bias is not None,
            )
            with torch.no_grad():
                plain.weight.zero_()
                plain.weight[:, :, 1:, 1:] = conv.weight
                if conv.bias is not None:
                    plain.bias.copy_(conv.bias)
            setattr(parent, name, plain)
    return model


def export_torchscript(model: MidasSmall, output: Path, metadata: dict[str, object]) -> None:
    """Pack the convolutions at PACK_SIZE, trace, and save with the metadata inside.

    The stride-2 layers lose their padding copies first (:func:`unpadded_stride2_convs`); then
    every convolution takes its batch norm, activation or residual add and keeps its weights in
    oneDNN's layout (:mod:`midas_service.export.packed`). Every weight lives in a packed
    convolution, so there is nothing left to freeze.
    """
    example = torch.zeros(1, 3, *PACK_SIZE)
    packed = packed_model(unpadded_stride2_convs(model), example)
    with torch.no_grad(), warnings.catch_warnings():
        # timm's "same" padding reads sizes as Python ints; constant for multiples of 32.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated"
        traced = torch.jit.trace(packed, example, check_trace=False)
    torch.jit.save(traced, str(output), _extra_files={METADATA_FILE: json.dumps(metadata)})


def export_onnx(model: MidasSmall, output: Path, metadata: dict[str, object]) -> None:
    """ONNX (opset 17) with dynamic height and width; metadata as model properties."""
    import onnx

    example = torch.zeros(1, 3, *TRACE_SIZE)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.to(memory_format=torch.contiguous_format),
            (example,),
            str(output),
            opset_version=ONNX_OPSET,
            dynamo=False,
            input_names=["image"],
            output_names=["depth"],
            dynamic_axes={"image": {2: "height", 3: "width"}, "depth": {1: "height", 2: "width"}},
        )
    proto = onnx.load(str(output))
    onnx.helper.set_model_props(proto, {k: json.dumps(v) for k, v in metadata.items()})
    onnx.save(proto, str(output))


def check_export(model: MidasSmall, path: Path, backend: str, seed: int = 0) -> float:
    """Worst |file - eager| over CHECK_SIZES as a fraction of the eager range; raise if too big."""
    engine = load_engine(path, backend)
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for height, width in CHECK_SIZES:
        batch = torch.randn(1, 3, height, width, generator=generator)
        with torch.no_grad():
            expected = model(batch).numpy()
        got = engine.infer(batch.numpy())
        span = float(expected.max() - expected.min()) or 1.0
        error = float(np.abs(got - expected).max()) / span
        log.info("%s check at %dx%d: max diff %.2e of range", backend, width, height, error)
        worst = max(worst, error)
        if got.shape != expected.shape or error > CHECK_TOLERANCE:
            raise ExportCheckFailed(
                f"{path} ({backend}) differs from the eager model at {width}x{height}: "
                f"shape {got.shape} vs {expected.shape}, max diff {error:.2e} of range "
                f"(allowed {CHECK_TOLERANCE:.0e})"
            )
    return worst


def export_all(checkpoint: Checkpoint, output: Path, onnx_output: Path | None) -> dict[str, object]:
    """Write and self-check the TorchScript file (and the ONNX file unless None)."""
    metadata = metadata_for(checkpoint)
    output.parent.mkdir(parents=True, exist_ok=True)
    export_torchscript(build_from_checkpoint(checkpoint), output, metadata)
    worst = check_export(build_from_checkpoint(checkpoint), output, "torchscript")
    log.info("wrote %s (max diff %.2e of range)", output, worst)
    if onnx_output is not None:
        export_onnx(build_from_checkpoint(checkpoint), onnx_output, metadata)
        worst = check_export(build_from_checkpoint(checkpoint), onnx_output, "onnxruntime")
        log.info("wrote %s (max diff %.2e of range)", onnx_output, worst)
    return metadata
