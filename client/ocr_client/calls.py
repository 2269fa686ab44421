"""What the sync and the asyncio client share: channel options and retry policy, request
building, document chunking, and merging a result fetched in parts. No I/O on the network here,
so both clients build exactly the same requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import grpc

from ocr.v1 import ocr_pb2
from ocr_client.errors import ExportError

DEFAULT_TARGET = "localhost:50051"
MIB = 1024 * 1024
CHUNK_BYTES = MIB  # SubmitStream chunk size: well under any message limit, few messages
# Documents above this go through SubmitStream: a unary Submit stays under gRPC's default 4 MiB
# (every proxy and server accepts it), whatever the server's own limit.
STREAM_THRESHOLD = 3 * MIB
RESULT_PAGE_SIZE = 1000  # pages asked per GetResult; the server returns fewer to stay < 4 MiB
FINAL_STATES = frozenset(
    {
        ocr_pb2.TASK_STATE_COMPLETED,
        ocr_pb2.TASK_STATE_FAILED,
        ocr_pb2.TASK_STATE_CANCELLED,
    }
)
PAGE_SEPARATOR = "\n\f"  # as the server joins pages: a newline ends the page, a form feed
# ExportResult's formats by the names the CLI and the SDK take.
RESULT_FORMATS: dict[str, int] = {
    "text": ocr_pb2.RESULT_FORMAT_TEXT,
    "json": ocr_pb2.RESULT_FORMAT_JSON,
    "hocr": ocr_pb2.RESULT_FORMAT_HOCR,
    "alto": ocr_pb2.RESULT_FORMAT_ALTO,
    "pdf": ocr_pb2.RESULT_FORMAT_PDF,
}
BINARY_FORMATS = frozenset({"pdf"})  # never written to a terminal

# Retries live in the channel's service config (gRPC's own retry machinery, with backoff and
# jitter), for UNAVAILABLE only: the server was unreachable, restarting or draining, so the
# call did nothing. Submit is retried too because this client always sends a request_id
# (AIP-155): a repeat is answered with the task the first attempt made. A SubmitStream is
# replayed by gRPC only while its messages fit the retry buffer (256 KiB); beyond that the
# clients retry it themselves, from the first chunk, with the same request_id.
SERVICE_CONFIG = json.dumps(
    {
        # Round robin over every address the target resolves to (several front ends behind
        # one DNS name, or "ipv4:10.0.0.1:50051,10.0.0.2:50051"): a front end that dies is
        # left out and calls go to the others.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": "ocr.v1.OcrService"}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)
STREAM_ATTEMPTS = 3


WATCH_RESUMES = 8
"""A watch cut by UNAVAILABLE (its front end restarted or died; another behind the same
address takes over) is opened again this often in a row; the new stream starts with the task
as it is then, so a state may repeat but the end is never missed."""


def resumes_watch(error: grpc.RpcError, failures: int) -> bool:
    """Whether a watch cut by `error`, already opened again `failures` times in a row, is
    opened again (UNAVAILABLE only, at most WATCH_RESUMES times); else the error is raised."""
    return bool(error.code() == grpc.StatusCode.UNAVAILABLE and failures < WATCH_RESUMES)


def resume_pause(failures: int) -> float:
    """Seconds before opening a cut watch again: 0.4, 0.8, 1.6 ... at most 5."""
    return float(min(0.2 * 2**failures, 5.0))


def channel_options(tls_server_name: str | None) -> list[tuple[str, object]]:
    """No message size limit of the client's own: the server enforces its limits and says them
    in GetCapabilities, which the client follows (documents above them are streamed)."""
    options: list[tuple[str, object]] = [
        ("grpc.max_send_message_length", -1),
        ("grpc.max_receive_message_length", -1),
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 60_000),  # watch streams through NATs and proxies
        ("grpc.keepalive_timeout_ms", 20_000),
    ]
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    return options


def metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def settings(language: str, profile: str, pages: str, dpi: int) -> ocr_pb2.RecognitionSettings:
    return ocr_pb2.RecognitionSettings(language=language, profile=profile, pages=pages, dpi=dpi)


def new_request_id(request_id: str | None) -> str:
    """Every Submit carries a request_id, so that retrying it is safe."""
    return request_id if request_id else uuid.uuid4().hex


@dataclass(frozen=True)
class Document:
    """A document to submit: bytes in memory or a file read in chunks (never whole)."""

    size: int
    filename: str
    content: bytes | None = None
    path: Path | None = None

    @classmethod
    def of(cls, document: bytes | str | os.PathLike[str], filename: str = "") -> Document:
        if isinstance(document, bytes | bytearray | memoryview):
            data = bytes(document)
            return cls(size=len(data), filename=filename, content=data)
        path = Path(document)
        return cls(size=path.stat().st_size, filename=filename or path.name, path=path)

    def read(self) -> bytes:
        if self.content is not None:
            return self.content
        assert self.path is not None
        return self.path.read_bytes()

    def sha256(self) -> str:
        """The document's SHA-256 (a file is read once for it, in chunks): lets the server
        answer a retried upload before any chunk and check the bytes that arrive."""
        digest = hashlib.sha256()
        for chunk in self.chunks(CHUNK_BYTES):
            digest.update(chunk)
        return digest.hexdigest()

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        if self.content is not None:
            view = memoryview(self.content)
            for start in range(0, self.size, size):
                yield bytes(view[start : start + size])
            return
        assert self.path is not None
        with self.path.open("rb") as file:
            while chunk := file.read(size):
                yield chunk


_ROOM = 64 * 1024  # for the other fields and the framing beside the document's bytes


def unary_limit(server_max_message_bytes: int) -> int:
    """Largest document sent in a unary Submit: under gRPC's default 4 MiB, and under the
    server's own limit with room for the other fields."""
    if server_max_message_bytes <= 0:
        return STREAM_THRESHOLD
    return max(1, min(STREAM_THRESHOLD, server_max_message_bytes - _ROOM))


