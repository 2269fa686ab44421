"""The task backend: every change of a task's state is one atomic call on this interface.

`local/backend.py` implements it in one process (diskcache, the in-memory `Scheduler`, one
lock); a Redis backend runs each call as one Lua script / Redis Function, so any number of
front ends and worker hosts stay consistent without a read-modify-write from a client. The
task manager (`tasks/manager.py`) and submission (`tasks/submission.py`) decide *what* to do
and call these; a backend decides nothing about recognition and never builds a result.

What every backend guarantees (the contract tests in tests/test_backend_contract.py hold any
backend to it):

- Atomicity: each call below either happens entirely or not at all, and calls are
  serialisable; a call on a task in a final state changes nothing.
- Events: every change is published to the backend's `TaskEvents` in the order it happened
  (a watcher that subscribed before reading the record misses nothing).
- Room: a `Reservation` counts against `max_queue` and the tenant's
  `max_pending_per_tenant` from `reserve` until `admit` or `release`, so concurrent
  submissions cannot overshoot either limit while their documents are written.
- Idempotency: per (tenant, request_id), at most one task exists while it lives; concurrent
  admissions with the same key all answer with that one task.
- Fair share: pages go out as `tasks.scheduler.Scheduler` orders them (FIFO start of up to
  `max_active` tasks, then round robin by least recently served).
- Retry once: a page whose worker was lost runs once more (`attempt` 2); a second loss fails
  the task with `WorkerDiedTwiceError` (ABORTED).
- Expiry: a task and everything stored for it (record, pages, result, request key, the
  document) reads as absent from its `expires` on, whether or not `expire()` has run yet.
- Tenancy: `find` and `list_tasks` never show a task to another tenant, and `find` costs the
  same for an unknown id as for another tenant's.
- Page results stay readable in every state until expiry, including those finished before a
  cancel or a failure (`pages`); a page that finishes after its task ended is dropped.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from ocr_server.backends.documents import DocumentStore
from ocr_server.backends.events import TaskEvents
from ocr_server.errors import InvalidSettingsError, TaskError
from ocr_server.models import PageResult, Settings, TaskRecord, TaskState

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class RoomLimits:
    max_queue: int  # tasks waiting (not yet started), all tenants together
    max_pending_per_tenant: int = 2**31  # one tenant's tasks pending or processing


@dataclass(frozen=True)
class Reservation:
    """Room held for one submission until it is admitted or released."""

    reservation_id: str
    tenant: str


@dataclass(frozen=True)
class Admission:
    record: TaskRecord
    created: bool  # False: the tenant's request_id already named this (live) task


@dataclass(frozen=True)
class TaskView:
    record: TaskRecord
    queue_position: int  # 1 = the next task to start; 0 = not waiting


@dataclass(frozen=True)
class PageLease:
    """One page handed to a worker. The lease is what `page_done` / `page_lost` /
    `release_page` name; a remote backend's lease is its stream entry, renewed by the worker
    host's heartbeat and reclaimed from a dead host after a min-idle time."""

    lease_id: str
    task_id: str
    page_number: int
    attempt: int  # 1 on the first delivery, 2 on the retry after a lost worker
    document_ref: str
    document_type: str
    settings: Settings
    # Every page is stored but the result was never built (the host that stored the last
    # page died first): build it and `complete` the task; there is no page to run.
    assemble: bool = False


class PageOutcome(enum.Enum):
    STORED = "stored"  # more pages to go
    LAST = "last"  # every page is stored now: build the result and `complete` the task
    DROPPED = "dropped"  # the task ended or expired meanwhile; nothing was stored


class LossOutcome(enum.Enum):
    RETRY = "retry"  # queued again at the front of its task
    FAILED = "failed"  # lost twice: the task failed (ABORTED)
    DROPPED = "dropped"  # the task ended or expired meanwhile


@dataclass(frozen=True)
class TaskList:
    tasks: list[TaskRecord]  # newest first
    next_page_token: str  # "" on the last page


@dataclass(frozen=True)
class Recovery:
    """What `recover()` found at start-up."""

    requeued: int  # unfinished tasks queued again at their first page not yet done
    failed: int  # unfinished tasks whose document was lost (failed, DATA_LOSS)
    ready: list[str]  # unfinished tasks with every page stored: complete them


