"""The app's one request class: where the file parts of a multipart body go while it is read.

Werkzeug spools file parts over 500 KB to temporary files. Here /predict's and the page's
stay in memory (their size is already bounded by MAX_CONTENT_LENGTH), and /jobs' go to the
job store's disk, the first few small ones in memory; a /jobs form with more files than a job
may hold is refused as the parts arrive, before they are stored.
"""

from __future__ import annotations

import io
from functools import cached_property
from typing import IO

from flask import Request, current_app

from midas_service.errors import TooLarge
from midas_service.jobs.store import SPOOL_IN_MEMORY
from midas_service.web.job_uploads import too_many_parts_message

PARTS_IN_MEMORY = 16  # /jobs file parts that may be spooled in memory (up to 1 MB each)


class ServiceRequest(Request):
    file_parts = 0

    @cached_property
    def spooled(self) -> list[IO[bytes]]:
        """Every file this request spooled to the job store, closed at once if the form
        cannot be read."""
        return []

    def close_spooled(self) -> None:
        for spooled in self.spooled:
            spooled.close()

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        jobs = current_app.extensions.get("midas_jobs")
        if jobs is None or self.path != "/jobs":
            return io.BytesIO()
        self.file_parts += 1
        if self.file_parts > jobs.settings.max_entries:
            raise TooLarge(too_many_parts_message(jobs.settings))
        # The first parts may stay in memory while small; later ones go straight to disk, so
        # thousands of parts cannot hold the whole body in the web worker's memory.
        in_memory = SPOOL_IN_MEMORY if self.file_parts <= PARTS_IN_MEMORY else 0
        spooled = jobs.store.spool(in_memory)
        self.spooled.append(spooled)
        return spooled
