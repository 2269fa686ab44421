"""The local task backend: one process, one lock, the diskcache store, the in-memory scheduler.

Every call of the TaskBackend interface (backends/tasks.py) runs under one re-entrant lock,
so the stored record, the scheduler, the tenant index and the watchers never disagree. The
scheduler is memory only: `recover()` rebuilds it from the stored records at start-up, and
`requeue_unfinished()` leaves the records right for that at shutdown.
"""

from __future__ import annotations

import copy
import itertools
import logging
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path

from ocr_server.backends.local.capacity import Capacity
from ocr_server.backends.local.documents import LocalDocumentStore
from ocr_server.backends.local.events import LocalTaskEvents
from ocr_server.backends.local.index import TenantIndex
from ocr_server.backends.local.store import TaskStore
from ocr_server.backends.tasks import (
    Admission,
    LossOutcome,
    PageLease,
    PageOutcome,
    Recovery,
    Reservation,
    RoomLimits,
    TaskList,
    TaskView,
    decode_cursor,
    effective_page_size,
    encode_cursor,
    query_fingerprint,
)
from ocr_server.clock import Clock, system_clock
from ocr_server.errors import (
    DamagedEntryError,
    DocumentLostError,
    QueueFullError,
    TaskError,
    TenantLimitError,
    WorkerDiedTwiceError,
)
from ocr_server.models import PageResult, TaskRecord, TaskState
from ocr_server.tasks.scheduler import Scheduler

log = logging.getLogger(__name__)


