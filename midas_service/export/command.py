"""Export MiDaS v2.1 small to TorchScript (and ONNX) with a self-check against the eager model.

midas-depth export --output models/midas_small.pt                      # official weights
midas-depth export --weights midas_v21_small_256.pt --output models/midas_small.pt
midas-depth export --random-weights --output models/midas_small.pt     # untrained!
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from midas_service.config import ConfigError, ExportSettings
from midas_service.export.exporter import ExportCheckFailed, export_all
from midas_service.export.weights import (
    OFFICIAL_URL,
    WeightsError,
    obtain_checkpoint,
    random_checkpoint,
)

log = logging.getLogger("midas_service.export")


def parse_args(
    argv: list[str] | None = None, prog: str | None = None, settings: ExportSettings | None = None
) -> argparse.Namespace:
    settings = settings or ExportSettings()
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--weights", type=Path, help="local checkpoint (state dict or {'model': ...})"
    )
    source.add_argument(
        "--random-weights",
        action="store_true",
        help="random weights of the official layout: meaningless depth, for tests and smoke runs",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-weights (default 0)")
    parser.add_argument(
        "--sha256",
        default=settings.weights_sha256 or None,
        help="expected SHA-256 of the checkpoint (default: MIDAS_WEIGHTS_SHA256)",
    )
    parser.add_argument(
        "--url", default=OFFICIAL_URL, help="download address (default: official release)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=settings.cache_dir,
        help="download cache (default: MIDAS_CACHE_DIR, else ~/.cache/midas-service)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help="TorchScript file to write; must end in .pt (the .onnx file is written beside it)",
    )
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX file beside --output")
    args = parser.parse_args(argv)
    if args.output.suffix != ".pt":
        # The service finds model.pt and model.onnx side by side (engine.model_file).
        parser.error(
            f"--output must end in .pt, got {str(args.output)!r}: the service opens "
            "<name>.pt (TorchScript) and <name>.onnx beside it"
        )
    return args


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = ExportSettings.from_env()
    except ConfigError as exc:
        log.error("configuration: %s", exc)
        return 2
    args = parse_args(argv, prog, settings)
    try:
        if args.random_weights:
            log.warning("random weights: the exported model gives MEANINGLESS depth")
            checkpoint = random_checkpoint(args.seed)
        else:
            checkpoint = obtain_checkpoint(args.weights, args.sha256, args.url, args.cache_dir)
        onnx_output = None if args.no_onnx else args.output.with_suffix(".onnx")
        export_all(checkpoint, args.output, onnx_output)
    except (WeightsError, ExportCheckFailed) as exc:
        log.error("%s", exc)
        return 1
    return 0
