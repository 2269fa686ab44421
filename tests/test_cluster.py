"""Issue 8's acceptance on one machine: a real redis-server, `ocr-server --backend redis`
front ends and `ocr-worker` hosts as real processes on loopback, faults as real signals.

The fault-injection engine provides the pages (a rule per page width: slow pages to kill a
host in the middle of); one test runs real PaddleOCR on a real receipt through the cluster
while Redis itself is SIGKILLed and restarted on its AOF. Times are short on purpose: hosts
beat every 0.5 s and a silent host's page is reclaimed after 3 s (tests/cluster.py).
"""

from __future__ import annotations

import io
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from ocr.v1 import ocr_pb2, ocr_pb2_grpc
from ocr_client import FailedPreconditionError, InvalidArgumentError, OcrClient
from ocr_server.engines.tesseract import find_tessdata
from tests.cluster import WorkerHostProcess, front_end, seen_hosts_reading_english, wait_until
from tests.documents import receipt_jpeg
from tests.harness import TOKENS, ServerProcess, health_status
from tests.language_pages import render_page
from tests.redis_server import RedisServer, need_redis
from tests.test_faults import NOT_SERVING, SERVING, alive
from tests.test_languages import MAX_CER, cer_of
from tests.test_lifecycle import blank

PENDING, PROCESSING = ocr_pb2.TASK_STATE_PENDING, ocr_pb2.TASK_STATE_PROCESSING
COMPLETED, FAILED = ocr_pb2.TASK_STATE_COMPLETED, ocr_pb2.TASK_STATE_FAILED
CANCELLED = ocr_pb2.TASK_STATE_CANCELLED
RECLAIM_AFTER = 3.0
# page widths with their own rule: slow enough to be killed in the middle of
RULES = "default=slow:0.2,781=slow:2,782=slow:2,783=slow:0.6"
PER_TENANT = 6


class Cluster:
    """Front ends A and B and two worker hosts on one Redis, under their own key prefix."""

    def __init__(self, root: Path, redis_server: RedisServer, *front_args: str) -> None:
        self.root = root
        self.redis = redis_server
        self.prefix = f"c{secrets.token_hex(4)}"
        args = ("--redis-prefix", self.prefix, *front_args)
        self.front_ends = [front_end(root / name, redis_server, *args) for name in ("a", "b")]
        self.hosts: list[WorkerHostProcess] = []
        self._host_count = 0

    @property
    def a(self) -> ServerProcess:
        return self.front_ends[0]

    @property
    def b(self) -> ServerProcess:
        return self.front_ends[1]

    def add_host(self) -> WorkerHostProcess:
        self._host_count += 1
        host = WorkerHostProcess(
            self.root / f"host{self._host_count}",
            self.redis,
            "--redis-prefix",
            self.prefix,
            rules=RULES,
        ).start()
        self.hosts.append(host)
        return host

    def start(self, hosts: int = 2) -> Cluster:
        for _ in range(hosts):
            self.add_host()
        for server in self.front_ends:
            server.start(wait_serving=False)
        for server in self.front_ends:
            server.wait_serving(timeout=180)
        return self

    def heal(self) -> None:
        """Replace dead hosts, restart dead front ends; back to 2 + 2."""
        self.hosts = [h for h in self.hosts if h.process is not None and h.process.poll() is None]
        while len(self.hosts) < 2:
            self.add_host()
        for server in self.front_ends:
            assert server.process is not None
            if server.process.poll() is not None:
                server.start(wait_serving=False)
        for server in self.front_ends:
            server.wait_serving(timeout=180)

    def client(self, tenant: str = "alice") -> OcrClient:
        """A client behind a "load balancer": round robin over both front ends."""
        target = f"ipv4:{self.a.target},{self.b.target}"
        return OcrClient(target, TOKENS[tenant])

    def keys(self) -> int:
        client = self.redis.client()
        return sum(1 for _ in client.scan_iter(match=f"{self.prefix}:*", count=1000))

    def stop(self) -> None:
        for server in self.front_ends:
            server.stop()
        for host in self.hosts:
            host.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer | None
) -> Iterator[Cluster]:
    need_redis()
    assert redis_server is not None
    root = tmp_path_factory.mktemp("cluster")
    running = Cluster(root, redis_server, "--max-pending-per-tenant", str(PER_TENANT))
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.fixture
def healthy(cluster: Cluster) -> Iterator[Cluster]:
    """The shared cluster, whole again after a test that killed part of it."""
    yield cluster
    cluster.heal()


