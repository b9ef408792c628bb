"""Getting a MiDaS small checkpoint: a local file, the cache, or the official download.

Every checkpoint is checked structurally against the official key file (the release publishes
no checksum); a user may also pin its SHA-256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

log = logging.getLogger(__name__)

OFFICIAL_URL = "https://github.com/isl-org/MiDaS/releases/download/v2_1/midas_v21_small_256.pt"
CHECKPOINT_NAME = "midas_v21_small_256.pt"
KEY_FILE = "midas_v21_small_256.keys.tsv"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "midas-service"
_CHUNK = 1 << 20


class WeightsError(Exception):
    """A checkpoint could not be obtained or is not the official MiDaS small layout."""


@dataclass(frozen=True)
class Checkpoint:
    """A verified state dict and where it came from."""

    state_dict: dict[str, torch.Tensor]
    sha256: str
    source: str
    untrained: bool


def official_layout() -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(key, shape, dtype) of every entry of the official checkpoint, in file order."""
    text = resources.files(__package__).joinpath(KEY_FILE).read_text()
    layout = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
        layout.append((key, dims, getattr(torch, dtype)))
    return layout


def verify_layout(state_dict: dict[str, torch.Tensor], show: int = 5) -> None:
    """Raise WeightsError naming the first few missing, extra or mis-shaped entries."""
    expected = {key: (shape, dtype) for key, shape, dtype in official_layout()}
    missing = [k for k in expected if k not in state_dict]
    extra = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} {state_dict[k].dtype} (expected {shape} {dtype})"
        for k, (shape, dtype) in expected.items()
        if k in state_dict and (tuple(state_dict[k].shape) != shape or state_dict[k].dtype != dtype)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)):
        if items:
            more = f" (+{len(items) - show} more)" if len(items) > show else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:show])}{more}")
    if problems:
        raise WeightsError("not the MiDaS v2.1 small layout; " + "; ".join(problems))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a plain state dict or the ``{"model": state_dict}`` wrapper, tensors only."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return obj


def load_checkpoint(path: Path, expected_sha256: str | None = None) -> Checkpoint:
    """Read and verify a local checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    digest = sha256_of(path)
    if expected_sha256 and digest != expected_sha256.lower():
        raise WeightsError(f"{path} has SHA-256 {digest}, expected {expected_sha256}")
    state_dict = read_state_dict(path)
    verify_layout(state_dict)
    return Checkpoint(state_dict, digest, str(path), untrained=False)


@contextmanager
def _saving(action: str, path: Path) -> Iterator[None]:
    """Turn a local OSError (disk full, permission denied) into a WeightsError that says so."""
    try:
        yield
    except OSError as exc:
        raise WeightsError(
            f"could not {action} {path}: {exc.strerror or exc} (a local problem, not the "
            "network); free space or fix permissions there, or choose another cache folder "
            "with MIDAS_CACHE_DIR (--cache-dir)"
        ) from exc


def download(url: str, destination: Path, expected_sha256: str | None = None) -> Path:
    """Fetch ``url`` to ``destination`` via a temp file and an atomic rename."""
    from tqdm import tqdm

    with _saving("create the download file in", destination.parent):
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=".download-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            digest = hashlib.sha256()
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name) as bar:
                while chunk := response.read(_CHUNK):
                    with _saving("write", tmp):
                        out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise WeightsError(f"download of {url} truncated: {received} of {total} bytes")
            with _saving("write", tmp):
                out.flush()
                os.fsync(out.fileno())
        if expected_sha256 and digest.hexdigest() != expected_sha256.lower():
            raise WeightsError(
                f"download of {url} has SHA-256 {digest.hexdigest()}, expected {expected_sha256}"
            )
        verify_layout(read_state_dict(tmp))
        with _saving("move the download to", destination):
            os.replace(tmp, destination)
    except WeightsError:
        raise
    except (urllib.error.URLError, OSError) as exc:  # network: refused, unreachable, timeout
        raise WeightsError(_unreachable_message(url, destination, exc)) from exc
    except Exception as exc:  # IncompleteRead and friends from http.client
        raise WeightsError(f"download of {url} failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    log.info("saved %s", destination)
    return destination


def _unreachable_message(url: str, destination: Path, exc: Exception) -> str:
    reason = getattr(exc, "reason", exc)
    return (
        f"could not download the MiDaS weights from {url} ({reason}).\n"
        f"Download {CHECKPOINT_NAME} on a machine with network access and either pass it with "
        f"--weights PATH or copy it to {destination}.\n"
        "For a smoke run with meaningless depth, use --random-weights (MIDAS_RANDOM_WEIGHTS=1)."
    )


def obtain_checkpoint(
    weights: Path | None = None,
    expected_sha256: str | None = None,
    url: str = OFFICIAL_URL,
    directory: Path | None = None,
) -> Checkpoint:
    """The user's file if given, else the cached copy, else a fresh download into the cache."""
    if weights is not None:
        return load_checkpoint(weights, expected_sha256)
    cached = (directory or DEFAULT_CACHE_DIR).expanduser() / CHECKPOINT_NAME
    if not cached.is_file():
        download(url, cached, expected_sha256)
    checkpoint = load_checkpoint(cached, expected_sha256)
    return Checkpoint(checkpoint.state_dict, checkpoint.sha256, url, untrained=False)


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Official-layout weights drawn at random, BN statistics included, for tests and smoke runs.

    Conv weights keep PyTorch's default init; BN affine parameters and running statistics are
    drawn around identity so activations neither vanish nor explode through 30 blocks.
    """
    from midas_service.export.network import build_model

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
        # A positive bias before the last ReLU keeps the random depth map from being all zero.
        model.scratch.output_conv[4].bias.fill_(1.0)
    return model.state_dict()


def random_checkpoint(seed: int = 0) -> Checkpoint:
    state_dict = random_state_dict(seed)
    return Checkpoint(state_dict, "", f"random (seed {seed})", untrained=True)