def chunk_size(server_max_message_bytes: int) -> int:
    """SubmitStream's chunk: 1 MiB, or less for a server with a smaller message limit."""
    if server_max_message_bytes <= 0:
        return CHUNK_BYTES
    return max(1, min(CHUNK_BYTES, server_max_message_bytes - _ROOM))


def submit_request(
    document: Document, recognition: ocr_pb2.RecognitionSettings, request_id: str
) -> ocr_pb2.SubmitRequest:
    return ocr_pb2.SubmitRequest(
        content=document.read(),
        settings=recognition,
        request_id=request_id,
        filename=document.filename,
    )


def stream_requests(
    document: Document,
    recognition: ocr_pb2.RecognitionSettings,
    request_id: str,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[ocr_pb2.SubmitStreamRequest]:
    header = ocr_pb2.SubmitStreamHeader(
        settings=recognition,
        request_id=request_id,
        filename=document.filename,
        size_bytes=document.size,
        sha256=document.sha256(),
    )
    yield ocr_pb2.SubmitStreamRequest(header=header)
    for chunk in document.chunks(chunk_bytes):
        yield ocr_pb2.SubmitStreamRequest(chunk=chunk)


def result_request(task_id: str, page_token: str) -> ocr_pb2.GetResultRequest:
    return ocr_pb2.GetResultRequest(
        task_id=task_id, page_size=RESULT_PAGE_SIZE, page_token=page_token
    )


class ResultMerger:
    """Joins the parts of a paged GetResult into one response, as the whole would be."""

    def __init__(self) -> None:
        self.response = ocr_pb2.GetResultResponse()
        self._texts: list[str] = []

    def add(self, part: ocr_pb2.GetResultResponse) -> None:
        self.response.task.CopyFrom(part.task)
        if part.HasField("result"):
            self.response.result.pages.extend(part.result.pages)
            self._texts.append(part.result.text)

    def merged(self) -> ocr_pb2.GetResultResponse:
        if self._texts:
            self.response.result.text = PAGE_SEPARATOR.join(self._texts)
        return self.response


def export_request(task_id: str, result_format: str | int) -> ocr_pb2.ExportResultRequest:
    """`result_format`: a name of RESULT_FORMATS or a ResultFormat number."""
    if isinstance(result_format, str):
        if result_format not in RESULT_FORMATS:
            raise ValueError(
                f"unknown result format {result_format!r}; one of: {', '.join(RESULT_FORMATS)}"
            )
        result_format = RESULT_FORMATS[result_format]
    return ocr_pb2.ExportResultRequest(task_id=task_id, format=result_format)  # type: ignore[arg-type]


@contextlib.contextmanager
def whole_or_nothing(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A file to export into: written as `<path>.part`, renamed to `path` only if the block
    ends without an error, removed otherwise (never a damaged file under the real name)."""
    target = Path(path)
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("wb") as file:
            yield file
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


class ExportReceiver:
    """Checks an ExportResult stream: the header first, then chunks whose total size and
    SHA-256 must match it. `add` returns the bytes to write; `finish` the checked header."""

    def __init__(self) -> None:
        self._header: ocr_pb2.ExportedFile | None = None
        self._digest = hashlib.sha256()
        self._size = 0

    def add(self, response: ocr_pb2.ExportResultResponse) -> bytes:
        if response.HasField("file"):
            self._header = response.file
            return b""
        if self._header is None:
            raise ExportError("the server sent file data before the file's header")
        self._digest.update(response.chunk)
        self._size += len(response.chunk)
        return response.chunk

    def finish(self) -> ocr_pb2.ExportedFile:
        header = self._header
        if header is None:
            raise ExportError("the server ended the stream without a file")
        digest = self._digest.hexdigest()
        if self._size != header.size_bytes or digest != header.sha256:
            raise ExportError(
                f"{header.filename} arrived damaged: {self._size} bytes with SHA-256 {digest}, "
                f"expected {header.size_bytes} bytes with {header.sha256}"
            )
        return header
