"""Faults on the real server: workers SIGKILLed or hung mid-page, the server SIGKILLed or
SIGTERMed under load, a full disk, damaged store entries. The fault-injection engine provides
the pages (see engines/fake.py); the faults themselves are real signals, a real full
filesystem (tmpfs) and real bytes damaged on disk. Figures go to docs/reliability.md."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from PIL import Image

from ocr.v1 import ocr_pb2, ocr_pb2_grpc
from ocr_server.backends.local.store import TaskStore
from ocr_server.models import TaskState
from tests.documents import encode
from tests.harness import TOKENS, ServerProcess, health_status
from tests.test_lifecycle import blank, wait_for

PENDING, PROCESSING = ocr_pb2.TASK_STATE_PENDING, ocr_pb2.TASK_STATE_PROCESSING
COMPLETED, FAILED = ocr_pb2.TASK_STATE_COMPLETED, ocr_pb2.TASK_STATE_FAILED
CANCELLED = ocr_pb2.TASK_STATE_CANCELLED
FINAL = {COMPLETED, FAILED, CANCELLED}
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running_pid(server: ServerProcess, width: int, not_pid: int = 0) -> int:
    """The worker now recognising the page of this width (the fake engine announces it)."""
    marker = server.data_dir / f"fake-running-{width}"

    def read() -> int:
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(marker.read_text())
            if pid != not_pid and alive(pid):
                return pid
        return 0

    return int(wait_for(read, timeout=30))


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def page_texts(client, task_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [page.text for page in client.result(task_id).result.pages]


def test_worker_sigkilled_mid_page(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL of a worker in the middle of a page: the pool replaces it, the page is retried
    once and completes; killed again on the retry, the task fails saying the worker died; the
    task beside them on the other worker is untouched; the pool is back at full strength."""
    server = make_fake_server(rules="default=slow:0.3,781=slow:2,782=slow:2")
    before = set(server.worker_pids())
    assert len(before) == 2
    with server.client() as client:
        bystander = client.submit(blank(pages=8))
        once = client.submit(blank(781))
        twice = client.submit(blank(782))

        first = running_pid(server, 781)
        os.kill(first, signal.SIGKILL)
        victim = running_pid(server, 782)
        os.kill(victim, signal.SIGKILL)
        retry = running_pid(server, 782, not_pid=victim)
        os.kill(retry, signal.SIGKILL)
        killed = {first, victim, retry}

        done = client.wait(once.task_id, timeout=60)
        assert done.state == COMPLETED and not done.error.message
        assert page_texts(client, once.task_id) == ["fake page 781x200"]
        failed = client.wait(twice.task_id, timeout=60)
        assert failed.state == FAILED
        assert failed.error.code == grpc.StatusCode.ABORTED.value[0]
        assert "worker died twice" in failed.error.message
        assert "killed by signal 9" in failed.error.message

        other = client.wait(bystander.task_id, timeout=60)
        assert other.state == COMPLETED and other.pages_done == 8 and not other.error.message
        assert page_texts(client, bystander.task_id) == ["fake page 400x200"] * 8

        wait_for(lambda: len(server.worker_pids()) == 2, timeout=30)
        now = set(server.worker_pids())
        assert not now & killed and all(not alive(pid) for pid in killed)
        assert client.wait(client.submit(blank()).task_id, timeout=30).state == COMPLETED


