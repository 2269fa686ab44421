"""Runs the real server as a subprocess on loopback, as a user would, and talks to it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ocr_client import OcrClient

ROOT = Path(__file__).resolve().parent.parent
TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-9876543210"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health_status(
    target: str, service: str = "", credentials: grpc.ChannelCredentials | None = None
) -> int | None:
    """The server's health status, or None when it does not answer."""
    channel = (
        grpc.insecure_channel(target)
        if credentials is None
        else grpc.secure_channel(target, credentials)
    )
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status)
        except grpc.RpcError:
            return None


class ServerProcess:
    """One `ocr-server` process with its own data dir; restartable on the same data.

    `credentials`: how the harness and `client()` connect when the server serves TLS."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        env: dict[str, str] | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.credentials = credentials
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.args = list(args)
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    def start(self, wait_serving: bool = True, timeout: float = 180) -> ServerProcess:
        env = {
            **os.environ,
            "OCR_TOKENS": ",".join(f"{t}={k}" for t, k in TOKENS.items()),
            "OCR_WORKERS": "2",
            **self.env,
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ocr_server",
                "--listen",
                self.target,
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        if wait_serving:
            self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            status = health_status(self.target, credentials=self.credentials)
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.2)
        raise TimeoutError(f"server not SERVING after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def client(self, tenant: str = "alice", **kwargs: object) -> OcrClient:
        kwargs.setdefault("credentials", self.credentials)
        return OcrClient(self.target, TOKENS[tenant], **kwargs)  # type: ignore[arg-type]

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the server and its workers, as a crash would."""
        assert self.process is not None
        children = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        self.process.kill()
        self.process.wait(10)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.terminate(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        out = subprocess.run(  # spawned workers, not multiprocessing's resource tracker
            ["pgrep", "-P", str(self.process.pid), "-f", "spawn_main"],
            capture_output=True,
            text=True,
        ).stdout
        return [int(pid) for pid in out.split()]


def run_cli(
    server: ServerProcess, *args: str, token: str | None = TOKENS["alice"], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`ocr ARGS` against the server, as a user runs it (OCR_TOKEN set unless token is None)."""
    env = {**os.environ, "OCR_TARGET": server.target}
    env.pop("OCR_TOKEN", None)
    if token:
        env["OCR_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "ocr_client.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=cwd,
    )
