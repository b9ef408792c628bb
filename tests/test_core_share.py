"""Core sharing: which thread count an inference gets, and that each count is really used."""

from __future__ import annotations

import fcntl
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from midas_service.config import Settings
from midas_service.inference import core_share
from midas_service.inference.engines import BACKENDS
from midas_service.loading import load_worker_engine
from tests.conftest import range_error

FORK = multiprocessing.get_context("fork")


@pytest.fixture
def master(monkeypatch):
    """A fresh slot table, as in a Gunicorn master that has not forked yet."""
    monkeypatch.setattr(core_share, "_own_slot", None)
    monkeypatch.setattr(core_share, "_slot_of_worker", {})
    core_share._FLAGS[:] = bytes(core_share.SLOTS)
    yield
    core_share._FLAGS[:] = bytes(core_share.SLOTS)


def computing_worker(started, stop) -> None:
    core_share.set_computing(True)
    started.set()
    stop.wait(30)
    core_share.set_computing(False)


def fork_worker(worker_id: int, target=computing_worker):
    """What the master does: a slot, then the fork; the child runs ``target`` (computes, by
    default) until told to stop."""
    core_share.assign_slot(worker_id)
    started, stop = FORK.Event(), FORK.Event()
    process = FORK.Process(target=target, args=(started, stop))
    process.start()
    assert started.wait(30)
    return process, stop


@pytest.mark.parametrize(
    ("threads", "counts"), [(1, (1,)), (2, (2, 1)), (4, (4, 2, 1)), (6, (6, 3, 1))]
)
def test_thread_counts_halve_down_to_one(threads, counts):
    assert core_share.thread_counts(threads) == counts


def test_a_request_alone_gets_every_thread(master):
    core_share.assign_slot(1)
    core_share.set_computing(True)  # its own flag does not count
    assert core_share.computing_elsewhere() == 0
    assert core_share.threads_for_next_inference((2, 1), cores=2) == 2


def test_workers_computing_elsewhere_leave_this_one_its_share(master):
    first, stop_first = fork_worker(1)
    second, stop_second = fork_worker(2)
    core_share.assign_slot(3)  # this process plays the third worker
    try:
        assert core_share.computing_elsewhere() == 2
        assert core_share.threads_for_next_inference((2, 1), cores=2) == 1
        assert core_share.threads_for_next_inference((4, 2, 1), cores=4) == 1
        assert core_share.threads_for_next_inference((8, 4, 2, 1), cores=8) == 2
        stop_second.set()
        second.join(30)
        assert core_share.computing_elsewhere() == 1
        assert core_share.threads_for_next_inference((4, 2, 1), cores=4) == 2
    finally:
        stop_first.set()
        stop_second.set()
        first.join(30)
    assert core_share.computing_elsewhere() == 0
    assert core_share.threads_for_next_inference((2, 1), cores=2) == 2


def test_a_worker_killed_while_computing_is_forgotten_when_it_exits(master):
    victim, _ = fork_worker(1)
    core_share.assign_slot(2)
    victim.kill()
    victim.join(30)
    assert core_share.computing_elsewhere() == 1  # its flag outlives it ...
    core_share.release_slot(1)  # ... until the master reaps it (gunicorn.conf.py child_exit)
    assert core_share.computing_elsewhere() == 0
    core_share.assign_slot(3)  # and its slot is given to the next worker, cleared
    assert core_share.computing_elsewhere() == 0


@pytest.mark.parametrize(
    ("setting", "backend", "sharing"),
    [
        ("auto", "openvino", "turns"),
        ("auto", "torchscript", "split"),
        ("auto", "onnxruntime", "split"),
        ("off", "openvino", "off"),
        ("turns", "torchscript", "turns"),
    ],
)
def test_auto_gives_openvino_turns_and_the_others_a_split(setting, backend, sharing):
    assert core_share.policy(setting, backend) == sharing


def holding_worker(started, stop) -> None:
    with core_share.inference_turn():
        started.set()
        stop.wait(30)


def turn_is_free() -> bool:
    """Take this worker's turn without waiting, if it is free (and give it back)."""
    descriptor = core_share._turn_descriptor()
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(descriptor, fcntl.LOCK_UN)
    return True


def test_one_inference_turn_among_the_workers(master):
    holder, stop = fork_worker(1, holding_worker)
    core_share.assign_slot(2)  # this process plays the second worker
    try:
        assert not turn_is_free()
        stop.set()
        holder.join(30)
        assert turn_is_free()
    finally:
        stop.set()
        holder.join(30)


def test_a_worker_killed_holding_the_turn_leaves_it_free(master):
    holder, _ = fork_worker(1, holding_worker)
    core_share.assign_slot(2)
    assert not turn_is_free()
    holder.kill()
    holder.join(30)
    assert turn_is_free()  # the kernel dropped its lock with the process


def test_outside_gunicorn_an_inference_never_waits_for_a_turn(master):
    holder, stop = fork_worker(1, holding_worker)  # a served worker holds the turn ...
    try:
        core_share._own_slot = None  # ... and this process is a CLI or job worker: no slot
        with core_share.inference_turn():
            pass
    finally:
        stop.set()
        holder.join(30)


def thread_cpu_ticks() -> dict[int, int]:
    """CPU time (user + system, in clock ticks) of each thread of this process."""
    ticks = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        ticks[int(task.name)] = int(fields[11]) + int(fields[12])
    return ticks


def busy_threads(run, share: float) -> int:
    """How many threads did at least ``share`` of the CPU work of ``run()``."""
    before = thread_cpu_ticks()
    run()
    after = thread_cpu_ticks()
    used = {tid: after[tid] - before.get(tid, 0) for tid in after}
    total = sum(used.values())
    assert total >= 20, f"too little CPU time to tell ({total} ticks)"
    return sum(1 for ticks in used.values() if ticks >= total * share)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_engine_runs_on_its_thread_count_with_the_same_numbers(model_path, backend):
    engine = load_worker_engine(
        Settings(model_path=model_path, backend=backend, threads=2, share_cores="split")
    )
    assert engine.counts == (2, 1)
    batch = np.random.default_rng(0).standard_normal((1, 3, 192, 256), dtype=np.float32)
    depth = {threads: engine.infer(batch, threads) for threads in engine.counts}
    assert range_error(depth[1], depth[2]) <= 1e-5
    # Switch back and forth first: each engine keeps its own count whatever ran before.
    engine.infer(batch, 2)
    one = busy_threads(lambda: [engine.infer(batch, 1) for _ in range(12)], share=1 / 5)
    assert one == 1, f"{backend} at 1 thread"
    # On a loaded machine a work-stealing pool (OpenVINO's) leaves most of the work to the
    # thread that runs while the other waits for a core (64 and 4 ticks seen): a second
    # thread taking part at all is what shows the count.
    two = busy_threads(lambda: [engine.infer(batch, 2) for _ in range(12)], share=1 / 50)
    assert two == 2, f"{backend} at 2 threads"


@pytest.mark.parametrize(("backend", "setting"), [("torchscript", "off"), ("openvino", "auto")])
def test_without_a_split_a_worker_has_one_engine(model_path, backend, setting):
    engine = load_worker_engine(
        Settings(model_path=model_path, backend=backend, threads=2, share_cores=setting)
    )
    assert engine.counts == (2,)
    assert engine.sharing == ("turns" if setting == "auto" else "off")
    assert engine.infer(np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 64, 64)
    assert engine.last_threads == 2
