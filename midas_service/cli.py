"""``python -m midas_service predict``: depth maps for files and folders, like the service."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from midas_service.answer import render
from midas_service.images import visualize
from midas_service.images.decode import ImageError, read_image_file
from midas_service.images.outputs import SAVES, RenderOptions
from midas_service.inference.engines import BACKENDS, DEFAULT_BACKEND, MissingMetadata, load_engine
from midas_service.inference.pipeline import DepthEstimator, NonFiniteDepth

log = logging.getLogger("midas_service.cli")

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def find_images(inputs: Iterable[Path]) -> Iterator[tuple[Path, Path]]:
    """(image, its path under the output folder without suffix) for every input image.

    Files are taken as given (whatever their extension) and named by their stem; folders are
    searched recursively for image extensions and their sub-folders mirrored.
    """
    for item in inputs:
        if item.is_dir():
            for path in sorted(
                p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            ):
                yield path, path.relative_to(item).with_suffix("")
        else:
            yield item, Path(item.stem)


class PlanError(Exception):
    """The outputs of a run would collide or replace existing files; nothing was done."""


def plan_outputs(
    images: list[tuple[Path, Path]], output_dir: Path, kinds: list[str]
) -> dict[Path, list[Path]]:
    """Each image -> the files it will write; raise PlanError if two images would share one."""
    plan: dict[Path, list[Path]] = {}
    writer: dict[Path, Path] = {}
    clashes = []
    for image, name in images:
        targets = [output_dir / name.parent / f"{name.name}{SAVES[k].ending}" for k in kinds]
        for target in targets:
            if target in writer:
                clashes.append(f"{target} (from {writer[target]} and {image})")
            writer[target] = image
        plan[image] = targets
    if clashes:
        more = f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
        raise PlanError(
            "two inputs would write the same output: "
            + "; ".join(clashes[:3])
            + more
            + ". Give their folder instead of the files (sub-folders are mirrored) or rename one."
        )
    return plan


def outputs_for(
    rgb: np.ndarray, depth: np.ndarray, kinds: list[str], colormap: str
) -> dict[str, bytes]:
    """The bytes of each ``--save`` kind, rendered as /predict renders that output and format."""
    return {
        kind: render(rgb, depth, RenderOptions(SAVES[kind].kind, SAVES[kind].format, colormap)).body
        for kind in kinds
    }


def parse_save(value: str) -> list[str]:
    kinds = list(dict.fromkeys(kind.strip() for kind in value.split(",") if kind.strip()))
    unknown = [kind for kind in kinds if kind not in SAVES]
    if unknown or not kinds:
        given = ", ".join(unknown) or "(none)"
        choices = ", ".join(SAVES)
        raise argparse.ArgumentTypeError(f"unknown output {given}; choose from {choices}")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m midas_service",
        description="Relative depth maps with MiDaS v2.1 small, on the CPU.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict",
        help="depth maps for image files and folders",
        description=(
            "Write depth outputs for each INPUT: files are read whatever their extension, folders "
            "are searched recursively for " + ", ".join(sorted(IMAGE_EXTENSIONS)) + ". Outputs "
            "are named after the input's stem: <stem>-depth.png (heatmap), <stem>.png (png16: "
            "min-max 16-bit), <stem>.npy (float32), <stem>.pfm, <stem>-side.png (input | "
            "heatmap); a folder's sub-folders are mirrored under --output-dir. Before any work, "
            "the run stops (exit code 2) if two inputs would write the same file, or if an output "
            "exists already and --overwrite is not given. Unreadable files, and images for which "
            "the model gives non-finite depth, are reported and skipped; the exit code is then 1."
        ),
    )
    predict.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="image file or folder"
    )
    predict.add_argument(
        "--model", type=Path, required=True, help="exported model (.pt; .onnx beside it)"
    )
    predict.add_argument("--output-dir", type=Path, required=True, help="folder for the outputs")
    predict.add_argument(
        "--overwrite", action="store_true", help="replace output files that exist already"
    )
    predict.add_argument(
        "--save",
        type=parse_save,
        default=["heatmap"],
        help=f"comma-separated outputs from {','.join(SAVES)} (default: heatmap)",
    )
    predict.add_argument(
        "--colormap",
        choices=sorted(visualize.COLORMAPS),
        default=visualize.DEFAULT_COLORMAP,
        help="heatmap colours (default: inferno; near is bright)",
    )
    predict.add_argument(
        "--backend", choices=BACKENDS, default=DEFAULT_BACKEND, help=f"default: {DEFAULT_BACKEND}"
    )
    predict.add_argument(
        "--threads",
        type=int,
        default=int(os.environ["MIDAS_THREADS"]) if os.environ.get("MIDAS_THREADS") else None,
        help="intra-op threads (default: MIDAS_THREADS, else all usable cores)",
    )
    from midas_service.jobs.worker import add_parser as add_worker_parser

    add_worker_parser(commands)
    return parser


def refuse_existing(plan: dict[Path, list[Path]]) -> None:
    existing = [target for targets in plan.values() for target in targets if target.exists()]
    if existing:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        shown = ", ".join(str(path) for path in existing[:3])
        raise PlanError(f"{len(existing)} outputs exist already: {shown}{more}; pass --overwrite")


def run_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    images = list(find_images(args.inputs))
    try:
        plan = plan_outputs(images, args.output_dir, args.save)
        if not args.overwrite:
            refuse_existing(plan)
    except PlanError as exc:
        log.error("%s", exc)
        return 2
    allow_no_metadata = os.environ.get("MIDAS_ALLOW_NO_METADATA", "") in ("1", "true", "yes")
    try:
        engine = load_engine(
            args.model, args.backend, args.threads, allow_no_metadata=allow_no_metadata
        )
    except (MissingMetadata, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    estimator = DepthEstimator(engine)
    if estimator.engine.metadata.get("untrained"):
        log.warning("this model has random weights: its depth maps are meaningless")
    failures: list[tuple[Path, str]] = []
    elapsed = 0.0
    done = 0
    for path, targets in tqdm(plan.items(), unit="image", disable=None):
        start = time.perf_counter()
        try:
            rgb = read_image_file(path)
            depth = estimator.predict(rgb)
        except (ImageError, OSError, NonFiniteDepth) as exc:
            failures.append((path, str(exc)))
            log.error("skipped %s: %s", path, exc)
            continue
        for target, data in zip(
            targets, outputs_for(rgb, depth, args.save, args.colormap).values(), strict=True
        ):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        elapsed += time.perf_counter() - start
        done += 1
    mean_ms = 1000 * elapsed / done if done else 0.0
    log.info(
        "%d images done, %d failed, mean %.1f ms/image, outputs in %s",
        done,
        len(failures),
        mean_ms,
        args.output_dir,
    )
    for path, reason in failures:
        log.error("failed: %s (%s)", path, reason)
    return 1 if failures or not plan else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    cv2.setNumThreads(1)
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        from midas_service.jobs.worker import run_worker

        return run_worker(args)
    return run_predict(args)


if __name__ == "__main__":
    sys.exit(main())
