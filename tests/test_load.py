"""Load on the real server: a storm of submissions against a bounded queue, and hundreds of
concurrent watch streams. The fault-injection engine stands in for recognition (a fixed time
per page) so the workers are saturated on cue. Figures go to docs/reliability.md."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import pytest

from ocr.v1 import ocr_pb2, ocr_pb2_grpc
from ocr_server.backends.local.store import TaskStore
from tests.harness import TOKENS, ServerProcess
from tests.test_lifecycle import blank, wait_for

PENDING, COMPLETED = ocr_pb2.TASK_STATE_PENDING, ocr_pb2.TASK_STATE_COMPLETED
FINAL = {COMPLETED, ocr_pb2.TASK_STATE_FAILED, ocr_pb2.TASK_STATE_CANCELLED}
AUTH = (("authorization", f"Bearer {TOKENS['alice']}"),)
NO_RETRIES = [("grpc.enable_retries", 0)]


@dataclass
class Storm:
    accepted: list[tuple[str, str, int]] = field(default_factory=list)  # request, task, position
    refused: list[str] = field(default_factory=list)
    other: Counter[str] = field(default_factory=Counter)
    accepted_seconds: list[float] = field(default_factory=list)
    refused_seconds: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def submit_storm(target: str, total: int, clients: int) -> tuple[Storm, float]:
    """`clients` threads, each with its own channel and no retries, submit `total` documents
    with distinct request ids as fast as they can; every outcome is recorded."""
    storm = Storm()
    document = blank()
    per_client = [range(c, total, clients) for c in range(clients)]
    start = threading.Barrier(clients + 1)

    def client(numbers: range) -> None:
        with grpc.insecure_channel(target, options=NO_RETRIES) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)  # connecting is not Submit
            stub = ocr_pb2_grpc.OcrServiceStub(channel)
            start.wait()
            for number in numbers:
                request_id = f"storm-{number}"
                request = ocr_pb2.SubmitRequest(content=document, request_id=request_id)
                started = time.perf_counter()
                try:
                    task = stub.Submit(request, metadata=AUTH, timeout=30).task
                    outcome = (request_id, task.task_id, task.queue_position)
                except grpc.RpcError as exc:
                    outcome = None
                    code = exc.code()
                elapsed = time.perf_counter() - started
                with storm.lock:
                    if outcome is not None:
                        storm.accepted.append(outcome)
                        storm.accepted_seconds.append(elapsed)
                    elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        storm.refused.append(request_id)
                        storm.refused_seconds.append(elapsed)
                    else:
                        storm.other[code.name] += 1

    with ThreadPoolExecutor(clients) as pool:
        outcomes = [pool.submit(client, numbers) for numbers in per_client]
        start.wait()
        started = time.monotonic()
        for outcome in outcomes:
            outcome.result()
    return storm, time.monotonic() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency(seconds: list[float]) -> str:
    ms = [1000 * s for s in seconds]
    return (
        f"p50 {percentile(ms, 0.5):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
        f"max {max(ms):.1f} ms, mean {statistics.fmean(ms):.1f} ms"
    )


def wait_all_final(server: ServerProcess, task_ids: list[str], timeout: float) -> Counter[int]:
    states: Counter[int] = Counter()
    remaining = list(task_ids)
    deadline = time.monotonic() + timeout
    with server.client() as client:
        while remaining and time.monotonic() < deadline:
            still = []
            for task_id in remaining:
                state = client.status(task_id).state
                if state in FINAL:
                    states[state] += 1
                else:
                    still.append(task_id)
            remaining = still
            if remaining:
                time.sleep(0.2)
    assert not remaining, f"{len(remaining)} tasks not finished in {timeout} s"
    return states


def run_storm(make_fake_server, total: int, clients: int, max_queue: int) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server(
        "--max-queue", str(max_queue), "--log-level", "WARNING", rules="default=slow:0.02"
    )
    # One client first, submitting faster than the workers drain: Submit's own cost while
    # the workers are saturated, without 50 clients queueing behind each other.
    alone: list[float] = []
    queued: list[str] = []
    with server.client() as client:
        client.capabilities()  # connected: the first call's handshake is not Submit's cost
        for number in range(100):
            started = time.perf_counter()
            queued.append(client.submit(blank(), request_id=f"alone-{number}").task_id)
            alone.append(time.perf_counter() - started)
        assert client.status(queued[-1]).queue_position > 1  # the workers were behind
    storm, took = submit_storm(server.target, total, clients)
    accepted_ids = queued + [task_id for _, task_id, _ in storm.accepted]
    assert not storm.other, storm.other  # only accepted or RESOURCE_EXHAUSTED
    assert len(storm.accepted) + len(storm.refused) == total
    assert len(set(accepted_ids)) == len(accepted_ids)  # no task handed out twice
    requests = [r for r, _, _ in storm.accepted] + storm.refused
    assert len(set(requests)) == total  # every submission has exactly one outcome
    assert storm.refused, "the queue never filled: the workers were not saturated"
    assert max(position for _, _, position in storm.accepted) <= max_queue  # the bound held
    states = wait_all_final(server, accepted_ids, timeout=300)
    assert states == Counter({COMPLETED: len(accepted_ids)})
    assert server.terminate() == 0
    store = TaskStore(server.data_dir / "store")
    try:  # refused submissions left nothing behind; accepted ones are all there
        assert sum(1 for _ in store.task_ids()) == len(accepted_ids)
        # completed tasks' documents stay until expiry (searchable PDFs); no refused one's
        documents = {p.name for p in (server.data_dir / "store" / "documents").iterdir()}
        assert documents == set(accepted_ids)
    finally:
        store.close()
    print(
        f"\nSubmit storm: {total} submissions from {clients} clients, --max-queue {max_queue}, "
        f"2 workers at 20 ms/page: {len(storm.accepted)} accepted (all completed), "
        f"{len(storm.refused)} RESOURCE_EXHAUSTED, 0 other, 0 lost, 0 duplicated "
        f"(after 100 from one client alone: Submit {latency(alone)}); "
        f"submitted in {took:.1f} s ({total / took:.0f}/s); Submit latency: all "
        f"{latency(storm.accepted_seconds + storm.refused_seconds)}; accepted "
        f"{latency(storm.accepted_seconds)}; refused {latency(storm.refused_seconds)}"
    )


def test_submit_storm_1000(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    """1,000 submissions from 50 concurrent clients (no retries) against a queue bounded at
    200 with the workers saturated: each is accepted and completes, or is refused with
    RESOURCE_EXHAUSTED; none lost, none duplicated, the bound never overshot. (About 6 s, so
    it runs in the default suite.)"""
    run_storm(make_fake_server, total=1000, clients=50, max_queue=200)


def test_200_concurrent_watch_streams(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    """200 WatchTask streams open at once on queued tasks (within --rpc-threads 256): every
    stream starts on a running (not final) state and ends with COMPLETED, and ordinary calls
    are still served while they are open."""
    server = make_fake_server("--log-level", "WARNING", rules="default=slow:0.01,785=slow:4")
    with server.client() as client:
        blockers = [client.submit(blank(785)).task_id for _ in range(2)]  # hold both workers
        watched = [client.submit(blank()).task_id for _ in range(200)]
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    opened = threading.Semaphore(0)
    channels = [grpc.insecure_channel(server.target) for _ in range(10)]

    def watch(index: int) -> None:
        stub = ocr_pb2_grpc.OcrServiceStub(channels[index % len(channels)])
        request = ocr_pb2.WatchTaskRequest(task_id=watched[index])
        for n, response in enumerate(stub.WatchTask(request, metadata=AUTH, timeout=120)):
            if n == 0:
                first[watched[index]] = response.task.state
                opened.release()
            last[watched[index]] = response.task.state

    try:
        started = time.monotonic()
        threads = [threading.Thread(target=watch, args=(i,)) for i in range(200)]
        for thread in threads:
            thread.start()
        for _ in range(200):
            assert opened.acquire(timeout=60)
        all_open = time.monotonic() - started
        with server.client() as client:  # still served with 200 streams open
            assert client.status(blockers[0]).state != COMPLETED
            extra = client.submit(blank()).task_id
        for thread in threads:
            thread.join(timeout=120)
        took = time.monotonic() - started
    finally:
        for channel in channels:
            channel.close()
    assert len(first) == 200 and all(state == PENDING for state in first.values())
    assert len(last) == 200 and all(state == COMPLETED for state in last.values())
    with server.client() as client:
        assert client.wait(extra, timeout=60).state == COMPLETED
    print(
        f"\nWatch: 200 streams open in {all_open:.1f} s, all saw PENDING first and COMPLETED "
        f"last, {took:.1f} s in all"
    )


def test_watch_streams_beyond_rpc_threads_are_refused(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    """Each open WatchTask holds one handler thread: past --rpc-threads, calls are refused with
    RESOURCE_EXHAUSTED (not queued or hung), and served again once a stream closes."""
    server = make_fake_server(
        "--workers", "1", "--rpc-threads", "4", "--shutdown-grace", "1s", rules="default=slow:30"
    )
    with server.client() as client:
        task_id = client.submit(blank()).task_id
    with grpc.insecure_channel(server.target, options=NO_RETRIES) as channel:
        stub = ocr_pb2_grpc.OcrServiceStub(channel)
        request = ocr_pb2.WatchTaskRequest(task_id=task_id)
        streams = [_open_watch(stub, request) for _ in range(4)]
        status = ocr_pb2.GetTaskStatusRequest(task_id=task_id)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetTaskStatus(status, metadata=AUTH, timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        streams[0].cancel()
        wait_for(lambda: _answers(stub, status), timeout=10)
        for stream in streams[1:]:
            stream.cancel()


def _open_watch(stub: ocr_pb2_grpc.OcrServiceStub, request: ocr_pb2.WatchTaskRequest):  # type: ignore[no-untyped-def]
    """A watch stream that has delivered its first update. The server frees the handler slot
    of a finished call a moment after the client sees its answer, hence the few attempts."""
    for _ in range(50):
        stream = stub.WatchTask(request, metadata=AUTH, timeout=60)
        try:
            next(stream)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            time.sleep(0.1)
            continue
        return stream
    raise AssertionError("could not open a watch stream")


def _answers(stub: ocr_pb2_grpc.OcrServiceStub, request: ocr_pb2.GetTaskStatusRequest) -> bool:
    try:
        stub.GetTaskStatus(request, metadata=AUTH, timeout=10)
    except grpc.RpcError:
        return False
    return True
