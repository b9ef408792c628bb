"""How many inference threads a request gets while other workers compute on the same cores.

A lone request runs on every thread (MIDAS_THREADS, normally every core): the lowest latency.
When other workers compute at the same time, each request takes its share of the cores instead,
because the thread teams of several workers on the same cores wait on each other's preempted
threads, and one team each on its share runs more inferences per second (docs/performance.md).
A TorchScript module keeps the thread count its oneDNN partitions
were compiled with, so the worker holds one engine per count (:func:`thread_counts`) and picks
one for each inference (:func:`threads_for_next_inference`).

Who is computing: one byte per worker in anonymous shared memory, made when the Gunicorn master
imports this module (from gunicorn.conf.py) and inherited by the workers it forks. The master
gives each new worker a free slot just before the fork and clears it when the worker exits, so
a worker killed mid-request leaves no stale flag. Each byte has one writer: no lock that a
dying worker could leave held. Outside Gunicorn there is no slot, and a request is always alone.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

SLOTS = 256
_FLAGS = mmap.mmap(-1, SLOTS)
_own_slot: int | None = None
_slot_of_worker: dict[int, int] = {}  # the master's bookkeeping: worker age -> slot


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


def thread_counts(threads: int) -> tuple[int, ...]:
    """The counts a request may get, one engine each: threads, threads // 2, ..., 1."""
    counts = [threads]
    while counts[-1] > 1:
        counts.append(counts[-1] // 2)
    return tuple(counts)


def threads_for_next_inference(counts: Sequence[int], cores: int) -> int:
    """The largest of ``counts`` (descending) within this worker's share of the cores now."""
    share = max(1, cores // (computing_elsewhere() + 1))
    return next((count for count in counts if count <= share), counts[-1])
