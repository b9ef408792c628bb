"""``midas-depth`` (or ``python -m midas_service``): ``predict`` writes depth maps for files and
folders, as the service answers them; ``export`` writes the model files; ``video`` writes depth
videos (midas_service/video/command.py)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from midas_service import options
from midas_service.answer import decode, render, with_camera
from midas_service.config import ConfigError, Settings
from midas_service.engine_options import add_engine_arguments, command_settings
from midas_service.errors import BadParameter
from midas_service.images.decode import ImageError, read_header
from midas_service.images.outputs import KINDS, SAVES, RenderOptions
from midas_service.inference.pipeline import NonFiniteDepth
from midas_service.loading import REFUSALS, load_model
from midas_service.video import command as video_command

log = logging.getLogger("midas_service.cli")

FILE_MAX_PIXELS = 1 << 28  # a file on disk: no upload limit, OpenCV's own pixel guard
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
# What this command writes: a folder scan skips files with these endings (its own outputs).
OWN_ENDINGS = tuple(
    save.ending
    for save in SAVES.values()
    if save.ending.startswith("-") and Path(save.ending).suffix in IMAGE_EXTENSIONS
)


def is_own_output(path: Path) -> bool:
    return path.name.lower().endswith(OWN_ENDINGS)


def find_images(inputs: Iterable[Path]) -> Iterator[tuple[Path, Path]]:
    """(image, its path under the output folder without suffix) for every input image.

    Files are taken as given (whatever their extension) and named by their stem; folders are
    searched recursively for image extensions and their sub-folders mirrored, skipping this
    command's own outputs (``OWN_ENDINGS``), so a rerun does not take its heatmaps as photos.
    """
    for item in inputs:
        if item.is_dir():
            found = sorted(
                p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            own = [path for path in found if is_own_output(path)]
            if own:
                log.info("skipping %d outputs of this command in %s (%s)", len(own), item, own[0])
            for path in found:
                if not is_own_output(path):
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
    inputs = {image.resolve() for image, _ in images}
    overwritten = [
        f"{target} (from {image})"
        for image, targets in plan.items()
        for target in targets
        if target.resolve() in inputs
    ]
    if overwritten:
        raise PlanError(
            "an output would replace an input photo: "
            + "; ".join(overwritten[:3])
            + ". Choose another --output-dir (this is refused even with --overwrite)."
        )
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
    rgb: np.ndarray,
    depth: np.ndarray,
    kinds: list[str],
    colormap: str,
    view_options: RenderOptions | None = None,
    photo: bytes = b"",
) -> dict[str, bytes]:
    """The bytes of each ``--save`` kind, rendered as /predict renders that output and format.

    ``view_options`` carries the 3D parameters; ``photo`` (the file's bytes) gives the 3D
    outputs the camera of its EXIF when ``fov`` is not set.
    """
    base = view_options or RenderOptions("heatmap", "png", colormap)
    height, width = depth.shape
    outputs = {}
    for kind in kinds:
        options = replace(base, output=SAVES[kind].kind, format=SAVES[kind].format)
        options = with_camera(photo, options, width, height) if photo else options
        outputs[kind] = render(rgb, depth, options).body
    return outputs


def wants_photo_bytes(kinds: list[str]) -> bool:
    return any(KINDS[SAVES[kind].kind].geometry for kind in kinds)


def parse_save(value: str) -> list[str]:
    kinds = list(dict.fromkeys(kind.strip() for kind in value.split(",") if kind.strip()))
    unknown = [kind for kind in kinds if kind not in SAVES]
    if unknown or not kinds:
        given = ", ".join(unknown) or "(none)"
        choices = ", ".join(SAVES)
        raise argparse.ArgumentTypeError(f"unknown output {given}; choose from {choices}")
    return kinds


def build_parser(settings: Settings | None = None) -> argparse.ArgumentParser:
    """The command line; defaults come from the environment's ``settings``."""
    settings = settings or Settings()
    parser = argparse.ArgumentParser(
        prog="midas-depth",
        description="Relative depth maps with MiDaS v2.1 small, on the CPU.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    # Parsed by the export side itself (main), so predict never imports it.
    commands.add_parser(
        "export",
        help="export the model to TorchScript and ONNX (needs requirements-export.txt)",
        add_help=False,
    )
    predict = commands.add_parser(
        "predict",
        help="depth maps for image files and folders",
        description=(
            "Write depth outputs for each INPUT: files are read whatever their extension, folders "
            "are searched recursively for " + ", ".join(sorted(IMAGE_EXTENSIONS)) + " (skipping "
            "this command's own " + ", ".join(OWN_ENDINGS) + " files). Outputs "
            "are named after the input's stem: <stem>-depth.png (heatmap), <stem>-depth16.png "
            "(png16: min-max 16-bit), <stem>.npy (float32), <stem>.pfm, <stem>-side.png (input | "
            "heatmap), <stem>.ply (point cloud), <stem>.glb (textured mesh; see docs/3d.md for "
            "--fov, --near, --far and --grid-side); a folder's sub-folders are mirrored under "
            "--output-dir. Before any work, "
            "the run stops (exit code 2) if two inputs would write the same file, if an output "
            "would replace an input (even with --overwrite), or if an output exists already and "
            "--overwrite is not given. A model with random weights is refused unless "
            "MIDAS_RANDOM_WEIGHTS=1. Unreadable files, and images for which "
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
    options.add_arguments(predict, (options.COLORMAP, *options.VIEW))
    add_engine_arguments(predict, settings)
    video_command.add_parser(commands, settings)
    from midas_service.jobs.worker import add_parser as add_worker_parser

    add_worker_parser(commands)
    return parser


def refuse_existing(plan: dict[Path, list[Path]]) -> None:
    existing = [target for targets in plan.values() for target in targets if target.exists()]
    if existing:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        shown = ", ".join(str(path) for path in existing[:3])
        raise PlanError(f"{len(existing)} outputs exist already: {shown}{more}; pass --overwrite")


def view_options(args: argparse.Namespace, default_colormap: str) -> RenderOptions:
    """The colormap and 3D options of the command line, checked as /predict checks them."""
    given = options.given_arguments(args, (options.COLORMAP, *options.VIEW))
    three_d = {"output": "mesh", "format": "glb"}  # the view options' own rules
    settled = options.photo_options({**given, **three_d}, default_colormap)
    return RenderOptions(**{**settled, "output": "heatmap", "format": "png"})


def run_predict(args: argparse.Namespace, settings: Settings | None = None) -> int:
    from tqdm import tqdm

    settings = settings or Settings()

    try:
        chosen = view_options(args, settings.colormap)
    except BadParameter as exc:
        log.error("%s", exc)
        return 2
    with_bytes = wants_photo_bytes(args.save)
    images = list(find_images(args.inputs))
    try:
        plan = plan_outputs(images, args.output_dir, args.save)
        if not args.overwrite:
            refuse_existing(plan)
    except PlanError as exc:
        log.error("%s", exc)
        return 2
    try:
        estimator = load_model(command_settings(args, settings)).estimator
    except REFUSALS as exc:
        log.error("%s", exc)
        return 2
    failures: list[tuple[Path, str]] = []
    elapsed = 0.0
    done = 0
    for path, targets in tqdm(plan.items(), unit="image", disable=None):
        start = time.perf_counter()
        try:
            data = path.read_bytes()
            rgb = decode(data, read_header(data, max(len(data), 1), FILE_MAX_PIXELS))
            photo = data if with_bytes else b""
            depth = estimator.predict(rgb)
        except (ImageError, OSError, NonFiniteDepth) as exc:
            failures.append((path, str(exc)))
            log.error("skipped %s: %s", path, exc)
            continue
        for target, data in zip(
            targets,
            outputs_for(rgb, depth, args.save, chosen.colormap, chosen, photo).values(),
            strict=True,
        ):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        elapsed += time.perf_counter() - start
        done += 1
    mean_ms = 1000 * elapsed / done if done else 0.0
    log.info(
        "%d images done, %d failed, mean %.1f ms/image (%s %s), outputs in %s",
        done,
        len(failures),
        mean_ms,
        args.backend,
        args.precision,
        args.output_dir,
    )
    for path, reason in failures:
        log.error("failed: %s (%s)", path, reason)
    return 1 if failures or not plan else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        from midas_service.export.command import main as export

        return export(argv[1:], prog="midas-depth export")
    cv2.setNumThreads(1)
    try:  # the service's settings and checks: a bad MIDAS_* value is one line, even for --help
        settings = Settings.from_env()
    except ConfigError as exc:
        log.error("configuration: %s", exc)
        return 2
    args = build_parser(settings).parse_args(argv)
    if args.command == "video":
        return video_command.run_video(args, settings)
    if args.command == "worker":
        from midas_service.jobs.worker import run_worker

        return run_worker(args, settings)
    return run_predict(args, settings)


if __name__ == "__main__":
    sys.exit(main())
