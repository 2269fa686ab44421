"""The sync SDK: a typed wrapper over the generated stub that adds the token, streams large
documents, fetches large results in parts, makes Submit safe to retry, converts errors to the
SDK's exception classes (errors.py), and waits for results. `AsyncOcrClient` (aio.py) is the
same for asyncio, built from the same requests (calls.py)."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

import grpc

from ocr.v1 import ocr_pb2, ocr_pb2_grpc
from ocr_client import calls
from ocr_client.calls import DEFAULT_TARGET, FINAL_STATES, Document, ExportReceiver
from ocr_client.errors import UnavailableError, from_rpc_error, task_failed

__all__ = ["DEFAULT_TARGET", "FINAL_STATES", "OcrClient", "tls_credentials"]

R = TypeVar("R")


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


def channel_credentials(
    tls: bool,
    ca_file: str | Path | None,
    client_cert: str | Path | None,
    client_key: str | Path | None,
    credentials: grpc.ChannelCredentials | None,
) -> grpc.ChannelCredentials | None:
    if credentials is None and (tls or ca_file or client_cert or client_key):
        return tls_credentials(ca_file, client_cert, client_key)
    return credentials


class OcrClient:
    """Talks to one OCR server. Thread-safe; close it (or use `with`) when done.

    Every method raises a subclass of `ocr_client.OcrError`: `RpcFailedError` subclasses for a
    gRPC status (`NotFoundError`, `InvalidArgumentError`, ...), `TaskFailedError` when
    `recognize` or `wait` sees the task fail or be cancelled."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        tls: bool = False,
        ca_file: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        tls_server_name: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_mb: int | None = None,
    ) -> None:
        """TLS is on with `tls=True` (system CAs) or any of `ca_file` (PEM CAs to trust, e.g.
        a private CA), `client_cert` + `client_key` (PEM, for servers that require client
        certificates); `credentials` takes ready-made gRPC channel credentials instead.
        `tls_server_name`: the name to expect in the server's certificate when it differs from
        the target's host (a tunnel, a port-forward, an IP address). `timeout`: seconds per
        call (an upload gets this per MiB on top). Message sizes follow the server (its
        GetCapabilities); `max_message_mb` is obsolete and ignored."""
        if max_message_mb is not None:
            warnings.warn(
                "max_message_mb is ignored: the client follows the server's limits",
                DeprecationWarning,
                stacklevel=2,
            )
        options = calls.channel_options(tls_server_name)
        credentials = channel_credentials(tls, ca_file, client_cert, client_key, credentials)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = ocr_pb2_grpc.OcrServiceStub(self._channel)
        self._metadata = calls.metadata(token)
        self._timeout = timeout
        self._server_max_message: int | None = None
        self._limit_lock = threading.Lock()

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
        """Queue a document (bytes or a path); returns the PENDING task at once. Documents
        above 3 MiB (or the server's message limit) are streamed in 1 MiB chunks, read from
        the file as they go. A `request_id` is generated unless given, so retries are safe."""
        source = Document.of(document, filename)
        recognition = calls.settings(language, profile, pages, dpi)
        request_id = calls.new_request_id(request_id)
        server_limit = self._server_message_limit()
        if source.size <= calls.unary_limit(server_limit):
            request = calls.submit_request(source, recognition, request_id)
            return self._call(self._stub.Submit, request).task
        chunk_bytes = calls.chunk_size(server_limit)
        return self._submit_stream(source, recognition, request_id, chunk_bytes)

    def _submit_stream(
        self,
        source: Document,
        recognition: ocr_pb2.RecognitionSettings,
        request_id: str,
        chunk_bytes: int,
    ) -> ocr_pb2.Task:
        timeout = self._timeout * (1 + source.size / calls.MIB)
        for attempt in range(1, calls.STREAM_ATTEMPTS + 1):
            try:
                requests = calls.stream_requests(source, recognition, request_id, chunk_bytes)
                response = self._stub.SubmitStream(
                    requests, timeout=timeout, metadata=self._metadata
                )
                return response.task
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                if not isinstance(error, UnavailableError) or attempt == calls.STREAM_ATTEMPTS:
                    raise error from exc
        raise AssertionError("unreachable")

    def _server_message_limit(self) -> int:
        """Learnt once from GetCapabilities (0 if the server does not say)."""
        with self._limit_lock:
            if self._server_max_message is None:
                self.capabilities()
            assert self._server_max_message is not None
            return self._server_max_message

    def status(self, task_id: str) -> ocr_pb2.Task:
        """The task's state and progress (never the result)."""
        request = ocr_pb2.GetTaskStatusRequest(task_id=task_id)
        return self._call(self._stub.GetTaskStatus, request).task

    def result(self, task_id: str) -> ocr_pb2.GetResultResponse:
        """The task and, once COMPLETED, its result (`response.HasField("result")`); for a
        CANCELLED task, the pages finished before the cancel. Large results are fetched in
        parts (each response under 4 MiB) and joined."""
        merger = calls.ResultMerger()
        for part in self.result_parts(task_id):
            merger.add(part)
        return merger.merged()

    def result_parts(self, task_id: str) -> Iterator[ocr_pb2.GetResultResponse]:
        """The result in parts of whole pages (for a document too large to hold at once)."""
        token = ""
        while True:
            part = self._call(self._stub.GetResult, calls.result_request(task_id, token))
            yield part
            token = part.next_page_token
            if not token:
                return

    def cancel(self, task_id: str) -> ocr_pb2.Task:
        request = ocr_pb2.CancelRequest(task_id=task_id)
        return self._call(self._stub.Cancel, request).task

    def watch(self, task_id: str, timeout: float | None = None) -> Iterator[ocr_pb2.Task]:
        """Every change of the task until it ends (the stream closes after a final state).

        A stream cut by UNAVAILABLE (its front end restarted or died) is opened again
        (calls.WATCH_RESUMES): a state may repeat, the end is never missed. `timeout` bounds
        the whole watch."""
        request = ocr_pb2.WatchTaskRequest(task_id=task_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        failures = 0
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                stream = self._stub.WatchTask(request, timeout=remaining, metadata=self._metadata)
                for response in stream:
                    failures = 0
                    yield response.task
                return
            except grpc.RpcError as exc:
                if not calls.resumes_watch(exc, failures):
                    raise from_rpc_error(exc) from exc
                failures += 1
                time.sleep(calls.resume_pause(failures))

    def export(
        self,
        task_id: str,
        result_format: str | int,
        destination: str | Path | BinaryIO,
        *,
        timeout: float | None = None,
    ) -> ocr_pb2.ExportedFile:
        """Stream a task's result as a file (`"text"`, `"json"`, `"hocr"`, `"alto"` or `"pdf"`,
        or a ResultFormat number) into `destination`: a path (written whole or not at all) or
        a binary file. Returns the header (media type, size, SHA-256, suggested file name);
        ExportError when the bytes do not match it, FailedPreconditionError while the task
        has no result. The file may be far larger than one gRPC message. A CANCELLED task
        exports the pages finished before the cancel."""
        request = calls.export_request(task_id, result_format)
        if isinstance(destination, str | Path):
            with calls.whole_or_nothing(destination) as file:
                return self._export_into(request, file, timeout)
        return self._export_into(request, destination, timeout)

    def _export_into(
        self, request: ocr_pb2.ExportResultRequest, file: BinaryIO, timeout: float | None
    ) -> ocr_pb2.ExportedFile:
        receiver = ExportReceiver()
        try:
            for response in self._stub.ExportResult(
                request, timeout=timeout, metadata=self._metadata
            ):
                file.write(receiver.add(response))
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        return receiver.finish()

    def capabilities(self) -> ocr_pb2.GetCapabilitiesResponse:
        """Languages, profiles and limits (the client also keeps the message limit)."""
        response = self._call(self._stub.GetCapabilities, ocr_pb2.GetCapabilitiesRequest())
        self._server_max_message = response.max_message_bytes
        return response

    def list_tasks(
        self, filter: str = "", page_size: int = 0, page_token: str = ""
    ) -> ocr_pb2.ListTasksResponse:
        """One page of this tenant's tasks, newest first (see ListTasksRequest.filter)."""
        request = ocr_pb2.ListTasksRequest(
            filter=filter, page_size=page_size, page_token=page_token
        )
        return self._call(self._stub.ListTasks, request)

    def iter_tasks(self, filter: str = "", page_size: int = 0) -> Iterator[ocr_pb2.Task]:
        """Every task of this tenant matching `filter`, newest first, page after page."""
        token = ""
        while True:
            response = self.list_tasks(filter, page_size, token)
            yield from response.tasks
            token = response.next_page_token
            if not token:
                return

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
        """Submit, wait, and return the result; TaskFailedError if it fails or is cancelled
        (TaskCancelledError, a subclass, for a cancel)."""
        task = self.submit(document, language=language, profile=profile, pages=pages, dpi=dpi)
        task = self.wait(task.task_id, timeout=timeout)
        if task.state != ocr_pb2.TASK_STATE_COMPLETED:
            raise task_failed(task)
        return self.result(task.task_id).result

    def _call(self, method: Callable[..., R], request: object) -> R:
        try:
            return method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
