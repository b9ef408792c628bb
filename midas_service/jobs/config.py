"""Job settings, read from environment variables (defaults documented in docs/jobs.md).

| variable                   | default          | meaning                                        |
|----------------------------|------------------|------------------------------------------------|
| MIDAS_JOBS_DIR             | /tmp/midas-jobs  | job folders (a volume shared by web and workers) |
| MIDAS_JOBS_MAX_MB          | 2048             | total bytes of all job folders; then 507       |
| MIDAS_JOBS_TTL_S           | 86400            | lifetime of a job, its status and its files    |
| MIDAS_JOBS_MAX_UPLOAD_MB   | 512              | largest POST /jobs body                        |
| MIDAS_JOBS_MAX_ENTRIES     | 10000            | most entries (photos, zip entries) in one job  |
| MIDAS_JOBS_MAX_UNZIPPED_MB | 2048             | most uncompressed bytes in one zip             |
| MIDAS_JOBS_TIMEOUT_S       | 3600             | longest run of one job, then failed (timeout)  |
| MIDAS_JOBS_HEARTBEAT_S     | 5                | worker heartbeat period while running a job    |
| MIDAS_JOBS_TAKEOVER_S      | 15               | silence after which a running job is abandoned |
| MIDAS_JOBS_RETRIES         | 1                | re-runs of a job whose worker died             |
| MIDAS_JOBS_QUEUE           | midas-jobs       | RQ queue name                                  |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from midas_service.config import ConfigError

MB = 1024 * 1024


@dataclass(frozen=True)
class JobSettings:
    redis_url: str = ""
    directory: Path = Path("/tmp/midas-jobs")
    max_store_mb: float = 2048.0
    ttl_s: int = 86400
    max_upload_mb: float = 512.0
    max_entries: int = 10_000
    max_unzipped_mb: float = 2048.0
    timeout_s: int = 3600
    heartbeat_s: float = 5.0
    takeover_s: int = 15
    retries: int = 1
    queue: str = "midas-jobs"
    prefix: str = "midas:"

    @property
    def max_store_bytes(self) -> int:
        return int(self.max_store_mb * MB)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def max_unzipped_bytes(self) -> int:
        return int(self.max_unzipped_mb * MB)

    @property
    def takeover_bound_s(self) -> float:
        """Longest time a dead worker's job stays "started": its last heartbeat expires
        (``takeover_s``), then the next cleanup of any live worker (every ``heartbeat_s``)."""
        return self.takeover_s + 2 * self.heartbeat_s

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> JobSettings:
        def get(name: str, default: object) -> str:
            return env.get(name, "").strip() or str(default)

        try:
            settings = cls(
                redis_url=get("REDIS_URL", ""),
                directory=Path(get("MIDAS_JOBS_DIR", cls.directory)),
                max_store_mb=float(get("MIDAS_JOBS_MAX_MB", cls.max_store_mb)),
                ttl_s=int(get("MIDAS_JOBS_TTL_S", cls.ttl_s)),
                max_upload_mb=float(get("MIDAS_JOBS_MAX_UPLOAD_MB", cls.max_upload_mb)),
                max_entries=int(get("MIDAS_JOBS_MAX_ENTRIES", cls.max_entries)),
                max_unzipped_mb=float(get("MIDAS_JOBS_MAX_UNZIPPED_MB", cls.max_unzipped_mb)),
                timeout_s=int(get("MIDAS_JOBS_TIMEOUT_S", cls.timeout_s)),
                heartbeat_s=float(get("MIDAS_JOBS_HEARTBEAT_S", cls.heartbeat_s)),
                takeover_s=int(get("MIDAS_JOBS_TAKEOVER_S", cls.takeover_s)),
                retries=int(get("MIDAS_JOBS_RETRIES", cls.retries)),
                queue=get("MIDAS_JOBS_QUEUE", cls.queue),
                prefix=env.get("MIDAS_REDIS_PREFIX", cls.prefix),
            )
        except ValueError as exc:
            raise ConfigError(f"bad number in the environment: {exc}") from exc
        settings.validate()
        return settings

    def validate(self) -> None:
        positive = (
            self.max_store_mb,
            self.ttl_s,
            self.max_upload_mb,
            self.max_entries,
            self.max_unzipped_mb,
            self.timeout_s,
            self.heartbeat_s,
        )
        if min(positive) <= 0:
            raise ConfigError(
                "MIDAS_JOBS_MAX_MB, _TTL_S, _MAX_UPLOAD_MB, _MAX_ENTRIES, _MAX_UNZIPPED_MB, "
                "_TIMEOUT_S and _HEARTBEAT_S must be positive"
            )
        if self.takeover_s < 2 * self.heartbeat_s:
            raise ConfigError(
                "MIDAS_JOBS_TAKEOVER_S must be at least twice MIDAS_JOBS_HEARTBEAT_S, or a "
                "healthy worker's job would be taken over between two heartbeats"
            )
        if self.retries < 0:
            raise ConfigError("MIDAS_JOBS_RETRIES must not be negative")
