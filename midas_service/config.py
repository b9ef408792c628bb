"""Service settings, read from environment variables once at start-up.

| variable             | default               | meaning                                  |
|----------------------|-----------------------|------------------------------------------|
| MIDAS_MODEL_PATH     | models/midas_small.pt | exported model (.onnx sits beside it)    |
| MIDAS_BACKEND        | torchscript           | torchscript, onnxruntime or openvino     |
| MIDAS_PRECISION      | fp32                  | fp32 (reference) or bf16 (openvino, bf16 CPU) |
| MIDAS_MAX_DEVIATION  | 0.02                  | bf16 refused above this aligned mean |d| |
| MIDAS_OPENVINO_CACHE_DIR | $TMPDIR/midas-openvino-cache | compiled models; off = none |
| MIDAS_THREADS        | usable cores          | threads per worker (see gunicorn.conf.py) |
| MIDAS_SHARE_CORES    | 1                     | 0 = always MIDAS_THREADS (core_share.py)  |
| MIDAS_MAX_UPLOAD_MB  | 10                    | largest accepted upload                  |
| MIDAS_MAX_PIXELS     | 24000000              | largest width x height (sets memory)     |
| MIDAS_COLORMAP       | inferno               | default heatmap colours                  |
| MIDAS_RANDOM_WEIGHTS | 0                     | 1 = allow serving an untrained model     |
| MIDAS_ALLOW_NO_METADATA | 0                  | 1 = allow a model file without export metadata |
| MIDAS_ORT_SPINNING   | 0                     | 1 = ONNX Runtime threads busy-wait       |
| MIDAS_WARMUP_RUNS    | 3                     | inferences before the worker is ready    |
| MIDAS_READY_WAIT_S   | 20                    | how long /predict waits for a warming worker |
| MIDAS_LOG_LEVEL      | info                  | debug, info, warning, error              |
| MIDAS_CACHE_MB       | 32                    | in-process result cache per worker; 0 = off |
| REDIS_URL            | unset                 | shared result cache in Redis instead     |
| MIDAS_REDIS_PREFIX   | midas:                | prefix of the Redis keys                 |
| MIDAS_CACHE_TTL_S    | 86400                 | lifetime of a Redis cache entry          |
| MIDAS_REDIS_TIMEOUT_S | 0.2                  | Redis connect/read timeout; then uncached |
| MIDAS_API_KEYS       | unset (open)          | comma-separated keys for /predict and POST / |
| MIDAS_METRICS_PUBLIC | 1                     | 0 = /metrics needs a key too             |
| MIDAS_CORS_ORIGINS   | unset (no CORS)       | comma-separated origins allowed to call the API |
| MIDAS_QUEUE_TIMEOUT_S | 1                    | longest wait for a compute turn, then 503 |
| MIDAS_MAX_WAITING    | 8                     | waiting per worker; one more is a 503 now |
| MIDAS_DRAIN_S        | 0                     | after SIGTERM: /readyz 503, serve on, stop |
| MIDAS_TRUSTED_PROXIES | 0                    | proxies believed (X-Forwarded-*); nginx: 1 |
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from midas_service.images.colormap_names import COLORMAP_NAMES, DEFAULT_COLORMAP
from midas_service.inference.engines import BACKENDS, DEFAULT_BACKEND
from midas_service.inference.precision import DEFAULT_PRECISION, PRECISIONS

# Compiled OpenVINO models survive worker and container restarts here (an emptyDir in k8s).
DEFAULT_OPENVINO_CACHE_DIR = Path(tempfile.gettempdir()) / "midas-openvino-cache"
CACHE_OFF = ("off", "0", "none")


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    model_path: Path = Path("models/midas_small.pt")
    backend: str = DEFAULT_BACKEND
    precision: str = DEFAULT_PRECISION
    max_deviation: float = 0.02  # aligned mean |d| as a share of the fp32 map's range
    openvino_cache_dir: Path | None = DEFAULT_OPENVINO_CACHE_DIR
    threads: int | None = None
    share_cores: bool = True
    max_upload_mb: float = 10.0
    max_pixels: int = 24_000_000
    colormap: str = DEFAULT_COLORMAP
    allow_untrained: bool = False
    allow_no_metadata: bool = False
    ort_spinning: bool = False
    warmup_runs: int = 3
    ready_wait_s: float = 20.0
    log_level: str = "info"
    cache_mb: float = 32.0
    redis_url: str = ""
    redis_prefix: str = "midas:"
    cache_ttl_s: int = 86400
    redis_timeout_s: float = 0.2
    api_keys: tuple[str, ...] = ()
    metrics_public: bool = True
    cors_origins: tuple[str, ...] = ()
    queue_timeout_s: float = 1.0
    max_waiting: int = 8
    drain_s: float = 0.0
    trusted_proxies: int = 0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        def flag(value: str) -> bool:
            return value.lower() in ("1", "true", "yes")

        def items(name: str) -> tuple[str, ...]:
            return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())

        try:
            settings = cls(
                model_path=Path(get("MIDAS_MODEL_PATH", str(cls.model_path))),
                backend=get("MIDAS_BACKEND", cls.backend),
                precision=get("MIDAS_PRECISION", cls.precision).lower(),
                max_deviation=float(get("MIDAS_MAX_DEVIATION", str(cls.max_deviation))),
                openvino_cache_dir=_cache_dir(get("MIDAS_OPENVINO_CACHE_DIR", "")),
                threads=int(env["MIDAS_THREADS"]) if env.get("MIDAS_THREADS") else None,
                share_cores=flag(get("MIDAS_SHARE_CORES", "1")),
                max_upload_mb=float(get("MIDAS_MAX_UPLOAD_MB", str(cls.max_upload_mb))),
                max_pixels=int(float(get("MIDAS_MAX_PIXELS", str(cls.max_pixels)))),
                colormap=get("MIDAS_COLORMAP", cls.colormap),
                allow_untrained=flag(get("MIDAS_RANDOM_WEIGHTS", "0")),
                allow_no_metadata=flag(get("MIDAS_ALLOW_NO_METADATA", "0")),
                ort_spinning=flag(get("MIDAS_ORT_SPINNING", "0")),
                warmup_runs=int(get("MIDAS_WARMUP_RUNS", str(cls.warmup_runs))),
                ready_wait_s=float(get("MIDAS_READY_WAIT_S", str(cls.ready_wait_s))),
                log_level=get("MIDAS_LOG_LEVEL", cls.log_level).lower(),
                cache_mb=float(get("MIDAS_CACHE_MB", str(cls.cache_mb))),
                redis_url=get("REDIS_URL", ""),
                redis_prefix=env.get("MIDAS_REDIS_PREFIX", cls.redis_prefix),
                cache_ttl_s=int(get("MIDAS_CACHE_TTL_S", str(cls.cache_ttl_s))),
                redis_timeout_s=float(get("MIDAS_REDIS_TIMEOUT_S", str(cls.redis_timeout_s))),
                api_keys=items("MIDAS_API_KEYS"),
                metrics_public=flag(get("MIDAS_METRICS_PUBLIC", "1")),
                cors_origins=items("MIDAS_CORS_ORIGINS"),
                queue_timeout_s=float(get("MIDAS_QUEUE_TIMEOUT_S", str(cls.queue_timeout_s))),
                max_waiting=int(get("MIDAS_MAX_WAITING", str(cls.max_waiting))),
                drain_s=float(get("MIDAS_DRAIN_S", str(cls.drain_s))),
                trusted_proxies=int(get("MIDAS_TRUSTED_PROXIES", str(cls.trusted_proxies))),
            )
        except ValueError as exc:
            raise ConfigError(_name_the_bad_number(env) or f"bad number: {exc}") from exc
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"MIDAS_BACKEND must be one of {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"MIDAS_PRECISION must be one of {', '.join(PRECISIONS)}")
        if not 0 <= self.max_deviation <= 1:
            raise ConfigError("MIDAS_MAX_DEVIATION must be between 0 and 1 (a share of range)")
        if self.colormap not in COLORMAP_NAMES:
            raise ConfigError(f"MIDAS_COLORMAP must be one of {', '.join(COLORMAP_NAMES)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("MIDAS_THREADS must be at least 1")
        if self.max_upload_mb <= 0 or self.max_pixels < 1:
            raise ConfigError("MIDAS_MAX_UPLOAD_MB and MIDAS_MAX_PIXELS must be positive")
        if self.warmup_runs < 0 or self.ready_wait_s < 0:
            raise ConfigError("MIDAS_WARMUP_RUNS and MIDAS_READY_WAIT_S must not be negative")
        if self.cache_mb < 0 or self.cache_ttl_s < 1 or self.redis_timeout_s <= 0:
            raise ConfigError(
                "MIDAS_CACHE_MB must not be negative; MIDAS_CACHE_TTL_S and "
                "MIDAS_REDIS_TIMEOUT_S must be positive"
            )
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
        for origin in self.cors_origins:
            if not origin.startswith(("http://", "https://")) or origin.endswith("/"):
                raise ConfigError(
                    f"MIDAS_CORS_ORIGINS takes exact origins like https://example.org:8443 "
                    "(no '*', no path); "
                    f"got {origin!r}"
                )
        if self.queue_timeout_s <= 0:
            # 0 would refuse every request, even on an idle worker ("no turn within 0 s").
            raise ConfigError(
                f"MIDAS_QUEUE_TIMEOUT_S must be more than 0 seconds (got {self.queue_timeout_s:g}):"
                " it is the longest a request waits for its compute turn; to refuse at once "
                "whenever the worker is busy, set MIDAS_MAX_WAITING=0 instead"
            )
        if self.max_waiting < 0 or self.drain_s < 0 or self.trusted_proxies < 0:
            raise ConfigError(
                "MIDAS_MAX_WAITING, MIDAS_DRAIN_S and MIDAS_TRUSTED_PROXIES must not be negative"
            )


def _name_the_bad_number(env: Mapping[str, str]) -> str | None:
    """``MIDAS_THREADS must be a whole number, got 'two'`` for the first unreadable number."""
    for field in fields(Settings):
        name = _ENV_NAMES.get(field.name, f"MIDAS_{field.name.upper()}")
        raw = env.get(name, "").strip()
        kind = {"int": int, "int | None": int, "float": float}.get(str(field.type))
        if not raw or kind is None:
            continue
        try:
            int(float(raw)) if name == "MIDAS_MAX_PIXELS" else kind(raw)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            return f"{name} must be {what}, got {raw!r}"
    return None


_ENV_NAMES = {"allow_untrained": "MIDAS_RANDOM_WEIGHTS", "redis_url": "REDIS_URL"}


def _cache_dir(value: str) -> Path | None:
    if not value:
        return DEFAULT_OPENVINO_CACHE_DIR
    return None if value.lower() in CACHE_OFF else Path(value)