def host_running(cluster: Cluster, width: int, not_host: int = 0) -> WorkerHostProcess:
    """The worker host whose worker is now on the page of this width (the fake engine
    announces its pid in the host's data dir)."""

    def find() -> WorkerHostProcess | None:
        for host in cluster.hosts:
            marker = host.data_dir / f"fake-running-{width}"
            try:
                pid = int(marker.read_text())
            except (FileNotFoundError, ValueError):
                continue
            if host.pid != not_host and alive(pid) and alive(host.pid):
                return host
        return None

    return wait_until(find, timeout=30, interval=0.05)  # type: ignore[no-any-return]


def page_starts(cluster: Cluster, width: int) -> list[int]:
    """When each host last started a page of this width (the fake engine's marker)."""
    stamps = []
    for host in cluster.hosts:
        marker = host.data_dir / f"fake-running-{width}"
        stamps.append(marker.stat().st_mtime_ns if marker.exists() else 0)
    return stamps


def page_numbers(client: OcrClient, task_id: str) -> list[int]:
    return [page.page_number for page in client.result(task_id).result.pages]


# --- two front ends, two worker hosts --------------------------------------------------------


def test_submit_on_a_watch_and_fetch_on_b(healthy: Cluster, tmp_path: Path) -> None:
    """... and a searchable PDF rendered by B (from the document in Redis) is the file A
    serves (kept in Redis, not rendered again)."""
    with healthy.a.client() as a, healthy.b.client() as b:
        task = a.submit(blank(pages=3))
        seen = list(b.watch(task.task_id, timeout=60))
        assert seen[-1].state == COMPLETED and seen[-1].pages_done == 3
        assert page_numbers(b, task.task_id) == [1, 2, 3]
        assert a.status(task.task_id).state == COMPLETED
        rendered = b.export(task.task_id, "pdf", tmp_path / "b.pdf")
        served = a.export(task.task_id, "pdf", tmp_path / "a.pdf")
        assert served.sha256 == rendered.sha256 and served.size_bytes > 1000
        assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
        assert healthy.redis.client().exists(f"{healthy.prefix}:{{{task.task_id}}}:export")
        assert a.capabilities().searchable_pdf  # documents are kept by default
        with pytest.raises(grpc.RpcError) as caught:  # tenancy holds across front ends
            healthy.b.client("bob").status(task.task_id)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_front_end_that_keeps_no_documents(healthy: Cluster) -> None:
    """--keep-documents off: the document leaves Redis when the task ends; the searchable PDF
    is FAILED_PRECONDITION saying why (on any front end: the task's record says so), the
    formats made from the result alone still export."""
    server = front_end(
        healthy.root / "c", healthy.redis, "--redis-prefix", healthy.prefix,
        "--keep-documents", "off",
    )  # fmt: skip
    try:
        server.start(timeout=60)
        with server.client() as c, healthy.a.client() as a:
            assert not c.capabilities().searchable_pdf
            task = c.submit(blank(pages=2))
            assert c.wait(task.task_id, timeout=60).state == COMPLETED
            document = f"{healthy.prefix}:{{{task.task_id}}}:doc"
            assert not healthy.redis.client().exists(document)
            for client in (c, a):
                with pytest.raises(FailedPreconditionError, match="--keep-documents off"):
                    client.export(task.task_id, "pdf", io.BytesIO())
            hocr = io.BytesIO()
            a.export(task.task_id, "hocr", hocr)
            assert hocr.getvalue().count(b"ppageno") == 2
    finally:
        server.stop()


def test_one_request_id_sent_to_both_front_ends_makes_one_task(healthy: Cluster) -> None:
    with healthy.a.client() as a, healthy.b.client() as b:
        for attempt in range(3):
            request_id = f"invoice-{attempt}-{secrets.token_hex(4)}"
            barrier = threading.Barrier(4)

            def submit(
                client: OcrClient, rid: str = request_id, barrier: threading.Barrier = barrier
            ) -> str:
                barrier.wait()
                return client.submit(blank(), request_id=rid).task_id

            with ThreadPoolExecutor(4) as pool:
                ids = set(pool.map(submit, [a, b, a, b]))
            assert len(ids) == 1
            b.wait(ids.pop(), timeout=60)