class LocalTaskBackend:
    """The embedded backend (`scripts/serve` with no Redis). `on_work` is called, outside
    the lock, whenever a page may have become ready to run (the pool's wake-up)."""

    def __init__(
        self,
        directory: Path,
        limits: RoomLimits,
        max_active: int,
        max_store_bytes: int = 2**62,
        clock: Clock = system_clock,
        on_work: Callable[[], None] = lambda: None,
    ) -> None:
        self._clock = clock
        self._limits = limits
        self._on_work = on_work
        self._capacity = Capacity(max_store_bytes)
        self.store = TaskStore(directory, clock)
        self._capacity.add_volume(self.store.volume)
        self._documents = LocalDocumentStore(directory / "documents", self._capacity, clock)
        self._events = LocalTaskEvents()
        self._scheduler = Scheduler(max_active)
        self._index = TenantIndex()
        self._lock = threading.RLock()
        self._lease_ids = itertools.count(1)
        self._reserved: dict[str, str] = {}  # reservation id -> tenant
        self._reserved_per_tenant: Counter[str] = Counter()
        self._unfinished_at_start: list[TaskRecord] = []
        for record in self.store.live_tasks():
            self._index.put(record)
            if not record.state.is_final:
                self._unfinished_at_start.append(record)

    @property
    def events(self) -> LocalTaskEvents:
        return self._events

    @property
    def documents(self) -> LocalDocumentStore:
        return self._documents

    @property
    def capacity(self) -> Capacity:
        return self._capacity

    # --- admission ------------------------------------------------------------------------

    def lookup_request(self, tenant: str, request_id: str) -> TaskRecord | None:
        task_id = self.store.lookup_request_id(tenant, request_id)
        return self.store.get_task(task_id) if task_id else None

    def reserve(self, tenant: str) -> Reservation:
        with self._lock:
            self._check_room(tenant)
            reservation = Reservation(secrets.token_hex(8), tenant)
            self._reserved[reservation.reservation_id] = tenant
            self._reserved_per_tenant[tenant] += 1
            return reservation

    def release(self, reservation: Reservation) -> None:
        with self._lock:
            tenant = self._reserved.pop(reservation.reservation_id, None)
            if tenant is None:
                return
            self._reserved_per_tenant[tenant] -= 1
            if not self._reserved_per_tenant[tenant]:
                del self._reserved_per_tenant[tenant]

    def admit(self, reservation: Reservation, record: TaskRecord) -> Admission:
        try:
            with self._lock:
                if record.request_id:
                    existing = self._claim_request_id(record)
                    if existing is not None:
                        return Admission(existing, created=False)
                try:
                    self._save(record)
                except Exception:  # not acknowledged: leave no key behind
                    if record.request_id:
                        self.store.release_request_id(record.tenant, record.request_id)
                    raise
                self._scheduler.enqueue(record.task_id, record.page_numbers, owner=record.tenant)
                self._publish(record)
        finally:
            self.release(reservation)  # counted by the scheduler from now on
        self._on_work()
        log.info(
            "task %s queued: %s, %d pages",
            record.task_id,
            record.document_type,
            record.pages_total,
        )
        return Admission(copy.deepcopy(record), created=True)

    def _claim_request_id(self, record: TaskRecord) -> TaskRecord | None:
        """Bind the tenant's request_id to this task, or return the live task it names."""
        tenant, request_id = record.tenant, record.request_id
        bound = self.store.claim_request_id(tenant, request_id, record.task_id, record.expires)
        if bound == record.task_id:
            return None
        existing = self.store.get_task(bound)
        if existing is not None:
            return existing
        # the bound task expired before its key: the key is ours now
        self.store.bind_request_id(tenant, request_id, record.task_id, record.expires)
        return None

    def _check_room(self, tenant: str) -> None:
        """Refuse a new task when the queue is full or the tenant has too many unfinished ones
        (so one tenant's burst cannot fill the queue for everybody). Counts the submissions
        holding a reservation as if queued."""
        waiting = self._scheduler.pending_count + len(self._reserved)
        if waiting >= self._limits.max_queue:
            raise QueueFullError(
                f"the queue is full ({self._limits.max_queue} tasks waiting); retry later"
            )
        limit = self._limits.max_pending_per_tenant
        unfinished = self._scheduler.unfinished_count(tenant) + self._reserved_per_tenant[tenant]
        if unfinished >= limit:
            raise TenantLimitError(
                f"this tenant already has {limit} tasks pending or processing, the per-tenant "
                "limit (--max-pending-per-tenant); submit again when some have finished"
            )

    # --- look-ups -------------------------------------------------------------------------

    def find(self, tenant: str, task_id: str) -> TaskView | None:
        record = self.store.get_task_evenly(task_id)
        if record is None or not secrets.compare_digest(record.tenant, tenant):
            return None
        return TaskView(record, self.queue_position(task_id))

    def get(self, task_id: str) -> TaskRecord | None:
        return self.store.get_task(task_id)

    def queue_position(self, task_id: str) -> int:
        with self._lock:
            return self._scheduler.queue_position(task_id)

    # --- figures for the metrics (telemetry.metrics.ServerGauges) ----------------------------

    def unfinished_by_tenant(self) -> dict[tuple[str, str], int]:
        """(tenant, "pending" | "processing") -> tasks now."""
        with self._lock:
            return self._scheduler.unfinished_by_owner()

    def queue_depth(self) -> int:
        with self._lock:
            return self._scheduler.pending_count

    def store_bytes(self) -> int:
        """Bytes on disk: records, pages, results, documents and every other volume sharing the
        capacity, such as kept result files (what --max-store-mb caps)."""
        return self._capacity.volume()

    def result(self, task_id: str) -> bytes | None:
        return self.store.get_result(task_id)

    def pages(self, task_id: str) -> dict[int, PageResult]:
        record = self.store.get_task(task_id)
        return self.store.get_pages(record) if record is not None else {}

    def list_tasks(
        self,
        tenant: str,
        states: Collection[TaskState] = (),
        created_after: float | None = None,
        created_before: float | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> TaskList:
        size = effective_page_size(page_size)
        query = query_fingerprint(tenant, states, created_after, created_before)
        cursor = decode_cursor(page_token, query) if page_token else None
        with self._lock:
            ids, last = self._index.page(
                tenant,
                frozenset(states),
                created_after,
                created_before,
                cursor,
                size,
                self._clock(),
            )
        tasks = []
        for task_id in ids:
            try:
                record = self.store.get_task(task_id)
            except DamagedEntryError as exc:  # listed elsewhere as DATA_LOSS; not here
                log.error("%s", exc)
                continue
            if record is not None:
                tasks.append(record)
        token = encode_cursor(last[0], last[1], query) if last is not None else ""
        return TaskList(tasks, token)

    # --- pages ----------------------------------------------------------------------------

    def next_page(self) -> PageLease | None:
        with self._lock:
            while True:
                picked = self._scheduler.next_page()
                if picked is None:
                    return None
                task_id, page_number = picked
                try:
                    record = self.store.get_task(task_id)
                except DamagedEntryError as exc:
                    log.error("dropping a queued task: %s", exc)
                    record = None
                if record is None or record.state.is_final:
                    self._scheduler.remove(task_id)  # expired or ended meanwhile
                    continue
                if record.state == TaskState.PENDING:
                    record.state = TaskState.PROCESSING
                    record.started = record.started or self._clock()
                    self._save(record)
                    self._publish(record)
                    self._publish_queue_positions()
                return PageLease(
                    lease_id=str(next(self._lease_ids)),
                    task_id=task_id,
                    page_number=page_number,
                    attempt=2 if page_number in record.retried_pages else 1,
                    document_ref=record.document_ref,
                    document_type=record.document_type,
                    settings=record.settings,
                )

    def page_done(self, lease: PageLease, page: PageResult) -> PageOutcome:
        page_json = page.to_json()  # milliseconds on a dense page: not under the lock
        with self._lock:
            record = self.store.get_task(lease.task_id)
            if record is None or record.state.is_final:
                return PageOutcome.DROPPED  # cancelled or expired while the page ran
            self.store.put_page(record, page.page_number, page_json)
            if self._scheduler.page_finished(lease.task_id, lease.page_number):
                return PageOutcome.LAST
            record.pages_done += 1
            self._save(record)
            self._publish(record)
            return PageOutcome.STORED

    def page_lost(self, lease: PageLease, reason: str) -> LossOutcome:
        with self._lock:
            record = self.store.get_task(lease.task_id)
            if record is None or record.state.is_final:
                return LossOutcome.DROPPED
            if lease.page_number in record.retried_pages:
                self._finish(
                    record,
                    TaskState.FAILED,
                    WorkerDiedTwiceError.on_page(lease.page_number, reason),
                )
                return LossOutcome.FAILED
            log.warning(
                "task %s page %d: %s; retrying once", lease.task_id, lease.page_number, reason
            )
            record.retried_pages.append(lease.page_number)
            self._save(record)
            self._scheduler.requeue_page(lease.task_id, lease.page_number)
        self._on_work()
        return LossOutcome.RETRY

    def release_page(self, lease: PageLease) -> None:
        with self._lock:
            self._scheduler.requeue_page(lease.task_id, lease.page_number)

    # --- ends -----------------------------------------------------------------------------

    def complete(self, task_id: str, result: bytes) -> TaskRecord | None:
        with self._lock:
            record = self.store.get_task(task_id)
            if record is None or record.state.is_final:
                return record
            self.store.put_result(record, result)
            record.pages_done = record.pages_total
            self._finish(record, TaskState.COMPLETED)
            return copy.deepcopy(record)

    def fail(self, task_id: str, failure: TaskError) -> TaskRecord | None:
        with self._lock:
            record = self.store.get_task(task_id)
            if record is None or record.state.is_final:
                return record
            self._finish(record, TaskState.FAILED, failure)
            log.warning("task %s failed: %s", task_id, failure)
            return copy.deepcopy(record)

    def cancel(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            record = self.store.get_task(task_id)
            if record is None or record.state.is_final:
                return record
            self._finish(record, TaskState.CANCELLED)
            log.info("task %s cancelled", task_id)
            return copy.deepcopy(record)

    # --- upkeep ---------------------------------------------------------------------------

    def expire(self) -> int:
        removed = self.store.sweep()
        with self._lock:
            now = self._clock()
            self._index.expire(now)
            for task_id in self._scheduler.waiting_ids():
                try:
                    gone = self.store.get_task(task_id) is None
                except DamagedEntryError:
                    gone = False  # next_page drops it when it reaches the front
                if gone:
                    self._scheduler.remove(task_id)
        removed += self._documents.sweep(self._wants_document)
        if removed:
            log.info("swept %d expired entries", removed)
        return removed

    def _wants_document(self, ref: str) -> bool:
        """A document stays while its task is unfinished, or to its expiry if it asked to.
        Kept, too, when the record is damaged: the task stays visible (and damaged)."""
        try:
            record = self.store.get_task(ref)
        except DamagedEntryError:
            return True
        return record is not None and (not record.state.is_final or record.keep_document)

    def recover(self) -> Recovery:
        requeued = failed = 0
        ready = []
        with self._lock:
            unfinished = sorted(self._unfinished_at_start, key=lambda r: (r.created, r.task_id))
            self._unfinished_at_start = []
            for stale in unfinished:
                record = self.store.get_task(stale.task_id)
                if record is None or record.state.is_final:
                    continue
                if not self._documents.exists(record.document_ref):
                    lost = DocumentLostError(
                        "the document was lost while the server restarted; submit it again"
                    )
                    self._finish(record, TaskState.FAILED, lost)
                    failed += 1
                    continue
                done = self.store.get_pages(record)
                remaining = [n for n in record.page_numbers if n not in done]
                record.pages_done = len(done)
                if not remaining:
                    ready.append(record.task_id)
                    continue
                record.state = TaskState.PENDING
                self._save(record)
                self._scheduler.enqueue(record.task_id, remaining, owner=record.tenant)
                requeued += 1
        if requeued:
            log.info("recovered %d unfinished tasks", requeued)
            self._on_work()
        return Recovery(requeued, failed, ready)

    def requeue_unfinished(self) -> int:
        count = 0
        with self._lock:
            for task_id in self._index.in_state(TaskState.PROCESSING):
                try:
                    record = self.store.get_task(task_id)
                except DamagedEntryError as exc:
                    log.error("%s", exc)
                    continue
                if record is not None and record.state == TaskState.PROCESSING:
                    record.state = TaskState.PENDING
                    self._save(record)
                    self._publish(record)
                    count += 1
        return count

    def close(self) -> None:
        self.store.close()

    # --- internals ------------------------------------------------------------------------

    def _save(self, record: TaskRecord) -> None:
        self.store.put_task(record)
        self._index.put(record)

    def _finish(
        self, record: TaskRecord, state: TaskState, failure: TaskError | None = None
    ) -> None:
        record.state = state
        record.ended = self._clock()
        if failure is not None:
            record.error_code, record.error_message = failure.code.value[0], failure.message
        self._scheduler.remove(record.task_id)
        self._save(record)
        if not record.keep_document:
            self._documents.delete(record.document_ref)
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
