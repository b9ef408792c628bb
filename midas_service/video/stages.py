"""A small bounded thread pipeline: decode ahead of inference, encode behind it.

PyAV, OpenCV and the inference runtimes release the GIL in their heavy calls, so decoding
frame k+1 and encoding frame k-1 can run while frame k is on the network. The queues are
short: at most a few frames wait anywhere, so memory stays flat however long the clip.
Errors in a thread are raised again in the caller; a stopped caller stops the threads.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
QUEUE_DEPTH = 4
_DONE = object()
_POLL_S = 0.1


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Timer:
    """Seconds spent in one stage, summed over frames."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self.start


def timed(items: Iterable[T], timer: Timer) -> Iterator[T]:
    """``items``, with the time spent producing each one added to ``timer``."""
    iterator = iter(items)
    while True:
        with timer:
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def prefetch(items: Iterable[T], depth: int = QUEUE_DEPTH) -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead."""
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            put(_Failure(error))

    thread = threading.Thread(target=produce, name="video-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


class Consumer(Generic[T]):
    """Runs ``handle(item)`` in a background thread for every ``put`` item, in order."""

    def __init__(self, handle: Callable[[T], None], depth: int = QUEUE_DEPTH) -> None:
        self.handle = handle
        self.slots: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.cancelled = False
        self.thread = threading.Thread(target=self._run, name="video-encode", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.slots.get()
            if item is _DONE:
                return
            if self.error is None and not self.cancelled:
                try:
                    self.handle(item)  # type: ignore[arg-type]
                except BaseException as error:
                    self.error = error

    def put(self, item: T) -> None:
        if self.error is not None:
            raise self.error
        self.slots.put(item)  # the thread drains the queue even after an error: no deadlock

    def finish(self) -> None:
        """Wait until every item is handled; raise the thread's error if it had one."""
        self.slots.put(_DONE)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        """Skip what is still queued and stop the thread."""
        self.cancelled = True
        self.slots.put(_DONE)
        self.thread.join()


class Inline(Generic[T]):
    """The Consumer interface without a thread (for measuring what the threads gain)."""

    def __init__(self, handle: Callable[[T], None]) -> None:
        self.handle = handle

    def put(self, item: T) -> None:
        self.handle(item)

    def finish(self) -> None:
        pass

    def cancel(self) -> None:
        pass
