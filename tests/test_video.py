"""Video in, depth video out: timing, audio, rotation, depth numbers, flicker, memory, bad input.

Every clip is made here with PyAV (H.264 at 30000/1001 fps with an AAC track); results are
read back with ffprobe and PyAV, never with the code under test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from devtools.support import ROOT
from devtools.video_clips import (
    audio_packets,
    decoded_frames,
    ffprobe,
    flicker_per_scale,
    frame_times,
    make_audio_only,
    make_clip,
    make_empty_video,
    top_level_atoms,
)
from midas_service.config import VideoLimits
from midas_service.images import visualize
from midas_service.images.decode import decode_image
from midas_service.inference.engines import load_engine
from midas_service.inference.pipeline import DepthEstimator
from midas_service.video.convert import VideoOptions, convert_video
from midas_service.video.errors import VideoError
from midas_service.video.reader import fit_side, rotation_of
from midas_service.video.scale import RunningRange
from midas_service.video.writer import DEPTH_CODE_MAX, read_depth_range


@pytest.fixture(scope="module")
def estimator(model_path: Path) -> DepthEstimator:
    return DepthEstimator(load_engine(model_path, "onnxruntime", 2))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "ntsc.mp4", frames=16)


def run_video(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "midas_service", "video", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def video_stream(probe: dict) -> dict:
    return next(s for s in probe["streams"] if s["codec_type"] == "video")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name or "midas-depth" in p.name)


def test_cli_heatmap_plays_in_browsers_with_the_source_timing_and_audio(
    model_path: Path, clip: Path, tmp_path: Path
):
    out = tmp_path / "depth.mp4"
    result = run_video(clip, "-o", out, "--model", model_path, "--backend", "onnxruntime")
    assert result.returncode == 0, result.stderr
    assert "frames/s" in result.stderr and "Traceback" not in result.stderr
    probe, source = ffprobe(out), ffprobe(clip)
    video = video_stream(probe)
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
    assert (video["color_space"], video["color_range"]) == ("smpte170m", "tv")
    assert (video["width"], video["height"]) == (96, 64)
    assert int(video["nb_frames"]) == 16
    assert video["avg_frame_rate"] == video["r_frame_rate"] == "30000/1001"
    assert video["duration"] == video_stream(source)["duration"]
    assert video["time_base"] == video_stream(source)["time_base"]
    atoms = top_level_atoms(out)
    assert atoms.index("moov") < atoms.index("mdat")  # faststart: playable while downloading
    assert frame_times(out) == frame_times(clip)
    assert frame_times(out)[1] == Fraction(1001, 30000)
    sound = [s for s in probe["streams"] if s["codec_type"] == "audio"]
    assert len(sound) == 1 and sound[0]["codec_name"] == "aac"
    assert audio_packets(out) == audio_packets(clip)  # copied, byte for byte
    assert leftovers(tmp_path) == []


def test_an_untrained_model_is_refused_as_predict_refuses_it(
    random_model_path: Path, clip: Path, tmp_path: Path
):
    """The video command loads through the same policy as predict and the service."""
    env = {key: value for key, value in os.environ.items() if key != "MIDAS_RANDOM_WEIGHTS"}
    out = tmp_path / "depth.mp4"
    args = (clip, "-o", out, "--model", random_model_path, "--backend", "onnxruntime")
    refused = subprocess.run(
        [sys.executable, "-m", "midas_service", "video", *map(str, args)],
        capture_output=True, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "MIDAS_RANDOM_WEIGHTS=1" in refused.stderr and "Traceback" not in refused.stderr
    assert not out.exists() and leftovers(tmp_path) == []
    allowed = run_video(*args, env={"MIDAS_RANDOM_WEIGHTS": "1"})
    assert allowed.returncode == 0, allowed.stderr
    assert "random weights" in allowed.stderr
    assert int(video_stream(ffprobe(out))["nb_frames"]) == 16


def test_variable_frame_rate_keeps_every_timestamp(estimator, tmp_path: Path):
    src = make_clip(tmp_path / "vfr.mp4", frames=15, vfr_ms=(33, 50, 17, 100))
    out = tmp_path / "vfr-depth.mp4"
    report = convert_video(src, out, estimator, VideoOptions(scale="running"))
    times = frame_times(src)
    assert len(set(np.diff([float(t) for t in times]).round(4))) > 2  # really variable
    assert frame_times(out) == times
    assert video_stream(ffprobe(out))["duration"] == video_stream(ffprobe(src))["duration"]
    assert report.frames == 15 and report.passes == 1
    assert audio_packets(out) == audio_packets(src)


RAW_RGB = ("-f", "rawvideo", "-pix_fmt", "rgb24", "-")


@pytest.mark.parametrize("rotation", [-90, 180])
def test_rotation_metadata_is_honoured(estimator, tmp_path: Path, rotation: int):
    """The side-by-side's left half is the input frame: upright as FFmpeg's own player turns
    it (ffmpeg applies the display matrix when decoding to raw RGB)."""
    src = make_clip(tmp_path / "phone.mp4", frames=4, width=96, height=64, rotation=rotation)
    out = tmp_path / "phone-depth.mp4"
    convert_video(src, out, estimator, VideoOptions(output="side", scale="frame"))
    upright_h, upright_w = (96, 64) if rotation % 180 else (64, 96)
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(src), "-frames:v", "1", *RAW_RGB],
        capture_output=True,
        check=True,
    ).stdout
    expected = np.frombuffer(raw, np.uint8).reshape(upright_h, upright_w, 3).astype(int)
    first = decoded_frames(out)[0]
    assert first.shape == (upright_h, 2 * upright_w, 3)
    left = first[:, :upright_w].astype(int)
    error = np.abs(left - expected).mean()
    unturned = decoded_frames(src)[0]
    assert error < 6
    if unturned.shape == expected.shape:  # 180 degrees: the unturned frame is clearly worse
        assert np.abs(unturned.astype(int) - expected).mean() > 5 * error
    assert not (av.open(str(out)).streams.video[0].metadata.get("rotate"))


def test_depth16_frame_k_equals_predict_within_the_quantisation(
    estimator, clip: Path, tmp_path: Path
):
    out = tmp_path / "depth.mkv"
    report = convert_video(clip, out, estimator, VideoOptions(output="depth"))
    probe = video_stream(ffprobe(out))
    assert probe["codec_name"] == "ffv1" and probe["pix_fmt"] == "gray16le"
    with av.open(str(out)) as container:
        lo, hi = read_depth_range(container)
    codes = decoded_frames(out, "gray16le")
    assert len(codes) == 16 and codes[0].dtype == np.uint16
    assert (lo, hi) == report.depth_range
    step = (hi - lo) / DEPTH_CODE_MAX
    source_frames = decoded_frames(clip)
    for k in (0, 7, 15):
        # What /predict gives for this decoded frame: its pixels as a PNG upload.
        ok, png = cv2.imencode(".png", cv2.cvtColor(source_frames[k], cv2.COLOR_RGB2BGR))
        assert ok
        expected = estimator.predict(decode_image(png.tobytes(), 1 << 30, 1 << 30))
        recovered = lo + codes[k].astype(np.float64) * step
        assert np.abs(recovered - expected).max() <= step / 2 + 1e-6 * (hi - lo)
    assert min(c.min() for c in codes) == 0 and max(c.max() for c in codes) == DEPTH_CODE_MAX
    kept = zip(frame_times(out), frame_times(clip), strict=True)
    assert all(abs(a - b) <= Fraction(1, 1000) for a, b in kept)  # Matroska counts in ms


def test_clip_scale_flickers_less_than_per_frame(estimator, tmp_path: Path):
    src = make_clip(tmp_path / "enter.mp4", frames=20, width=128, height=96, moving=True)
    mask = np.zeros((96, 128), bool)
    mask[:, :40] = True  # the object never reaches the left 40 columns
    flicker = flicker_per_scale(src, mask, estimator, tmp_path)
    assert flicker["clip"] < flicker["frame"], flicker
    assert flicker["clip"] < 0.7 * flicker["frame"], flicker


@pytest.mark.parametrize(
    ("scale", "stop_at", "total"), [("clip", 5, 32), ("clip", 21, 32), ("running", 5, 16)]
)
def test_a_crash_leaves_nothing_under_the_final_name(
    estimator, clip: Path, tmp_path: Path, scale: str, stop_at: int, total: int
):
    """Interrupted while computing depth, and (clip scale, step 21) while writing pass 2."""
    spill = tmp_path / "spill"
    spill.mkdir()
    out = tmp_path / "depth.mp4"
    seen = []

    def progress(done: int, total: int | None) -> None:
        seen.append((done, total))
        if done == stop_at:
            assert any(".part" in p.name for p in tmp_path.iterdir()) == (
                scale != "clip" or done > 16
            )
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread

    options = VideoOptions(scale=scale, limits=VideoLimits(spill_dir=spill))
    with pytest.raises(KeyboardInterrupt):
        convert_video(clip, out, estimator, options, progress)
    assert seen[0] == (1, total)  # clip scale: every frame once per pass
    assert not out.exists() and leftovers(tmp_path) == [] and list(spill.iterdir()) == []


@pytest.mark.parametrize("output", ["heatmap", "side", "depth"])
def test_clip_scale_progress_counts_every_frame_once_per_pass(
    estimator, clip: Path, tmp_path: Path, output: str
):
    """16 frames, two passes: 32 steps, each reported against the total of 32, so the share
    done never passes 100 % (a job's ETA, (total - done) times the time per step, never
    goes negative)."""
    seen: list[tuple[int, int | None]] = []
    out = tmp_path / ("depth.mkv" if output == "depth" else "depth.mp4")
    options = VideoOptions(output=output, scale="clip", limits=VideoLimits(spill_dir=tmp_path))
    report = convert_video(clip, out, estimator, options, lambda d, t: seen.append((d, t)))
    assert report.frames == 16 and report.passes == 2
    assert seen == [(step, 32) for step in range(1, 33)]


def test_ctrl_c_on_the_command_leaves_nothing(model_path: Path, tmp_path: Path):
    # Long by construction: 20,000 frames are 20,000 runs of the network at 256x256 (seconds
    # per thousand on any CPU), while the signal follows the first spilled frame within one
    # poll. Tiny identical frames keep the clip itself cheap to make (about a second).
    frames = 20_000
    src = make_clip(
        tmp_path / "long.mp4", frames=frames, width=32, height=32, audio=False, preset="ultrafast"
    )
    spill = tmp_path / "spill"
    spill.mkdir()
    out = tmp_path / "depth.mp4"
    # A suite started in the background (`./scripts/test.sh &` in a script) hands its children
    # SIGINT ignored, and Python keeps an ignored SIGINT: the command gets the default, as a
    # terminal's Ctrl-C finds it.
    command = ["env", "--default-signal=INT", sys.executable, "-m", "midas_service", "video"]
    command += [str(src), "-o", str(out), "--model", str(model_path), "--backend", "onnxruntime"]
    env = {"MIDAS_VIDEO_SPILL_DIR": str(spill), "MIDAS_VIDEO_MAX_FRAMES": str(frames)}
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300  # a bound for a hang: model load included
        # Ready when the first depth frame has been spilled: the conversion is under way.
        while not any(p.stat().st_size > 0 for p in spill.iterdir()):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists() and leftovers(tmp_path) == [] and list(spill.iterdir()) == []


BAD_INPUTS = {
    "not a video": ({}, "not a video"),
    "still image": ({}, "still image"),
    "truncated": ({}, "cut short"),
    "truncated index": ({}, "cut short"),
    "zero frames": ({}, "no frames"),
    "audio only": ({}, "no video stream"),
    "too large": ({"MIDAS_VIDEO_MAX_SIDE": "64"}, "MIDAS_VIDEO_MAX_SIDE"),
    "too many frames": ({"MIDAS_VIDEO_MAX_FRAMES": "10"}, "MIDAS_VIDEO_MAX_FRAMES"),
    "too long": ({"MIDAS_VIDEO_MAX_SECONDS": "0.3"}, "MIDAS_VIDEO_MAX_SECONDS"),
}


def bad_input(case: str, folder: Path, clip: Path) -> Path:
    if case == "not a video":
        path = folder / "notes.mp4"
        path.write_text("certainly not a video\n" * 50)
    elif case == "still image":
        path = folder / "photo.png"
        cv2.imwrite(str(path), np.zeros((32, 32, 3), np.uint8))
    elif case == "truncated":  # faststart: the index survives, the frames do not
        path = folder / "cut.mp4"
        path.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    elif case == "truncated index":  # index at the end, cut off
        whole = make_clip(folder / "whole.mp4", frames=16, faststart=False)
        path = folder / "cut-index.mp4"
        path.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    elif case == "zero frames":
        path = make_empty_video(folder / "empty.mkv")
    elif case == "audio only":
        path = make_audio_only(folder / "sound.m4a")
    else:
        path = clip
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_no_output(
    model_path: Path, clip: Path, tmp_path: Path, case: str
):
    env, words = BAD_INPUTS[case]
    src = bad_input(case, tmp_path, clip)
    out = tmp_path / "out" / "depth.mp4"
    out.parent.mkdir()
    result = run_video(src, "-o", out, "--model", model_path, "--backend", "onnxruntime", env=env)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and words in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert list(out.parent.iterdir()) == []


def test_bad_input_raises_a_video_error_for_the_job_runner(estimator, tmp_path: Path):
    src = make_audio_only(tmp_path / "sound.m4a")
    with pytest.raises(VideoError, match="no video stream"):
        convert_video(src, tmp_path / "x.mp4", estimator)
    assert list(tmp_path.iterdir()) == [src]


def test_existing_output_and_wrong_suffix_are_refused(model_path, clip: Path, tmp_path: Path):
    out = tmp_path / "depth.mp4"
    out.write_bytes(b"keep me")
    result = run_video(clip, "-o", out, "--model", model_path)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert out.read_bytes() == b"keep me"
    result = run_video(clip, "-o", tmp_path / "d.mp4", "--model", model_path, "--output", "depth")
    assert result.returncode == 2 and ".mkv" in result.stderr
    result = run_video(clip, "-o", tmp_path / "d.mp4", "--model", model_path, "--scale", "dots")
    assert result.returncode == 2 and "dots" in result.stderr


MEMORY_SCRIPT = """
import resource, sys
from pathlib import Path
import numpy as np
from midas_service.inference.pipeline import DepthEstimator
from midas_service.video.convert import VideoOptions, convert_video
from midas_service.config import VideoLimits

