"""The real gRPC servicer on loopback, in this process, on the local backend without workers
(tasks stay queued): for what needs no recognition, such as how errors reach a watch stream."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from ocr.v1 import ocr_pb2_grpc
from ocr_client import OcrClient
from ocr_server.api.auth import AuthInterceptor, TokenRegistry, parse_token_spec
from ocr_server.api.service import OcrServicer
from ocr_server.backends.local.backend import LocalTaskBackend
from ocr_server.backends.local.documents import LocalDocumentStore
from ocr_server.backends.tasks import RoomLimits
from ocr_server.capabilities import Capabilities
from ocr_server.documents import DocumentLimits
from ocr_server.engines.profiles import BUILTIN_PROFILES
from ocr_server.errors import DocumentTooLargeError, InvalidDocumentError, RequestIdReusedError
from ocr_server.exports import Exporter
from ocr_server.languages.routing import LanguageRouter, Reader
from ocr_server.models import TaskState
from ocr_server.tasks.manager import TaskManager
from ocr_server.tasks.submission import Submission, SubmissionLimits, SubmitOptions
from tests.harness import TOKENS
from tests.test_faults import _damage
from tests.test_lifecycle import blank


@dataclass
class InProcessServer:
    target: str
    data: Path
    manager: TaskManager
    submission: Submission

    def client(self, tenant: str = "alice") -> OcrClient:
        return OcrClient(self.target, TOKENS[tenant])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    backend = LocalTaskBackend(tmp_path / "store", RoomLimits(100), max_active=2)
    reads = frozenset({"en", "zh"})
    router = LanguageRouter([Reader("fast", "paddleocr", reads, reads)], "fast")
    capabilities = Capabilities(BUILTIN_PROFILES, ("fast",), "fast", router)
    manager = TaskManager(backend)
    submission = Submission(
        backend, lambda: capabilities, SubmissionLimits(3600, 1 << 20, DocumentLimits())
    )
    tokens = TokenRegistry(parse_token_spec(",".join(f"{t}={k}" for t, k in TOKENS.items())))
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8), interceptors=[AuthInterceptor(tokens)]
    )
    exporter = Exporter(
        manager,
        backend.documents,
        LocalDocumentStore(tmp_path / "store" / "exports", backend.capacity),
        scratch=tmp_path / "scratch",
        alive=lambda task_id: backend.get(task_id) is not None,
    )
    servicer = OcrServicer(
        manager,
        submission,
        backend.events,
        tokens,
        lambda: capabilities,
        info={},
        heartbeat=0.1,
        exporter=exporter,
    )
    ocr_pb2_grpc.add_OcrServiceServicer_to_server(servicer, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    yield InProcessServer(f"127.0.0.1:{port}", tmp_path / "store", manager, submission)
    grpc_server.stop(grace=0).wait()
    backend.close()


def test_a_record_damaged_during_a_watch_is_data_loss(server: InProcessServer) -> None:
    """The watch re-reads the task at every heartbeat: a record that no longer parses ends
    the stream with DATA_LOSS naming the task, as GetTaskStatus answers (not UNKNOWN)."""
    with server.client() as client:
        task = client.submit(blank())
        stream = client.watch(task.task_id, timeout=30)
        assert next(stream).task_id == task.task_id
        _damage(server.data / "tasks" / "cache.db", task.task_id, lambda v: "{not json" + v[9:])
        with pytest.raises(grpc.RpcError) as info:
            list(stream)
        assert info.value.code() == grpc.StatusCode.DATA_LOSS
        assert f"stored record of task {task.task_id} is damaged" in info.value.details()
        with pytest.raises(grpc.RpcError) as status:
            client.status(task.task_id)
        assert (status.value.code(), status.value.details()) == (
            info.value.code(),
            info.value.details(),
        )


def test_an_unexpected_error_during_a_watch_is_internal(
    server: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with server.client() as client:
        task = client.submit(blank())
        stream = client.watch(task.task_id, timeout=30)
        next(stream)

        def broken(*_: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(server.manager, "find", broken)
        with pytest.raises(grpc.RpcError) as info:
            list(stream)
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert info.value.details() == "internal error; see the server log"


def test_a_streamed_document_is_checked_as_it_arrives(server: InProcessServer) -> None:
    """Chunks of a document go to the store as they come; a document past the size limit is
    refused at the chunk that passes it (the rest is never read) and leaves nothing behind."""
    document = blank(600, pages=3)
    pieces = [document[i : i + 700] for i in range(0, len(document), 700)]
    task = server.submission.submit_stream("alice", SubmitOptions(request_id="s1"), pieces)
    assert task.document_type == "tiff" and task.page_numbers == [1, 2, 3]
    record, _ = server.manager.find("alice", task.task_id)
    assert record.state == TaskState.PENDING
    digest = hashlib.sha256(document).hexdigest()
    same = server.submission.submit_stream(
        "alice", SubmitOptions(request_id="s1"), iter(()), declared_sha256=digest
    )
    assert same.task_id == task.task_id  # a retry with its digest: before any chunk is read
    with pytest.raises(RequestIdReusedError):  # the same key for another document
        server.submission.submit_stream("alice", SubmitOptions(request_id="s1"), [blank(601)])

    consumed = []

    def endless() -> Iterator[bytes]:
        yield document[:1000]
        while True:
            consumed.append(1)
            yield b"\0" * 65536

    with pytest.raises(DocumentTooLargeError, match="larger than this server's limit of 1 MiB"):
        server.submission.submit_stream("alice", SubmitOptions(), endless())
    assert len(consumed) == 16  # 1000 + 16 x 64 KiB passes 1 MiB: no chunk after that
    assert sorted(p.name for p in (server.data / "documents").iterdir()) == [task.task_id]
    with pytest.raises(InvalidDocumentError, match="empty"):
        server.submission.submit_stream("alice", SubmitOptions(), iter(()))
    for _ in range(99):  # the refused submissions gave their room back (queue of 100)
        server.submission.submit("bob", blank(), SubmitOptions())
