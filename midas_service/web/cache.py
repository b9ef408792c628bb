"""Result cache: answers keyed by image, engine, rendering code and output options; in-process
LRU or Redis.

Knows nothing of HTTP. A store maps a key to an :class:`Entry` (body + media type); a store
that cannot answer (Redis down or slow) raises :class:`CacheUnavailable`, and the caller serves
uncached.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from midas_service.images.outputs import RENDER_VERSION

log = logging.getLogger(__name__)

# Larger answers (big depth maps) are not cached: moving them costs about what computing does,
# and a transfer that size would not fit Redis's short socket timeout.
MAX_ENTRY_BYTES = 8 * 1024 * 1024
# After a Redis failure, skip Redis this long before trying again, so a dead or hung server
# costs one timeout per interval per worker, not one per request.
REDIS_RETRY_S = 1.0


class CacheUnavailable(Exception):
    """The store could not be reached; serve without it."""


@dataclass(frozen=True)
class Entry:
    body: bytes
    media_type: str

    @property
    def size(self) -> int:
        return len(self.body) + len(self.media_type)


class Store(Protocol):
    def get(self, key: str) -> Entry | None: ...

    def put(self, key: str, entry: Entry) -> None: ...


def model_identity(metadata: Mapping[str, object]) -> str:
    """The weights' SHA-256; exports without one (random weights) are named by all metadata,
    whose export time and seed set them apart."""
    digest = metadata.get("weights_sha256")
    if isinstance(digest, str) and digest:
        return digest
    canonical = json.dumps(dict(metadata), sort_keys=True, default=str).encode()
    return "metadata-" + hashlib.sha256(canonical).hexdigest()


def engine_identity(backend: str, precision: str, metadata: Mapping[str, object]) -> str:
    """Everything besides the photo and the options that decides an answer's bytes: the
    weights, the whole export metadata (a re-export may compute differently), the backend
    and precision (TorchScript and ONNX differ in a few heatmap levels), and the rendering
    code's version."""
    canonical = json.dumps(dict(metadata), sort_keys=True, default=str).encode()
    export = hashlib.sha256(canonical).hexdigest()[:16]
    return (
        f"{model_identity(metadata)}:export-{export}:{backend}:{precision}:render-{RENDER_VERSION}"
    )


def result_key(image: bytes, model: str, options: Mapping[str, str]) -> str:
    """``model:image-sha256:name=value,...`` with the options in a fixed order."""
    parts = ",".join(f"{name}={options[name]}" for name in sorted(options))
    return f"{model}:{hashlib.sha256(image).hexdigest()}:{parts}"


class MemoryStore:
    """Least-recently-used entries of this process, at most ``max_bytes`` of bodies."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: Entry) -> None:
        if entry.size > min(self.max_bytes, MAX_ENTRY_BYTES):
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.used_bytes -= old.size
            self._entries[key] = entry
            self.used_bytes += entry.size
            while self.used_bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.used_bytes -= evicted.size


class RedisStore:
    """Entries in Redis under ``prefix`` with a TTL. Failures are logged once per outage."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "midas:",
        ttl_s: int = 86400,
        timeout_s: float = 0.2,
        retry_s: float = REDIS_RETRY_S,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No client-side retries: one short timeout, then the request goes on uncached.
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._errors = (redis.RedisError, OSError)
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.retry_s = retry_s
        self._down_until: float | None = None  # None while healthy
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        value = self._call(self._client.get, self.prefix + key)
        if value is None:
            return None
        media_type, _, body = bytes(value).partition(b"\n")
        return Entry(body, media_type.decode("ascii"))

    def put(self, key: str, entry: Entry) -> None:
        if entry.size > MAX_ENTRY_BYTES:
            return
        value = entry.media_type.encode("ascii") + b"\n" + entry.body
        self._call(self._client.set, self.prefix + key, value, ex=self.ttl_s)

    def _call(self, method, *args, **kwargs):
        with self._lock:
            down_until = self._down_until
        if down_until is not None and time.monotonic() < down_until:
            raise CacheUnavailable("redis was unreachable moments ago")
        try:
            result = method(*args, **kwargs)
        except self._errors as exc:
            with self._lock:
                first = self._down_until is None
                self._down_until = time.monotonic() + self.retry_s
            if first:
                log.warning("redis cache unreachable, serving uncached until it returns: %s", exc)
            raise CacheUnavailable(str(exc)) from exc
        with self._lock:
            recovered = self._down_until is not None
            self._down_until = None
        if recovered:
            log.info("redis cache reachable again")
        return result


def open_store(
    redis_url: str, memory_mb: float, prefix: str, ttl_s: int, timeout_s: float
) -> Store | None:
    """Redis when a URL is given, else an in-process LRU of ``memory_mb``; None when off."""
    if redis_url:
        return RedisStore(redis_url, prefix=prefix, ttl_s=ttl_s, timeout_s=timeout_s)
    if memory_mb > 0:
        return MemoryStore(int(memory_mb * 1024 * 1024))
    return None