class Engine:  # the network's cost is not what grows with a clip: a cheap stand-in
    backend, threads, metadata = "stub", 1, {}
    def infer(self, batch):
        return np.ascontiguousarray(batch[:, 0] * 0.1 + 1.0)

report = convert_video(Path(sys.argv[1]), Path(sys.argv[2]), DepthEstimator(Engine()),
                       VideoOptions(limits=VideoLimits(spill_dir=Path(sys.argv[3]))))
print(report.frames, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_memory_does_not_grow_with_the_clip(tmp_path: Path):
    """720p, clip scale (two passes, 3.7 MB of raw depth per frame spilled): the peak RSS of a
    300-frame clip stays within 150 MB of a 100-frame one."""
    peaks = {}
    for frames in (100, 300):
        src = make_clip(
            tmp_path / f"{frames}.mp4", frames, 1280, 720, moving=True, preset="ultrafast"
        )
        result = subprocess.run(
            # With -c the working directory is importable: the package as it is in ROOT.
            [sys.executable, "-c", MEMORY_SCRIPT, src, tmp_path / f"{frames}.out.mp4", tmp_path],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        count, peak_mb = map(int, result.stdout.split())
        assert count == frames
        peaks[frames] = peak_mb
    assert peaks[300] - peaks[100] < 150, peaks
    (tmp_path / "peaks.json").write_text(json.dumps(peaks))


def test_running_range_smooths_and_heatmap_range_clamps():
    running = RunningRange(momentum=0.5)
    assert running.update(np.array([[0.0, 10.0]], np.float32)) == (0.0, 10.0)
    assert running.update(np.array([[2.0, 30.0]], np.float32)) == (1.0, 20.0)
    depth = np.linspace(0, 4, 20, dtype=np.float32).reshape(4, 5)
    own = visualize.heatmap(depth, "gray")
    assert np.abs(visualize.heatmap_range(depth, 0, 4, "gray").astype(int) - own).max() <= 1
    clamped = visualize.heatmap_range(depth, 1, 2, "gray")[..., 0]
    assert clamped[depth <= 1].max() == 0 and clamped[depth >= 2].min() == 255
    assert visualize.heatmap_range(depth, 3, 3).shape == (4, 5, 3)  # no division by zero


def test_geometry_helpers():
    assert fit_side(1920, 1080, 640) == (640, 360)
    assert fit_side(1080, 1920, 500) == (282, 500)
    assert fit_side(96, 64, None) == (96, 64) and fit_side(96, 64, 200) == (96, 64)
    assert [rotation_of(a) for a in (None, 90, -90, 180, -180, 270)] == [0, 90, 270, 180, 180, 270]


def test_options_are_checked():
    with pytest.raises(ValueError, match="scale=clip"):
        VideoOptions(output="depth", scale="frame").validate()
    with pytest.raises(ValueError, match="max_side must be a whole number from 32 to 4096"):
        VideoOptions(max_side=5000).validate()
    with pytest.raises(ValueError, match="scale"):
        VideoOptions(scale="dots").validate()


PLAY_SCRIPT = """
const done = arguments[arguments.length - 1];
const video = document.createElement('video');
video.onerror = () => done({error: video.error && video.error.code});
video.onended = () => done({duration: video.duration, width: video.videoWidth,
  height: video.videoHeight, frames: video.getVideoPlaybackQuality().totalVideoFrames,
  audioBytes: video.webkitAudioDecodedByteCount});
video.src = arguments[0];
document.body.appendChild(video);
video.play().catch(error => done({error: String(error)}));
"""


def test_chromium_plays_the_depth_video_with_its_sound(estimator, clip: Path, tmp_path: Path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    from tests.test_browser import CHROMEDRIVER, CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed")
    out = tmp_path / "depth.mp4"
    convert_video(clip, out, estimator, VideoOptions(output="side"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"):
        options.add_argument(flag)
    options.add_argument("--autoplay-policy=no-user-gesture-required")
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        driver.set_script_timeout(60)
        driver.get(tmp_path.as_uri())
        played = driver.execute_async_script(PLAY_SCRIPT, out.as_uri())
    finally:
        driver.quit()
    assert "error" not in played, played
    assert (played["width"], played["height"]) == (192, 64)
    source_duration = float(video_stream(ffprobe(clip))["duration"])
    assert played["duration"] == pytest.approx(source_duration, abs=0.002)  # Chromium: ms
    assert played["frames"] > 0 and played["audioBytes"] > 0  # pictures and sound decoded
