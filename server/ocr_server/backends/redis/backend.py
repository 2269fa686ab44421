"""The Redis task backend: every state change one Lua script (lua/), no client-side
read-modify-write, so any number of front ends and worker hosts share one Redis.

Pages reach worker hosts through a stream consumer group (`jobs`, group `workers`): the
`next_page` script picks the page by fair share and delivers it to the asking host's consumer
in the same step, so the stream's pending list always says which host holds which page. A
host renews its entries with its heartbeat (`renew`); an entry idle past `reclaim_after` (its
host died) is claimed by the next host that asks, as the page's retry (a second loss fails
the task, ABORTED). Every key of a task expires at the task's absolute expiry (PEXPIREAT);
`expire()` only takes expired tasks out of the shared queues and indexes.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, cast

import redis

from ocr_server.backends.events import Snapshot
from ocr_server.backends.redis.codec import record_from_fields, record_to_fields
from ocr_server.backends.redis.connection import check_no_eviction
from ocr_server.backends.redis.documents import RedisDocumentStore
from ocr_server.backends.redis.errors import redis_errors
from ocr_server.backends.redis.events import RedisTaskEvents
from ocr_server.backends.redis.keys import GROUP, Keys
from ocr_server.backends.redis.scripts import Scripts
from ocr_server.backends.tasks import (
    STAND_IN,
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
    QueueFullError,
    TaskError,
    TenantLimitError,
    WorkerDiedTwiceError,
)
from ocr_server.models import PageResult, TaskRecord, TaskState

log = logging.getLogger(__name__)

RESERVATION_SECONDS = 120.0  # a Submit holding room longer is taken for dead (its front end)
DEFAULT_RECLAIM_AFTER = 60.0  # a page's entry idle this long: its host is taken for dead
HOST_LOST = "its worker host stopped answering"
_DIGEST = hashlib.sha256
_DIGEST_SIZE = _DIGEST().digest_size
_EXPIRE_BATCH = 500
_LIST_BATCH = 200


class RedisTaskBackend:
    """`consumer`: this process's name in the stream's group (worker hosts; a front end
    never asks for pages). `reclaim_after`: seconds a page's entry may stay idle (no
    heartbeat) before another host takes it over."""

    def __init__(
        self,
        client: redis.Redis,
        limits: RoomLimits,
        max_active: int,
        prefix: str = "ocr",
        clock: Clock = system_clock,
        consumer: str = "",
        reclaim_after: float = DEFAULT_RECLAIM_AFTER,
        scratch: Path | None = None,
        check_eviction: bool = True,
    ) -> None:
        self._client = client
        self._limits = limits
        self.max_active = max(1, max_active)  # a worker host updates it from the registry
        self._clock = clock
        self.keys = Keys(prefix)
        self.consumer = consumer or f"c-{secrets.token_hex(6)}"
        self.reclaim_after = reclaim_after
        self._reclaim_every = min(1.0, reclaim_after / 4)
        self._last_reclaim = 0.0
        with redis_errors():
            if check_eviction:
                check_no_eviction(client)
            self._scripts = Scripts(client, prefix)
            try:
                client.xgroup_create(self.keys.jobs, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            client.set(self.keys.seq, 0, nx=True)
        self._documents = RedisDocumentStore(client, self.keys, scratch)
        self._events = RedisTaskEvents(client, self.keys, self._snapshot)

    @property
    def client(self) -> redis.Redis:
        return self._client

    @property
    def events(self) -> RedisTaskEvents:
        return self._events

    @property
    def documents(self) -> RedisDocumentStore:
        return self._documents

    def _run(self, name: str, *args: bytes | str | int | float) -> Any:
        with redis_errors():
            return self._scripts(name, self._clock(), *args)

    # --- admission ------------------------------------------------------------------------

    def lookup_request(self, tenant: str, request_id: str) -> TaskRecord | None:
        with redis_errors():
            task_id = self._client.get(self.keys.request(tenant, request_id))
        return self.get(_text(task_id)) if task_id else None

    def reserve(self, tenant: str) -> Reservation:
        reservation = Reservation(secrets.token_hex(8), tenant)
        answer = _text(
            self._run(
                "reserve",
                reservation.reservation_id,
                Keys.tenant_hash(tenant),
                repr(self._clock() + RESERVATION_SECONDS),
                self._limits.max_queue,
                self._limits.max_pending_per_tenant,
            )
        )
        if answer == "queue_full":
            raise QueueFullError(
                f"the queue is full ({self._limits.max_queue} tasks waiting); retry later"
            )
        if answer == "tenant_full":
            raise TenantLimitError(
                f"this tenant already has {self._limits.max_pending_per_tenant} tasks pending "
                "or processing, the per-tenant limit (--max-pending-per-tenant); submit again "
                "when some have finished"
            )
        return reservation

    def release(self, reservation: Reservation) -> None:
        self._run("release", reservation.reservation_id, Keys.tenant_hash(reservation.tenant))

    def admit(self, reservation: Reservation, record: TaskRecord) -> Admission:
        fields = record_to_fields(record)
        request_key = (
            self.keys.request(record.tenant, record.request_id) if record.request_id else ""
        )
        try:
            answer = self._run(
                "admit",
                reservation.reservation_id,
                Keys.tenant_hash(record.tenant),
                request_key,
                record.task_id,
                int(record.expires * 1000),
                index_entry(record.created, record.task_id),
                len(record.page_numbers),
                *record.page_numbers,
                *(item for pair in fields.items() for item in pair),
            )
        finally:
            self.release(reservation)  # a no-op once admitted
        if int(answer[0]) == 0:
            existing = record_from_fields(record.task_id, _pairs(answer[1]))
            return Admission(existing, created=False)
        log.info(
            "task %s queued: %s, %d pages",
            record.task_id,
            record.document_type,
            record.pages_total,
        )
        return Admission(record_from_fields(record.task_id, dict(fields.items())), created=True)

    # --- look-ups -------------------------------------------------------------------------

    def find(self, tenant: str, task_id: str) -> TaskView | None:
        """One round trip either way; an unknown id parses a stand-in record, so it costs
        what another tenant's task costs."""
        record, position = self._read(task_id, even=True)
        if record is None or not secrets.compare_digest(record.tenant, tenant):
            return None
        return TaskView(record, position)

    def get(self, task_id: str) -> TaskRecord | None:
        return self._read(task_id)[0]

    def _read(self, task_id: str, even: bool = False) -> tuple[TaskRecord | None, int]:
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.hgetall(self.keys.task(task_id, "task"))
            pipe.zrank(self.keys.pending, task_id)
            fields, rank = pipe.execute()
        if not fields:
            if even:
                record_from_fields(task_id, _STAND_IN)
            return None, 0
        record = record_from_fields(task_id, fields)
        if record.expires <= self._clock():
            return None, 0
        return record, 0 if rank is None else int(rank) + 1

    def _snapshot(self, task_id: str) -> Snapshot | None:
        record, position = self._read(task_id)
        return None if record is None else (record, position)

    def queue_position(self, task_id: str) -> int:
        with redis_errors():
            rank = self._client.zrank(self.keys.pending, task_id)
        return 0 if rank is None else int(cast(int, rank)) + 1

    # --- figures for the metrics ------------------------------------------------------------

    def unfinished_by_tenant(self) -> dict[tuple[str, str], int]:
        """Reads the waiting and started tasks' tenants (one pipelined read per scrape)."""
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.zrange(self.keys.pending, 0, -1)
            pipe.smembers(f"{self.keys.prefix}:active")
            waiting, started = pipe.execute()
            ids = [_text(i) for i in [*waiting, *started]]
            pipe = self._client.pipeline(transaction=False)
            for task_id in ids:
                pipe.hmget(self.keys.task(task_id, "task"), "tenant", "state", "expires")
            rows = pipe.execute()
        counts: dict[tuple[str, str], int] = {}
        now = self._clock()
        for tenant, state, expires in rows:
            if tenant is None or expires is None or float(expires) <= now:
                continue
            name = {TaskState.PENDING: "pending", TaskState.PROCESSING: "processing"}.get(
                TaskState(int(state))
            )
            if name is not None:
                key = (_text(tenant), name)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def queue_depth(self) -> int:
        with redis_errors():
            return int(self._client.zcard(self.keys.pending))

    def store_bytes(self) -> int:
        """Redis's used memory (everything in it, not only this prefix's keys)."""
        with redis_errors():
            return int(self._client.info("memory")["used_memory"])

    def result(self, task_id: str) -> bytes | None:
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.hget(self.keys.task(task_id, "task"), "expires")
            pipe.get(self.keys.task(task_id, "result"))
            expires, value = pipe.execute()
        if value is None or expires is None or float(expires) <= self._clock():
            return None
        value = bytes(value)
        digest, result = value[:_DIGEST_SIZE], value[_DIGEST_SIZE:]
        if len(value) < _DIGEST_SIZE or _DIGEST(result).digest() != digest:
            raise DamagedEntryError(task_id, "result")
        return result

    def pages(self, task_id: str) -> dict[int, PageResult]:
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.hget(self.keys.task(task_id, "task"), "expires")
            pipe.hgetall(self.keys.task(task_id, "pages"))
            expires, stored = pipe.execute()
        if expires is None or float(expires) <= self._clock():
            return {}
        pages = {}
        for number, text in stored.items():
            try:
                pages[int(number)] = PageResult.from_json(_text(text))
            except (ValueError, TypeError, KeyError):
                log.error("page %s of task %s is damaged in the store", number, task_id)
        return pages

    def list_tasks(
        self,
        tenant: str,
        states: Collection[TaskState] = (),
        created_after: float | None = None,
        created_before: float | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> TaskList:
        """Walks the tenant's index (a sorted set of "created|task id", newest first) from
        the cursor, reading each entry's record, until a page is full."""
        size = effective_page_size(page_size)
        query = query_fingerprint(tenant, states, created_after, created_before)
        cursor = decode_cursor(page_token, query) if page_token else None
        index = f"{self.keys.prefix}:tenant:{Keys.tenant_hash(tenant)}"
        upper = "+"
        if created_before is not None:
            upper = "(" + _created_text(created_before)
        if cursor is not None:
            at = "(" + index_entry(*cursor)
            upper = at if upper == "+" else min(upper, at)
        lower = "-" if created_after is None else "(" + _created_text(created_after) + "|~"
        now, wanted = self._clock(), frozenset(states)
        found: list[TaskRecord] = []
        last: tuple[float, str] | None = None
        more = True
        while len(found) < size and more:
            with redis_errors():
                entries = self._client.zrevrangebylex(index, upper, lower, 0, _LIST_BATCH)
            more = len(entries) == _LIST_BATCH
            ids = [_text(e).rsplit("|", 1)[1] for e in entries]
            records = self._read_many(ids)
            for entry, record in zip(entries, records, strict=True):
                upper = "(" + _text(entry)
                if record is None or record.expires <= now:
                    continue
                if wanted and record.state not in wanted:
                    continue
                found.append(record)
                last = (record.created, record.task_id)
                if len(found) == size:
                    more = True
                    break
            else:
                continue
            break
        if found and len(found) == size:
            with redis_errors():
                more = bool(self._client.zrevrangebylex(index, upper, lower, 0, 1))
        token = encode_cursor(last[0], last[1], query) if more and last is not None else ""
        return TaskList(found, token)

    def _read_many(self, task_ids: Sequence[str]) -> list[TaskRecord | None]:
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            for task_id in task_ids:
                pipe.hgetall(self.keys.task(task_id, "task"))
            replies = pipe.execute()
        records: list[TaskRecord | None] = []
        for task_id, fields in zip(task_ids, replies, strict=True):
            try:
                records.append(record_from_fields(task_id, fields) if fields else None)
            except DamagedEntryError as exc:  # listed elsewhere as DATA_LOSS; not here
                log.error("%s", exc)
                records.append(None)
        return records

    # --- pages ----------------------------------------------------------------------------

    def next_page(self) -> PageLease | None:
        min_idle = 0
        if time.monotonic() - self._last_reclaim >= self._reclaim_every:
            self._last_reclaim = time.monotonic()
            min_idle = max(1, int(self.reclaim_after * 1000))
        answer = self._run(
            "next_page",
            self.consumer,
            self.max_active,
            min_idle,
            WorkerDiedTwiceError.on_page(0, HOST_LOST).message.replace("page 0", "page %d", 1),
        )
        if not answer:
            return None
        kind, entry_id, task_id, page, attempt, fields = answer
        record = record_from_fields(_text(task_id), _pairs(fields))
        return PageLease(
            lease_id=_text(entry_id),
            task_id=record.task_id,
            page_number=int(page),
            attempt=int(attempt),
            document_ref=record.document_ref,
            document_type=record.document_type,
            settings=record.settings,
            assemble=_text(kind) == "assemble",
        )

    def page_done(self, lease: PageLease, page: PageResult) -> PageOutcome:
        answer = self._run(
            "page_done", lease.lease_id, lease.task_id, lease.page_number, page.to_json()
        )
        return PageOutcome(_text(answer))

    def page_lost(self, lease: PageLease, reason: str) -> LossOutcome:
        message = WorkerDiedTwiceError.on_page(lease.page_number, reason).message
        answer = LossOutcome(
            _text(self._run("page_lost", lease.lease_id, lease.task_id, lease.page_number, message))
        )
        if answer == LossOutcome.RETRY:
            log.warning(
                "task %s page %d: %s; retrying once", lease.task_id, lease.page_number, reason
            )
        return answer

    def release_page(self, lease: PageLease) -> None:
        self._run("release_page", lease.lease_id, lease.task_id, lease.page_number)

    def renew(self, lease_ids: Sequence[str]) -> list[str]:
        """The heartbeat for pages in flight: keeps them from being reclaimed; returns the
        ones another host has taken over meanwhile."""
        if not lease_ids:
            return []
        lost = self._run("renew", self.consumer, *lease_ids)
        return [_text(i) for i in lost]

    # --- ends -----------------------------------------------------------------------------

    def complete(self, task_id: str, result: bytes) -> TaskRecord | None:
        sealed = _DIGEST(result).digest() + result
        return self._ended(task_id, self._run("complete", task_id, sealed))

    def fail(self, task_id: str, failure: TaskError) -> TaskRecord | None:
        answer = self._run(
            "end", task_id, int(TaskState.FAILED), failure.code.value[0], failure.message
        )
        record = self._ended(task_id, answer)
        if record is not None and record.state == TaskState.FAILED:
            log.warning("task %s failed: %s", task_id, failure)
        return record

    def cancel(self, task_id: str) -> TaskRecord | None:
        return self._ended(task_id, self._run("end", task_id, int(TaskState.CANCELLED), "", ""))

    def _ended(self, task_id: str, fields: list[bytes]) -> TaskRecord | None:
        if not fields:
            return None
        return record_from_fields(task_id, _pairs(fields))

    # --- upkeep ---------------------------------------------------------------------------

    def expire(self) -> int:
        removed = 0
        while True:
            count = int(self._run("expire", _EXPIRE_BATCH))
            removed += count
            if count < _EXPIRE_BATCH:
                break
        if removed:
            log.info("tidied %d expired tasks", removed)
        return removed

    def recover(self) -> Recovery:
        """Nothing lives in a front end or a worker host: a dead host's pages come back
        through the stream (reclaimed after `reclaim_after`), a task whose result was never
        built as an `assemble` lease."""
        return Recovery(0, 0, [])

    def requeue_unfinished(self) -> int:
        """A worker host gives its pages back itself (`release_page`) as it shuts down."""
        return 0

    def close(self) -> None:
        self._events.close()
        self._documents.drop_copies()
        self._client.close()


def index_entry(created: float, task_id: str) -> str:
    """A tenant index entry: sorts by (created, task id) as text (fixed-width time)."""
    return f"{_created_text(created)}|{task_id}"


def _created_text(created: float) -> str:
    return f"{created:020.6f}"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[bytes]) -> dict[bytes | str, bytes | str]:
    items = list(flat)
    return dict(zip(items[::2], items[1::2], strict=True))


# What `find` parses for an unknown id (the same work as for another tenant's task).
_STAND_IN = cast(dict[bytes | str, bytes | str], record_to_fields(STAND_IN))