def test_cancel_on_b_is_seen_on_a_and_stops_the_task(healthy: Cluster) -> None:
    with healthy.a.client() as a, healthy.b.client() as b:
        task = a.submit(blank(783, pages=8))  # 0.6 s a page
        watch = a.watch(task.task_id, timeout=60)
        wait_until(lambda: b.status(task.task_id).pages_done >= 1, timeout=30)
        cancelled = b.cancel(task.task_id)
        assert cancelled.state == CANCELLED
        started = time.monotonic()
        states = [update.state for update in watch]
        assert states[-1] == CANCELLED and time.monotonic() - started < 3
        time.sleep(1.0)  # the pages in flight (0.6 s) end and are dropped
        started = page_starts(healthy, 783)
        time.sleep(1.5)
        assert page_starts(healthy, 783) == started  # no further page of it started
        after = a.status(task.task_id)
        assert after.state == CANCELLED and after.pages_done == cancelled.pages_done


def test_fair_share_and_the_tenant_limit_hold_across_front_ends(healthy: Cluster) -> None:
    """A long document queued on A does not hold up a short one queued on B after it; one
    tenant's limit counts its tasks on both front ends; another tenant is still served."""
    with healthy.a.client() as a, healthy.b.client() as b, healthy.b.client("bob") as bob:
        long = a.submit(blank(783, pages=10))  # about 6 s of work on one host
        short = b.submit(blank(783))
        assert b.wait(short.task_id, timeout=60).state == COMPLETED
        assert a.status(long.task_id).state == PROCESSING  # served beside it, not before it
        taken = [long, short]
        for n in range(PER_TENANT - 1):  # the long one still counts: fill the limit
            taken.append((a, b)[n % 2].submit(blank(783, pages=4)))
        for client in (a, b):
            with pytest.raises(grpc.RpcError) as caught:
                client.submit(blank())
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "per-tenant limit" in caught.value.details()
        bob.wait(bob.submit(blank()).task_id, timeout=60)  # another tenant is served
        for task in taken:
            b.cancel(task.task_id)
        a.submit(blank())  # room again


# --- faults: worker hosts and front ends killed -------------------------------------------------


def test_a_worker_host_sigkilled_mid_page(healthy: Cluster) -> None:
    """Its page completes on the other host within the reclaim time + 5 s; each page once."""
    with healthy.client() as client:
        task = client.submit(blank(781, pages=2))  # 2 s pages, one on each host
        victim = host_running(healthy, 781)
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        final = client.wait(task.task_id, timeout=60)
        assert final.state == COMPLETED, final.error.message
        assert time.monotonic() - killed < RECLAIM_AFTER + 5
        assert page_numbers(client, task.task_id) == [1, 2]


def test_a_page_that_kills_two_worker_hosts_fails_the_task(healthy: Cluster) -> None:
    with healthy.client() as client:
        task = client.submit(blank(782))
        first = host_running(healthy, 782)
        os.kill(first.pid, signal.SIGKILL)
        second = host_running(healthy, 782, not_host=first.pid)  # the retry, after min-idle
        os.kill(second.pid, signal.SIGKILL)
        # no live worker host: health says so; what the hosts read stays offered (tasks
        # wait in the queue for a host, backends/redis/offer.py)
        for server in healthy.front_ends:
            wait_until(lambda s=server: health_status(s.target) == NOT_SERVING, timeout=10)
            with server.client() as direct:
                offered = direct.capabilities()
                assert "en" in offered.languages
                assert "fast" in [p.name for p in offered.profiles if p.available]
        healthy.add_host()  # the next host to ask finds the page lost twice
        final = client.wait(task.task_id, timeout=60)
        assert final.state == FAILED
        assert final.error.code == grpc.StatusCode.ABORTED.value[0]
        assert "died twice" in final.error.message
        wait_until(lambda: health_status(healthy.b.target) == SERVING, timeout=60)
        assert [p.name for p in client.capabilities().profiles if p.available]


