"""EXPERIMENTAL, off by default: static int8 quantization of the exported ONNX model.

    python -m scripts.quantize_int8 --model models/midas_small.pt [--calibration photos/]

Writes ``<model>.int8.onnx`` (Conv layers in int8, QDQ format, per-channel weights, calibrated
on real photos), then prints model-only speed against fp32 and the deviation of the full depth
pipeline on real photos, as a fraction of each map's range. Exits 3 (after the report) when
that deviation is above the bound (``--max-deviation``, default 1 % of range). Serve it only if
it is within the bound on photos like yours:

    MIDAS_MODEL_PATH=models/midas_small.int8.pt MIDAS_BACKEND=onnxruntime gunicorn ...

(the ONNX Runtime backend opens the ``.onnx`` file beside the given path).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from midas_service.images.decode import read_image_file
from midas_service.inference.engines import load_engine, model_file
from midas_service.inference.pipeline import DepthEstimator
from midas_service.inference.preprocess import to_network_input

log = logging.getLogger("quantize_int8")
ACCEPTABLE_DEVIATION = 0.01  # of the fp32 map's range
SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def sample_photos() -> list[np.ndarray]:
    """scikit-image's real photos as float RGB in [0, 1] (a dev dependency)."""
    from skimage import data

    return [getattr(data, name)().astype(np.float32) / 255.0 for name in SAMPLE_PHOTOS]


def folder_photos(folder: Path) -> list[np.ndarray]:
    suffixes = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)
    return [read_image_file(p) for p in paths]


def quantize(fp32_onnx: Path, int8_onnx: Path, photos: list[np.ndarray]) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = (to_network_input(p) for p in photos)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {"image": batch}

    # Only Conv: quantizing the Add/Resize nodes broke the dynamic-shape graph in ORT 1.32.
    quantize_static(
        str(fp32_onnx),
        str(int8_onnx),
        Photos(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv"],
    )
    copy_metadata(fp32_onnx, int8_onnx)


def copy_metadata(source: Path, target: Path) -> None:
    """Keep the export metadata (weights hash, untrained flag...) and say it is quantized."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(source)).metadata_props}
    props["quantization"] = json.dumps("int8 static, QDQ, Conv only, per-channel weights")
    quantized = onnx.load(str(target))
    onnx.helper.set_model_props(quantized, props)
    onnx.save(quantized, str(target))


def p50_ms(estimator: DepthEstimator, batch: np.ndarray, runs: int = 30) -> float:
    for _ in range(3):
        estimator.engine.infer(batch)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        estimator.engine.infer(batch)
        samples.append((time.perf_counter() - start) * 1000)
    return float(np.median(samples))


def compare(
    model: Path, int8_model: Path, photos: list[np.ndarray], bound: float = ACCEPTABLE_DEVIATION
) -> dict[str, object]:
    fp32 = DepthEstimator(load_engine(model, "onnxruntime"))
    int8 = DepthEstimator(load_engine(int8_model, "onnxruntime"))
    deviations = []
    for photo in photos:
        expected, got = fp32.predict(photo), int8.predict(photo)
        span = float(expected.max() - expected.min()) or 1.0
        deviations.append(float(np.abs(got - expected).max()) / span)
    batch = to_network_input(np.full((480, 640, 3), 0.5, dtype=np.float32))
    return {
        "fp32_p50_ms": p50_ms(fp32, batch),
        "int8_p50_ms": p50_ms(int8, batch),
        "max_deviation_of_range": max(deviations),
        "deviations": deviations,
        "bound": bound,
        "acceptable": max(deviations) <= bound,
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="exported model (.pt/.onnx)")
    parser.add_argument("--calibration", type=Path, help="folder of photos (default: samples)")
    parser.add_argument(
        "--max-deviation",
        type=float,
        default=ACCEPTABLE_DEVIATION,
        help="largest acceptable deviation, as a fraction of the range (default 0.01); "
        "above it the exit code is 3",
    )
    args = parser.parse_args(argv)
    photos = folder_photos(args.calibration) if args.calibration else sample_photos()
    if not photos:
        log.error("no photos to calibrate with")
        return 1
    int8_model = args.model.with_suffix("").with_suffix(".int8.pt")
    quantize(model_file(args.model, "onnxruntime"), model_file(int8_model, "onnxruntime"), photos)
    result = compare(args.model, int8_model, photos, args.max_deviation)
    log.info("wrote %s", model_file(int8_model, "onnxruntime"))
    print(json.dumps(result, indent=2))
    verdict = "within" if result["acceptable"] else "OUTSIDE"
    log.info(
        "int8 %.1f ms vs fp32 %.1f ms (256x192); deviation %.2f%% of range: %s the %g%% bound",
        result["int8_p50_ms"],
        result["fp32_p50_ms"],
        100 * result["max_deviation_of_range"],
        verdict,
        100 * args.max_deviation,
    )
    return 0 if result["acceptable"] else 3


if __name__ == "__main__":
    sys.exit(main())
