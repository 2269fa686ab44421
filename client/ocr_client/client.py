"""The SDK: a thin, typed wrapper over the generated stub that adds the token, raises the
message size limit to match the server, makes Submit safe to retry, and waits for results."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import grpc

from ocr.v1 import ocr_pb2, ocr_pb2_grpc

DEFAULT_TARGET = "localhost:50051"
MIB = 1024 * 1024
FINAL_STATES = frozenset(
    {
        ocr_pb2.TASK_STATE_COMPLETED,
        ocr_pb2.TASK_STATE_FAILED,
        ocr_pb2.TASK_STATE_CANCELLED,
    }
)

# Retry only UNAVAILABLE (server restarting, connection dropped). Submit is safe to retry
# because the client always sends a request_id.
_SERVICE_CONFIG = json.dumps(
    {
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
        ]
    }
)


def tls_credentials(
    ca_file: str | Path | None = None,
    client_cert: str | Path | None = None,
    client_key: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """Channel credentials from PEM files; no `ca_file` means the system's trusted CAs."""
    if (client_cert is None) != (client_key is None):
        raise ValueError("a client certificate needs its key and the key its certificate")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(client_key).read_bytes() if client_key else None,
        certificate_chain=Path(client_cert).read_bytes() if client_cert else None,
    )


class TaskFailedError(Exception):
    """recognize() ended in FAILED or CANCELLED; `task` holds the final state and error."""

    def __init__(self, task: ocr_pb2.Task) -> None:
        state = ocr_pb2.TaskState.Name(task.state).removeprefix("TASK_STATE_")
        detail = f": {task.error.message}" if task.error.message else ""
        super().__init__(f"task {task.task_id} {state}{detail}")
        self.task = task


# ExportResult formats by name, as the CLI spells them.
RESULT_FORMATS: dict[str, int] = {
    "text": ocr_pb2.RESULT_FORMAT_TEXT,
    "json": ocr_pb2.RESULT_FORMAT_JSON,
    "hocr": ocr_pb2.RESULT_FORMAT_HOCR,
    "alto": ocr_pb2.RESULT_FORMAT_ALTO,
    "pdf": ocr_pb2.RESULT_FORMAT_PDF,
}
BINARY_FORMATS = frozenset({"pdf"})


class ExportError(Exception):
    """An exported file did not arrive whole: its size or SHA-256 differ from the header."""


