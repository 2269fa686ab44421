"""A cluster on loopback for the tests: a real redis-server, `ocr-server --backend redis`
front ends and `ocr-worker` hosts as real processes, so faults are real signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ocr_server.backends.redis.hosts import HostRegistry
from ocr_server.backends.redis.keys import Keys
from ocr_server.languages.routing import Reader
from tests.harness import ROOT, ServerProcess
from tests.redis_server import RedisServer

# Short times so that fault tests finish in seconds: a page idle for 3 s (no heartbeat)
# is reclaimed; hosts beat every 0.5 s.
RECLAIM_AFTER = "3s"
HOST_HEARTBEAT = "0.5s"


def front_end(
    data_dir: Path, redis: RedisServer, *args: str, env: dict[str, str] | None = None
) -> ServerProcess:
    """An `ocr-server --backend redis --workers 0` (not started)."""
    return ServerProcess(
        data_dir,
        "--backend",
        "redis",
        "--redis-url",
        redis.url,
        "--workers",
        "0",
        "--sweep-interval",
        "1s",
        "--reclaim-after",
        RECLAIM_AFTER,
        *args,
        env=env,
    )


def seen_hosts_reading_english(redis: RedisServer, prefix: str = "ocr") -> None:
    """As if worker hosts reading English with `fast` had been alive: for the tests of a
    front end alone, which otherwise refuses Submit until a host has joined."""
    english = frozenset({"en"})
    reader = Reader("fast", "paddleocr", english, english)
    HostRegistry(redis.client(), Keys(prefix)).remember_offer([reader])


class WorkerHostProcess:
    """One `ocr-worker` process (and its spawned workers)."""

    def __init__(self, data_dir: Path, redis: RedisServer, *args: str, engine: str = "fake",
                 rules: str = "default=slow:0.3", workers: int = 1) -> None:  # fmt: skip
        self.data_dir = data_dir
        self.args = [
            "--redis-url", redis.url,
            "--data-dir", str(data_dir),
            "--workers", str(workers),
            "--reclaim-after", RECLAIM_AFTER,
            "--host-heartbeat", HOST_HEARTBEAT,
            "--engine", engine,
            *(["--fake-rules", rules] if engine == "fake" else []),
            *args,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-worker.log"

    def start(self) -> WorkerHostProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ocr_server.workers.cli", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=os.environ.copy(),
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        """SIGKILL the host; its workers follow it (PR_SET_PDEATHSIG)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.kill()


def wait_until(condition, timeout: float = 60, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)
