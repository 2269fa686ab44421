"""Server configuration: command-line flags, each with an OCR_* environment variable."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocr_server.engines.cache import DEFAULT_MAX_ENGINES
from ocr_server.engines.profiles import DEFAULT_PROFILE

DAY = 24 * 3600


def parse_duration(text: str) -> float:
    """'86400', '24h', '30m', '15s', '1.5h' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 24h, 30m or 90s")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": DAY}[match.group(2)]
    return float(match.group(1)) * unit


def parse_switch(text: str) -> bool:
    """'on'/'off' (also true/false, yes/no, 1/0) -> bool."""
    value = text.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not on or off")


def default_model_dir() -> Path:
    """Where scripts/setup installs the models: inside the environment that runs the server."""
    return Path(sys.prefix) / "share" / "ocr-models"


@dataclass(frozen=True)
class ServerConfig:
    listen: str
    data_dir: Path
    workers: int
    result_ttl: float
    max_queue: int
    max_pending_per_tenant: int
    max_message_mb: int
    max_document_mb: int
    model_dir: Path
    default_profile: str
    profiles_file: Path | None
    tessdata_dir: Path | None
    tokens: str
    tokens_file: Path | None
    page_timeout: float
    recycle_after: int
    engines_per_worker: int
    max_pages: int
    max_pixels: int
    max_store_mb: int
    rpc_threads: int
    heartbeat: float
    sweep_interval: float
    shutdown_grace: float
    engine: str
    fake_rules: str
    log_level: str
    log_format: str
    metrics_listen: str
    tls_cert: Path | None
    tls_key: Path | None
    tls_client_ca: Path | None
    backend: str
    redis_url: str
    redis_prefix: str
    reclaim_after: float
    host_heartbeat: float
    keep_documents: bool


@dataclass(frozen=True)
class WorkerHostConfig:
    """`ocr-worker`: a worker host of a Redis cluster (no gRPC, no clients)."""

    redis_url: str
    redis_prefix: str
    data_dir: Path
    workers: int
    model_dir: Path
    default_profile: str
    profiles_file: Path | None
    page_timeout: float
    recycle_after: int
    max_pages: int
    max_pixels: int
    shutdown_grace: float
    engine: str
    fake_rules: str
    log_level: str
    log_format: str
    reclaim_after: float
    host_heartbeat: float
    tessdata_dir: Path | None
    engines_per_worker: int


