"""A worker's compute turns: one request decodes, infers and encodes at a time; a few wait, briefly.

Extra load must not queue without bound, or every request waits for all earlier ones. A request
that cannot start within MIDAS_QUEUE_TIMEOUT_S, or that finds MIDAS_MAX_WAITING requests already
waiting, is refused at once with ``Overloaded`` (the web layer answers 503 + Retry-After), so
the requests that are admitted keep a bounded latency: queue timeout + their own work.

Waiting is first come, first served (a plain lock lets newcomers overtake requests that have
waited longest, which then time out). The Gunicorn worker reports how long a request sat in
its own thread-pool queue before a thread picked it up (``note_queued``); that time counts too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from midas_service.errors import ClientGone, Overloaded

__all__ = ["ClientGone", "ComputeTurns", "Overloaded"]

_thread = threading.local()


def note_queued(seconds: float) -> None:
    """Record, for the current thread's request, how long it waited before a thread took it."""
    _thread.queued = seconds


def queued_seconds() -> float:
    return getattr(_thread, "queued", 0.0)


class ComputeTurns:
    """First-come-first-served turns with a bounded line and a bounded wait."""

    def __init__(
        self,
        queue_timeout_s: float,
        max_waiting: int,
        on_busy: Callable[[bool], None] | None = None,
    ) -> None:
        """``on_busy(True)`` when a turn is taken with none held, ``on_busy(False)`` when the
        last one ends: called under the lock, so a turn handed straight on never reads idle."""
        self.queue_timeout_s = queue_timeout_s
        self.max_waiting = max_waiting
        self._on_busy = on_busy
        self._guard = threading.Lock()
        self._busy = False
        self._line: deque[threading.Event] = deque()

    @property
    def waiting(self) -> int:
        return len(self._line)

    def take(self, already_waited_s: float = 0.0) -> float:
        """Block until it is this request's turn; seconds waited here. Raises ``Overloaded``."""
        budget = self.queue_timeout_s - already_waited_s
        with self._guard:
            if budget <= 0:  # even a free turn would start past the timeout
                raise Overloaded(self._timeout_message())
            if not self._busy and not self._line:
                self._busy = True
                if self._on_busy is not None:
                    self._on_busy(True)
                return 0.0
            if len(self._line) >= self.max_waiting:
                raise Overloaded(
                    f"the service is overloaded ({len(self._line)} requests already waiting "
                    "on this worker); retry shortly"
                )
            ticket = threading.Event()
            self._line.append(ticket)
        start = time.monotonic()
        if not ticket.wait(budget):
            with self._guard:
                if not ticket.is_set():  # not handed over while the wait was ending
                    self._line.remove(ticket)
                    raise Overloaded(self._timeout_message())
        return time.monotonic() - start

    def give_back(self) -> None:
        """End the current turn: hand it to the longest-waiting request, if any."""
        with self._guard:
            if self._line:
                self._line.popleft().set()  # stays busy: the turn passes straight on
            else:
                self._busy = False
                if self._on_busy is not None:
                    self._on_busy(False)

    def _timeout_message(self) -> str:
        return (
            f"the service is overloaded (no turn within {self.queue_timeout_s:g} s); retry shortly"
        )
