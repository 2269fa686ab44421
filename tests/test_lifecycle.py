"""Task life cycle on the real server with the fault-injection engine: cancel, expiry,
restart, scheduling, watch heartbeats, recycling, full queue and store. (Faults under load are
in test_faults.py; recognition itself is proven with real PaddleOCR in test_recognition.py.)"""

from __future__ import annotations

import os
import time

import grpc
import pytest
from PIL import Image

from ocr.v1 import ocr_pb2
from tests.documents import encode

PENDING, PROCESSING = ocr_pb2.TASK_STATE_PENDING, ocr_pb2.TASK_STATE_PROCESSING
COMPLETED, FAILED = ocr_pb2.TASK_STATE_COMPLETED, ocr_pb2.TASK_STATE_FAILED
CANCELLED = ocr_pb2.TASK_STATE_CANCELLED


def blank(width: int = 400, pages: int = 1) -> bytes:
    """White pages; the fake engine picks its behaviour by the page width."""
    images = [Image.new("L", (width, 200), 255) for _ in range(pages)]
    return encode(images, "TIFF") if pages > 1 else encode(images, "PNG")


def wait_for(predicate, timeout: float = 60, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_cancel_pending_and_processing(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server("--workers", "1", rules="default=slow:0.5")
    with server.client() as client:
        running = client.submit(blank(pages=6))
        waiting = client.submit(blank())
        assert client.status(waiting.task_id).queue_position == 1
        cancelled = client.cancel(waiting.task_id)
        assert cancelled.state == CANCELLED and cancelled.end_time.seconds
        assert [t.state for t in client.watch(waiting.task_id)] == [CANCELLED]
        wait_for(lambda: client.status(running.task_id).pages_done >= 1)
        stopped = client.cancel(running.task_id)
        assert stopped.state == CANCELLED
        time.sleep(1.2)  # the page in flight finishes and is dropped
        after = client.status(running.task_id)
        assert after.state == CANCELLED and after.pages_done < 6
        # the pages finished before the cancel stay fetchable; the one in flight was dropped
        kept = client.result(running.task_id).result.pages
        assert [p.page_number for p in kept] == list(range(1, after.pages_done + 1))
        # cancelling a task that has ended returns it unchanged
        again = client.cancel(running.task_id)
        assert again.state == CANCELLED and again.end_time == stopped.end_time
        # the worker stayed usable
        fresh = client.submit(blank())
        assert client.wait(fresh.task_id, timeout=30).state == COMPLETED
        assert client.cancel(fresh.task_id).state == COMPLETED


def test_expiry_after_short_ttl(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server("--result-ttl", "3s", "--sweep-interval", "1s", rules="default=echo")
    with server.client() as client:
        task = client.submit(blank(), request_id="expiring")
        assert client.wait(task.task_id, timeout=30).state == COMPLETED
        assert client.result(task.task_id).HasField("result")
        assert task.expire_time.seconds - task.create_time.seconds == 3
        time.sleep(4.5)
        for call in (client.status, client.result, client.cancel):
            with pytest.raises(grpc.RpcError) as info:
                call(task.task_id)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
        # the idempotency key expired with it
        assert client.submit(blank(), request_id="expiring").task_id != task.task_id
    documents = server.data_dir / "store" / "documents"
    wait_for(lambda: not any(documents.iterdir()), timeout=10)


def test_restart_keeps_queued_tasks(make_fake_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "shared-data"
    server = make_fake_server(
        "--workers",
        "1",
        "--shutdown-grace",
        "10s",
        rules="default=slow:0.4",
        data_dir=data,
    )
    with server.client() as client:
        done = client.submit(blank())
        assert client.wait(done.task_id, timeout=30).state == COMPLETED
        before = client.result(done.task_id).result
        queued = [client.submit(blank(pages=2)).task_id for _ in range(4)]
        wait_for(lambda: client.status(queued[0]).state == PROCESSING)
    assert server.terminate() == 0  # graceful: in-flight page finishes, the rest stays queued
    restarted = make_fake_server("--workers", "1", rules="default=slow:0.05", data_dir=data)
    with restarted.client() as client:
        for task_id in queued:
            assert client.wait(task_id, timeout=60).state == COMPLETED
            assert len(client.result(task_id).result.pages) == 2
        assert client.result(done.task_id).result == before


def test_engine_error_fails_only_that_task(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server(rules="default=echo,780=error")
    with server.client() as client:
        bad = client.wait(client.submit(blank(780)).task_id, timeout=30)
        good = client.wait(client.submit(blank()).task_id, timeout=30)
    assert bad.state == FAILED and "fake engine error" in bad.error.message
    assert good.state == COMPLETED


def test_queue_positions_and_watch_sees_every_change(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server("--workers", "1", rules="default=slow:0.5")
    with server.client() as client:
        ids = [client.submit(blank()).task_id for _ in range(4)]
        updates = list(client.watch(ids[-1], timeout=60))
    positions = [u.queue_position for u in updates if u.state == PENDING]
    assert positions == sorted(positions, reverse=True) and positions[0] >= 2
    assert len(set(positions)) >= 2  # it moved up the queue, and the stream said so
    assert updates[-1].state == COMPLETED
    assert PROCESSING in [u.state for u in updates]


def test_watch_repeats_while_idle(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server("--heartbeat", "0.3s", rules="default=slow:2")
    with server.client() as client:
        task = client.submit(blank())
        stream = client.watch(task.task_id, timeout=30)
        first_three = [next(stream) for _ in range(3)]
        assert all(t.task_id == task.task_id for t in first_three)
        stream.close()  # the client goes away mid-stream
        assert client.wait(task.task_id, timeout=30).state == COMPLETED


def test_long_document_does_not_block_short_one(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server("--workers", "1", rules="default=slow:0.3")
    with server.client() as client:
        long = client.submit(blank(pages=12))
        short = client.submit(blank())
        assert client.wait(short.task_id, timeout=60).state == COMPLETED
        assert client.status(long.task_id).state == PROCESSING
        assert client.wait(long.task_id, timeout=60).state == COMPLETED


def test_workers_are_recycled(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    """Recycled workers are replaced, and every worker, first or replacement, runs under
    SCHED_IDLE, so that any server thread preempts it at once (Submit latency)."""
    server = make_fake_server("--recycle-after", "2", rules="default=echo")
    before = set(server.worker_pids())
    assert all(os.sched_getscheduler(pid) == os.SCHED_IDLE for pid in before)
    assert server.process is not None
    assert os.sched_getscheduler(server.process.pid) == os.SCHED_OTHER
    with server.client() as client:
        task = client.submit(blank(pages=8))
        assert client.wait(task.task_id, timeout=60).state == COMPLETED

    def replaced_and_idle() -> bool:
        # A worker that read its second page is still on its way out when the task
        # completes: read the list again until two fresh workers stand, each under
        # SCHED_IDLE (a replacement sets its policy first thing once its interpreter is up).
        pids = set(server.worker_pids())
        try:
            idle = all(os.sched_getscheduler(pid) == os.SCHED_IDLE for pid in pids)
        except ProcessLookupError:
            return False  # recycled while we looked
        return len(pids) == 2 and not before & pids and idle

    wait_for(replaced_and_idle)


def test_full_queue_and_full_store_refuse_submit(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server(
        "--workers",
        "1",
        "--max-queue",
        "2",
        "--max-store-mb",
        "2",
        rules="default=slow:2,401=echo",
    )
    with server.client("bob") as bob:  # another tenant's finished work
        kept = bob.submit(blank(401))
        assert bob.wait(kept.task_id, timeout=30).state == COMPLETED
        kept_result = bob.result(kept.task_id).result.SerializeToString()
    with server.client() as client:
        accepted = [client.submit(blank()) for _ in range(3)]  # one running, two waiting
        with pytest.raises(grpc.RpcError) as info:
            client.submit(blank())
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full (2 tasks waiting)" in info.value.details()
        for task in accepted[1:]:
            client.cancel(task.task_id)
        noise = Image.frombytes("L", (1600, 1600), bytes(range(256)) * 10_000)
        big = encode([noise], "BMP")  # 2.5 MB, over the 2 MB store
        with pytest.raises(grpc.RpcError) as info:
            client.submit(big)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "size limit" in info.value.details()
        # earlier tasks are untouched: nothing was evicted to make room
        assert client.wait(accepted[0].task_id, timeout=30).state == COMPLETED
    with server.client("bob") as bob:
        assert bob.result(kept.task_id).result.SerializeToString() == kept_result
