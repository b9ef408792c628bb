"""Giving the heap's free pages back to the system after an inference at a new input shape.

Each network input shape (15 of them) at each thread count leaves buffers of new sizes free in
the C allocator, which keeps them for reuse instead of returning them: after one request of
every shape a worker held 70-95 MB more than it needed (TorchScript 473-481 against 401 MB,
ONNX Runtime 411 against 317 MB, docs/performance.md, "Memory per backend"). glibc's
``malloc_trim`` returns them; it is called once per new shape and thread count, so its few
milliseconds are paid once. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        log.info("no malloc_trim in this C library: freed heap pages stay with the process")
        return None


def release_free_heap() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