def test_a_worker_host_sigtermed_gives_its_page_back_at_once(healthy: Cluster) -> None:
    """Another host starts the page at once (its 2 s), not after the reclaim time (3 s)."""
    with healthy.client() as client:
        task = client.submit(blank(781))
        victim = host_running(healthy, 781)
        assert victim.terminate(timeout=30) == 0
        released = time.monotonic()
        final = client.wait(task.task_id, timeout=60)
        assert final.state == COMPLETED
        assert time.monotonic() - released < RECLAIM_AFTER + 1.5
        assert "gave back 1 pages" in victim.log()
        assert page_numbers(client, task.task_id) == [1]


def test_a_front_end_sigkilled_during_submits_and_watches(healthy: Cluster) -> None:
    """Clients behind both front ends keep submitting (retrying with their request_id) and
    watching while A is SIGKILLed: every request ends as exactly one completed task."""
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        request_id = f"req-{index}-{secrets.token_hex(4)}"
        try:
            with healthy.client(("alice", "bob")[index % 2]) as client:
                for _ in range(20):
                    try:
                        task = client.submit(blank(783, pages=2), request_id=request_id)
                        break
                    except grpc.RpcError as exc:
                        if exc.code() != grpc.StatusCode.UNAVAILABLE:
                            raise
                        time.sleep(0.2)
                final = client.wait(task.task_id, timeout=90)
                assert final.state == COMPLETED, final
                again = client.submit(blank(783, pages=2), request_id=request_id)
                assert again.task_id == task.task_id  # a retry names the same task
                results[request_id] = task.task_id
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads[:4]:
        thread.start()
    time.sleep(0.6)
    healthy.a.kill()
    for thread in threads[4:]:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert len(results) == 8 and len(set(results.values())) == 8


# --- Redis itself ---------------------------------------------------------------------------------


def test_expiry_and_the_key_count(tmp_path: Path, redis_server: RedisServer | None) -> None:
    """With a 4 s TTL both front ends answer NOT_FOUND after it, and the prefix's key count
    is back to what it was before the tasks (no sweeper deletes records: they expire)."""
    need_redis()
    assert redis_server is not None
    cluster = Cluster(tmp_path, redis_server, "--result-ttl", "4s")
    try:
        cluster.start(hosts=1)
        baseline = cluster.keys()
        with cluster.a.client() as a, cluster.b.client() as b:
            done = a.submit(blank(pages=2), request_id="r1")
            cancelled = b.submit(blank(783, pages=6))
            a.wait(done.task_id, timeout=30)
            b.cancel(cancelled.task_id)
            assert cluster.keys() > baseline
            time.sleep(4.2)
            for client in (a, b):
                for task in (done, cancelled):
                    with pytest.raises(grpc.RpcError) as caught:
                        client.status(task.task_id)
                    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            wait_until(lambda: cluster.keys() == baseline, timeout=10)
    finally:
        cluster.stop()


def test_redis_full_is_resource_exhausted_and_evicts_nothing(tmp_path: Path) -> None:
    need_redis()
    store = RedisServer(tmp_path / "redis", "--maxmemory", "24mb").start()
    seen_hosts_reading_english(store)  # none runs: the tasks stay queued
    server = front_end(tmp_path / "a", store)
    try:
        server.start(wait_serving=False)
        with server.client() as client:
            wait_until(lambda: _answers(client), timeout=60)
            noise = os.urandom(3 * 1024 * 1024)
            kept = []
            with pytest.raises(grpc.RpcError) as caught:
                for _ in range(20):  # 3 MiB each: the document and its chunks
                    kept.append(client.submit(blank() + noise).task_id)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "memory limit" in caught.value.details()
            assert 2 <= len(kept) < 20
            for task_id in kept:  # nothing was evicted to make room
                assert client.status(task_id).state == PENDING
            client.cancel(kept[0])  # ending tasks works when full, and gives room back
            client.submit(blank())
    finally:
        server.stop()
        store.stop()


def _answers(client: OcrClient) -> bool:
    try:
        client.capabilities()
    except grpc.RpcError:
        return False
    return True


