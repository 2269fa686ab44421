"""A real `redis-server` for the tests, on loopback, in its own directory: never a system one.

Started as `redis-server --port <free> --dir <tmp> --save '' --appendonly yes` (plus what a test
adds: `maxmemory`, a password, TLS), stopped, SIGKILLed and restarted on its AOF by the tests.
Tests that need it skip with a message when Debian's redis-server is not installed (set-up
installs it: scripts/packages/dev-redis.txt).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.harness import free_port

REDIS_SERVER = shutil.which("redis-server")


def need_redis() -> None:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (scripts/setup --dev installs it)")


class RedisServer:
    def __init__(
        self,
        directory: Path,
        *args: str,
        password: str = "",
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """`password`: the default user's; `tls`: (certificate, key, CA) to serve TLS only."""
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.args = list(args)
        self.password = password
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls[2]}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        need_redis()
        assert REDIS_SERVER is not None
        ports = ["--port", str(self.port)]
        if self.tls is not None:
            cert, key, ca = self.tls
            ports = [
                "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        command = [
            REDIS_SERVER,
            *ports,
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--maxmemory-policy", "noeviction",
            *self.args,
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if self.client().ping():
                    return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start: {self.log()}")

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def log(self) -> str:
        return (self.directory / "redis.log").read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
