"""The raw engine: the server's own worker code in N spawned processes, without the service.

Each process runs `ocr_server.workers.worker.worker_main` (the function the server's pool spawns)
with the same single-thread environment, so it decodes or rasterises the page with
`ocr_server.documents`, recognises it with the profile's PaddleOCR configuration and orders it
with `ocr_server.layout` exactly as a server worker does. What is missing is only the service:
gRPC, the queue, the store and the scheduler. This is the ceiling the service can reach.

Timing starts once every process has loaded its engine and recognised one warm-up page.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from benchlib.datasets import ROOT, EvalSet, Page
from benchlib.drive import drive
from benchlib.outcome import PageOutcome, SetRun
from ocr_server.documents import DEFAULT_DPI
from ocr_server.engines.profiles import Profile, load_profiles
from ocr_server.workers.messages import (
    WORKER_ENVIRONMENT,  # the server's worker environment, verbatim
    Fatal,
    FromWorker,
    PageDone,
    PageFailed,
    PageJob,
    Ready,
    RunPage,
    Stop,
)
from ocr_server.workers.worker import WorkerConfig, worker_main

PAGE_TIMEOUT = 300.0
LOAD_TIMEOUT = 300.0


def model_dir() -> Path:
    """Where the server would look (OCR_MODEL_DIR, else the set-up's models)."""
    return Path(os.environ.get("OCR_MODEL_DIR", ROOT / ".venv" / "share" / "ocr-models"))


def profiles() -> dict[str, Profile]:
    """The server's profiles: built in, plus OCR_PROFILES_FILE's as the server reads them."""
    path = os.environ.get("OCR_PROFILES_FILE")
    return load_profiles(Path(path) if path else None)


class RawEngine:
    """N worker processes for one profile; use as a context manager."""

    def __init__(self, workers: int, profile: str, language: str = "en") -> None:
        self.workers = workers
        self.profile = profile
        self.language = language
        self.load_seconds = 0.0
        self._processes: list[BaseProcess] = []
        self._conns: list[Connection] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-raw-")
        self._job_ids = iter(range(1, 1 << 62))
        self._lock = threading.Lock()

    def __enter__(self) -> RawEngine:
        try:
            self._start()
        except BaseException:
            self.__exit__()  # never leave workers behind
            raise
        return self

    def _start(self) -> None:
        for key, value in WORKER_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        context = multiprocessing.get_context("spawn")
        config = WorkerConfig(
            model_dir=model_dir(), default_profile=self.profile, profiles=profiles()
        )
        started = time.perf_counter()
        for index in range(self.workers):
            parent, child = context.Pipe()
            process = context.Process(
                target=worker_main, args=(child, config), name=f"raw-{index}", daemon=True
            )
            process.start()
            child.close()
            self._processes.append(process)
            self._conns.append(parent)
        for conn in self._conns:
            message = self._receive(conn, LOAD_TIMEOUT)
            if isinstance(message, Fatal):
                raise RuntimeError(f"raw engine worker could not load {self.profile}: {message}")
            if not isinstance(message, Ready):
                raise RuntimeError(f"raw engine worker answered {message!r} while loading")
        warm_up = self._warm_up_page()
        for conn in self._conns:  # one warm-up page each: lazy initialisation is not timed
            self._recognize(conn, warm_up)
        self.load_seconds = time.perf_counter() - started

    def __exit__(self, *exc: object) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(Stop())
        for process in self._processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
        self._tmp.cleanup()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def run(self, eval_set: EvalSet) -> SetRun:
        """Read every page of the set, N at a time; wall time over the whole set."""
        return drive(eval_set, self._conns, lambda: self.pids, self._recognize, "raw", self.profile)

    def _recognize(self, conn: Connection, page: Page) -> PageOutcome:
        with self._lock:
            job_id = next(self._job_ids)
        job = PageJob(
            job_id=job_id,
            task_id="bench",
            document_path=str(page.path),
            document_type=page.document_type,
            page_number=1,
            dpi=DEFAULT_DPI,
            profile=self.profile,
            language=self.language,
        )
        started = time.perf_counter()
        conn.send(RunPage(job))
        message = self._receive(conn, PAGE_TIMEOUT)
        seconds = time.perf_counter() - started
        match message:
            case PageDone(page=result):
                return PageOutcome(page.page_id, result.text, seconds)
            case PageFailed(failure=failure):
                error = f"{failure.code.name}: {failure.message}"
                return PageOutcome(page.page_id, "", seconds, error=error)
        raise RuntimeError(f"raw engine worker answered {message!r} to a page")

    @staticmethod
    def _receive(conn: Connection, timeout: float) -> FromWorker:
        if not conn.poll(timeout):
            raise TimeoutError(f"raw engine worker silent for {timeout:.0f} s")
        message: FromWorker = conn.recv()
        return message

    def _warm_up_page(self) -> Page:
        path = Path(self._tmp.name) / "warm-up.png"
        image = Image.new("RGB", (900, 200), "white")
        font = ImageFont.load_default(size=36)
        ImageDraw.Draw(image).text(
            (30, 70), "Warm up the engine 0123456789", fill="black", font=font
        )
        image.save(path)
        return Page("warm-up", path, "png", "", "")