def test_redis_sigkilled_after_submit_restarts_on_its_aof(tmp_path: Path) -> None:
    """Real PaddleOCR on a real receipt: Submit returns, Redis is SIGKILLed and restarted on
    its append-only file (appendfsync always), the task completes."""
    need_redis()
    content = receipt_jpeg()
    store = RedisServer(tmp_path / "redis").start()
    server = front_end(tmp_path / "a", store)
    host = WorkerHostProcess(tmp_path / "host", store, engine="paddle")
    try:
        host.start()
        server.start(timeout=300)
        with server.client() as client:
            task = client.submit(content)
            store.kill()
            store.start()
            final = client.wait(task.task_id, timeout=180)
            assert final.state == COMPLETED, final.error.message
            text = client.result(task.task_id).result.text
            assert "TOTAL" in text.upper(), text
    finally:
        server.stop()
        host.stop()
        store.stop()


# --- languages: a front end offers what the worker hosts read --------------------------------


def test_a_front_end_offers_the_languages_its_worker_host_reads(
    tmp_path: Path, redis_server: RedisServer | None
) -> None:
    """1 front end (no models) + 1 worker host with real PaddleOCR and Tesseract, whose
    Tesseract data is Russian only. Before any host has joined, Submit is UNAVAILABLE. Then the
    front end lists Russian (read by Tesseract) and reads a Cyrillic page through the host,
    and refuses Korean, whose data this machine has but the host lacks. With the host gone,
    the front end keeps offering what it read (tasks wait for a host)."""
    need_redis()
    assert redis_server is not None
    system_data = find_tessdata()
    if system_data is None or not (system_data / "rus.traineddata").is_file():
        pytest.skip("Tesseract's Russian data is not installed (scripts/setup --dev)")
    assert (system_data / "kor.traineddata").is_file(), "run scripts/setup --dev"
    tessdata = tmp_path / "tessdata"
    tessdata.mkdir()
    (tessdata / "rus.traineddata").symlink_to(system_data / "rus.traineddata")
    page = render_page("ru", 0)
    prefix = f"lang{secrets.token_hex(4)}"
    host = WorkerHostProcess(
        tmp_path / "host", redis_server, "--redis-prefix", prefix, "--tessdata-dir",
        str(tessdata), "--default-profile", "tesseract", engine="paddle",
    )  # fmt: skip
    server = front_end(tmp_path / "a", redis_server, "--redis-prefix", prefix)
    try:
        server.start(wait_serving=False)
        with server.client() as client:
            wait_until(lambda: _answers(client), timeout=60)
            assert list(client.capabilities().languages) == []
            # no host has ever joined (a bare stub: the SDK would retry UNAVAILABLE for 4 s)
            with (
                grpc.insecure_channel(server.target) as channel,
                pytest.raises(grpc.RpcError) as unavailable,
            ):
                ocr_pb2_grpc.OcrServiceStub(channel).Submit(
                    ocr_pb2.SubmitRequest(content=page.png),
                    metadata=(("authorization", f"Bearer {TOKENS['alice']}"),),
                )
            assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "no worker host has joined" in unavailable.value.details()

            host.start()
            server.wait_serving(timeout=300)
            capabilities = client.capabilities()
            listed = {language.code: language for language in capabilities.supported_languages}
            assert (listed["ru"].engine, listed["ru"].profile) == ("tesseract", "tesseract")
            assert "ru" in capabilities.languages and "en" in capabilities.languages
            assert "ko" not in capabilities.languages
            available = {p.name for p in capabilities.profiles if p.available}
            assert {"fast", "tesseract"} <= available

            result = client.recognize(page.png, language="ru", timeout=300)
            assert any(line.words for line in result.pages[0].lines), "no words"
            assert cer_of(page.truth, result.text) <= MAX_CER, result.text
            with pytest.raises(InvalidArgumentError) as refused:
                client.submit(page.png, language="ko")
            message = refused.value.details()
            assert "'ko' (Korean) is not installed on the live worker hosts" in message
            assert "ru" in message.split("installed:")[1]

            host.terminate()  # unregisters: no live host now
            wait_until(lambda: health_status(server.target) == NOT_SERVING, timeout=30)
            waiting = client.submit(page.png, language="ru")  # queued for a host to come
            assert client.status(waiting.task_id).state == PENDING
            with pytest.raises(InvalidArgumentError):
                client.submit(page.png, language="ko")
    finally:
        server.stop()
        host.stop()
