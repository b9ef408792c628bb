"""The command-line options that choose the engine, shared by ``predict`` and ``video``.

Their defaults come from the service's settings (MIDAS_BACKEND, MIDAS_PRECISION,
MIDAS_THREADS), so a command runs the model as the service would unless told otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses

from midas_service.config import Settings
from midas_service.inference.engines import BACKENDS, DEFAULT_BACKEND
from midas_service.inference.precision import DEFAULT_PRECISION, PRECISIONS


def add_engine_arguments(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=settings.backend,
        help=f"default: MIDAS_BACKEND, else {DEFAULT_BACKEND}",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=settings.precision,
        help=f"default: MIDAS_PRECISION, else {DEFAULT_PRECISION} (bf16: openvino on bf16 CPUs)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=settings.threads,
        help="intra-op threads (default: MIDAS_THREADS, else all usable cores)",
    )


def command_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """The service's settings with this command's model and engine choices: a command loads
    its model through ``loading.load_model`` like the service, alone on the machine (no core
    sharing) and without a warm-up (there is no readiness to wait for)."""
    return dataclasses.replace(
        settings,
        model_path=args.model,
        backend=args.backend,
        precision=args.precision,
        threads=args.threads,
        share_cores="off",
        warmup_runs=0,
    )
