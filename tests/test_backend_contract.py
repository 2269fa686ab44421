"""The task backend contract (backends/tasks.py), run against every backend in-process.

Each test drives a backend only through the TaskBackend, DocumentStore and TaskEvents
interfaces, with an injected clock (expiry without sleeping). `BACKENDS` names the
implementations: the local one, and the Redis one on a real `redis-server` started for the
session (each world under its own key prefix). Where the two differ by design (a restart of
the embedded server versus a worker host that vanished from a cluster) each has its own test.
"""

from __future__ import annotations

import itertools
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import redis

from ocr_server.backends.events import Subscription
from ocr_server.backends.local.backend import LocalTaskBackend
from ocr_server.backends.redis.backend import RedisTaskBackend
from ocr_server.backends.tasks import (
    LossOutcome,
    PageLease,
    PageOutcome,
    RoomLimits,
    TaskBackend,
)
from ocr_server.clock import ManualClock
from ocr_server.errors import (
    DamagedPageError,
    DocumentMissingError,
    DocumentTooLargeError,
    InvalidSettingsError,
    QueueFullError,
)
from ocr_server.models import PageResult, Settings, TaskRecord, TaskState
from ocr_server.tasks.ids import new_task_id
from tests.redis_server import RedisServer

BACKENDS = ["local", "redis"]
TTL = 3600.0
SETTINGS = Settings(language="en", profile="fast", pages="", dpi=200)
DEFAULT_LIMITS = RoomLimits(max_queue=20, max_pending_per_tenant=10)


@dataclass
class World:
    """A backend, its clock, and how to open it again on the same state (a restart)."""

    backend: TaskBackend
    clock: ManualClock
    reopen: Callable[[], TaskBackend]
    kind: str
    woken: list[int] = field(default_factory=list)
    redis: RedisServer | None = None
    prefix: str = ""

    @property
    def wakes(self) -> int:
        """How often the backend said a page may be ready (the local backend calls its
        `on_work`; the Redis one publishes on its work channel, counted here)."""
        return len(self.woken)

    def restart(self) -> None:
        self.backend.close()
        self.backend = self.reopen()

    # --- helpers written against the interface only -----------------------------------------

    def submit(
        self,
        tenant: str = "alice",
        pages: int = 1,
        request_id: str = "",
        keep_document: bool = False,
    ) -> TaskRecord:
        reservation = self.backend.reserve(tenant)
        task_id = new_task_id()
        now = self.clock()
        writer = self.backend.documents.create(task_id, 1 << 20, now + TTL)
        writer.write(b"%PDF-1.4 a document of " + task_id.encode())
        ref = writer.commit()
        record = TaskRecord(
            task_id=task_id,
            tenant=tenant,
            state=TaskState.PENDING,
            settings=SETTINGS,
            document_type="pdf",
            page_numbers=list(range(1, pages + 1)),
            created=now,
            expires=now + TTL,
            request_id=request_id,
            document_ref=ref,
            keep_document=keep_document,
        )
        admission = self.backend.admit(reservation, record)
        if not admission.created:
            self.backend.documents.delete(ref)
        return admission.record

    def state(self, task_id: str) -> TaskState | None:
        record = self.backend.get(task_id)
        return None if record is None else record.state

    def lease(self) -> PageLease:
        lease = self.backend.next_page()
        assert lease is not None
        return lease

    def finish(self, lease: PageLease) -> PageOutcome:
        return self.backend.page_done(lease, page(lease.page_number, lease.task_id))


def page(number: int, task_id: str = "") -> PageResult:
    return PageResult(number, 100, 50, f"text of page {number} {task_id[:6]}", ())


RECLAIM_AFTER = 0.3  # the Redis backend's min-idle in these tests (seconds of real time)


