from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ServerProcess
from tests.redis_server import REDIS_SERVER, RedisServer


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server with real PaddleOCR (2 workers), shared by the tests that only read."""
    data = tmp_path_factory.mktemp("real") / "data"
    server = ServerProcess(data, "--max-message-mb", "64").start()
    yield server
    server.stop()


@pytest.fixture
def make_fake_server(tmp_path: Path) -> Iterator[object]:
    """Factory for servers on the fault-injection engine; all are stopped afterwards."""
    servers: list[ServerProcess] = []

    def make(
        *args: str,
        rules: str = "default=slow:0.3",
        start: bool = True,
        data_dir: Path | None = None,
        **env: str,
    ) -> ServerProcess:
        server = ServerProcess(
            data_dir or tmp_path / f"data{len(servers)}",
            "--engine",
            "fake",
            "--fake-rules",
            rules,
            *args,
            env=env,
        )
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer | None]:
    """One real redis-server for the session's in-process tests (each uses its own key
    prefix); None when redis-server is not installed (those tests skip)."""
    if REDIS_SERVER is None:
        yield None
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
