"""The task state machine: what happens to a task after it was admitted.

`PENDING -> PROCESSING -> COMPLETED | FAILED | CANCELLED`. The backend makes each change
atomically; the manager decides which change follows which event: a finished page that was
the last one completes the task with its result, a damaged page fails it, a lost worker
retries the page once, a page that cannot be stored fails the task. It is also the worker
pool's job source: it turns the backend's page leases into jobs with a local document file.
Clients' look-ups go through it too, with the task id checked first.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Collection

from ocr_server.backends.tasks import (
    LossOutcome,
    PageLease,
    PageOutcome,
    TaskBackend,
    TaskList,
)
from ocr_server.convert import build_result
from ocr_server.errors import (
    DamagedEntryError,
    DocumentLostError,
    DocumentMissingError,
    PageResultLostError,
    ResultNotStoredError,
    StoreFullError,
    TaskError,
    TaskNotCompletedError,
    TaskNotFoundError,
)
from ocr_server.models import PageResult, TaskRecord, TaskState
from ocr_server.tasks.ids import check_task_id
from ocr_server.telemetry.observer import Fanout, TaskObserver
from ocr_server.workers.messages import PageJob

log = logging.getLogger(__name__)


class TaskManager:
    def __init__(self, backend: TaskBackend, observer: TaskObserver | None = None) -> None:
        self._backend = backend
        self._observer: TaskObserver = observer or Fanout(())
        self._dispatched: dict[int, float] = {}  # job id -> when it went to a worker
        self._started: set[str] = set()  # tasks whose start was told to the observer
        self._documents = backend.documents
        self._accepting = True
        self._job_ids = itertools.count(1)
        self._lock = threading.Lock()  # guards _jobs only; the backend has its own
        # pages handed to the pool: their lease and their open local document file
        self._jobs: dict[int, tuple[PageLease, contextlib.ExitStack]] = {}

    # --- client operations ---------------------------------------------------------------

    def find(self, tenant: str, task_id: str) -> tuple[TaskRecord, int]:
        """The tenant's task and its queue position; NOT_FOUND for anybody else's."""
        check_task_id(task_id)
        view = self._backend.find(tenant, task_id)
        if view is None:
            raise TaskNotFoundError(task_id)
        return view.record, view.queue_position

    def queue_position(self, task_id: str) -> int:
        return self._backend.queue_position(task_id)

    def result(self, tenant: str, task_id: str) -> tuple[TaskRecord, bytes | None]:
        """The task and, once COMPLETED, its serialised result; DATA_LOSS if it is damaged.
        A CANCELLED task's result holds the pages finished before the cancel (None if none):
        a client that stopped a long document keeps what was read."""
        record, _ = self.find(tenant, task_id)
        if record.state == TaskState.CANCELLED:
            pages = self._backend.pages(task_id)
            return record, build_result(pages.values()) if pages else None
        if record.state != TaskState.COMPLETED:
            return record, None
        result = self._backend.result(task_id)
        if result is None:
            if self._backend.get(task_id) is None:
                raise TaskNotFoundError(task_id)  # expired between the two reads
            raise DamagedEntryError(task_id, "result")  # completed, unexpired, yet gone
        return record, result

    def export_source(self, tenant: str, task_id: str) -> tuple[TaskRecord, bytes]:
        """The record and serialised result `result` returns (a CANCELLED task's finished
        pages too), for rendering a file: NOT_FOUND as `result`, FAILED_PRECONDITION while
        there is no result (not yet COMPLETED, FAILED, or cancelled before any page)."""
        record, result = self.result(tenant, task_id)
        if result is None:
            raise TaskNotCompletedError(record)
        return record, result

    def page_results(self, tenant: str, task_id: str) -> tuple[TaskRecord, list[PageResult]]:
        """The pages recognised so far, in page order, in any state: a cancelled or failed
        task's finished pages stay readable until it expires."""
        record, _ = self.find(tenant, task_id)
        pages = self._backend.pages(task_id)
        return record, [pages[n] for n in sorted(pages)]

    def cancel(self, tenant: str, task_id: str) -> TaskRecord:
        """Cancel a pending or processing task; a page in flight finishes and is dropped."""
        before, _ = self.find(tenant, task_id)
        record = self._backend.cancel(task_id)
        if record is None:
            raise TaskNotFoundError(task_id)  # expired in between
        if not before.state.is_final:
            self._finished(record)
        return record

    def list_tasks(
        self,
        tenant: str,
        states: Collection[TaskState] = (),
        created_after: float | None = None,
        created_before: float | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> TaskList:
        """The tenant's tasks, newest first, without results (see TaskBackend.list_tasks)."""
        return self._backend.list_tasks(
            tenant, states, created_after, created_before, page_size, page_token
        )

    # --- the worker pool's side (workers.pool.JobSource) -----------------------------------

    def next_job(self) -> PageJob | None:
        while (lease := self._backend.next_page()) is not None:
            if lease.assemble:
                self._complete(lease.task_id)
                continue
            files = contextlib.ExitStack()
            try:
                path = files.enter_context(self._documents.local_file(lease.document_ref))
            except DocumentMissingError as exc:
                log.error("task %s: %s", lease.task_id, exc)
                self._backend.fail(
                    lease.task_id,
                    DocumentLostError("the stored document is gone; submit it again"),
                )
                continue
            job = PageJob(
                job_id=next(self._job_ids),
                task_id=lease.task_id,
                document_path=str(path),
                document_type=lease.document_type,
                page_number=lease.page_number,
                dpi=lease.settings.dpi,
                profile=lease.settings.profile,
                language=lease.settings.language,
            )
            with self._lock:
                self._jobs[job.job_id] = (lease, files)
                self._dispatched[job.job_id] = time.monotonic()
                first = lease.task_id not in self._started
                self._started.add(lease.task_id)
            if first:
                record = self._backend.get(lease.task_id)
                if record is not None:
                    self._observer.task_started(record)
            return job
        return None

    def job_done(self, job: PageJob, page: PageResult) -> None:
        with self._lock:
            dispatched = self._dispatched.get(job.job_id, time.monotonic())
        lease = self._end_job(job)
        try:
            outcome = self._backend.page_done(lease, page)
            if outcome != PageOutcome.DROPPED:
                record = self._backend.get(lease.task_id)
                if record is not None:
                    self._observer.page_done(record, time.monotonic() - dispatched)
        except StoreFullError as exc:
            self._fail_quietly(
                lease.task_id,
                ResultNotStoredError(f"the recognised text could not be stored: {exc}"),
            )
            return
        if outcome == PageOutcome.LAST:
            self._complete(lease.task_id, {page.page_number: page})

    def job_failed(self, job: PageJob, failure: TaskError) -> None:
        lease = self._end_job(job)
        self._fail(lease.task_id, failure)

    def job_lost(self, job: PageJob, reason: str) -> None:
        """The page's worker died: run the page once more, then fail the task. While
        shutting down the page just goes back: it runs after the restart."""
        lease = self._end_job(job)
        if not self._accepting:
            self._backend.release_page(lease)
        elif self._backend.page_lost(lease, reason) == LossOutcome.FAILED:
            record = self._backend.get(lease.task_id)
            if record is not None:
                self._finished(record)

    def lease_ids(self) -> list[str]:
        """The leases of the pages handed out and not yet reported (a worker host's
        heartbeat renews them)."""
        with self._lock:
            return [lease.lease_id for lease, _ in self._jobs.values()]

    def release_unfinished(self, jobs: list[PageJob]) -> int:
        """At shutdown, after the pool stopped: give back the pages of `jobs` not reported
        meanwhile, without counting an attempt."""
        released = 0
        for job in jobs:
            with self._lock:
                held = self._jobs.pop(job.job_id, None)
            if held is None:
                continue
            lease, files = held
            files.close()
            self._backend.release_page(lease)
            released += 1
        return released

    def _end_job(self, job: PageJob) -> PageLease:
        with self._lock:
            lease, files = self._jobs.pop(job.job_id)
            self._dispatched.pop(job.job_id, None)
        files.close()
        return lease

    def _complete(self, task_id: str, in_hand: dict[int, PageResult] | None = None) -> None:
        """Every page is stored: build the result from them, or fail the task if one is
        damaged (never hand out a result without it). `in_hand`: pages just stored, not read
        back (a one-page task reads none: parsing a dense page back costs milliseconds of
        the pool's thread)."""
        record = self._backend.get(task_id)
        if record is None or record.state.is_final:
            return
        pages = dict(in_hand or {})
        if any(n not in pages for n in record.page_numbers):
            pages = {**self._backend.pages(task_id), **pages}
        missing = [n for n in record.page_numbers if n not in pages]
        if missing:
            self._fail(task_id, PageResultLostError.on_page(missing[0]))
            return
        try:
            completed = self._backend.complete(task_id, build_result(pages.values()))
            if completed is not None:
                self._finished(completed)
        except StoreFullError as exc:
            self._fail_quietly(
                task_id, ResultNotStoredError(f"the recognised text could not be stored: {exc}")
            )

    def _fail_quietly(self, task_id: str, failure: TaskError) -> None:
        log.error("task %s: %s", task_id, failure)
        try:
            self._fail(task_id, failure)
        except Exception:
            # Not even the failure could be written: the stored record still says it is
            # unfinished, so the next start runs the task again. Nothing is silently lost.
            log.exception("task %s: could not record the failure", task_id)

    def _fail(self, task_id: str, failure: TaskError) -> None:
        before = self._backend.get(task_id)
        record = self._backend.fail(task_id, failure)
        if record is not None and before is not None and not before.state.is_final:
            self._finished(record)

    def _finished(self, record: TaskRecord) -> None:
        with self._lock:
            self._started.discard(record.task_id)
        self._observer.task_finished(record)

    # --- start-up, shutdown and upkeep ---------------------------------------------------

    def recover(self) -> int:
        """Queue again every task that was pending or processing when the server stopped;
        complete those whose pages were all done."""
        recovery = self._backend.recover()
        for task_id in recovery.ready:
            self._complete(task_id)
        return recovery.requeued

    def stop_accepting(self) -> None:
        self._accepting = False

    def requeue_unfinished(self) -> int:
        """At shutdown: tasks that were processing go back to PENDING for the next start."""
        return self._backend.requeue_unfinished()

    def sweep(self) -> int:
        """Delete expired entries and forget queued tasks that expired while waiting."""
        return self._backend.expire()