def open_redis(
    server: RedisServer,
    prefix: str,
    clock: ManualClock,
    limits: RoomLimits,
    max_active: int,
    consumer: str = "host-a",
) -> RedisTaskBackend:
    return RedisTaskBackend(
        server.client(),
        limits,
        max_active,
        prefix=prefix,
        clock=clock,
        consumer=consumer,
        reclaim_after=RECLAIM_AFTER,
    )


def _count_wakes(server: RedisServer, prefix: str, woken: list[int]) -> threading.Event:
    """Counts the Redis backend's work announcements into `woken` until the event is set."""
    stop = threading.Event()
    pubsub = server.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{prefix}:work")
    pubsub.get_message(timeout=1)  # the confirmation: subscribed before anything is sent

    def listen() -> None:
        try:
            while not stop.is_set():
                if pubsub.get_message(timeout=0.05) is not None:
                    woken.append(1)
        except (redis.RedisError, ValueError):  # the session's Redis stopped
            pass
        finally:
            pubsub.close()

    threading.Thread(target=listen, daemon=True).start()
    return stop


WorldFactory = Callable[..., World]
_prefixes = itertools.count()


@pytest.fixture(params=BACKENDS)
def make_world(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer | None
) -> Iterator[WorldFactory]:
    """Worlds of the backend under test: `make_world(limits, max_active)`."""
    kind = str(request.param)
    if kind == "redis" and redis_server is None:
        pytest.skip("redis-server is not installed (scripts/setup --dev installs it)")
    worlds: list[World] = []
    listeners: list[threading.Event] = []

    def make(limits: RoomLimits = DEFAULT_LIMITS, max_active: int = 2) -> World:
        clock = ManualClock()
        woken: list[int] = []
        directory = tmp_path / f"world{len(worlds)}"
        prefix = f"t{next(_prefixes)}-{secrets.token_hex(3)}"

        def reopen() -> TaskBackend:
            if kind == "local":
                return LocalTaskBackend(
                    directory, limits, max_active, clock=clock, on_work=lambda: woken.append(1)
                )
            assert redis_server is not None
            return open_redis(redis_server, prefix, clock, limits, max_active)

        if kind == "redis":
            assert redis_server is not None
            listeners.append(_count_wakes(redis_server, prefix, woken))
        world = World(reopen(), clock, reopen, kind, woken, redis_server, prefix)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.backend.close()
    for listener in listeners:
        listener.set()


@pytest.fixture
def world(make_world: WorldFactory) -> World:
    """A queue of 20, 10 tasks per tenant, 2 tasks started at once."""
    return make_world()


def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def drain_events(subscription: Subscription) -> list[tuple[TaskState | None, int, int]]:
    """(state or None for a position-only change, pages_done, queue position) of each event."""
    seen = []
    while True:
        try:  # the Redis backend's events arrive through a listener thread: wait a little
            snapshot = subscription.get(timeout=0.1)
        except queue.Empty:
            return seen
        assert snapshot is not None
        record, position = snapshot
        seen.append(
            (record.state if record else None, record.pages_done if record else -1, position)
        )


# --- transitions ------------------------------------------------------------------------------


