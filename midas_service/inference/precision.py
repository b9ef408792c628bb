"""Which numeric precision a backend serves, and whether this CPU can serve it fast.

fp32 gives the reference numbers everywhere. bf16 is only worth serving on a CPU with bf16
units (AVX512-BF16 or AMX-BF16); elsewhere a bf16 request would run an emulated or silently
fp32 path, so the service refuses to start instead. Only OpenVINO offers bf16: TorchScript's
bf16 could not be shown here to be at least as fast as OpenVINO's (the build machine has no
bf16 units), and ONNX Runtime's CPU provider has no bf16 kernels for this network.

Nothing here imports a runtime: the Gunicorn master calls :func:`check_precision` before any
fork. OpenVINO's own view of the CPU is checked again when its engine loads.
"""

from __future__ import annotations

from pathlib import Path

PRECISIONS = ("fp32", "bf16")
DEFAULT_PRECISION = "fp32"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# backend -> the precisions it serves
OFFERED: dict[str, tuple[str, ...]] = {
    "torchscript": ("fp32",),
    "onnxruntime": ("fp32",),
    "openvino": ("fp32", "bf16"),
}
WHY_NOT: dict[tuple[str, str], str] = {
    ("torchscript", "bf16"): (
        "TorchScript bf16 is not offered: it has not been shown to be as fast as OpenVINO's "
        "bf16; use MIDAS_BACKEND=openvino with MIDAS_PRECISION=bf16"
    ),
    ("onnxruntime", "bf16"): (
        "ONNX Runtime bf16 is not offered (its CPU provider has no bf16 kernels for this "
        "network); use MIDAS_BACKEND=openvino with MIDAS_PRECISION=bf16"
    ),
}


class PrecisionRefused(Exception):
    """The requested precision cannot be served fast (or at all) here; the message says why."""


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The feature flags of the first CPU in ``cpuinfo`` (empty if unreadable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def has_bf16_units(flags: frozenset[str]) -> bool:
    return any(flag in flags for flag in BF16_FLAGS)


def check_precision(backend: str, precision: str, flags: frozenset[str] | None = None) -> None:
    """Raise ``PrecisionRefused`` unless ``backend`` serves ``precision`` fast on this CPU."""
    if precision not in PRECISIONS:
        raise PrecisionRefused(
            f"MIDAS_PRECISION must be one of {', '.join(PRECISIONS)}, got {precision!r}"
        )
    if precision not in OFFERED.get(backend, (DEFAULT_PRECISION,)):
        raise PrecisionRefused(
            WHY_NOT.get((backend, precision), f"{backend} does not offer {precision}")
        )
    if precision == "bf16":
        flags = cpu_flags() if flags is None else flags
        if not has_bf16_units(flags):
            raise PrecisionRefused(no_bf16_units_message())


def no_bf16_units_message(detail: str = "") -> str:
    seen = f" ({detail})" if detail else ""
    return (
        f"MIDAS_PRECISION=bf16 needs a CPU with bf16 units ({' or '.join(BF16_FLAGS)} in "
        f"/proc/cpuinfo){seen}; this CPU has none, so bf16 would be slow: "
        "use MIDAS_PRECISION=fp32"
    )
