"""How the workers of one Gunicorn master share the cores (MIDAS_SHARE_CORES).

A lone request runs on every thread (MIDAS_THREADS, normally every core): the lowest latency.
When several workers compute at once, thread teams on the same cores wait on each other's
preempted threads, so the workers share the cores in one of two ways (docs/performance.md):

- ``split``: each inference takes its share of the cores while other workers compute. An
  engine keeps the thread count it was made with (an ONNX Runtime session its pool), so the
  worker holds one engine per count (:func:`thread_counts`) and picks one for each inference
  (:func:`threads_for_next_inference`). Best where N one-thread engines side by side outrun
  one engine on N threads (TorchScript and ONNX Runtime here).
- ``turns``: one inference at a time among the workers, each on every thread, while the others
  decode and encode (:func:`inference_turn`). Best where one engine on every thread outruns
  the one-thread engines side by side: OpenVINO here, whose one-thread engines are 2-4x slower
  per inference when two run at once on this machine's cores (shared AMX units).
- ``off``: every inference on MIDAS_THREADS, whatever the others do; ``auto`` (the default):
  ``turns`` for OpenVINO, ``split`` otherwise.

Who is computing: one byte per worker in anonymous shared memory, made when the Gunicorn master
imports this module (from gunicorn.conf.py) and inherited by the workers it forks. The master
gives each new worker a free slot just before the fork and clears it when the worker exits, so
a worker killed mid-request leaves no stale flag. Each byte has one writer: no lock that a
dying worker could leave held. Outside Gunicorn there is no slot, and a request is always alone.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

POLICIES = ("auto", "split", "turns", "off")
TURNS_BY_DEFAULT = ("openvino",)  # backends that ``auto`` gives turns (measured, see above)

SLOTS = 256
_FLAGS = mmap.mmap(-1, SLOTS)
_own_slot: int | None = None
_slot_of_worker: dict[int, int] = {}  # the master's bookkeeping: worker age -> slot
# The inference turn: an flock on an anonymous file made with the master. A flock belongs to an
# open file description, which a forked worker's inherited descriptor shares with every other
# worker, so each worker opens the file again (:func:`_turn_descriptor`). The kernel drops the
# lock of a worker that dies holding it: nothing to clean up.
_TURN_FILE = os.memfd_create("midas-inference-turn")
_turn_descriptor_of: dict[int, int] = {}  # pid -> this process's own descriptor


def assign_slot(worker_id: int) -> None:
    """In the master, just before forking worker ``worker_id``: the child inherits the slot."""
    global _own_slot
    taken = set(_slot_of_worker.values())
    _own_slot = next((slot for slot in range(SLOTS) if slot not in taken), None)
    if _own_slot is not None:
        _slot_of_worker[worker_id] = _own_slot
        _FLAGS[_own_slot] = 0


def release_slot(worker_id: int) -> None:
    """In the master, once worker ``worker_id`` has exited (even in the middle of a request)."""
    slot = _slot_of_worker.pop(worker_id, None)
    if slot is not None:
        _FLAGS[slot] = 0


def set_computing(active: bool) -> None:
    """Mark this worker as computing (it holds its compute turn) or not."""
    if _own_slot is not None:
        _FLAGS[_own_slot] = int(active)


def computing_elsewhere() -> int:
    """How many other workers are computing now."""
    others = _FLAGS[:].count(1)
    if _own_slot is not None and _FLAGS[_own_slot]:
        others -= 1
    return others


def policy(setting: str, backend: str) -> str:
    """The sharing a worker applies: ``setting`` (MIDAS_SHARE_CORES) with ``auto`` resolved."""
    if setting != "auto":
        return setting
    return "turns" if backend in TURNS_BY_DEFAULT else "split"


@contextmanager
def inference_turn() -> Iterator[float]:
    """Hold the one inference turn of this master's workers; yields the seconds waited for it
    (outside Gunicorn: nothing to wait for). A worker runs one inference at a time (its
    compute turn)."""
    if _own_slot is None:
        yield 0.0
        return
    descriptor = _turn_descriptor()
    start = time.perf_counter()
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        yield time.perf_counter() - start
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)


def _turn_descriptor() -> int:
    pid = os.getpid()
    if pid not in _turn_descriptor_of:
        path = f"/proc/self/fd/{_TURN_FILE}"  # opening it makes a new open file description
        _turn_descriptor_of[pid] = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    return _turn_descriptor_of[pid]


def thread_counts(threads: int) -> tuple[int, ...]:
    """The counts a request may get, one engine each: threads, threads // 2, ..., 1."""
    counts = [threads]
    while counts[-1] > 1:
        counts.append(counts[-1] // 2)
    return tuple(counts)


def threads_for_next_inference(counts: Sequence[int], cores: int) -> int:
    """The largest of ``counts`` (descending) within this worker's share of the cores now."""
    return threads_within_share(counts, cores, computing_elsewhere() + 1)


def threads_within_share(counts: Sequence[int], cores: int, computing: int) -> int:
    """The largest of ``counts`` (descending) within one share of ``cores`` split among
    ``computing`` workers; the smallest count if none fits."""
    share = max(1, cores // computing)
    return next((count for count in counts if count <= share), counts[-1])


def share_of_cores(cores: int) -> int:
    """This worker's share of ``cores`` now, for work outside the engine (a JPEG encode):
    every core while no other worker computes, else an even split."""
    return max(1, cores // (computing_elsewhere() + 1))