def test_every_transition_to_completed(world: World) -> None:
    task = world.submit(pages=2)
    assert task.state == TaskState.PENDING and wait_until(lambda: world.wakes > 0)
    view = world.backend.find("alice", task.task_id)
    assert view is not None and view.record == task and view.queue_position == 1
    subscription = world.backend.events.subscribe(task.task_id)

    world.clock.advance(5)
    first, second = world.lease(), world.lease()
    assert (first.task_id, first.page_number, first.attempt) == (task.task_id, 1, 1)
    assert second.page_number == 2 and first.lease_id != second.lease_id
    assert first.document_ref == task.document_ref and first.settings == SETTINGS
    started = world.backend.get(task.task_id)
    assert started is not None and started.state == TaskState.PROCESSING
    assert started.started == world.clock() and world.backend.queue_position(task.task_id) == 0
    assert world.backend.next_page() is None

    assert world.finish(first) == PageOutcome.STORED
    assert world.finish(second) == PageOutcome.LAST
    world.clock.advance(1)
    done = world.backend.complete(task.task_id, b"the result")
    assert done is not None and done.state == TaskState.COMPLETED
    assert done.pages_done == 2 and done.ended == world.clock()
    assert world.backend.result(task.task_id) == b"the result"
    assert sorted(world.backend.pages(task.task_id)) == [1, 2]
    assert not world.backend.documents.exists(task.document_ref)
    assert drain_events(subscription) == [
        (TaskState.PROCESSING, 0, 0),
        (TaskState.PROCESSING, 1, 0),
        (TaskState.COMPLETED, 2, 0),
    ]
    # an ended task changes no more
    assert world.backend.complete(task.task_id, b"other") == done
    assert world.backend.fail(task.task_id, DamagedPageError("late")) == done
    assert world.backend.cancel(task.task_id) == done
    assert world.backend.result(task.task_id) == b"the result"
    assert drain_events(subscription) == []
    world.backend.events.unsubscribe(subscription)


def test_records_returned_are_copies(world: World) -> None:
    task = world.submit()
    task.state = TaskState.FAILED
    task.page_numbers.append(9)
    assert world.state(task.task_id) == TaskState.PENDING
    stored = world.backend.get(task.task_id)
    assert stored is not None and stored.page_numbers == [1]


def test_fail_keeps_the_failure_and_the_pages_done(world: World) -> None:
    task = world.submit(pages=3)
    first = world.lease()
    world.finish(first)
    second = world.lease()
    failed = world.backend.fail(task.task_id, DamagedPageError("page 2 cannot be decoded"))
    assert failed is not None and failed.state == TaskState.FAILED
    assert failed.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert failed.error_message == "page 2 cannot be decoded"
    assert world.finish(second) == PageOutcome.DROPPED
    assert list(world.backend.pages(task.task_id)) == [1]
    assert world.backend.next_page() is None


def test_watchers_see_queue_positions_move(world: World) -> None:
    first, second, third = (world.submit() for _ in range(3))
    subscription = world.backend.events.subscribe(third.task_id)
    assert world.backend.queue_position(third.task_id) == 3
    world.lease()  # first starts
    assert drain_events(subscription) == [(None, -1, 2)]
    fourth = world.submit()
    world.lease()  # second starts
    world.backend.cancel(fourth.task_id)  # behind: no change for the third
    world.lease()  # third starts
    # position 1 when the second started, then its own start
    assert drain_events(subscription) == [(None, -1, 1), (TaskState.PROCESSING, 0, 0)]
    assert world.backend.queue_position(second.task_id) == 0
    assert world.backend.find("alice", first.task_id) is not None


# --- fairness -----------------------------------------------------------------------------------


def test_fair_share_between_started_tasks(world: World) -> None:
    """Up to 2 tasks started at once; a free worker serves the one served least recently; a
    task that starts joins the round at the back."""
    long = world.submit(pages=4).task_id
    short = world.submit().task_id
    late = world.submit().task_id
    order = []
    while (lease := world.backend.next_page()) is not None:
        order.append((lease.task_id, lease.page_number))
        world.finish(lease)
    assert order == [(long, 1), (long, 2), (short, 1), (long, 3), (late, 1), (long, 4)]


# --- admission ----------------------------------------------------------------------------------


