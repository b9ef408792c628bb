"""Every setting of the service, read from the environment once, in this module.

Each field below names its variable, its default and its meaning; :func:`read` parses and
checks them all with one helper and one error style (``MIDAS_X must be ..., got '...'``).
Processes read them at start-up and hand them on: the web app (``create_app``), the job
worker, the ``predict`` and ``video`` commands and ``gunicorn.conf.py``. ``docs/configuration.md``
is generated from these tables (``python -m devtools.reference``; tests/test_docs.py checks it).

Nothing here imports a model runtime: the Gunicorn master reads these before forking.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from midas_service.images.colormap_names import COLORMAP_NAMES, DEFAULT_COLORMAP
from midas_service.inference.core_share import POLICIES
from midas_service.inference.engines import BACKENDS, DEFAULT_BACKEND
from midas_service.inference.precision import DEFAULT_PRECISION, PRECISIONS

# Compiled OpenVINO models survive worker and container restarts here (an emptyDir in k8s).
DEFAULT_OPENVINO_CACHE_DIR = Path(tempfile.gettempdir()) / "midas-openvino-cache"
CACHE_OFF = ("off", "0", "none")
FLAG_ON = ("1", "true", "yes")
MB = 1024 * 1024


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class Rule:
    """How one field is read: its variable, parser, checks and documentation."""

    env: str
    meaning: str
    parse: Callable[[str], Any] | None = None  # default: from the field's type
    shown: str | None = None  # the default as documented, when not the field's value
    low: float | None = None  # value >= low
    above: float | None = None  # value > above
    high: float | None = None  # value <= high
    choices: tuple[str, ...] = ()
    why: str = ""  # appended to a range error


def var(env: str, default: Any, meaning: str, **rule: Any) -> Any:
    """A settings field read from ``env``; ``rule`` takes :class:`Rule`'s checks."""
    return field(default=default, metadata={"rule": Rule(env, meaning, **rule)})


def flag(raw: str) -> bool:
    return raw.lower() in FLAG_ON


