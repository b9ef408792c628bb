"""The Gunicorn worker class: gthread, plus what the service's lifecycle needs from it.

gthread rather than sync: its main thread accepts connections as they come and hands them to
a few request threads, so waiting happens inside the process where it can be measured and
bounded (``midas_service.serving.admission``), and probes are answered while a request computes.
Only one request per worker computes at a time (the compute turn), and inference itself runs
on one dedicated thread (``loading.WorkerEngine``), so MIDAS_THREADS still means what it says.

Additions to Gunicorn's ThreadWorker:
- the time each request spent in the thread-pool queue is handed to the admission check;
- a model that fails to load halts the master with Gunicorn's boot-error code 3, instead of
  keeping workers that answer 503 for ever (``midas_service.serving.lifecycle``);
- on stop, connections already in the listen queue are accepted and served before the
  listening socket is closed (Gunicorn's worker leaves them to be reset).
"""

from __future__ import annotations

import select
import time

from gunicorn.workers.gthread import TConn, ThreadWorker

from midas_service.serving import admission, lifecycle


class MidasWorker(ThreadWorker):
    def init_process(self) -> None:
        lifecycle.enter_worker(self.log)
        # OpenCV's own pool would add threads to each resize and colormap: they gain ~0.1 ms on
        # an idle machine but, with every core already running an inference, they wait on
        # preempted peers (preprocess 2.0 against 2.4-2.6 ms at c=4; docs/performance.md).
        import cv2  # after the fork: the master imports no OpenCV

        cv2.setNumThreads(1)
        super().init_process()

    def enqueue_req(self, conn: TConn) -> None:
        conn.enqueued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn: TConn) -> object:
        admission.note_queued(time.monotonic() - conn.enqueued_at)
        return super().handle(conn)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            self._serve_backlog_then_close()

    def _serve_backlog_then_close(self) -> None:
        """Accept what already reached the listen queue, then close our copy of the socket.

        The kernel resets queued connections when the last copy closes, so every worker takes
        its share first; once all copies are closed, new connects are refused. What is left
        is the instant between the last worker's final accept and its close.
        """
        for listener in self.sockets:
            while select.select([listener], [], [], 0)[0]:
                self.accept(listener)
            listener.close()
