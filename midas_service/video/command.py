"""``python -m midas_service video IN -o OUT``: the command-line face of ``convert_video``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from midas_service.config import Settings
from midas_service.engine_options import add_engine_arguments
from midas_service.images import visualize
from midas_service.inference.engines import MissingMetadata, ModelFileError, load_engine
from midas_service.inference.pipeline import DepthEstimator, NonFiniteDepth
from midas_service.inference.precision import PrecisionRefused
from midas_service.video.errors import VideoError
from midas_service.video.limits import LimitConfigError, VideoLimits
from midas_service.video.options import OUTPUT_SUFFIX, OUTPUTS, SCALES, VideoOptions

log = logging.getLogger("midas_service.video")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def add_parser(commands: Any, settings: Settings) -> None:
    """Add the ``video`` subcommand to the CLI's subparsers."""
    video = commands.add_parser(
        "video",
        help="depth video for a video file",
        description=(
            "Write the depth video of IN to OUT. heatmap and side are H.264 (yuv420p) MP4 with "
            "the index up front, playable in browsers, with the source's timestamps and its "
            "audio copied as is; depth16 is lossless 16-bit FFV1 in Matroska (.mkv) with the "
            "quantisation range in its metadata. --scale clip (default) colours every frame "
            "with one range for the whole clip (two passes, raw depth spilled to "
            "MIDAS_VIDEO_SPILL_DIR); running follows a smoothed range (one pass); frame uses "
            "each frame's own min-max (flickers). Limits: MIDAS_VIDEO_MAX_SIDE, "
            "MIDAS_VIDEO_MAX_FRAMES, MIDAS_VIDEO_MAX_SECONDS. A bad input is one error line and "
            "exit code 2; nothing is left under OUT when the run fails or is interrupted."
        ),
    )
    video.add_argument("input", type=Path, metavar="IN", help="video file")
    video.add_argument("-o", "--out", type=Path, required=True, metavar="OUT", help="output file")
    video.add_argument(
        "--model", type=Path, required=True, help="exported model (.pt; .onnx beside it)"
    )
    video.add_argument(
        "--output", choices=OUTPUTS, default="heatmap", help="what to write (default: heatmap)"
    )
    video.add_argument(
        "--colormap",
        choices=sorted(visualize.COLORMAPS),
        default=visualize.DEFAULT_COLORMAP,
        help="heatmap colours (default: inferno; near is bright)",
    )
    video.add_argument(
        "--scale", choices=SCALES, default="clip", help="colour range (default: clip)"
    )
    video.add_argument(
        "--max-side", type=int, help="downscale frames so their longer side is at most N pixels"
    )
    video.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_engine_arguments(video, settings)


def check_paths(args: argparse.Namespace) -> None:
    if not args.input.is_file():
        raise VideoError(f"{args.input}: no such file")
    if args.out.exists() and not args.overwrite:
        raise VideoError(f"{args.out} exists already; pass --overwrite")
    wanted = OUTPUT_SUFFIX[args.output]
    if args.out.suffix.lower() != wanted:
        raise VideoError(f"--output {args.output} writes {wanted} files: name OUT *{wanted}")
    if not args.out.parent.is_dir():
        raise VideoError(f"the output folder {args.out.parent} does not exist")


def run_video(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from midas_service.video.convert import convert_video  # PyAV: only for this command
    from midas_service.video.reader import VideoReader

    try:
        check_paths(args)
        options = VideoOptions(
            output=args.output,
            colormap=args.colormap,
            scale=args.scale,
            max_side=args.max_side,
            limits=VideoLimits.from_env(),
        )
        options.validate()
        VideoReader(args.input, options.limits, options.max_side).close()  # fail before loading
        engine = load_engine(
            args.model,
            args.backend,
            args.threads,
            allow_no_metadata=settings.allow_no_metadata,
            precision=args.precision,
            cache_dir=settings.openvino_cache_dir,
        )
    except (
        LimitConfigError,
        ValueError,
        MissingMetadata,
        ModelFileError,
        OSError,
        PrecisionRefused,
    ) as exc:
        log.error("%s", exc)  # VideoError is a ValueError
        return EXIT_BAD_INPUT
    estimator = DepthEstimator(engine)
    if engine.metadata.get("untrained"):
        log.warning("this model has random weights: its depth maps are meaningless")
    passes = "2 passes: depth, then colours" if args.scale == "clip" else "1 pass"
    with tqdm(unit="frame", disable=None, desc=passes, dynamic_ncols=True) as bar:

        def progress(done: int, total: int | None) -> None:
            if total != bar.total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        try:
            report = convert_video(args.input, args.out, estimator, options, progress)
        except KeyboardInterrupt:
            bar.close()
            log.error("interrupted; nothing was written to %s", args.out)
            return EXIT_INTERRUPTED
        except (VideoError, NonFiniteDepth, OSError) as exc:
            bar.close()
            log.error("%s", exc)
            return EXIT_BAD_INPUT
    log.info(
        "%s: %d frames %dx%d at %s fps, audio %s, %.2f frames/s (decode %.1f s, infer %.1f s, "
        "encode %.1f s)",
        args.out,
        report.frames,
        report.width,
        report.height,
        report.rate,
        report.audio,
        report.fps,
        report.stage_s["decode"],
        report.stage_s["infer"],
        report.stage_s["encode"],
    )
    return 0