def items(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def whole(raw: str) -> int:
    return int(raw)


def number(raw: str) -> float:
    return float(raw)


def pixels(raw: str) -> int:
    """A whole count that may be written like 4e6."""
    value = float(raw)
    if not value.is_integer():
        raise ValueError(raw)
    return int(value)


def openvino_cache(raw: str) -> Path | None:
    return None if raw.lower() in CACHE_OFF else Path(raw)


PARSERS: dict[str, Callable[[str], Any]] = {
    "int": whole,
    "int | None": whole,
    "float": number,
    "bool": flag,
    "str": str,
    "Path": Path,
    "Path | None": Path,
    "tuple[str, ...]": items,
}
KIND: dict[Callable[[str], Any], str] = {
    whole: "a whole number",
    pixels: "a whole number",
    number: "a number",
}

T = TypeVar("T")


def rules(cls: type) -> list[tuple[dataclasses.Field[Any], Rule]]:
    return [(f, f.metadata["rule"]) for f in dataclasses.fields(cls) if "rule" in f.metadata]


def read(cls: type[T], env: Mapping[str, str] | None = None) -> T:
    """One settings class from ``env`` (default: the process environment), checked."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for item, rule in rules(cls):
        raw = env.get(rule.env, "").strip()
        if not raw:
            continue
        parse = rule.parse or PARSERS[str(item.type)]
        try:
            value = parse(raw)
        except ValueError:
            raise ConfigError(
                f"{rule.env} must be {KIND.get(parse, 'readable')}, got {raw!r}"
            ) from None
        if isinstance(value, str) and rule.choices:
            value = value.lower()
        values[item.name] = value
    settings = cls(**values)
    check(settings)
    return settings


def check(settings: Any) -> None:
    """Every field within its rule, then the class's own cross-checks (``validate``)."""
    for item, rule in rules(type(settings)):
        value = getattr(settings, item.name)
        if value is None or isinstance(value, bool):
            continue
        problem = _out_of_range(value, rule)
        if problem:
            why = f": {rule.why}" if rule.why else ""
            raise ConfigError(f"{rule.env} must {problem}, got {value!r}{why}")
    validate = getattr(settings, "validate", None)
    if validate is not None:
        validate()


def _out_of_range(value: Any, rule: Rule) -> str | None:
    if rule.choices:
        return None if value in rule.choices else f"be one of {', '.join(rule.choices)}"
    if not isinstance(value, int | float):
        return None
    if rule.low is not None and rule.high is not None and not rule.low <= value <= rule.high:
        return f"be between {rule.low:g} and {rule.high:g}"
    if rule.low is not None and value < rule.low:
        return "not be negative" if rule.low == 0 else f"be at least {rule.low:g}"
    if rule.above is not None and value <= rule.above:
        return "be positive" if rule.above == 0 and not rule.why else f"be more than {rule.above:g}"
    return None


@dataclass(frozen=True)
class JobSettings:
    """The /jobs queue and store, shared by the web side and the job worker."""

    redis_url: str = var("REDIS_URL", "", "the queue's Redis (shared with the result cache)")
    directory: Path = var(
        "MIDAS_JOBS_DIR",
        Path("/tmp/midas-jobs"),
        "job folders (a volume shared by web and workers)",
    )
    max_store_mb: float = var(
        "MIDAS_JOBS_MAX_MB", 2048.0, "total bytes of all job folders; then 507", above=0
    )
    ttl_s: int = var("MIDAS_JOBS_TTL_S", 86400, "lifetime of a job, its status and files", above=0)
    max_upload_mb: float = var(
        "MIDAS_JOBS_MAX_UPLOAD_MB", 512.0, "largest POST /jobs body", above=0
    )
    max_entries: int = var(
        "MIDAS_JOBS_MAX_ENTRIES", 10_000, "most entries (photos, zip entries) in one job", above=0
    )
    max_unzipped_mb: float = var(
        "MIDAS_JOBS_MAX_UNZIPPED_MB", 2048.0, "most uncompressed bytes in one zip", above=0
    )
    timeout_s: int = var(
        "MIDAS_JOBS_TIMEOUT_S", 3600, "longest run of one job, then failed (timeout)", above=0
    )
    heartbeat_s: float = var(
        "MIDAS_JOBS_HEARTBEAT_S", 5.0, "worker heartbeat period while running a job", above=0
    )
    takeover_s: int = var(
        "MIDAS_JOBS_TAKEOVER_S", 15, "silence after which a running job is taken over"
    )
    retries: int = var("MIDAS_JOBS_RETRIES", 1, "re-runs of a job whose worker died", low=0)
    queue: str = var("MIDAS_JOBS_QUEUE", "midas-jobs", "RQ queue name")
    prefix: str = var("MIDAS_REDIS_PREFIX", "midas:", "prefix of the Redis keys")

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
    def from_env(cls, env: Mapping[str, str] | None = None) -> JobSettings:
        return read(cls, env)

    def validate(self) -> None:
        if self.takeover_s < 2 * self.heartbeat_s:
            raise ConfigError(
                "MIDAS_JOBS_TAKEOVER_S must be at least twice MIDAS_JOBS_HEARTBEAT_S, or a "
                "healthy worker's job would be taken over between two heartbeats"
            )


@dataclass(frozen=True)
class VideoLimits:
    """What a video may be, checked before and while decoding (the command and the jobs)."""

    max_side: int = var(
        "MIDAS_VIDEO_MAX_SIDE", 4096, "longest accepted frame side in pixels, as decoded", low=2
    )
    max_frames: int = var("MIDAS_VIDEO_MAX_FRAMES", 20000, "most frames in a clip", above=0)
    max_seconds: float = var(
        "MIDAS_VIDEO_MAX_SECONDS", 900.0, "longest accepted clip duration", above=0
    )
    spill_dir: Path | None = var(
        "MIDAS_VIDEO_SPILL_DIR",
        None,
        "where `scale=clip` keeps its raw depth file",
        shown="system temp folder",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> VideoLimits:
        return read(cls, env)

    def spill_folder(self) -> Path:
        return self.spill_dir if self.spill_dir is not None else Path(tempfile.gettempdir())


@dataclass(frozen=True)
class Settings:
    """The service: model, limits, cache, access, admission; with the jobs and video limits."""

    model_path: Path = var(
        "MIDAS_MODEL_PATH", Path("models/midas_small.pt"), "exported model (.onnx sits beside it)"
    )
    backend: str = var(
        "MIDAS_BACKEND", DEFAULT_BACKEND, "torchscript, onnxruntime or openvino", choices=BACKENDS
    )
    precision: str = var(
        "MIDAS_PRECISION",
        DEFAULT_PRECISION,
        "fp32 (reference) or bf16 (openvino on a CPU with bf16 units)",
        choices=PRECISIONS,
    )
    max_deviation: float = var(
        "MIDAS_MAX_DEVIATION",
        0.02,
        "bf16 is refused above this aligned mean absolute deviation from fp32 (share of range)",
        low=0,
        high=1,
    )
    openvino_cache_dir: Path | None = var(
        "MIDAS_OPENVINO_CACHE_DIR",
        DEFAULT_OPENVINO_CACHE_DIR,
        "OpenVINO's compiled models; `off` = none",
        parse=openvino_cache,
        shown="$TMPDIR/midas-openvino-cache",
    )
    threads: int | None = var(
        "MIDAS_THREADS", None, "inference threads per worker", shown="usable cores", low=1
    )
    share_cores: str = var(
        "MIDAS_SHARE_CORES",
        "auto",
        "while several workers compute: split = each inference on its share of the cores, "
        "turns = one inference at a time on every thread, off = always MIDAS_THREADS; "
        "auto = turns for OpenVINO, split otherwise (docs/performance.md)",
        choices=POLICIES,
    )
    max_upload_mb: float = var("MIDAS_MAX_UPLOAD_MB", 10.0, "largest /predict upload", above=0)
    max_pixels: int = var(
        "MIDAS_MAX_PIXELS",
        24_000_000,
        "largest width x height, read from the header before decoding (sets the memory limit)",
        parse=pixels,
        low=1,
    )
    colormap: str = var(
        "MIDAS_COLORMAP", DEFAULT_COLORMAP, "default heatmap colours", choices=COLORMAP_NAMES
    )
    allow_untrained: bool = var(
        "MIDAS_RANDOM_WEIGHTS", False, "1 = allow a model with random weights (every front end)"
    )
    allow_no_metadata: bool = var(
        "MIDAS_ALLOW_NO_METADATA", False, "1 = allow a model file without export metadata"
    )
    ort_spinning: bool = var("MIDAS_ORT_SPINNING", False, "1 = ONNX Runtime threads busy-wait")
    warmup_runs: int = var("MIDAS_WARMUP_RUNS", 3, "inferences before a worker is ready", low=0)
    ready_wait_s: float = var(
        "MIDAS_READY_WAIT_S", 20.0, "how long /predict waits for a warming worker", low=0
    )
    log_level: str = var(
        "MIDAS_LOG_LEVEL",
        "info",
        "debug, info, warning or error",
        choices=("debug", "info", "warning", "error", "critical"),
    )
    cache_mb: float = var(
        "MIDAS_CACHE_MB", 32.0, "in-process result cache per worker; 0 = off", low=0
    )
    redis_url: str = var("REDIS_URL", "", "shared result cache (and the job queue) in Redis")
    redis_prefix: str = var("MIDAS_REDIS_PREFIX", "midas:", "prefix of the Redis keys")
    cache_ttl_s: int = var("MIDAS_CACHE_TTL_S", 86400, "lifetime of a Redis cache entry", low=1)
    redis_timeout_s: float = var(
        "MIDAS_REDIS_TIMEOUT_S", 0.2, "Redis connect/read timeout; then uncached", above=0
    )
    api_keys: tuple[str, ...] = var(
        "MIDAS_API_KEYS",
        (),
        "comma-separated keys for /predict, POST / and /jobs",
        shown="unset (open)",
    )
    metrics_public: bool = var("MIDAS_METRICS_PUBLIC", True, "0 = /metrics needs a key too")
    cors_origins: tuple[str, ...] = var(
        "MIDAS_CORS_ORIGINS",
        (),
        "comma-separated origins allowed to call the API",
        shown="unset (no CORS)",
    )
    queue_timeout_s: float = var(
        "MIDAS_QUEUE_TIMEOUT_S",
        1.0,
        "longest wait for a compute turn, then 503",
        above=0,
        why="it is the longest a request waits for its compute turn; to refuse at once "
        "whenever the worker is busy, set MIDAS_MAX_WAITING=0 instead",
    )
    max_waiting: int = var(
        "MIDAS_MAX_WAITING", 8, "requests waiting per worker; one more is a 503 at once", low=0
    )
    drain_s: float = var(
        "MIDAS_DRAIN_S", 0.0, "after SIGTERM: /readyz 503, serve on this long, then stop", low=0
    )
    trusted_proxies: int = var(
        "MIDAS_TRUSTED_PROXIES", 0, "proxies believed for X-Forwarded-*; behind nginx: 1", low=0
    )
    metrics_dir: Path | None = var(
        "PROMETHEUS_MULTIPROC_DIR",
        None,
        "prometheus-client's multiprocess folder (gunicorn.conf.py sets one)",
        shown="unset (one process)",
    )
    jobs: JobSettings = field(default_factory=JobSettings)
    video: VideoLimits = field(default_factory=VideoLimits)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The service's settings with the jobs' and the video limits, all checked."""
        settings = read(cls, env)
        return dataclasses.replace(
            settings, jobs=JobSettings.from_env(env), video=VideoLimits.from_env(env)
        )

    def validate(self) -> None:
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
        for origin in self.cors_origins:
            if not origin.startswith(("http://", "https://")) or origin.endswith("/"):
                raise ConfigError(
                    "MIDAS_CORS_ORIGINS takes exact origins like https://example.org:8443 "
                    f"(no '*', no path); got {origin!r}"
                )


@dataclass(frozen=True)
class ServerSettings:
    """Gunicorn's own layout (gunicorn.conf.py); the defaults follow the usable cores."""

    bind: str = var("GUNICORN_BIND", "127.0.0.1:8000", "address to listen on")
    workers: int | None = var(
        "GUNICORN_WORKERS", None, "worker processes", shown="usable cores", low=1
    )
    threads: int | None = var(
        "GUNICORN_THREADS",
        None,
        "request threads per worker",
        shown="MIDAS_MAX_WAITING + 3",
        low=1,
    )
    timeout: int = var(
        "GUNICORN_TIMEOUT", 30, "seconds before a silent worker is restarted", above=0
    )
    graceful_timeout: int = var(
        "GUNICORN_GRACEFUL_TIMEOUT", 30, "seconds a stopping worker may finish in", low=0
    )
    accesslog: str = var("GUNICORN_ACCESSLOG", "-", "access log file; `-` = stdout")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        return read(cls, env)


@dataclass(frozen=True)
class ExportSettings:
    """The ``export`` command's download of the official checkpoint."""

    cache_dir: Path = var(
        "MIDAS_CACHE_DIR",
        Path.home() / ".cache" / "midas-service",
        "where the downloaded checkpoint is kept",
        shown="~/.cache/midas-service",
    )
    weights_sha256: str = var(
        "MIDAS_WEIGHTS_SHA256", "", "expected SHA-256 of the checkpoint", shown="unset"
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ExportSettings:
        return read(cls, env)


GROUPS: dict[str, type] = {
    "Service": Settings,
    "Jobs": JobSettings,
    "Video": VideoLimits,
    "Gunicorn": ServerSettings,
    "Export": ExportSettings,
}


def shown_default(item: dataclasses.Field[Any], rule: Rule) -> str:
    """The default as docs/configuration.md shows it."""
    if rule.shown is not None:
        return rule.shown
    value = item.default
    if isinstance(value, bool):
        return "1" if value else "0"
    if value in ("", ()):
        return "unset"
    return f"{value:g}" if isinstance(value, float) else str(value)
