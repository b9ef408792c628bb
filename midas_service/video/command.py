"""``python -m midas_service video IN -o OUT``: the command-line face of ``convert_video``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from midas_service import options
from midas_service.config import Settings
from midas_service.engine_options import add_engine_arguments, command_settings
from midas_service.inference.pipeline import NonFiniteDepth
from midas_service.loading import REFUSALS, load_model
from midas_service.video.errors import VideoError
from midas_service.video.options import VideoOptions

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
            "audio copied as is; depth is lossless 16-bit FFV1 in Matroska (.mkv) with the "
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
    options.add_arguments(video, options.video_accepted(settings.video.max_side))
    video.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_engine_arguments(video, settings)


def check_paths(args: argparse.Namespace, output: str) -> None:
    if not args.input.is_file():
        raise VideoError(f"{args.input}: no such file")
    if args.out.exists() and not args.overwrite:
        raise VideoError(f"{args.out} exists already; pass --overwrite")
    wanted = options.VIDEO_SUFFIX[output]
    if args.out.suffix.lower() != wanted:
        raise VideoError(f"--output {output} writes {wanted} files: name OUT *{wanted}")
    if not args.out.parent.is_dir():
        raise VideoError(f"the output folder {args.out.parent} does not exist")


def run_video(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from midas_service.video.convert import convert_video  # PyAV: only for this command
    from midas_service.video.reader import VideoReader

    try:
        given = options.given_arguments(args, options.VIDEO)
        chosen = VideoOptions(
            **options.video_options(given, settings.colormap), limits=settings.video
        )
        check_paths(args, chosen.output)
        VideoReader(args.input, chosen.limits, chosen.max_side).close()  # fail before loading
        estimator = load_model(command_settings(args, settings)).estimator
    except (VideoError, *REFUSALS) as exc:  # BadParameter is a ValueError
        log.error("%s", exc)
        return EXIT_BAD_INPUT
    passes = "2 passes: depth, then colours" if chosen.scale == "clip" else "1 pass"
    with tqdm(unit="frame", disable=None, desc=passes, dynamic_ncols=True) as bar:

        def progress(done: int, total: int | None) -> None:
            if total != bar.total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        try:
            report = convert_video(args.input, args.out, estimator, chosen, progress)
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