def test_hung_worker_is_killed_after_page_timeout(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    """An engine that never returns: its worker is killed at the per-page limit, the task fails
    with DEADLINE_EXCEEDED and a clear message, the other task completes, the pool is whole."""
    server = make_fake_server("--page-timeout", "2s", rules="default=slow:0.2,778=hang")
    with server.client() as client:
        hung = client.submit(blank(778))
        bystander = client.submit(blank(pages=6))
        hung_pid = running_pid(server, 778)
        started = time.monotonic()
        final = client.wait(hung.task_id, timeout=60)
        took = time.monotonic() - started
        assert final.state == FAILED
        assert final.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
        assert "took longer than the per-page limit of 2 s" in final.error.message
        assert "the worker was stopped" in final.error.message
        assert took < 10
        assert client.wait(bystander.task_id, timeout=60).state == COMPLETED
        wait_for(lambda: not alive(hung_pid), timeout=10)
        wait_for(lambda: len(server.worker_pids()) == 2, timeout=30)
        assert hung_pid not in server.worker_pids()
        assert client.wait(client.submit(blank()).task_id, timeout=30).state == COMPLETED


def _submit_mixed_load(client, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    """`count` tasks of mixed widths, one to four pages each (the TIFFs are multi-page)."""
    return [
        client.submit(blank(width=300 + 10 * (n % 7), pages=1 + n % 4)).task_id
        for n in range(count)
    ]


def test_server_sigkill_under_load_loses_nothing(make_fake_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL of the server process alone with 50 tasks queued or running: its workers die
    with it (none orphaned); after a restart on the same data every acknowledged task ends
    COMPLETED, CANCELLED or FAILED with a reason, and results fetched before are identical."""
    data = tmp_path / "shared-data"
    server = make_fake_server(rules="default=slow:0.1,783=slow:60", data_dir=data)
    with server.client() as client:
        stuck = client.submit(blank(783)).task_id  # a worker is mid-page when the server dies
        acknowledged = [stuck, *_submit_mixed_load(client, 49)]
        running_pid(server, 783)
        wait_for(
            lambda: sum(client.status(t).state == COMPLETED for t in acknowledged[:12]) >= 8,
            timeout=60,
        )
        before = {
            t: client.result(t).result.SerializeToString()
            for t in acknowledged
            if client.status(t).state == COMPLETED
        }
        cancelled = [t for t in reversed(acknowledged) if client.status(t).state == PENDING][:3]
        for task_id in cancelled:
            assert client.cancel(task_id).state == CANCELLED
        states = [client.status(t).state for t in acknowledged]
    assert states.count(PENDING) + states.count(PROCESSING) >= 30  # still under load
    assert server.process is not None
    spawned = children(server.process.pid)
    assert len(spawned) >= 2
    os.kill(server.process.pid, signal.SIGKILL)  # the server alone, not its workers
    server.process.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in spawned), timeout=10)

    restarted = make_fake_server(rules="default=slow:0.02", data_dir=data)
    with restarted.client() as client:
        finals = {t: client.wait(t, timeout=120) for t in acknowledged}
        for task_id, task in finals.items():
            assert task.state in FINAL, task_id
            if task.state == FAILED:
                assert task.error.message, task_id
        assert {t for t, task in finals.items() if task.state == CANCELLED} == set(cancelled)
        assert all(task.state == COMPLETED for t, task in finals.items() if t not in cancelled)
        for task_id, serialized in before.items():
            assert client.result(task_id).result.SerializeToString() == serialized
        for task_id, task in finals.items():
            if task.state == COMPLETED:
                pages = client.result(task_id).result.pages
                assert [p.page_number for p in pages] == list(range(1, task.pages_total + 1))
    print(
        f"\nSIGKILL under load: {len(acknowledged)} acknowledged, {len(before)} completed "
        f"before the kill, {len(cancelled)} cancelled, {states.count(PENDING)} pending and "
        f"{states.count(PROCESSING)} processing at the kill; after restart "
        f"{sum(t.state == COMPLETED for t in finals.values())} completed, lost 0"
    )


def _watch_health(target: str, seen: list[int | None], stop: threading.Event) -> None:
    while not stop.is_set():
        status = health_status(target)
        if not seen or seen[-1] != status:
            seen.append(status)
        time.sleep(0.02)


def test_sigterm_under_load_is_graceful(make_fake_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM with 30 tasks queued or running: health turns NOT_SERVING while the listener
    still answers, Submit is refused with UNAVAILABLE, a page that fits in the grace time
    finishes and is kept, a page that does not is put back; after a restart all complete."""
    data = tmp_path / "shared-data"
    server = make_fake_server(
        "--shutdown-grace",
        "3s",
        rules="default=slow:0.5,784=slow:60",
        data_dir=data,
    )
    with server.client() as client:
        long = client.submit(blank(784)).task_id  # will not finish within the grace time
        acknowledged = [long, *_submit_mixed_load(client, 29)]
        running_pid(server, 784)
        wait_for(lambda: sum(client.status(t).pages_done for t in acknowledged) >= 3)
        pages_before = sum(client.status(t).pages_done for t in acknowledged)
        seen: list[int | None] = []
        stop = threading.Event()
        poller = threading.Thread(target=_watch_health, args=(server.target, seen, stop))
        poller.start()
        wait_for(lambda: seen == [SERVING])
        assert server.process is not None
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: NOT_SERVING in seen, timeout=10)
        # the listener still answers while draining: status works, Submit is refused
        assert client.status(acknowledged[-1]).state in (PENDING, PROCESSING)
        with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as info:
            ocr_pb2_grpc.OcrServiceStub(channel).Submit(
                ocr_pb2.SubmitRequest(content=blank()),
                metadata=(("authorization", f"Bearer {TOKENS['alice']}"),),
                timeout=5,
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in info.value.details()
    assert server.process.wait(60) == 0
    exited = time.monotonic() - signalled
    stop.set()
    poller.join()
    assert seen[:2] == [SERVING, NOT_SERVING] and seen[-1] is None  # NOT_SERVING came first

    store = TaskStore(data / "store")
    try:
        records = [store.get_task(t) for t in acknowledged]
        assert all(r is not None and r.state != TaskState.PROCESSING for r in records)
        kept = sum(
            r.pages_total if r.state == TaskState.COMPLETED else len(store.get_pages(r))
            for r in records
            if r is not None
        )
        long_record = store.get_task(long)
        assert long_record is not None and long_record.state == TaskState.PENDING
        assert not store.get_pages(long_record)  # its page was stopped, not lost: re-queued
    finally:
        store.close()
    assert kept >= pages_before + 1  # the page in flight on the other worker finished

    restarted = make_fake_server(rules="default=slow:0.02", data_dir=data)
    with restarted.client() as client:
        for task_id in acknowledged:
            final = client.wait(task_id, timeout=120)
            assert final.state == COMPLETED and final.pages_done == final.pages_total
    print(
        f"\nSIGTERM under load: {len(acknowledged)} tasks, health {seen}, exit after "
        f"{exited:.1f} s, pages kept {pages_before} -> {kept}; after restart all completed"
    )


# --- the store ---------------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(path: Path, megabytes: int):  # type: ignore[no-untyped-def]
    """A real, small filesystem (tmpfs) at `path`; skips the test where mounting is denied."""
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs root to mount a small tmpfs")
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write until the filesystem says ENOSPC; return the filler file."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with filler.open("wb") as out:
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError:
            pass
    with contextlib.suppress(OSError), filler.open("ab") as out:  # and the last few bytes
        while True:
            out.write(b"\0" * 512)
            out.flush()
    return filler


def noise(width: int, height: int) -> bytes:
    image = Image.frombytes("L", (width, height), os.urandom(width * height))
    return encode([image], "PNG")


def test_full_disk_refuses_submit(make_fake_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The data directory's filesystem full (a real 24 MB tmpfs): Submit is refused with
    RESOURCE_EXHAUSTED, no half-written document is left, other tenants' results stay intact,
    the server keeps serving and accepts work again once there is room."""
    with small_filesystem(tmp_path / "disk", 24) as disk:
        server = make_fake_server(
            "--workers", "1", rules="default=echo", data_dir=disk / "data", start=False
        )
        server.log_path = tmp_path / "server.log"  # not on the disk that will be full
        try:
            server.start()
            with server.client("bob") as bob, server.client("alice") as alice:
                kept = [bob.submit(blank(pages=2)).task_id for _ in range(3)]
                for task_id in kept:
                    assert bob.wait(task_id, timeout=30).state == COMPLETED
                results = {t: bob.result(t).result.SerializeToString() for t in kept}
                filler = fill(disk)
                for document in (noise(600, 600), blank()):
                    with pytest.raises(grpc.RpcError) as info:
                        alice.submit(document)
                    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert "disk is full" in info.value.details()
                # only the completed tasks' documents (kept for their searchable PDFs)
                documents = {p.name for p in (disk / "data" / "store" / "documents").iterdir()}
                assert documents == set(kept)
                assert health_status(server.target) == SERVING
                for task_id, serialized in results.items():
                    assert bob.result(task_id).result.SerializeToString() == serialized
                filler.unlink()
                again = alice.submit(noise(600, 600))
                assert alice.wait(again.task_id, timeout=30).state == COMPLETED
        finally:
            server.stop()


def _damage(cache_db: Path, key: str, change: Callable[[Any], Any] | None) -> None:
    """Rewrite (or with None delete) one diskcache row in place, as disk damage would."""
    with contextlib.closing(sqlite3.connect(cache_db)) as db, db:
        if change is None:
            changed = db.execute("DELETE FROM Cache WHERE key = ?", (key,)).rowcount
        else:
            row = db.execute("SELECT value FROM Cache WHERE key = ?", (key,)).fetchone()
            assert row is not None and row[0] is not None, "expected the value inside sqlite"
            changed = db.execute(
                "UPDATE Cache SET value = ? WHERE key = ?", (change(row[0]), key)
            ).rowcount
    assert changed == 1


def test_damaged_entries_fail_only_their_task(make_fake_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A result whose bytes were altered, a result gone from the store, and a task record that
    no longer parses: each gives DATA_LOSS naming its task; every other task is served; the
    server restarts on the damaged store."""
    data = tmp_path / "shared-data"
    server = make_fake_server("--workers", "1", rules="default=echo", data_dir=data)
    with server.client() as client:
        ids = [client.submit(blank(pages=2)).task_id for _ in range(5)]
        for task_id in ids:
            assert client.wait(task_id, timeout=30).state == COMPLETED
        results = {t: client.result(t).result.SerializeToString() for t in ids}
        altered, missing, garbled = ids[:3]
        store = data / "store"
        _damage(store / "results" / "cache.db", altered, lambda v: bytes(v[:-1]) + b"\xff")
        _damage(store / "results" / "cache.db", missing, None)
        _damage(store / "tasks" / "cache.db", garbled, lambda v: "{not json" + v[9:])

        def check(client) -> None:  # type: ignore[no-untyped-def]
            for task_id, call in ((altered, client.result), (missing, client.result)):
                with pytest.raises(grpc.RpcError) as info:
                    call(task_id)
                assert info.value.code() == grpc.StatusCode.DATA_LOSS
                assert f"stored result of task {task_id} is damaged" in info.value.details()
                assert client.status(task_id).state == COMPLETED
            for call in (client.status, client.result):
                with pytest.raises(grpc.RpcError) as info:
                    call(garbled)
                assert info.value.code() == grpc.StatusCode.DATA_LOSS
                assert f"stored record of task {garbled} is damaged" in info.value.details()
            for task_id in ids[3:]:
                assert client.result(task_id).result.SerializeToString() == results[task_id]
            assert client.wait(client.submit(blank()).task_id, timeout=30).state == COMPLETED

        check(client)
    assert server.terminate() == 0
    restarted = make_fake_server("--workers", "1", rules="default=echo", data_dir=data)
    with restarted.client() as client:
        check(client)


def store_sizes(data_dir: Path) -> tuple[int, int]:
    """(the store's volume as --max-store-mb counts it, bytes of its files on disk including
    sqlite's write-ahead logs), read without writing: opening a diskcache writes to it."""
    store = data_dir / "store"
    volume = sum(p.stat().st_size for p in (store / "documents").iterdir())
    for database in store.glob("*/cache.db"):
        uri = f"file:{database}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            files = db.execute("SELECT value FROM Settings WHERE key = 'size'").fetchone()[0]
        volume += pages * page_size + files
    on_disk = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    return volume, on_disk


def within(sizes: tuple[int, int], limit: tuple[int, int]) -> bool:
    return sizes[0] <= limit[0] and sizes[1] <= limit[1]


def test_store_returns_to_baseline_after_expiry(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    """60 tasks with a 6 s TTL: once they expire and are swept, the store's volume and its
    files on disk (write-ahead logs included) are back at their size before the first task."""
    server = make_fake_server("--result-ttl", "6s", "--sweep-interval", "1s", rules="default=echo")
    baseline = store_sizes(server.data_dir)
    with server.client() as client:
        ids = [client.submit(blank(pages=1 + n % 3)).task_id for n in range(60)]
        for task_id in ids:
            assert client.wait(task_id, timeout=30).state == COMPLETED
        loaded = store_sizes(server.data_dir)
        assert loaded[0] > baseline[0] and loaded[1] > baseline[1]
        wait_for(lambda: within(store_sizes(server.data_dir), baseline), timeout=30)
        for task_id in ids[:3]:
            with pytest.raises(grpc.RpcError) as info:
                client.status(task_id)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    print(f"\nStore (volume, files) bytes: baseline {baseline}, loaded {loaded}, after expiry ok")


def test_damaged_page_result_is_recognised_again(make_fake_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A stored page result of an interrupted task is damaged before the restart: the page is
    recognised again and the task completes with every page (never without one)."""
    data = tmp_path / "shared-data"
    server = make_fake_server("--workers", "1", rules="default=slow:0.4", data_dir=data)
    with server.client() as client:
        task_id = client.submit(blank(pages=5)).task_id
        wait_for(lambda: client.status(task_id).pages_done >= 2)
    assert server.terminate() == 0
    _damage(data / "store" / "pages" / "cache.db", f"{task_id}:1", lambda v: v[: len(v) // 2])
    restarted = make_fake_server("--workers", "1", rules="default=echo", data_dir=data)
    with restarted.client() as client:
        final = client.wait(task_id, timeout=60)
        assert final.state == COMPLETED and final.pages_done == 5
        pages = client.result(task_id).result.pages
        assert [p.page_number for p in pages] == [1, 2, 3, 4, 5]
        assert all(p.text == "fake page 400x200" for p in pages)
    assert "page 1 of task" in restarted.log() and "is damaged in the store" in restarted.log()