# (flag, parser of the text value, default, help)
_OPTIONS: list[tuple[str, Callable[[str], Any], object, str]] = [
    ("listen", str, "127.0.0.1:50051", "address to serve on (host:port)"),
    ("data-dir", Path, Path("data"), "task store, queue and documents"),
    ("workers", int, len(os.sched_getaffinity(0)), "worker processes, one engine each (cores)"),
    ("result-ttl", parse_duration, "24h", "how long tasks and results are kept"),
    ("max-queue", int, 1000, "most tasks waiting at once; more are RESOURCE_EXHAUSTED"),
    (
        "max-pending-per-tenant",
        int,
        0,
        "most pending or processing tasks of one tenant; more are RESOURCE_EXHAUSTED "
        "(0: half of --max-queue plus 2 per worker)",
    ),
    (
        "max-message-mb",
        int,
        64,
        "largest gRPC message in MiB (a unary Submit's document); clients need the same limit",
    ),
    (
        "max-document-mb",
        int,
        1024,
        "largest document in MiB; SubmitStream uploads it in chunks with default message limits",
    ),
    ("model-dir", Path, default_model_dir(), "PaddleX model directories"),
    ("default-profile", str, DEFAULT_PROFILE, "profile used when a request names none"),
    ("profiles-file", Path, None, "JSON file of extra or overriding model profiles"),
    ("tessdata-dir", Path, None, "Tesseract language data (default: Debian's directory)"),
    ("tokens", str, "", "tenant=token pairs, comma-separated (prefer --tokens-file)"),
    ("tokens-file", Path, None, "file of 'tenant:sha256-hex' lines"),
    ("page-timeout", parse_duration, "120s", "a page taking longer kills its worker"),
    ("recycle-after", int, 500, "replace a worker after this many pages (0: never)"),
    (
        "engines-per-worker",
        int,
        DEFAULT_MAX_ENGINES,
        "profiles a worker keeps loaded; beyond, the least recently used one is dropped "
        "(the default profile never is)",
    ),
    ("max-pages", int, 2000, "most pages in one document"),
    ("max-pixels", int, 100_000_000, "most pixels in one page"),
    ("max-store-mb", int, 10_240, "task store size limit; Submit is refused beyond it"),
    (
        "keep-documents",
        parse_switch,
        "on",
        "keep each document until its task expires, for searchable-PDF exports ('off': delete "
        "it when the task ends, saving the store's (or Redis's) room; ExportResult pdf is then "
        "FAILED_PRECONDITION)",
    ),
    ("rpc-threads", int, 256, "gRPC handler threads (each open WatchTask holds one)"),
    ("heartbeat", parse_duration, "15s", "WatchTask repeats the status this often when idle"),
    ("sweep-interval", parse_duration, "5m", "how often expired entries are deleted"),
    ("shutdown-grace", parse_duration, "30s", "time for pages in flight at SIGTERM"),
    ("engine", str, "paddle", "'paddle' (PaddleOCR) or 'fake' (fault injection for tests)"),
    ("fake-rules", str, "", "behaviour of the fake engine (tests only)"),
    ("log-level", str, "INFO", "DEBUG, INFO, WARNING or ERROR"),
    ("log-format", str, "text", "'text' or 'json' (one JSON object per line)"),
    ("metrics-listen", str, "", "serve Prometheus metrics on this host:port (off when empty)"),
    ("tls-cert", Path, None, "serve TLS with this PEM certificate chain (needs --tls-key)"),
    ("tls-key", Path, None, "PEM private key of --tls-cert"),
    ("tls-client-ca", Path, None, "require client certificates signed by these PEM CAs (mTLS)"),
    ("backend", str, "local", "'local' (embedded store) or 'redis' (front ends and worker hosts)"),
    (
        "redis-url",
        str,
        "",
        "Redis for --backend redis: redis://[user:password@]host:6379/0, rediss:// for TLS",
    ),
    ("redis-prefix", str, "ocr", "prefix of every Redis key (services sharing one Redis differ)"),
    (
        "reclaim-after",
        parse_duration,
        "60s",
        "a page whose worker host sent no heartbeat for this long runs on another host",
    ),
    ("host-heartbeat", parse_duration, "5s", "how often a worker host renews its pages"),
]

# `ocr-worker` takes these, with its own defaults where they differ.
_WORKER_OPTIONS = (
    "redis-url",
    "redis-prefix",
    "data-dir",
    "workers",
    "model-dir",
    "default-profile",
    "profiles-file",
    "tessdata-dir",
    "engines-per-worker",
    "page-timeout",
    "recycle-after",
    "max-pages",
    "max-pixels",
    "shutdown-grace",
    "engine",
    "fake-rules",
    "log-level",
    "log-format",
    "reclaim-after",
    "host-heartbeat",
)
# SIGTERM gives a worker host's pages back at once: another host runs them now, rather
# than after the grace (set a grace to let pages in flight finish instead).
_WORKER_DEFAULTS: dict[str, object] = {"shutdown-grace": "0s", "data-dir": Path("worker-data")}


