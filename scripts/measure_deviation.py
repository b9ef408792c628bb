"""How far a reduced-precision engine is from fp32 on photos: the figures the bf16 gate uses.

    python -m scripts.measure_deviation --model models/midas_small.pt            # openvino bf16
    python -m scripts.measure_deviation --model my.pt --photos my-photos/ --precision bf16
    python -m scripts.measure_deviation --model m.pt --backend openvino --precision fp32 \\
        --reference-backend torchscript                                  # backends agree?
    python -m scripts.measure_deviation --model m.int8.pt --backend onnxruntime \\
        --precision fp32 --reference-model m.pt                          # int8 file vs fp32

Your own weights: export them first (midas-depth export --weights FILE), then pass
that model. Photos: every image in --photos (default: the page's bundled examples), through
the full service pipeline at each photo's own size. For each photo and for the worst of them:
max and mean |d| as a share of the fp32 map's range, the mean after least-squares scale and
shift alignment (MiDaS's evaluation is scale-and-shift invariant; the start gate uses it),
and the Spearman rank correlation. Exit 0 within --max-deviation, 3 above it, 2 when the
engine cannot run here (for instance bf16 on a CPU without bf16 units).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from midas_service.images.decode import ImageError, read_image_file
from midas_service.inference import deviation
from midas_service.inference.engines import (
    BACKENDS,
    MissingMetadata,
    ModelFileError,
    load_engine,
)
from midas_service.inference.pipeline import DepthEstimator
from midas_service.inference.precision import PRECISIONS, PrecisionRefused

log = logging.getLogger("measure_deviation")
HEADER = f"{'photo':<28} {'max |d|':>9} {'mean |d|':>9} {'aligned':>9} {'spearman':>9}"


def share(value: float) -> str:
    """A share of range: percent where that reads well, else the fraction (fp32 vs fp32)."""
    return f"{value:.3%}" if value >= 1e-4 else f"{value:.1e}"


def row(name: str, d: deviation.Deviation) -> str:
    figures = (share(d.max_abs), share(d.mean_abs), share(d.aligned_mean_abs))
    return f"{name:<28} " + " ".join(f"{f:>9}" for f in figures) + f" {d.spearman:>9.6f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="exported model (.pt path)")
    parser.add_argument("--backend", choices=BACKENDS, default="openvino")
    parser.add_argument("--precision", choices=PRECISIONS, default="bf16")
    parser.add_argument("--reference-model", type=Path, help="fp32 model (default: --model)")
    parser.add_argument("--reference-backend", choices=BACKENDS, help="default: --backend")
    parser.add_argument(
        "--photos", type=Path, default=None, help="photo folder (default: the example photos)"
    )
    parser.add_argument("--threads", type=int, default=None, help="default: all usable cores")
    parser.add_argument(
        "--max-deviation",
        type=float,
        default=float(os.environ.get("MIDAS_MAX_DEVIATION") or 0.02),
        help="bound on the worst aligned mean |d| (default: MIDAS_MAX_DEVIATION, else 0.02)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    allow_no_metadata = os.environ.get("MIDAS_ALLOW_NO_METADATA", "") in ("1", "true", "yes")
    try:
        photos = deviation.photos_in(args.photos)
        if not photos:
            raise FileNotFoundError(f"no photos in {args.photos}")
        reduced = load_engine(
            args.model,
            args.backend,
            args.threads,
            allow_no_metadata=allow_no_metadata,
            precision=args.precision,
        )
        reference = load_engine(
            args.reference_model or args.model,
            args.reference_backend or args.backend,
            args.threads,
            allow_no_metadata=allow_no_metadata,
        )
        images = [read_image_file(path) for path in photos]
    except (PrecisionRefused, MissingMetadata, ModelFileError, ImageError, OSError) as exc:
        log.error("%s", exc)
        return 2
    measured = deviation.measure(DepthEstimator(reduced), DepthEstimator(reference), images)
    worst = deviation.worst(measured)
    served = f"{args.backend} {args.precision}"
    against = f"{args.reference_backend or args.backend} fp32"
    print(f"{served} against {against}; |d| as a share of the fp32 map's range")
    print(HEADER)
    for path, d in zip(photos, measured, strict=True):
        print(row(path.name, d))
    print(row(f"worst of {worst.photos}", worst))
    if args.json:
        figures = {path.name: d.as_dict() for path, d in zip(photos, measured, strict=True)}
        report = {"engine": served, "reference": against, "photos": figures}
        args.json.write_text(json.dumps({**report, "worst": worst.as_dict()}, indent=2))
    try:
        deviation.enforce_bound(worst, args.max_deviation, args.precision)
    except PrecisionRefused as exc:
        log.error("%s", exc)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