def test_concurrent_submits_with_one_request_id_make_one_task(world: World) -> None:
    barrier = threading.Barrier(8)
    records: list[TaskRecord] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            barrier.wait()
            records.append(world.submit("alice", request_id="invoice-17"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len({r.task_id for r in records}) == 1
    assert len(world.backend.list_tasks("alice").tasks) == 1
    assert world.backend.lookup_request("alice", "invoice-17") == records[0]
    assert world.backend.lookup_request("bob", "invoice-17") is None  # scoped to the tenant
    assert world.submit("bob", request_id="invoice-17").task_id != records[0].task_id
    # the losers' reservations were given back: the queue (20) has room for 18 more
    for _ in range(8):
        world.submit("carol")
    for _ in range(10):
        world.submit("dave")


def test_room_per_tenant_and_in_all(make_world: WorldFactory) -> None:
    backend = make_world(RoomLimits(max_queue=3, max_pending_per_tenant=2)).backend
    first = backend.reserve("alice")
    backend.reserve("alice")
    with pytest.raises(QueueFullError, match="per-tenant limit"):
        backend.reserve("alice")
    backend.reserve("bob")
    with pytest.raises(QueueFullError, match=r"queue is full \(3 tasks waiting\)"):
        backend.reserve("carol")
    backend.release(first)
    backend.release(first)  # twice is harmless
    backend.reserve("carol")


def test_cancelled_and_finished_tasks_free_their_tenants_room(make_world: WorldFactory) -> None:
    world = make_world(RoomLimits(max_queue=10, max_pending_per_tenant=2), max_active=1)
    running = world.submit()
    waiting = world.submit()
    with pytest.raises(QueueFullError):
        world.backend.reserve("alice")
    lease = world.lease()  # a started task still counts for its tenant
    with pytest.raises(QueueFullError):
        world.backend.reserve("alice")
    world.backend.cancel(waiting.task_id)
    third = world.submit()
    world.finish(lease)
    world.backend.complete(running.task_id, b"")
    world.submit()
    assert world.state(third.task_id) == TaskState.PENDING


# --- expiry ---------------------------------------------------------------------------------


def test_expiry_with_the_injected_clock(world: World) -> None:
    waiting = world.submit(request_id="r1")
    done = world.submit(pages=1)
    world.clock.advance(10)
    later = world.submit()
    lease = world.lease()
    assert lease.task_id == waiting.task_id
    world.finish(lease)
    world.backend.complete(waiting.task_id, b"result")

    world.clock.advance(TTL - 5)  # the first two expired, `later` has 5 s left
    for task in (waiting, done):
        assert world.backend.find("alice", task.task_id) is None
        assert world.backend.get(task.task_id) is None
        assert world.backend.result(task.task_id) is None
        assert world.backend.pages(task.task_id) == {}
    assert world.backend.lookup_request("alice", "r1") is None
    assert [t.task_id for t in world.backend.list_tasks("alice").tasks] == [later.task_id]
    next_lease = world.lease()  # `done` expired while waiting: skipped
    assert next_lease.task_id == later.task_id

    assert world.backend.expire() > 0
    assert not world.backend.documents.exists(done.document_ref)
    assert world.backend.find("alice", later.task_id) is not None
    again = world.submit(request_id="r1")  # the key expired with its task
    assert again.task_id != waiting.task_id


def test_a_kept_document_stays_until_expiry(world: World) -> None:
    kept = world.submit(keep_document=True)
    plain = world.submit()
    for _ in range(2):
        lease = world.lease()
        world.finish(lease)
        world.backend.complete(lease.task_id, b"")
    assert world.backend.documents.exists(kept.document_ref)
    assert not world.backend.documents.exists(plain.document_ref)
    world.clock.advance(TTL + 1)
    world.backend.expire()
    assert not world.backend.documents.exists(kept.document_ref)


# --- cancel ---------------------------------------------------------------------------------------


def test_cancel_a_pending_task(world: World) -> None:
    running = world.submit()
    waiting = world.submit()
    world.lease()
    world.clock.advance(2)
    cancelled = world.backend.cancel(waiting.task_id)
    assert cancelled is not None and cancelled.state == TaskState.CANCELLED
    assert cancelled.ended == world.clock() and cancelled.started == 0
    assert world.backend.queue_position(waiting.task_id) == 0
    assert world.backend.next_page() is None  # its page never runs
    assert not world.backend.documents.exists(waiting.document_ref)
    assert world.state(running.task_id) == TaskState.PROCESSING


def test_cancel_a_processing_task_keeps_its_finished_pages(world: World) -> None:
    task = world.submit(pages=3)
    first, second = world.lease(), world.lease()
    assert world.finish(first) == PageOutcome.STORED
    cancelled = world.backend.cancel(task.task_id)
    assert cancelled is not None and cancelled.state == TaskState.CANCELLED
    assert cancelled.pages_done == 1
    assert world.finish(second) == PageOutcome.DROPPED  # the page in flight is dropped
    assert world.backend.page_lost(second, "killed") == LossOutcome.DROPPED
    assert world.backend.next_page() is None
    pages = world.backend.pages(task.task_id)
    assert list(pages) == [1] and pages[1].text.startswith("text of page 1")
    assert world.backend.result(task.task_id) is None
    world.clock.advance(TTL + 1)
    assert world.backend.pages(task.task_id) == {}


def test_cancel_an_ended_or_unknown_task(world: World) -> None:
    task = world.submit()
    world.finish(world.lease())
    done = world.backend.complete(task.task_id, b"r")
    assert world.backend.cancel(task.task_id) == done
    assert world.backend.cancel(new_task_id()) is None


# --- lost workers and restarts ---------------------------------------------------------------


def test_a_lost_page_is_retried_once_then_the_task_fails(world: World) -> None:
    task = world.submit(pages=2)
    lease = world.lease()
    time.sleep(0.05 if world.kind == "redis" else 0)
    woken = world.wakes
    assert world.backend.page_lost(lease, "killed by signal 9") == LossOutcome.RETRY
    assert wait_until(lambda: world.wakes > woken)
    retry = world.lease()
    assert (retry.page_number, retry.attempt) == (1, 2)
    assert world.backend.page_lost(retry, "killed by signal 9") == LossOutcome.FAILED
    failed = world.backend.get(task.task_id)
    assert failed is not None and failed.state == TaskState.FAILED
    assert failed.error_code == grpc.StatusCode.ABORTED.value[0]
    assert "died twice" in failed.error_message and "signal 9" in failed.error_message
    assert world.backend.next_page() is None


def test_a_released_page_runs_again_without_counting_an_attempt(world: World) -> None:
    world.submit()
    lease = world.lease()
    world.backend.release_page(lease)
    again = world.lease()
    assert (again.page_number, again.attempt) == (lease.page_number, 1)


def test_restart_recovers_unfinished_tasks(world: World) -> None:
    """Queued and processing tasks run again after a restart, oldest first, from their first
    page not yet done; one whose pages are all stored is ready to complete; one whose
    document is gone fails with DATA_LOSS."""
    if world.kind == "redis":
        pytest.skip("no state lives in a Redis backend's process: see the reclaim tests")
    resumed = world.submit(pages=3)
    world.clock.advance(1)
    waiting = world.submit()
    world.clock.advance(1)
    all_done = world.submit()
    world.clock.advance(1)
    lost = world.submit()
    world.backend.documents.delete(lost.document_ref)
    assert world.finish(world.lease()) == PageOutcome.STORED  # resumed, page 1
    world.lease()  # resumed, page 2: in flight when the server stops
    world.lease()  # waiting starts
    world.lease()  # resumed, page 3
    last = world.lease()
    assert last.task_id == all_done.task_id
    assert world.finish(last) == PageOutcome.LAST  # stopped before `complete`

    world.restart()
    recovery = world.backend.recover()
    assert (recovery.requeued, recovery.failed, recovery.ready) == (2, 1, [all_done.task_id])
    failed = world.backend.get(lost.task_id)
    assert failed is not None and failed.state == TaskState.FAILED
    assert failed.error_code == grpc.StatusCode.DATA_LOSS.value[0]
    recovered = world.backend.get(resumed.task_id)
    assert recovered is not None and recovered.state == TaskState.PENDING
    assert recovered.pages_done == 1
    order = []
    while (lease := world.backend.next_page()) is not None:
        order.append((lease.task_id, lease.page_number))
        world.finish(lease)
    assert order == [(resumed.task_id, 2), (resumed.task_id, 3), (waiting.task_id, 1)]
    assert list(world.backend.pages(resumed.task_id)) == [1, 2, 3]


def test_shutdown_puts_processing_tasks_back(world: World) -> None:
    if world.kind == "redis":
        pytest.skip("a worker host gives its pages back itself: release_page")
    task = world.submit(pages=2)
    world.lease()
    assert world.backend.requeue_unfinished() == 1
    assert world.state(task.task_id) == TaskState.PENDING


# --- look-ups -------------------------------------------------------------------------------


def test_find_never_shows_another_tenants_task(world: World) -> None:
    task = world.submit("alice")
    assert world.backend.find("bob", task.task_id) is None
    assert world.backend.find("alice", new_task_id()) is None
    assert world.backend.find("alic", task.task_id) is None


def test_list_tasks_pages_newest_first_per_tenant(world: World) -> None:
    alice = []
    for n in range(7):
        alice.append(world.submit("alice").task_id)
        if n < 3:
            world.submit("bob")
        world.clock.advance(1)
    seen, token, pages = [], "", 0
    while True:
        listed = world.backend.list_tasks("alice", page_size=3, page_token=token)
        assert len(listed.tasks) <= 3
        seen += [t.task_id for t in listed.tasks]
        pages += 1
        token = listed.next_page_token
        if not token:
            break
    assert seen == alice[::-1] and pages == 3
    assert all(t.tenant == "bob" for t in world.backend.list_tasks("bob").tasks)
    assert len(world.backend.list_tasks("bob").tasks) == 3
    assert world.backend.list_tasks("carol").tasks == []


def test_list_tasks_filters(world: World) -> None:
    ids = []
    for _ in range(6):
        ids.append(world.submit("alice").task_id)
        world.clock.advance(10)
    world.backend.cancel(ids[1])
    world.backend.cancel(ids[4])
    cancelled = world.backend.list_tasks("alice", states=[TaskState.CANCELLED])
    assert [t.task_id for t in cancelled.tasks] == [ids[4], ids[1]]
    assert all(t.state == TaskState.CANCELLED for t in cancelled.tasks)
    first = world.backend.list_tasks("alice", states=[TaskState.CANCELLED], page_size=1)
    rest = world.backend.list_tasks(
        "alice", states=[TaskState.CANCELLED], page_size=1, page_token=first.next_page_token
    )
    assert [t.task_id for t in first.tasks + rest.tasks] == [ids[4], ids[1]]
    created = [world.backend.get(i).created for i in ids]  # type: ignore[union-attr]
    window = world.backend.list_tasks("alice", created_after=created[1], created_before=created[4])
    assert [t.task_id for t in window.tasks] == [ids[3], ids[2]]


def test_list_tasks_tokens_are_bound_to_their_query(world: World) -> None:
    for _ in range(3):
        world.submit("alice")
        world.submit("bob")
        world.clock.advance(1)
    token = world.backend.list_tasks("alice", page_size=1).next_page_token
    assert token
    for call in (
        lambda: world.backend.list_tasks("bob", page_size=1, page_token=token),
        lambda: world.backend.list_tasks("alice", states=[TaskState.PENDING], page_token=token),
        lambda: world.backend.list_tasks("alice", page_token="not a token"),
        lambda: world.backend.list_tasks("alice", page_size=-1),
    ):
        with pytest.raises(InvalidSettingsError):
            call()


# --- documents ------------------------------------------------------------------------------


def test_documents_in_chunks_with_a_size_limit(world: World) -> None:
    documents = world.backend.documents
    task_id = new_task_id()
    with documents.create(task_id, 10, world.clock() + TTL) as writer:
        writer.write(b"0123")
        writer.write(b"456789")
        with pytest.raises(DocumentTooLargeError, match="larger than this server's limit"):
            writer.write(b"x")
    with pytest.raises(RuntimeError):
        writer.commit()
    assert not documents.exists(task_id)

    chunks = [bytes([n]) * 1000 for n in range(5)]
    with documents.create(task_id, 1 << 20, world.clock() + TTL) as writer:
        for chunk in chunks:
            writer.write(chunk)
        assert not documents.exists(task_id)  # not readable before commit
        ref = writer.commit()
    assert b"".join(documents.chunks(ref, chunk_bytes=1500)) == b"".join(chunks)
    with documents.local_file(ref) as path:
        assert path.read_bytes() == b"".join(chunks)
    documents.delete(ref)
    documents.delete(ref)
    assert not documents.exists(ref)
    for bad in (ref, "../../etc/passwd", ""):
        with pytest.raises(DocumentMissingError):
            list(documents.chunks(bad))
        with pytest.raises(DocumentMissingError), documents.local_file(bad):
            pass

    with documents.create(new_task_id(), 100, world.clock() + TTL) as writer:
        writer.write(b"abandoned")  # leaving without commit aborts
    assert not any(documents.exists(r) for r in (task_id,))


# --- Redis: worker hosts that vanish ------------------------------------------------------------


@pytest.fixture
def redis_world(make_world: WorldFactory, request: pytest.FixtureRequest) -> World:
    world = make_world()
    if world.kind != "redis":
        pytest.skip("worker hosts and the stream exist only on the Redis backend")
    return world


def another_host(world: World, name: str) -> RedisTaskBackend:
    assert world.redis is not None
    return open_redis(world.redis, world.prefix, world.clock, DEFAULT_LIMITS, 2, consumer=name)


def test_a_dead_hosts_page_is_reclaimed_as_its_retry(redis_world: World) -> None:
    """A host that stops heartbeating loses its page to the next host that asks, after the
    min-idle time, as the page's retry (attempt 2); a second host lost on the same page
    fails the task ABORTED. A late finish from the host taken for dead counts once."""
    world = redis_world
    task = world.submit(pages=2)
    lost = world.lease()  # host A takes page 1 and goes silent
    other = another_host(world, "host-b")
    try:
        page_two = other.next_page()  # page 2; page 1 is not idle long enough yet
        assert page_two is not None and page_two.page_number == 2
        time.sleep(RECLAIM_AFTER + 0.1)
        other._last_reclaim = 0  # look now, not at its next interval
        retry = other.next_page()
        assert retry is not None and (retry.page_number, retry.attempt) == (1, 2)
        assert retry.lease_id == lost.lease_id  # the same stream entry, now host B's
        assert isinstance(world.backend, RedisTaskBackend)
        assert world.backend.renew([lost.lease_id]) == [lost.lease_id]  # A learns it lost it
        # A finishes after all: stored once, counted once
        assert world.finish(lost) == PageOutcome.STORED
        assert other.page_done(retry, page(1)) == PageOutcome.STORED
        assert other.page_done(page_two, page(2)) == PageOutcome.LAST
        other.complete(task.task_id, b"r")
        assert world.state(task.task_id) == TaskState.COMPLETED

        doomed = world.submit()
        world.backend._last_reclaim = time.monotonic()  # A does not reclaim its own page
        world.lease()  # A dies on it
        time.sleep(RECLAIM_AFTER + 0.1)
        other._last_reclaim = 0
        second = other.next_page()
        assert second is not None and second.attempt == 2  # B dies on it too
        time.sleep(RECLAIM_AFTER + 0.1)
        third = another_host(world, "host-c")
        assert third.next_page() is None
        failed = third.get(doomed.task_id)
        assert failed is not None and failed.state == TaskState.FAILED
        assert failed.error_code == grpc.StatusCode.ABORTED.value[0]
        assert "died twice" in failed.error_message and "stopped answering" in failed.error_message
        third.close()
    finally:
        other.close()


def test_a_heartbeat_keeps_a_page(redis_world: World) -> None:
    world = redis_world
    assert isinstance(world.backend, RedisTaskBackend)
    world.submit()
    lease = world.lease()
    other = another_host(world, "host-b")
    try:
        for _ in range(4):
            time.sleep(RECLAIM_AFTER / 2)
            assert world.backend.renew([lease.lease_id]) == []
            other._last_reclaim = 0
            assert other.next_page() is None
    finally:
        other.close()


def test_a_result_never_built_is_assembled_by_another_host(redis_world: World) -> None:
    """The host that stored the last page died before it built the result: the next host
    gets an `assemble` lease for the task instead of a page."""
    world = redis_world
    task = world.submit()
    assert world.finish(world.lease()) == PageOutcome.LAST  # ... and the host dies here
    time.sleep(RECLAIM_AFTER + 0.1)
    other = another_host(world, "host-b")
    try:
        lease = other.next_page()
        assert lease is not None and lease.assemble and lease.task_id == task.task_id
        done = other.complete(task.task_id, b"result")
        assert done is not None and done.state == TaskState.COMPLETED
        time.sleep(RECLAIM_AFTER + 0.1)
        other._last_reclaim = 0
        assert other.next_page() is None  # the entry went with the completion
    finally:
        other.close()


def test_a_worker_hosts_document_copies_are_reused_and_bounded(redis_world: World) -> None:
    """The pages of one document use one local copy; a deleted document is never served
    from a copy; idle copies are bounded."""
    from ocr_server.backends.redis.documents import KEEP_COPIES, RedisDocumentStore

    documents = redis_world.backend.documents
    assert isinstance(documents, RedisDocumentStore)
    tasks = [redis_world.submit() for _ in range(KEEP_COPIES + 2)]
    with (
        documents.local_file(tasks[0].document_ref) as first,
        documents.local_file(tasks[0].document_ref) as second,
    ):
        assert first == second
    with documents.local_file(tasks[0].document_ref) as again:
        assert again == first and again.read_bytes().startswith(b"%PDF-1.4")
    for task in tasks[1:]:
        with documents.local_file(task.document_ref):
            pass
    assert len(documents._copies) == KEEP_COPIES and not first.exists()  # the oldest went
    documents.delete(tasks[-1].document_ref)
    with pytest.raises(DocumentMissingError), documents.local_file(tasks[-1].document_ref):
        pass
    documents.drop_copies()
    assert not documents._copies


def test_redis_documents_cost_their_size_in_redis_memory(redis_world: World) -> None:
    """Elements are cut to fill the allocator's size classes: an element of exactly 4 MiB
    took 5 MiB (1.25x); measured by Redis itself (MEMORY USAGE), a document now costs its
    size within half a per cent, and reads back whole."""
    from ocr_server.backends.redis.documents import element_sizes

    for size in (0, 5, 70_000, 100 * 1024, 3_000_000, (1 << 22) - 100):
        sizes = element_sizes(size)
        assert sum(sizes) == size and all(0 <= s < 1 << 22 for s in sizes)
    assert element_sizes(1 << 20) == [(1 << 20) - 64, 64]
    documents = redis_world.backend.documents
    content = os.urandom((4 << 20) + (1 << 20) + 12_345)  # a full element, then the rest
    task_id = new_task_id()
    with documents.create(task_id, 1 << 30, redis_world.clock() + TTL) as writer:
        for start in range(0, len(content), 1 << 20):
            writer.write(content[start : start + (1 << 20)])
        ref = writer.commit()
    assert b"".join(documents.chunks(ref)) == content
    assert redis_world.redis is not None
    key = f"{redis_world.prefix}:{{{ref}}}:doc"
    used = redis_world.redis.client().memory_usage(key, samples=0)
    assert len(content) < used < len(content) * 1.005
    documents.delete(ref)
