"""The task manager: every task state transition, under one lock.

Submit triages and queues; the worker pool pulls pages through `next_job` and reports back;
cancel, failure, retry after a worker death, recovery after a restart and draining at shutdown
all go through here, so the stored record, the scheduler and the watchers never disagree.
"""

from __future__ import annotations

import copy
import logging
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from ocr_server.capabilities import Capabilities
from ocr_server.convert import build_result
from ocr_server.documents import (
    DocumentLimits,
    check_page_sizes,
    detect_type,
    inspect_image,
    inspect_pdf,
    parse_page_selection,
)
from ocr_server.errors import (
    DamagedEntryError,
    InvalidSettingsError,
    OcrServiceError,
    QueueFullError,
    ShuttingDownError,
    StoreFullError,
    TaskNotFoundError,
)
from ocr_server.events import TaskEvents
from ocr_server.models import PageJob, PageResult, Settings, TaskRecord, TaskState
from ocr_server.scheduler import Scheduler
from ocr_server.store import TaskStore

log = logging.getLogger(__name__)

TASK_ID_BYTES = 20  # 160 random bits, as 40 hex digits: safe in URLs, paths and shells
_TASK_ID_PATTERN = re.compile(r"[0-9a-f]{40}")
MAX_REQUEST_ID = 128
MAX_FILENAME = 1024


@dataclass(frozen=True)
class SubmitOptions:
    """The client's part of a submission, as received."""

    language: str = ""
    profile: str = ""
    pages: str = ""
    dpi: int = 0
    request_id: str = ""
    filename: str = ""


@dataclass(frozen=True)
class ManagerLimits:
    result_ttl: float
    max_queue: int
    documents: DocumentLimits
    max_pending_per_tenant: int = 2**31  # pending or processing tasks of one tenant


