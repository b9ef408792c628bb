"""How far a reduced-precision depth map is from the fp32 one, in the terms MiDaS is judged by.

MiDaS predicts relative inverse depth whose scale and shift are arbitrary per image, and its
own evaluation aligns a prediction to the reference by least-squares scale and shift first.
So besides the raw |d| this reports the mean |d| after that alignment (the figure the bf16 start
gate uses) and the Spearman rank correlation (does the nearer-farther order survive?). Every
|d| is a share of the fp32 map's value range.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from midas_service import assets
from midas_service.inference.pipeline import DepthEstimator
from midas_service.inference.precision import PrecisionRefused

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Deviation:
    """One map against its reference, or the worst over several (see :func:`worst`)."""

    max_abs: float  # max |d| / range
    mean_abs: float  # mean |d| / range
    aligned_mean_abs: float  # mean |d| / range after least-squares scale and shift
    spearman: float  # rank correlation of the two maps
    photos: int = 1

    def as_dict(self) -> dict[str, float | int]:
        return {
            key: (round(value, 6) if isinstance(value, float) else value)
            for key, value in asdict(self).items()
        }


def value_range(reference: np.ndarray) -> float:
    span = float(reference.max() - reference.min())
    return span if span > 0 else 1.0  # a constant map: |d| in its own units


def align_scale_shift(got: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``s * got + t`` with the s, t that minimise the squared distance to ``reference``."""
    x = got.astype(np.float64).ravel()
    y = reference.astype(np.float64).ravel()
    design = np.stack([x, np.ones_like(x)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, y, rcond=None)
    return (scale * got.astype(np.float64) + shift).reshape(reference.shape)


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of the flattened values, ties sharing their average rank."""
    flat = values.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_values = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], flat.size]
    average = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    result = np.empty(flat.size, dtype=np.float64)
    result[order] = np.repeat(average, ends - starts)
    return result


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the ranks; 1.0 when both maps are constant, 0.0 when one is."""
    rank_a, rank_b = ranks(a), ranks(b)
    rank_a -= rank_a.mean()
    rank_b -= rank_b.mean()
    norm = float(np.sqrt((rank_a**2).sum() * (rank_b**2).sum()))
    if norm == 0.0:
        return 1.0 if np.ptp(a) == 0 and np.ptp(b) == 0 else 0.0
    return float((rank_a * rank_b).sum() / norm)


def compare(got: np.ndarray, reference: np.ndarray) -> Deviation:
    """``got`` (reduced precision) against ``reference`` (fp32), same shape."""
    if got.shape != reference.shape:
        raise ValueError(f"shapes differ: {got.shape} vs {reference.shape}")
    span = value_range(reference)
    diff = np.abs(got.astype(np.float64) - reference)
    aligned = np.abs(align_scale_shift(got, reference) - reference)
    return Deviation(
        max_abs=float(diff.max()) / span,
        mean_abs=float(diff.mean()) / span,
        aligned_mean_abs=float(aligned.mean()) / span,
        spearman=spearman(got, reference),
    )


def worst(deviations: Iterable[Deviation]) -> Deviation:
    """The worst of each figure over several photos."""
    items = list(deviations)
    if not items:
        raise ValueError("no photos to measure on")
    return Deviation(
        max_abs=max(d.max_abs for d in items),
        mean_abs=max(d.mean_abs for d in items),
        aligned_mean_abs=max(d.aligned_mean_abs for d in items),
        spearman=min(d.spearman for d in items),
        photos=sum(d.photos for d in items),
    )


def photos_in(folder: Path | None = None) -> list[Path]:
    """The photos of ``folder`` (default: the page's example photos, package data), by name."""
    folder = folder if folder is not None else assets.example_photos()
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def measure(
    reduced: DepthEstimator, reference: DepthEstimator, images: Iterable[np.ndarray]
) -> list[Deviation]:
    """One :class:`Deviation` per RGB image, through the full pipeline of both estimators."""
    return [compare(reduced.predict(rgb), reference.predict(rgb)) for rgb in images]


def enforce_bound(deviation: Deviation, bound: float, precision: str) -> None:
    """Refuse to serve ``precision`` when its aligned mean deviation exceeds ``bound``."""
    if deviation.aligned_mean_abs > bound:
        raise PrecisionRefused(
            f"MIDAS_PRECISION={precision} is too far from fp32 with this model: aligned mean "
            f"|d| {deviation.aligned_mean_abs:.2%} of range over {deviation.photos} example "
            f"photos exceeds MIDAS_MAX_DEVIATION={bound:g} ({bound:.2%}); serve fp32 instead"
        )
