"""The service: the real server (`python -m ocr_server`, N workers) driven by real gRPC clients.

Each page is one task: a client submits it, follows its WatchTask stream to a final state and
fetches the result, as `OcrClient.recognize` does. A window of 4 x N tasks is kept in flight,
so the queue never runs dry and the workers stay saturated. Measured:
- pages/s: pages over the wall time from the first Submit to the last result in hand;
- per-page latency: the task's end_time - start_time (one page per task: its recognition);
- Submit latency: measured by a separate client process (`benchlib.submit_probe`) that submits
  a page image, the same page as a PDF and a receipt photo in turn, one every 0.5 s, and
  cancels each, while the window keeps the workers saturated: upload and server triage
  included, the bench's own clients not; and as the server sees it, from its Prometheus
  histogram (`benchlib.metrics`) over the same window, every Submit counted;
- watch delay: client receive time - the server's timestamp of the change (start_time for
  PROCESSING, end_time for the final state), for changes the stream reported as they happened
  (not the snapshot that opens a stream);
- peak RSS of each worker (children of the server), CPU use of each core.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchlib import metrics
from benchlib.datasets import ROOT, EvalSet, Page, probe_documents
from benchlib.outcome import PageOutcome, SetRun
from benchlib.resources import (
    CpuMeter,
    MemorySampler,
    ProcessCpu,
    reset_peaks,
    spawned_children,
)
from ocr.v1 import ocr_pb2
from ocr_client import OcrClient
from ocr_client.client import FINAL_STATES

START_TIMEOUT = 300.0
TASK_TIMEOUT = 600.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seconds(stamp: object) -> float:
    return float(stamp.seconds) + float(stamp.nanos) / 1e9  # type: ignore[attr-defined]


class Service:
    """One server process for one profile (its default, so no engine loads while timed)."""

    def __init__(self, workers: int, profile: str, log_dir: Path, language: str = "en") -> None:
        self.workers = workers
        self.profile = profile
        self.language = language
        self.window = 4 * workers
        self.target = f"127.0.0.1:{_free_port()}"
        self.metrics_address = f"127.0.0.1:{_free_port()}"
        self.token = secrets.token_urlsafe(24)
        self.load_seconds = 0.0
        self._data = tempfile.TemporaryDirectory(prefix="bench-service-")
        self._log_path = log_dir / f"server-{profile}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._client: OcrClient | None = None

    def __enter__(self) -> Service:
        env = {
            **os.environ,
            "OCR_TOKENS": f"bench={self.token}",
            "OCR_WORKERS": str(self.workers),
            "OCR_DEFAULT_PROFILE": self.profile,
            "OCR_DATA_DIR": str(Path(self._data.name) / "data"),
            "OCR_LISTEN": self.target,
            "OCR_METRICS_LISTEN": self.metrics_address,
        }
        started = time.perf_counter()
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "ocr_server"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_serving()
        except BaseException:
            self.__exit__()  # never leave a server behind
            raise
        self.load_seconds = time.perf_counter() - started
        self._client = OcrClient(self.target, self.token, timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._data.cleanup()

    def worker_pids(self) -> list[int]:
        return spawned_children(self._process.pid) if self._process else []

    def run(self, eval_set: EvalSet) -> SetRun:
        client = self._client
        assert client is not None
        outcomes: dict[str, PageOutcome] = {}
        delays: list[float] = []
        in_flight = 0
        lock = threading.Lock()
        slots = threading.Semaphore(self.window)

        def one(page: Page, content: bytes) -> None:
            nonlocal in_flight
            try:
                try:
                    outcome, page_delays = self._one_task(client, page, content)
                except Exception as exc:  # an unread page, counted and shown in the report
                    outcome = PageOutcome(page.page_id, "", 0.0, f"{type(exc).__name__}: {exc}")
                    page_delays = []
                with lock:
                    outcomes[page.page_id] = outcome
                    delays.extend(page_delays)
            finally:
                with lock:
                    in_flight -= 1
                slots.release()

        reset_peaks(self.worker_pids())
        cpu = CpuMeter()
        engine_cpu = ProcessCpu(self.worker_pids)  # the workers: recognition, as the raw engine's
        memory = MemorySampler(self.worker_pids).start()
        cpu.start()
        engine_cpu.start()
        started = time.perf_counter()
        probe: subprocess.Popen[str] | None = None
        server_before: dict[str, metrics.Buckets] = {}
        with ThreadPoolExecutor(self.window, thread_name_prefix="client") as pool:
            for count, page in enumerate(eval_set.pages, start=1):
                content = page.path.read_bytes()
                slots.acquire()
                with lock:
                    in_flight += 1
                pool.submit(one, page, content)
                if probe is None and count >= min(self.window, len(eval_set.pages)):
                    server_before = metrics.scrape(self.metrics_address)  # workers saturated
                    probe = self._start_probe(probe_documents(eval_set))
            submits = self._stop_probe(probe)  # the last pages are handed out: queue drains
            server_submits = (
                metrics.difference(metrics.scrape(self.metrics_address), server_before)
                if probe is not None
                else {}
            )
        wall = time.perf_counter() - started
        engine_cpu.stop()
        cpu.stop()
        memory.stop()
        return SetRun(
            engine="service",
            profile=self.profile,
            set_name=eval_set.name,
            wall_seconds=wall,
            pages=[
                outcomes.get(p.page_id) or PageOutcome(p.page_id, "", 0.0, "no outcome")
                for p in eval_set.pages
            ],
            peak_rss_bytes=memory.peaks,
            cpu_per_core=cpu.per_core,
            engine_cpu_seconds=engine_cpu.seconds,
            rss_timeline=memory.timeline,
            submit_seconds=[seconds for _, seconds in submits],
            submit_types=[kind for kind, _ in submits],
            server_submits=server_submits,
            watch_delays=delays,
        )

    def _start_probe(self, documents: list[Path]) -> subprocess.Popen[str]:
        command = ["-m", "benchlib.submit_probe", self.target, self.token, self.profile]
        return subprocess.Popen(
            [sys.executable, *command, *map(str, documents)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )

    @staticmethod
    def _stop_probe(probe: subprocess.Popen[str] | None) -> list[tuple[str, float]]:
        """(document type, Submit round trip) for each Submit the probe made (none when the
        set never filled the window)."""
        if probe is None:
            return []
        output, _ = probe.communicate("", timeout=120)
        return [(str(kind), float(seconds)) for kind, seconds in json.loads(output or "[]")]

    def _one_task(
        self, client: OcrClient, page: Page, content: bytes
    ) -> tuple[PageOutcome, list[float]]:
        """Submit, watch to the end, fetch: (outcome, watch delays)."""
        task = client.submit(
            content, language=self.language, profile=self.profile, filename=page.path.name
        )
        delays: list[float] = []
        previous: int | None = None
        for update in client.watch(task.task_id, timeout=TASK_TIMEOUT):
            received = time.time()
            if previous is not None and update.state != previous:
                if update.state == ocr_pb2.TASK_STATE_PROCESSING and update.HasField("start_time"):
                    delays.append(received - _seconds(update.start_time))
                elif update.state in FINAL_STATES and update.HasField("end_time"):
                    delays.append(received - _seconds(update.end_time))
            previous = update.state
            task = update
            if update.state in FINAL_STATES:
                break
        recognise = (
            _seconds(task.end_time) - _seconds(task.start_time)
            if task.HasField("start_time") and task.HasField("end_time")
            else 0.0
        )
        if task.state != ocr_pb2.TASK_STATE_COMPLETED:
            name = ocr_pb2.TaskState.Name(task.state)
            error = f"{name}: {task.error.message}"
            return PageOutcome(page.page_id, "", recognise, error=error), delays
        text = client.result(task.task_id).result.text
        return PageOutcome(page.page_id, text, recognise), delays

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"the server exited with {self._process.returncode}; see {self._log_path}"
                    )
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise TimeoutError(f"the server was not SERVING after {START_TIMEOUT:.0f} s")