class OcrClient:
    """Talks to one OCR server. Thread-safe; close it (or use `with`) when done."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        token: str | None = None,
        *,
        max_message_mb: int = 64,
        timeout: float = 60.0,
        tls: bool = False,
        ca_file: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        tls_server_name: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """TLS is on with `tls=True` (system CAs) or any of `ca_file` (PEM CAs to trust, e.g.
        a private CA), `client_cert` + `client_key` (PEM, for servers that require client
        certificates); `credentials` takes ready-made gRPC channel credentials instead.
        `tls_server_name`: the name to expect in the server's certificate when it differs from
        the target's host (a tunnel, a port-forward, an IP address)."""
        options = [
            ("grpc.max_send_message_length", max_message_mb * MIB),
            ("grpc.max_receive_message_length", max_message_mb * MIB),
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
        ]
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        if credentials is None and (tls or ca_file or client_cert or client_key):
            credentials = tls_credentials(ca_file, client_cert, client_key)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = ocr_pb2_grpc.OcrServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout

    def __enter__(self) -> OcrClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def submit(
        self,
        document: bytes | str | Path,
        *,
        language: str = "",
        profile: str = "",
        pages: str = "",
        dpi: int = 0,
        request_id: str | None = None,
        filename: str = "",
    ) -> ocr_pb2.Task:
        """Queue a document (bytes or a path); returns the PENDING task at once."""
        if isinstance(document, str | Path):
            path = Path(document)
            content = path.read_bytes()
            filename = filename or path.name
        else:
            content = document
        request = ocr_pb2.SubmitRequest(
            content=content,
            settings=ocr_pb2.RecognitionSettings(
                language=language, profile=profile, pages=pages, dpi=dpi
            ),
            request_id=request_id if request_id is not None else uuid.uuid4().hex,
            filename=filename,
        )
        response = self._stub.Submit(request, timeout=self._timeout, metadata=self._metadata)
        return response.task

    def status(self, task_id: str) -> ocr_pb2.Task:
        """The task's state and progress (never the result)."""
        request = ocr_pb2.GetTaskStatusRequest(task_id=task_id)
        return self._stub.GetTaskStatus(
            request, timeout=self._timeout, metadata=self._metadata
        ).task

    def result(self, task_id: str) -> ocr_pb2.GetResultResponse:
        """The task and, once COMPLETED, its result (`response.HasField("result")`)."""
        request = ocr_pb2.GetResultRequest(task_id=task_id)
        return self._stub.GetResult(request, timeout=self._timeout, metadata=self._metadata)

    def cancel(self, task_id: str) -> ocr_pb2.Task:
        request = ocr_pb2.CancelRequest(task_id=task_id)
        return self._stub.Cancel(request, timeout=self._timeout, metadata=self._metadata).task

    def watch(self, task_id: str, timeout: float | None = None) -> Iterator[ocr_pb2.Task]:
        """Every change of the task until it ends (the stream closes after a final state)."""
        request = ocr_pb2.WatchTaskRequest(task_id=task_id)
        for response in self._stub.WatchTask(request, timeout=timeout, metadata=self._metadata):
            yield response.task

    def export(
        self,
        task_id: str,
        result_format: str | int,
        destination: str | Path | BinaryIO,
        *,
        timeout: float | None = None,
    ) -> ocr_pb2.ExportedFile:
        """Stream a completed task's result as a file (`"text"`, `"json"`, `"hocr"`, `"alto"`
        or `"pdf"`) into `destination`: a path (written whole or not at all) or a binary file.
        Returns the header (media type, size, SHA-256, suggested file name); ExportError when
        the bytes do not match it. The file may be far larger than one gRPC message."""
        number = RESULT_FORMATS[result_format] if isinstance(result_format, str) else result_format
        request = ocr_pb2.ExportResultRequest(task_id=task_id, format=number)  # type: ignore[arg-type]
        responses = self._stub.ExportResult(request, timeout=timeout, metadata=self._metadata)
        if isinstance(destination, str | Path):
            path = Path(destination)
            partial = path.with_name(path.name + ".part")
            try:
                with partial.open("wb") as file:
                    header = _receive(responses, file)
                partial.replace(path)
            finally:
                partial.unlink(missing_ok=True)
            return header
        return _receive(responses, destination)

    def capabilities(self) -> ocr_pb2.GetCapabilitiesResponse:
        request = ocr_pb2.GetCapabilitiesRequest()
        return self._stub.GetCapabilities(request, timeout=self._timeout, metadata=self._metadata)

    def wait(self, task_id: str, timeout: float | None = None) -> ocr_pb2.Task:
        """Follow the watch stream until the task ends; return its final state."""
        task = self.status(task_id)
        for task in self.watch(task_id, timeout=timeout):
            if task.state in FINAL_STATES:
                break
        return task

    def recognize(
        self,
        document: bytes | str | Path,
        *,
        timeout: float | None = None,
        language: str = "",
        profile: str = "",
        pages: str = "",
        dpi: int = 0,
    ) -> ocr_pb2.OcrResult:
        """Submit, wait, and return the result; TaskFailedError if it fails or is cancelled."""
        task = self.submit(document, language=language, profile=profile, pages=pages, dpi=dpi)
        task = self.wait(task.task_id, timeout=timeout)
        if task.state != ocr_pb2.TASK_STATE_COMPLETED:
            raise TaskFailedError(task)
        return self.result(task.task_id).result


def _receive(
    responses: Iterable[ocr_pb2.ExportResultResponse], file: BinaryIO
) -> ocr_pb2.ExportedFile:
    """Write the chunks after the header to `file`, checking size and SHA-256 at the end."""
    header: ocr_pb2.ExportedFile | None = None
    digest = hashlib.sha256()
    size = 0
    for response in responses:
        if response.HasField("file"):
            header = response.file
            continue
        if header is None:
            raise ExportError("the server sent file data before the file's header")
        digest.update(response.chunk)
        size += len(response.chunk)
        file.write(response.chunk)
    if header is None:
        raise ExportError("the server ended the stream without a file")
    if size != header.size_bytes or digest.hexdigest() != header.sha256:
        raise ExportError(
            f"{header.filename} arrived damaged: {size} bytes with SHA-256 {digest.hexdigest()}, "
            f"expected {header.size_bytes} bytes with {header.sha256}"
        )
    return header
