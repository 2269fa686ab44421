"""The worker process: loads its engines once, then recognises one page per job.

Started with the spawn method before any gRPC object exists. It talks to the pool over one
pipe and sends back only plain data. It ignores SIGINT (the server decides when workers stop).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from ocr_server.documents import DocumentLimits, load_page, page_resolution
from ocr_server.engines.base import OcrEngine
from ocr_server.engines.cache import DEFAULT_MAX_ENGINES, EngineCache
from ocr_server.engines.profiles import BUILTIN_PROFILES, Profile
from ocr_server.errors import DamagedPageError, EngineError, InvalidDocumentError
from ocr_server.languages.scripts import check_page
from ocr_server.models import PageResult
from ocr_server.reading.orientation import OrientationClassifier
from ocr_server.reading.orientation import model_path as orientation_model_path
from ocr_server.reading.page import read_page
from ocr_server.telemetry.logs import configure_worker_logging
from ocr_server.workers.messages import (
    Fatal,
    FromWorker,
    PageDone,
    PageFailed,
    PageJob,
    Ready,
    RunPage,
    Stop,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs to build its engines; picklable."""

    model_dir: Path
    default_profile: str
    profiles: dict[str, Profile] = field(default_factory=lambda: dict(BUILTIN_PROFILES))
    engine: str = "paddle"  # or "fake" (tests only)
    fake_rules: str = ""
    state_dir: Path = Path()
    limits: DocumentLimits = field(default_factory=DocumentLimits)
    log_format: str = "text"  # or "json", as the server's --log-format
    tessdata: Path | None = None
    max_engines: int = DEFAULT_MAX_ENGINES  # profiles loaded at once (engines/cache.py)


def engine_builder(config: WorkerConfig) -> Callable[[str], OcrEngine]:
    """How this worker builds the engine for a profile name."""

    def build(profile: str) -> OcrEngine:
        if config.engine == "fake":
            from ocr_server.engines.fake import FakeEngine

            return FakeEngine(config.fake_rules, config.state_dir)
        spec = config.profiles[profile]
        if spec.is_tesseract:
            from ocr_server.engines.tesseract import TesseractEngine

            return TesseractEngine(spec, config.model_dir, config.tessdata)
        from ocr_server.engines.paddle import PaddleOcrEngine

        return PaddleOcrEngine(spec, config.model_dir)

    return build


def engine_family(config: WorkerConfig, profile: str) -> str:
    """The engine family behind a profile, as the language checks name it."""
    return "tesseract" if config.profiles[profile].is_tesseract else "paddleocr"


def recognize_page(
    job: PageJob,
    engines: EngineCache,
    limits: DocumentLimits,
    family: str = "paddleocr",
    classifier: OrientationClassifier | None = None,
) -> PageResult:
    """One page read by the job's profile (turned upright by `classifier` when given);
    `family` names its engine for the language checks."""
    image = load_page(Path(job.document_path), job.document_type, job.page_number, job.dpi, limits)
    height, width = image.shape[:2]
    path = Path(job.document_path)
    x_dpi, y_dpi = page_resolution(path, job.document_type, job.page_number, job.dpi)
    reading = read_page(image, engines.get(job.profile), job.language, classifier)
    return PageResult(
        page_number=job.page_number,
        width=width,
        height=height,
        text=reading.text,
        lines=tuple(reading.lines),
        x_dpi=x_dpi,
        y_dpi=y_dpi,
        rotation=reading.rotation,
        warnings=(*reading.warnings, *check_page(reading.lines, job.language, family)),
    )


def orientation_classifier(config: WorkerConfig) -> OrientationClassifier | None:
    """The page orientation model, for real engines when it is installed."""
    path = orientation_model_path(config.model_dir)
    if config.engine == "fake":
        return None
    if not path.is_file():
        log.warning("no orientation model at %s: pages are read as they come", path)
        return None
    return OrientationClassifier(path)


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the server dies, even by SIGKILL: otherwise a
    worker busy on a page (or hung) outlives a crashed server and competes with its restart."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the server died before the request took effect


# Workers run below the server's priority: recognition is batch work that keeps every core
# busy, while the server's RPC threads answer Submit, watch and status in milliseconds only if
# the kernel lets them in at once. SCHED_IDLE (Linux) gives a worker only the CPU no other
# thread wants, so a server thread that wakes preempts it at once; at nice 10 the kernel
# still let a worker finish its slice first. Throughput is unchanged: the server uses little
# CPU (docs/benchmarks.md, Submit latency). Where SCHED_IDLE is unavailable: nice 10.
WORKER_NICENESS = 10


def lower_priority() -> None:
    """Call first in a worker process: threads started later inherit the policy."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    try:
        os.nice(WORKER_NICENESS)
    except OSError:  # not permitted here: run at the server's priority
        log.warning("could not lower the worker's priority")


def worker_main(conn: Connection, config: WorkerConfig) -> None:
    """Process entry point: answers Ready (or Fatal), then PageDone or PageFailed for every
    RunPage, until Stop or the pipe closes (see workers/messages.py)."""
    die_with_parent()
    lower_priority()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_worker_logging(config.log_format)
    engines = EngineCache(engine_builder(config), config.default_profile, config.max_engines)
    try:
        classifier = orientation_classifier(config)
        engines.get(config.default_profile)  # last: the cache then freezes what is loaded
    except Exception as exc:  # any load failure is fatal for this worker, and said so
        conn.send(Fatal(f"{type(exc).__name__}: {exc}"))
        return
    conn.send(Ready(os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server went away
        match message:
            case RunPage(job=job):
                conn.send(_run(job, engines, config, classifier))
            case Stop():
                return
            case _:
                log.error("unexpected message %r", message)
                return


def _run(
    job: PageJob,
    engines: EngineCache,
    config: WorkerConfig,
    classifier: OrientationClassifier | None,
) -> FromWorker:
    try:
        family = engine_family(config, job.profile)
        page = recognize_page(job, engines, config.limits, family, classifier)
        return PageDone(job.job_id, page)
    except InvalidDocumentError as exc:
        return PageFailed(job.job_id, DamagedPageError(str(exc)))
    except Exception as exc:  # the worker survives; the task fails with the reason
        log.exception("page %d of task %s failed", job.page_number, job.task_id)
        return PageFailed(job.job_id, EngineError.from_exception(exc))
