"""The worker pool: N spawned processes, one page each at a time, kept at full strength.

One dispatcher thread owns the processes. It hands a page to every idle worker, reads results,
notices deaths (a process sentinel) and pages over their time limit (the worker is killed), and
replaces any worker that died or has done `recycle_after` pages (PaddleOCR creeps in memory).
What to run and what a result means is the job source's business (the task manager).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Protocol, TypeVar

from ocr_server.documents import DocumentLimits
from ocr_server.engines.profiles import Profile
from ocr_server.engines.tesseract import find_tessdata
from ocr_server.errors import PageTimeoutError, TaskError
from ocr_server.models import PageResult
from ocr_server.workers.messages import (
    WORKER_ENVIRONMENT,
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

log = logging.getLogger(__name__)

T = TypeVar("T")


class JobSource(Protocol):
    """What the pool asks for work and tells about outcomes (called on the pool's thread)."""

    def next_job(self) -> PageJob | None: ...

    def job_done(self, job: PageJob, page: PageResult) -> None: ...

    def job_failed(self, job: PageJob, failure: TaskError) -> None: ...

    def job_lost(self, job: PageJob, reason: str) -> None: ...


class PoolSettings(Protocol):
    """The flags a pool is built from (ServerConfig and WorkerHostConfig both have them)."""

    @property
    def workers(self) -> int: ...
    @property
    def model_dir(self) -> Path: ...
    @property
    def default_profile(self) -> str: ...
    @property
    def engine(self) -> str: ...
    @property
    def fake_rules(self) -> str: ...
    @property
    def log_format(self) -> str: ...
    @property
    def data_dir(self) -> Path: ...
    @property
    def max_pixels(self) -> int: ...
    @property
    def max_pages(self) -> int: ...
    @property
    def page_timeout(self) -> float: ...
    @property
    def recycle_after(self) -> int: ...
    @property
    def tessdata_dir(self) -> Path | None: ...
    @property
    def engines_per_worker(self) -> int: ...


def build_pool(settings: PoolSettings, profiles: dict[str, Profile]) -> WorkerPool:
    """The pool a server or a worker host runs (not started)."""
    return WorkerPool(
        size=settings.workers,
        config=WorkerConfig(
            model_dir=settings.model_dir,
            default_profile=settings.default_profile,
            profiles=profiles,
            engine=settings.engine,
            fake_rules=settings.fake_rules,
            state_dir=settings.data_dir,
            limits=DocumentLimits(max_pixels=settings.max_pixels, max_pages=settings.max_pages),
            log_format=settings.log_format,
            tessdata=find_tessdata(settings.tessdata_dir),
            max_engines=settings.engines_per_worker,
        ),
        page_timeout=settings.page_timeout,
        recycle_after=settings.recycle_after,
    )


class WorkerStartError(RuntimeError):
    """A worker could not load its engine: the server cannot serve."""


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    ready: bool = False
    job: PageJob | None = None
    job_started: float = 0.0
    pages_done: int = 0
    retiring: bool = False


class WorkerPool:
    def __init__(
        self, size: int, config: WorkerConfig, page_timeout: float, recycle_after: int
    ) -> None:
        self.size = size
        self._config = config
        self._page_timeout = page_timeout
        self._recycle_after = recycle_after
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._wake_reader, self._wake_writer = self._context.Pipe(duplex=False)
        self._lock = threading.Condition()
        self._accepting = True
        self._closing = False
        self._fatal: str | None = None
        self._thread: threading.Thread | None = None
        self._source: JobSource | None = None
        # workers replaced, by reason ("died", "timeout", "recycled"): read by the metrics
        self.restarts: collections.Counter[str] = collections.Counter()

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Spawn every worker; call before any gRPC object exists (gRPC and fork do not mix)."""
        for key, value in WORKER_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        for index in range(self.size):
            self._spawn(index)

    def wait_ready(self, timeout: float) -> None:
        """Block until every worker has loaded its engine; raise if one cannot."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._fatal is not None:
                    raise WorkerStartError(self._fatal)
                if self.ready_count == self.size:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkerStartError(
                        f"only {self.ready_count} of {self.size} workers loaded their engines "
                        f"within {timeout:.0f} s"
                    )
                self._lock.wait(min(remaining, 0.5))

    def run(self, source: JobSource) -> None:
        """Start the dispatcher thread that feeds workers from `source`."""
        self._source = source
        self._thread = threading.Thread(target=self._loop, name="worker-pool", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Tell the dispatcher that new work may be waiting (thread-safe, cheap)."""
        with contextlib.suppress(OSError):
            self._wake_writer.send_bytes(b"!")

    def drain(self, grace: float) -> list[PageJob]:
        """Stop handing out pages, let pages in flight finish for up to `grace` seconds, then
        kill the workers still busy and return their unfinished jobs (for the queue)."""
        with self._lock:
            self._accepting = False
        self.wake()
        deadline = time.monotonic() + grace
        with self._lock:
            while self.busy_count and time.monotonic() < deadline:
                self._lock.wait(min(0.2, max(deadline - time.monotonic(), 0.01)))
            return [w.job for w in self._workers.values() if w.job is not None]

    def stop(self) -> None:
        """Stop the dispatcher and every worker (busy ones are killed)."""
        with self._lock:
            self._closing = True
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for worker in list(self._workers.values()):
            try:
                if worker.job is None:
                    worker.conn.send(Stop())
                else:
                    worker.process.kill()
            except OSError:
                pass
        for worker in list(self._workers.values()):
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)

    # --- state for health and tests ------------------------------------------------------

    @property
    def ready_count(self) -> int:
        return sum(1 for w in self._workers.values() if w.ready)

    @property
    def busy_count(self) -> int:
        return sum(1 for w in self._workers.values() if w.job is not None)

    # --- the dispatcher ------------------------------------------------------------------

    def _spawn(self, index: int) -> None:
        parent_conn, child_conn = self._context.Pipe()
        process = self._context.Process(
            target=worker_main,
            args=(child_conn, self._config),
            name=f"ocr-worker-{index}",
            daemon=True,
        )
        process.start()
        child_conn.close()  # so a dead worker reads as EOF here
        self._workers[index] = _Worker(index, process, parent_conn)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    return
                if self._accepting:
                    self._dispatch()
            waitables: list[object] = [self._wake_reader]
            for worker in list(self._workers.values()):
                waitables += [worker.conn, worker.process.sentinel]
            for ready in wait(waitables, timeout=self._next_timeout()):  # type: ignore[arg-type]
                if ready is self._wake_reader:
                    self._drain_wake_pipe()
                    continue
                owner = self._owner_of(ready)
                if owner is not None:
                    self._service(owner, ready)
            self._kill_overdue()

    def _dispatch(self) -> None:
        assert self._source is not None
        for worker in self._workers.values():
            if not worker.ready or worker.job is not None or worker.retiring:
                continue
            job = self._tell(self._source.next_job)
            if job is None:
                return
            try:
                worker.conn.send(RunPage(job))
            except OSError:
                self._tell(self._source.job_lost, job, "the worker died before it took the page")
                continue
            worker.job, worker.job_started = job, time.monotonic()

    def _next_timeout(self) -> float:
        busy = [w.job_started for w in self._workers.values() if w.job is not None]
        if not busy:
            return 1.0
        return max(0.0, min(busy) + self._page_timeout - time.monotonic())

    def _drain_wake_pipe(self) -> None:
        while self._wake_reader.poll():
            self._wake_reader.recv_bytes()

    def _owner_of(self, waitable: object) -> _Worker | None:
        for worker in self._workers.values():
            if waitable is worker.conn or waitable == worker.process.sentinel:
                return worker
        return None

    def _service(self, worker: _Worker, ready: object) -> None:
        if ready is worker.conn:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                self._replace(worker, self._death_reason(worker))
                return
            self._handle(worker, message)
        else:
            self._replace(worker, self._death_reason(worker))

    def _handle(self, worker: _Worker, message: FromWorker) -> None:
        assert self._source is not None
        match message:
            case Ready(pid=pid):
                with self._lock:
                    worker.ready = True
                    self._lock.notify_all()
                log.info("worker %d (pid %s) ready", worker.index, pid)
            case Fatal(message=reason):
                with self._lock:
                    self._fatal = f"worker {worker.index} could not load its engine: {reason}"
                    self._lock.notify_all()
                log.error("%s", self._fatal)
            case PageDone() | PageFailed():
                self._finished(worker, message)

    def _finished(self, worker: _Worker, message: PageDone | PageFailed) -> None:
        assert self._source is not None
        job, worker.job = worker.job, None
        if job is None:
            return
        worker.pages_done += 1
        if self._recycle_after and worker.pages_done >= self._recycle_after:
            log.info("recycling worker %d after %d pages", worker.index, worker.pages_done)
            worker.retiring = True
            with contextlib.suppress(OSError):
                worker.conn.send(Stop())
        with self._lock:
            if self._accepting and not self._closing:
                # The worker's next page first: recording this one (store writes, the result,
                # watchers) takes milliseconds the worker would otherwise sit idle.
                self._dispatch()
        if isinstance(message, PageDone):
            self._tell(self._source.job_done, job, message.page)
        else:
            self._tell(self._source.job_failed, job, message.failure)
        with self._lock:
            self._lock.notify_all()

    @staticmethod
    def _tell(call: Callable[..., T], *args: object) -> T | None:
        """Call the job source; its failure (a store error, say) must never stop the
        dispatcher, or every later task would wait forever."""
        try:
            return call(*args)
        except Exception:
            log.exception("the task manager failed in %s", getattr(call, "__name__", "?"))
            return None

    def _death_reason(self, worker: _Worker) -> str:
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        if code is not None and code < 0:
            return f"the worker process was killed by signal {-code}"
        return f"the worker process exited with code {code}"

    def _replace(self, worker: _Worker, reason: str) -> None:
        """A worker ended: report its page (if any) and start a new one in its place."""
        assert self._source is not None
        worker.process.join(timeout=5)
        worker.conn.close()
        job = worker.job
        with self._lock:
            del self._workers[worker.index]
            closing = self._closing
        if not worker.retiring:
            log.warning("worker %d died: %s", worker.index, reason)
        if job is not None:
            self._tell(self._source.job_lost, job, reason)
        if closing or (self._fatal is not None and not worker.ready):
            return
        if worker.retiring:
            self.restarts["recycled"] += 1
        else:
            self.restarts["timeout" if "time limit" in reason else "died"] += 1
        with self._lock:
            self._spawn(worker.index)
            self._lock.notify_all()

    def _kill_overdue(self) -> None:
        assert self._source is not None
        now = time.monotonic()
        for worker in list(self._workers.values()):
            job = worker.job
            if job is None or now - worker.job_started < self._page_timeout:
                continue
            log.warning(
                "page %d of task %s passed the %.0f s limit: killing worker %d",
                job.page_number,
                job.task_id,
                self._page_timeout,
                worker.index,
            )
            worker.job = None
            worker.process.kill()
            failure = PageTimeoutError.after(job.page_number, self._page_timeout)
            self._tell(self._source.job_failed, job, failure)
            self._replace(worker, "killed after the per-page time limit")