class TaskManager:
    def __init__(
        self,
        store: TaskStore,
        scheduler: Scheduler,
        events: TaskEvents,
        capabilities: Capabilities,
        limits: ManagerLimits,
        wake_workers: Callable[[], None],
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._events = events
        self._capabilities = capabilities
        self._limits = limits
        self._wake_workers = wake_workers
        self._lock = threading.RLock()
        self._accepting = True
        self._next_job_id = 0
        # submissions past the room check and not yet queued, per tenant
        self._admitting: Counter[str] = Counter()

    # --- client operations ---------------------------------------------------------------

    def submit(self, tenant: str, content: bytes, options: SubmitOptions) -> TaskRecord:
        """Triage the document and queue it; return the new (or idempotently same) task."""
        if not self._accepting:
            raise ShuttingDownError("the server is shutting down; submit again shortly")
        _check_text_field("request_id", options.request_id, MAX_REQUEST_ID)
        _check_text_field("filename", options.filename, MAX_FILENAME)
        if options.request_id:
            existing = self._find_by_request_id(tenant, options.request_id)
            if existing is not None:
                return existing
        settings = self._capabilities.resolve(
            options.language, options.profile, options.pages, options.dpi
        )
        document_type = detect_type(content)
        self._reserve_room(tenant)
        try:
            return self._admit(tenant, content, options, settings, document_type)
        finally:
            with self._lock:
                self._admitting[tenant] -= 1
                if not self._admitting[tenant]:
                    del self._admitting[tenant]

    def _reserve_room(self, tenant: str) -> None:
        """Count this submission against --max-queue and the tenant's limit before the slow
        part (writing and inspecting the document), so concurrent Submits overshoot neither."""
        with self._lock:
            self._check_room(tenant)
            self._admitting[tenant] += 1

    def _admit(
        self,
        tenant: str,
        content: bytes,
        options: SubmitOptions,
        settings: Settings,
        document_type: str,
    ) -> TaskRecord:
        """Store the document, inspect it, and queue the task (its room is reserved)."""
        if self._store.is_full(len(content)):
            raise StoreFullError(
                "the task store is at its size limit; retry after results expire "
                "(nothing is evicted to make room)"
            )
        task_id = secrets.token_hex(TASK_ID_BYTES)
        path = self._store.put_document(task_id, content)
        try:
            if document_type == "pdf":
                info = inspect_pdf(path, self._limits.documents)
            else:
                info = inspect_image(content, document_type, self._limits.documents)
            pages = parse_page_selection(settings.pages, info.page_count)
            check_page_sizes(info, pages, settings.dpi, self._limits.documents)
        except Exception:
            self._store.delete_document(task_id)
            raise
        now = time.time()
        record = TaskRecord(
            task_id=task_id,
            tenant=tenant,
            state=TaskState.PENDING,
            settings=settings,
            document_type=document_type,
            page_numbers=pages,
            created=now,
            expires=now + self._limits.result_ttl,
            filename=options.filename,
            request_id=options.request_id,
        )
        with self._lock:
            if options.request_id:
                bound = self._store.claim_request_id(
                    tenant, options.request_id, task_id, record.expires
                )
                if bound != task_id:
                    existing = self._store.get_task(bound)
                    if existing is not None:
                        self._store.delete_document(task_id)
                        return existing
                    # the bound task expired before its key: the key is ours now
                    self._store.bind_request_id(tenant, options.request_id, task_id, record.expires)
            try:
                self._store.put_task(record)
            except Exception:  # not acknowledged: leave nothing behind
                self._store.delete_document(task_id)
                if options.request_id:
                    self._store.release_request_id(tenant, options.request_id)
                raise
            self._scheduler.enqueue(task_id, pages, owner=tenant)
            self._publish(record)
        self._wake_workers()
        log.info("task %s queued: %s, %d pages", task_id, document_type, len(pages))
        return record

    def find(self, tenant: str, task_id: str) -> tuple[TaskRecord, int]:
        """The tenant's task and its queue position; NOT_FOUND for anybody else's."""
        _check_task_id(task_id)
        record = self._store.get_task_evenly(task_id)
        if record is None or not secrets.compare_digest(record.tenant, tenant):
            raise TaskNotFoundError(task_id)
        return record, self.queue_position(task_id)

    def queue_position(self, task_id: str) -> int:
        with self._lock:
            return self._scheduler.queue_position(task_id)

    def result(self, tenant: str, task_id: str) -> tuple[TaskRecord, bytes | None]:
        record, _ = self.find(tenant, task_id)
        if record.state != TaskState.COMPLETED:
            return record, None
        result = self._store.get_result(task_id)
        if result is None:
            if record.expires <= time.time():
                raise TaskNotFoundError(task_id)  # expired between the two reads
            raise DamagedEntryError(task_id, "result")  # completed, unexpired, yet gone
        return record, result

    def cancel(self, tenant: str, task_id: str) -> TaskRecord:
        """Cancel a pending or processing task; a page in flight finishes and is dropped."""
        self.find(tenant, task_id)
        with self._lock:
            record = self._store.get_task(task_id)
            if record is None:
                raise TaskNotFoundError(task_id)
            if record.state.is_final:
                return record
            self._finish(record, TaskState.CANCELLED)
            log.info("task %s cancelled", task_id)
            return record

    # --- the worker pool's side (JobSource) ----------------------------------------------

    def next_job(self) -> PageJob | None:
        with self._lock:
            while True:
                picked = self._scheduler.next_page()
                if picked is None:
                    return None
                task_id, page_number = picked
                try:
                    record = self._store.get_task(task_id)
                except DamagedEntryError as exc:
                    log.error("dropping a queued task: %s", exc)
                    record = None
                if record is None or record.state.is_final:
                    self._scheduler.remove(task_id)  # expired or ended meanwhile
                    continue
                if record.state == TaskState.PENDING:
                    record.state = TaskState.PROCESSING
                    record.started = record.started or time.time()
                    self._store.put_task(record)
                    self._publish(record)
                    self._publish_queue_positions()
                self._next_job_id += 1
                return PageJob(
                    job_id=self._next_job_id,
                    task_id=task_id,
                    document_path=str(self._store.document_path(task_id)),
                    document_type=record.document_type,
                    page_number=page_number,
                    dpi=record.settings.dpi,
                    profile=record.settings.profile,
                    language=record.settings.language,
                )

    def job_done(self, job: PageJob, page: PageResult) -> None:
        with self._lock:
            record = self._store.get_task(job.task_id)
            if record is None or record.state.is_final:
                return  # cancelled or expired while the page ran
            try:
                self._store.put_page(record, page)
                record.pages_done += 1
                if self._scheduler.page_finished(job.task_id, job.page_number):
                    self._complete(record)
                else:
                    self._store.put_task(record)
                    self._publish(record)
            except OcrServiceError as exc:  # the store is full (or damaged): fail this task
                self._fail_after_store_error(record, exc)

    def _fail_after_store_error(self, record: TaskRecord, exc: OcrServiceError) -> None:
        message = f"the recognised text could not be stored: {exc}"
        log.error("task %s: %s", record.task_id, message)
        try:
            self._finish(record, TaskState.FAILED, exc.code.value[0], message)
        except Exception:
            # Not even the failure could be written: the stored record still says it is
            # unfinished, so the next start runs the task again. Nothing is silently lost.
            log.exception("task %s: could not record the failure", record.task_id)

    def job_failed(self, job: PageJob, code: str, message: str) -> None:
        with self._lock:
            record = self._store.get_task(job.task_id)
            if record is None or record.state.is_final:
                return
            status = grpc.StatusCode[code] if code in grpc.StatusCode.__members__ else None
            number = status.value[0] if status is not None else grpc.StatusCode.INTERNAL.value[0]
            self._finish(record, TaskState.FAILED, number, message)
            log.warning("task %s failed: %s", job.task_id, message)

    def job_lost(self, job: PageJob, reason: str) -> None:
        """The page's worker died: run the page once more, then fail the task."""
        with self._lock:
            record = self._store.get_task(job.task_id)
            if record is None or record.state.is_final:
                return
            if not self._accepting:
                self._scheduler.requeue_page(job.task_id, job.page_number)
                return  # shutting down: the page runs after the restart
            if job.page_number in record.retried_pages:
                self._finish(
                    record,
                    TaskState.FAILED,
                    grpc.StatusCode.ABORTED.value[0],
                    f"page {job.page_number}: the worker died twice while recognising it "
                    f"({reason}); the page may be too large or crash the engine",
                )
                return
            log.warning("task %s page %d: %s; retrying once", job.task_id, job.page_number, reason)
            record.retried_pages.append(job.page_number)
            self._store.put_task(record)
            self._scheduler.requeue_page(job.task_id, job.page_number)
        self._wake_workers()

    # --- start-up, shutdown and upkeep ---------------------------------------------------

    def recover(self) -> int:
        """Queue again every task that was pending or processing when the server stopped."""
        count = 0
        with self._lock:
            for record in self._store.unfinished_tasks():
                if not self._store.document_path(record.task_id).exists():
                    self._finish(
                        record,
                        TaskState.FAILED,
                        grpc.StatusCode.DATA_LOSS.value[0],
                        "the document was lost while the server restarted; submit it again",
                    )
                    continue
                done = self._store.get_pages(record)
                record.pages_done = len(done)
                remaining = [n for n in record.page_numbers if n not in done]
                if not remaining:
                    self._complete(record)
                    continue
                record.state = TaskState.PENDING
                self._store.put_task(record)
                self._scheduler.enqueue(record.task_id, remaining, owner=record.tenant)
                count += 1
        if count:
            log.info("recovered %d unfinished tasks", count)
            self._wake_workers()
        return count

    def stop_accepting(self) -> None:
        with self._lock:
            self._accepting = False

    def requeue_unfinished(self) -> None:
        """At shutdown: tasks that were processing go back to PENDING for the next start."""
        with self._lock:
            for record in self._store.unfinished_tasks():
                if record.state == TaskState.PROCESSING:
                    record.state = TaskState.PENDING
                    self._store.put_task(record)
                    self._publish(record)

    def sweep(self) -> int:
        """Delete expired entries and forget queued tasks that expired while waiting."""
        removed = self._store.sweep()
        with self._lock:
            for task_id in self._scheduler.waiting_ids():
                if self._store.get_task(task_id) is None:
                    self._scheduler.remove(task_id)
        return removed

    # --- internals -----------------------------------------------------------------------

    def _check_room(self, tenant: str) -> None:
        """Refuse a new task when the queue is full or the tenant has too many unfinished ones
        (so one tenant's burst cannot fill the queue for everybody). Under the lock; counts
        the submissions being admitted as if queued."""
        if self._scheduler.pending_count + self._admitting.total() >= self._limits.max_queue:
            raise QueueFullError(
                f"the queue is full ({self._limits.max_queue} tasks waiting); retry later"
            )
        limit = self._limits.max_pending_per_tenant
        if self._scheduler.unfinished_count(tenant) + self._admitting[tenant] >= limit:
            raise QueueFullError(
                f"this tenant already has {limit} tasks pending or processing, the per-tenant "
                "limit (--max-pending-per-tenant); submit again when some have finished"
            )

    def _find_by_request_id(self, tenant: str, request_id: str) -> TaskRecord | None:
        task_id = self._store.lookup_request_id(tenant, request_id)
        return self._store.get_task(task_id) if task_id else None

    def _complete(self, record: TaskRecord) -> None:
        pages = self._store.get_pages(record)
        missing = [n for n in record.page_numbers if n not in pages]
        if missing:  # a stored page was damaged: never hand out a result without it
            self._finish(
                record,
                TaskState.FAILED,
                grpc.StatusCode.DATA_LOSS.value[0],
                f"the recognised text of page {missing[0]} was damaged in the store; "
                "submit the document again",
            )
            return
        self._store.put_result(record, build_result(pages.values()))
        record.pages_done = len(pages)
        self._finish(record, TaskState.COMPLETED)

    def _finish(
        self, record: TaskRecord, state: TaskState, code: int = 0, message: str = ""
    ) -> None:
        record.state = state
        record.ended = time.time()
        record.error_code, record.error_message = code, message
        self._scheduler.remove(record.task_id)
        self._store.put_task(record)
        self._store.delete_document(record.task_id)
        self._store.delete_pages(record)
        self._publish(record)

    def _publish(self, record: TaskRecord) -> None:
        if self._events.is_watched(record.task_id):
            position = self._scheduler.queue_position(record.task_id)
            self._events.publish(record.task_id, (copy.deepcopy(record), position))

    def _publish_queue_positions(self) -> None:
        """A task started: every watched task still waiting moved up one place (only the
        position changed, so no record is read or copied)."""
        positions = self._scheduler.queue_positions()
        for task_id in self._events.watched():
            position = positions.get(task_id, 0)
            if position:
                self._events.publish(task_id, (None, position))


def _check_task_id(task_id: str) -> None:
    """A malformed id is the caller's mistake, told before any look-up; a well-formed unknown
    id stays NOT_FOUND (unknown, expired and another tenant's look the same)."""
    if not _TASK_ID_PATTERN.fullmatch(task_id):
        shown = repr(task_id[:20]) + ("..." if len(task_id) > 20 else "")
        raise InvalidSettingsError(
            f"task_id must be 40 lowercase hex digits (got {len(task_id)} characters: {shown})"
        )


def _check_text_field(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidSettingsError(f"{name} is {len(value)} characters; at most {limit} allowed")
    if any(ord(c) < 32 for c in value):
        raise InvalidSettingsError(f"{name} contains control characters")
