"""Documents leave the host in a cluster, so the Redis connection takes a password, an ACL
user limited to the service's own keys and channels, and TLS (`rediss://`), against a real
redis-server (Debian's is built with TLS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocr_server.backends.redis.backend import RedisTaskBackend
from ocr_server.backends.redis.connection import RedisConfigError, connect
from ocr_server.backends.redis.errors import RedisPermissionError
from ocr_server.backends.tasks import RoomLimits
from tests.redis_server import RedisServer, need_redis
from tests.tls_certs import TestCA

LIMITS = RoomLimits(max_queue=10, max_pending_per_tenant=5)


def round_trip(url: str, prefix: str = "ocr") -> None:
    """Store a document, read it back, and run one admission through the scripts."""
    backend = RedisTaskBackend(connect(url, "test"), LIMITS, 2, prefix=prefix, consumer="h")
    try:
        with backend.documents.create("a" * 40, 1 << 20, 4e9) as writer:
            writer.write(b"%PDF-1.4 secret")
            ref = writer.commit()
        assert b"".join(backend.documents.chunks(ref)) == b"%PDF-1.4 secret"
        backend.release(backend.reserve("alice"))
        assert backend.next_page() is None
        assert backend.expire() == 0
    finally:
        backend.close()


def test_password_and_an_acl_user_limited_to_the_services_keys(tmp_path: Path) -> None:
    need_redis()
    server = RedisServer(tmp_path, password="root-secret-4567").start()
    acl = ["on", ">acl-secret-0123", "~ocr:*", "&ocr:*", "+@all", "-@dangerous"]
    server.client().execute_command("ACL", "SETUSER", "ocr", *acl)
    port = server.port
    round_trip(f"redis://ocr:acl-secret-0123@127.0.0.1:{port}/0")  # no CONFIG: a warning only
    for url in (
        f"redis://127.0.0.1:{port}/0",
        f"redis://ocr:wrong-password@127.0.0.1:{port}/0",
    ):
        with pytest.raises(RedisConfigError, match=r"(?i)auth|credentials"):
            round_trip(url)
    with pytest.raises(RedisPermissionError, match="lacks a permission"):
        round_trip(f"redis://ocr:acl-secret-0123@127.0.0.1:{port}/0", prefix="other")
    server.stop()


def test_tls(tmp_path: Path) -> None:
    need_redis()
    ca = TestCA(tmp_path / "ca", "redis")
    issued = ca.issue_server("localhost")
    server = RedisServer(tmp_path / "redis", tls=(issued.cert, issued.key, ca.cert)).start()
    try:
        round_trip(server.url)
        with pytest.raises(RedisConfigError, match="cannot use Redis"):  # plaintext to TLS
            round_trip(f"redis://127.0.0.1:{server.port}/0")
    finally:
        server.stop()
