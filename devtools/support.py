"""Test photos, model exports and small HTTP helpers, for the tests and the scripts."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
EXPORT = (sys.executable, "-m", "midas_service", "export")  # run with cwd=ROOT


def export_model(output: Path, *source: str, quiet: bool = False) -> Path:
    """Run the real export command (``source``: ``--weights PATH`` or ``--random-weights``)."""
    subprocess.run(
        [
            *EXPORT,
            *source,
            "--output",
            str(output),
        ],
        check=True,
        cwd=ROOT,
        stderr=subprocess.DEVNULL if quiet else None,
    )
    return output


def photo_640x480_jpeg() -> bytes:
    """A real photo (scikit-image's chelsea, 451x300) resized to 640x480, as JPEG bytes."""
    from skimage import data

    rgb = cv2.resize(data.chelsea(), (640, 480), interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buffer.tobytes()


def post_jpeg(url: str, data: bytes, verify: str | bool = True, **params: str):
    """POST ``data`` as an image/jpeg body to ``url``/predict; redirects are not followed."""
    import requests

    return requests.post(
        f"{url}/predict",
        data=data,
        params=params,
        headers={"Content-Type": "image/jpeg"},
        timeout=30,
        verify=verify,
        allow_redirects=False,
    )


def metric(text: str, pattern: str) -> float:
    """Sum of the Prometheus samples in ``text`` whose name and labels match ``pattern``."""
    return sum(float(v) for v in re.findall(rf"^{pattern} ([\d.e+]+)$", text, flags=re.M))


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it (every figure is named with it)."""
    names = (
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    )
    return next(names, platform.processor())