class TaskBackend(Protocol):
    """See the module docstring for the guarantees. Records returned are copies: changing
    one changes nothing stored."""

    @property
    def events(self) -> TaskEvents: ...

    @property
    def documents(self) -> DocumentStore: ...

    # --- admission --------------------------------------------------------------------------

    def lookup_request(self, tenant: str, request_id: str) -> TaskRecord | None:
        """The live task this tenant's request_id names, if any (a retried Submit)."""
        ...

    def reserve(self, tenant: str) -> Reservation:
        """Hold room for one task; QueueFullError when the queue or the tenant is at its
        limit (the message names the limit)."""
        ...

    def release(self, reservation: Reservation) -> None:
        """Give the room back (the submission failed); no error if already released."""
        ...

    def admit(self, reservation: Reservation, record: TaskRecord) -> Admission:
        """Store the PENDING task and queue its pages, consuming the reservation. When the
        tenant's `record.request_id` already names a live task, nothing is stored and that
        task is returned (`created` False): the caller deletes its own document.
        StoreFullError when the store refuses (the reservation is released)."""
        ...

    # --- look-ups -----------------------------------------------------------------------------

    def find(self, tenant: str, task_id: str) -> TaskView | None:
        """The tenant's task and its queue position; None for an unknown, expired or another
        tenant's task, in the same time. DamagedEntryError for an unreadable record."""
        ...

    def get(self, task_id: str) -> TaskRecord | None:
        """Any tenant's task (the server's own reads); None when unknown or expired."""
        ...

    def queue_position(self, task_id: str) -> int: ...

    def result(self, task_id: str) -> bytes | None:
        """The serialised OcrResult of a completed task; None when absent; DamagedEntryError
        when stored but damaged."""
        ...

    def pages(self, task_id: str) -> dict[int, PageResult]:
        """The page results stored so far, in any state (a damaged one is left out)."""
        ...

    def list_tasks(
        self,
        tenant: str,
        states: Collection[TaskState] = (),
        created_after: float | None = None,
        created_before: float | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> TaskList:
        """The tenant's live tasks, newest first, from an index per tenant (no scan of every
        task). `states` empty: all; the created bounds are exclusive; `page_size` 0 gives
        DEFAULT_PAGE_SIZE and more than MAX_PAGE_SIZE gives MAX_PAGE_SIZE (AIP-158); the token
        is opaque and valid only with the same tenant and filters (else InvalidSettingsError).
        A page may hold fewer tasks than asked (even none) and still have a next token."""
        ...

    # --- figures for the metrics (telemetry.metrics.ServerGauges) ----------------------------

    def unfinished_by_tenant(self) -> dict[tuple[str, str], int]:
        """(tenant, "pending" | "processing") -> tasks now."""
        ...

    def queue_depth(self) -> int:
        """Tasks waiting to start."""
        ...

    def store_bytes(self) -> int:
        """What the store holds, in bytes (disk for the local one, memory for Redis)."""
        ...

    # --- pages ----------------------------------------------------------------------------

    def next_page(self) -> PageLease | None:
        """The page a free worker should run now (fair share), or None. Starts the task
        (PENDING -> PROCESSING, `started` stamped) with its first page."""
        ...

    def page_done(self, lease: PageLease, page: PageResult) -> PageOutcome:
        """Store a page's result and count it. StoreFullError when it cannot be stored (the
        caller fails the task)."""
        ...

    def page_lost(self, lease: PageLease, reason: str) -> LossOutcome:
        """The page's worker died: run it once more, or fail the task the second time."""
        ...

    def release_page(self, lease: PageLease) -> None:
        """Give a page back without counting an attempt (the worker host is shutting down:
        the page runs again after the restart, or on another host)."""
        ...

    # --- ends -----------------------------------------------------------------------------

    def complete(self, task_id: str, result: bytes) -> TaskRecord | None:
        """Store the result and end the task COMPLETED (pages_done = pages_total). A task
        already ended is returned unchanged; None when it is gone."""
        ...

    def fail(self, task_id: str, failure: TaskError) -> TaskRecord | None:
        """End the task FAILED with the failure's status code and message (same rules)."""
        ...

    def cancel(self, task_id: str) -> TaskRecord | None:
        """End a pending or processing task CANCELLED at once (same rules); its stored pages
        stay readable, the page in flight will be dropped."""
        ...

    # --- upkeep ---------------------------------------------------------------------------

    def expire(self) -> int:
        """Delete what has expired (a backend whose store expires keys itself only tidies its
        queues); return how many entries went."""
        ...

    def recover(self) -> Recovery:
        """At start-up: queue again the tasks that were pending or processing."""
        ...

    def requeue_unfinished(self) -> int:
        """At shutdown: processing tasks go back to PENDING for the next start."""
        ...

    def close(self) -> None: ...


# A typical record (one page, default settings) that a look-up of an unknown id reads and
# parses, so that "no such task" costs what "another tenant's task" costs. Its id is not one a
# request can name; it is expired (expires=0), so it is never returned as a task.
STAND_IN = TaskRecord(
    task_id="0" * 40,
    tenant="stand-in",
    state=TaskState.PENDING,
    settings=Settings(language="en", profile="fast", pages="", dpi=200),
    document_type="png",
    page_numbers=[1],
    created=0.0,
    expires=0.0,
    filename="document.png",
    request_id="0" * 32,
)


# --- list_tasks cursors ---------------------------------------------------------------------
# The cursor is the (created, task_id) of the last task returned, bound to the query it
# belongs to; any backend that orders by (created, task_id) can share it.


def encode_cursor(created: float, task_id: str, query: str) -> str:
    payload = json.dumps({"c": created, "i": task_id, "q": query}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(token: str, query: str) -> tuple[float, str]:
    """(created, task_id) of the last task already listed; InvalidSettingsError if the token
    is malformed or belongs to another query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        created, task_id, bound = float(data["c"]), str(data["i"]), str(data["q"])
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise InvalidSettingsError("page_token is not a token this server issued") from exc
    if bound != query:
        raise InvalidSettingsError(
            "page_token belongs to a listing with other filters; repeat the same filters "
            "or start again without a token"
        )
    return created, task_id


def query_fingerprint(
    tenant: str,
    states: Collection[TaskState],
    created_after: float | None,
    created_before: float | None,
) -> str:
    """Binds a cursor to its tenant and filters (AIP-158: other parameters, other token)."""
    text = json.dumps([tenant, sorted(int(s) for s in states), created_after, created_before])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def effective_page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidSettingsError(f"page_size must not be negative (got {page_size})")
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
