"""How TorchScript workers' OpenMP threads wait, when several workers share the cores.

PyPI's torch uses GNU OpenMP, whose idle threads spin: with 2 workers x 2 threads on 2 cores the
spinning threads of one worker starve the other. ``OMP_WAIT_POLICY=PASSIVE`` fixes throughput
but slows a lone request (docs/performance.md has the numbers). Intel OpenMP
(PyPI ``intel-openmp``) preloaded with ``KMP_BLOCKTIME=1`` (spin for 1 ms, then sleep) keeps
both: a lone request as fast as spinning, concurrent requests without starvation. The preload
must be in the environment of the process that starts Gunicorn (``scripts/serve.sh``, the
image's ``ENV``, ``devtools/servers.py``); this module computes that environment and reports which
runtime a worker really got.

    eval "$(python -m midas_service.inference.openmp)"   # prints export lines for a shell
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

INTEL_LIBRARY = "libiomp5.so"
BLOCKTIME_MS = "1"


def intel_library(prefix: str = sys.prefix) -> Path:
    """Where the intel-openmp wheel puts its library: ``<prefix>/lib/libiomp5.so``."""
    return Path(prefix) / "lib" / INTEL_LIBRARY


def recommended_environment(prefix: str = sys.prefix) -> dict[str, str]:
    """Variables for the process that starts Gunicorn: Intel OpenMP if installed, else PASSIVE."""
    library = intel_library(prefix)
    if library.is_file():
        preload = os.environ.get("LD_PRELOAD", "")
        if INTEL_LIBRARY not in preload:
            preload = f"{library} {preload}".strip()
        return {"LD_PRELOAD": preload, "KMP_BLOCKTIME": BLOCKTIME_MS}
    return {"OMP_WAIT_POLICY": "PASSIVE"}


def intel_preloaded(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    return INTEL_LIBRARY in environ.get("LD_PRELOAD", "")


def active_runtime() -> str:
    """The OpenMP runtime mapped into this process, with its waiting setting, for /readyz."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    if INTEL_LIBRARY in maps:
        return f"intel (KMP_BLOCKTIME={os.environ.get('KMP_BLOCKTIME', 'default')})"
    if "libgomp" in maps:
        return f"gnu (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')})"
    return "none loaded"


def main() -> None:
    for name, value in recommended_environment().items():
        sys.stdout.write(f"export {name}='{value}'\n")


if __name__ == "__main__":
    main()
