"""Each packed convolution's weights in the layout oneDNN wants for the input at hand.

The TorchScript export keeps every convolution's weights in oneDNN's own layout, packed when
the file loads for the export's trace size (``midas_service.export.packed``). At some other
input sizes and thread counts oneDNN wants another layout for a few convolutions, and then
converts their weights on every call, from one blocked layout to another, at 2-20 ms a time
(on an AMD EPYC here: the five 96-to-576 expansions on one thread when a side is 64, 96 or
128, and the 1392-to-384 projection at 256 x 256; docs/performance.md). Which ones depends on
the CPU, so it is found where the model runs: the first time an input shape comes at a thread
count, each convolution's weights are packed for that size as oneDNN would pack them, and
where the result lies otherwise in memory than the loaded weights, that packing is kept for
this shape and count (a few MB in all). Before each inference whose shape or thread count
differs from the last, those convolutions get their weights for it. A layout never changes
the numbers, only where they sit in memory.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

Key = tuple[int, int, int]  # (network input height, width, threads)


class PackedLayouts:
    """The weights of one loaded TorchScript module, laid out per input shape and thread
    count; shared by the engines of that module (``TorchScriptEngine.with_threads``). Meant for
    one inference at a time (a worker's inference thread); calls that overlap still give the
    same numbers, only a layout oneDNN converts on the call."""

    def __init__(self, module: Any, torch: Any) -> None:
        self._torch = torch
        self._convolutions = [m for m in module.modules() if _is_packed_convolution(m)]
        # The stem sees the whole input: the largest size is the trace size.
        self._trace_size = max((tuple(c.input_size[2:]) for c in self._convolutions), default=None)
        self._loaded = [c.weight for c in self._convolutions]
        # index of a convolution -> {key: its weights packed otherwise for that key}
        self._variants: dict[int, dict[Key, Any]] = {}
        # The file's packing ran at the trace size on this thread's count: nothing to search.
        self._seen: set[Key] = set()
        if self._trace_size is not None:
            self._seen.add((*self._trace_size, torch.get_num_threads()))
        self._current: Key | None = None
        self.enabled = True  # False: the loaded layouts only, as before (devtools/layouts_bench)
        self._supported = self._trace_size is not None and all(
            hasattr(torch.ops.mkldnn, op)
            for op in ("_reorder_convolution_weight", "data_ptr", "_nbytes")
        )

    @property
    def loaded_bytes(self) -> int:
        return sum(self._torch.ops.mkldnn._nbytes(w) for w in self._loaded)

    @property
    def extra_bytes(self) -> int:
        """Memory held for other layouts than the loaded ones."""
        extra = {id(w): w for variants in self._variants.values() for w in variants.values()}
        return sum(self._torch.ops.mkldnn._nbytes(w) for w in extra.values())

    def use(self, height: int, width: int, threads: int) -> None:
        """Give each convolution its weights for a (height, width) input at ``threads``, the
        calling thread's torch thread count (the layout oneDNN picks depends on it)."""
        key = (height, width, threads) if self.enabled and self._supported else None
        if key == self._current:
            return
        if key is not None and key not in self._seen:
            self._find_variants(key)
            self._seen.add(key)
        for index, variants in self._variants.items():
            loaded = self._loaded[index]
            self._convolutions[index].weight = loaded if key is None else variants.get(key, loaded)
        self._current = key  # None: the loaded weights everywhere

    def _find_variants(self, key: Key) -> None:
        found = 0
        for index, conv in enumerate(self._convolutions):
            loaded = self._loaded[index]
            wanted = self._pack(conv, loaded.to_dense(), self._input_size(conv, *key[:2]))
            if _same_layout(self._torch, loaded, wanted):
                continue
            variants = self._variants.setdefault(index, {})
            # A layout this convolution already has for another key is shared, not kept twice.
            same = (w for w in variants.values() if _same_layout(self._torch, w, wanted))
            variants[key] = next(same, wanted)
            found += 1
        log.debug("%d convolutions want other weight layouts at %s", found, key)

    def _input_size(self, conv: Any, height: int, width: int) -> list[int]:
        """The convolution's input size when the network takes (height, width): the network
        takes only sides that are multiples of 32, so every level scales exactly."""
        assert self._trace_size is not None
        batch, channels, conv_height, conv_width = conv.input_size
        trace_height, trace_width = self._trace_size
        return [
            batch,
            channels,
            conv_height * height // trace_height,
            conv_width * width // trace_width,
        ]

    def _pack(self, conv: Any, plain: Any, input_size: list[int]) -> Any:
        return self._torch.ops.mkldnn._reorder_convolution_weight(
            plain, conv.padding, conv.stride, conv.dilation, conv.groups, input_size
        )


def _is_packed_convolution(module: Any) -> bool:
    """An export's ``PackedConvolution``, known by what it holds (a loaded file's classes are
    TorchScript's own)."""
    return all(hasattr(module, name) for name in ("weight", "input_size", "padding", "groups"))


def _same_layout(torch: Any, first: Any, second: Any) -> bool:
    """Whether two packings of the same weights lie the same in memory. Their descriptors are
    no test: they can differ in fields that change nothing (measured: oneDNN converts neither)."""
    return bool(np.array_equal(_memory(torch, first), _memory(torch, second)))


def _memory(torch: Any, packed: Any) -> np.ndarray:
    """A oneDNN tensor's memory as it lies, without a copy (valid while the tensor lives)."""
    memory = ctypes.c_uint8 * torch.ops.mkldnn._nbytes(packed)
    return np.frombuffer(memory.from_address(torch.ops.mkldnn.data_ptr(packed)), np.uint8)