def _parser(
    prog: str, description: str, names: tuple[str, ...] | None, defaults: dict[str, object]
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description + " Every flag can also be set as OCR_<FLAG> in the "
        "environment (e.g. OCR_WORKERS=2).",
    )
    for flag, kind, default, help_text in _OPTIONS:
        if names is not None and flag not in names:
            continue
        default = defaults.get(flag, default)
        env = "OCR_" + flag.upper().replace("-", "_")
        value = os.environ.get(env, default)
        if isinstance(value, str) and kind is not str:
            try:
                value = kind(value)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                parser.error(f"{env}={value!r}: {exc}")
        parser.add_argument(
            f"--{flag}", type=kind, default=value, help=f"{help_text} [{env}, default {default}]"
        )
    return parser


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    parser = _parser(
        "ocr-server", "OCR service: gRPC API, persistent queue, PaddleOCR worker pool.", None, {}
    )
    args = parser.parse_args(argv)
    if args.engine not in ("paddle", "fake"):
        parser.error("--engine must be 'paddle' or 'fake'")
    if args.log_format not in ("text", "json"):
        parser.error("--log-format must be 'text' or 'json'")
    if args.metrics_listen and not re.fullmatch(r".*:\d+", args.metrics_listen):
        parser.error(f"--metrics-listen {args.metrics_listen!r} is not host:port")
    if args.max_document_mb < 1 or args.max_message_mb < 1:
        parser.error("--max-document-mb and --max-message-mb must be at least 1")
    if args.backend not in ("local", "redis"):
        parser.error("--backend must be 'local' or 'redis'")
    if args.backend == "redis" and not args.redis_url:
        parser.error("--backend redis needs --redis-url (OCR_REDIS_URL)")
    if args.backend == "local" and args.redis_url:
        parser.error("--redis-url is for --backend redis (OCR_BACKEND=redis)")
    if args.workers < (0 if args.backend == "redis" else 1):
        parser.error(
            "--workers must be at least 1 (0, a front end without workers, needs --backend redis)"
        )
    if args.backend == "redis" and args.workers and args.reclaim_after < 3 * args.host_heartbeat:
        parser.error("--reclaim-after must be at least 3 x --host-heartbeat")
    if args.engines_per_worker < 1:
        parser.error("--engines-per-worker must be at least 1")
    if args.max_queue < 1 or args.max_pending_per_tenant < 0:
        parser.error("--max-queue must be at least 1 and --max-pending-per-tenant at least 0")
    if args.max_pending_per_tenant == 0:
        args.max_pending_per_tenant = default_tenant_limit(args.max_queue, args.workers)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together (OCR_TLS_CERT, OCR_TLS_KEY)")
    if args.tls_client_ca is not None and args.tls_cert is None:
        parser.error(
            "--tls-client-ca needs --tls-cert and --tls-key (client certificates need TLS)"
        )
    return ServerConfig(**{key: value for key, value in vars(args).items()})


def parse_worker_args(argv: list[str] | None = None) -> WorkerHostConfig:
    parser = _parser(
        "ocr-worker",
        "OCR worker host: takes pages from the service's Redis and recognises them.",
        _WORKER_OPTIONS,
        _WORKER_DEFAULTS,
    )
    args = parser.parse_args(argv)
    if not args.redis_url:
        parser.error("--redis-url is required (OCR_REDIS_URL), e.g. redis://redis.internal:6379/0")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.engine not in ("paddle", "fake"):
        parser.error("--engine must be 'paddle' or 'fake'")
    if args.log_format not in ("text", "json"):
        parser.error("--log-format must be 'text' or 'json'")
    if args.reclaim_after < 3 * args.host_heartbeat:
        parser.error("--reclaim-after must be at least 3 x --host-heartbeat")
    if args.engines_per_worker < 1:
        parser.error("--engines-per-worker must be at least 1")
    return WorkerHostConfig(**vars(args))


def default_tenant_limit(max_queue: int, workers: int) -> int:
    """Half the queue plus the tasks the workers run at once (2 per worker; the limit counts
    running tasks too): one tenant alone still gets most of the server, while a burst from one
    tenant leaves about half the queue to the others."""
    return (max_queue + 1) // 2 + 2 * workers
