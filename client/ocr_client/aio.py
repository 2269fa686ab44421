"""The asyncio SDK: `AsyncOcrClient`, the same calls as `OcrClient` as coroutines (and async
iterators for watch, result parts and task listings), on grpc.aio. Requests come from the
same builders (calls.py) and errors are the same classes (errors.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

import grpc
import grpc.aio

from ocr.v1 import ocr_pb2, ocr_pb2_grpc
from ocr_client import calls
from ocr_client.calls import DEFAULT_TARGET, FINAL_STATES, Document, ExportReceiver
from ocr_client.client import channel_credentials
from ocr_client.errors import UnavailableError, from_rpc_error, task_failed

R = TypeVar("R")


class AsyncOcrClient:
    """Talks to one OCR server from asyncio code; use `async with` or `await close()`.

    Documents are read in chunks in a thread (the event loop never blocks on the file)."""

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
    ) -> None:
        """The same arguments as OcrClient."""
        options = calls.channel_options(tls_server_name)
        credentials = channel_credentials(tls, ca_file, client_cert, client_key, credentials)
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        else:
            self._channel = grpc.aio.secure_channel(target, credentials, options=options)
        self._stub = ocr_pb2_grpc.OcrServiceStub(self._channel)
        self._metadata = calls.metadata(token)
        self._timeout = timeout
        self._server_max_message: int | None = None

    async def __aenter__(self) -> AsyncOcrClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close(None)

    async def submit(
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
        """As OcrClient.submit."""
        source = await asyncio.to_thread(Document.of, document, filename)
        recognition = calls.settings(language, profile, pages, dpi)
        request_id = calls.new_request_id(request_id)
        server_limit = await self._server_message_limit()
        if source.size <= calls.unary_limit(server_limit):
            request = await asyncio.to_thread(calls.submit_request, source, recognition, request_id)
            response: ocr_pb2.SubmitResponse = await self._call(self._stub.Submit, request)
            return response.task
        chunk_bytes = calls.chunk_size(server_limit)
        return await self._submit_stream(source, recognition, request_id, chunk_bytes)

    async def _submit_stream(
        self,
        source: Document,
        recognition: ocr_pb2.RecognitionSettings,
        request_id: str,
        chunk_bytes: int,
    ) -> ocr_pb2.Task:
        timeout = self._timeout * (1 + source.size / calls.MIB)
        for attempt in range(1, calls.STREAM_ATTEMPTS + 1):
            try:
                response = await self._stub.SubmitStream(
                    _in_thread(calls.stream_requests(source, recognition, request_id, chunk_bytes)),
                    timeout=timeout,
                    metadata=self._metadata,
                )
                task: ocr_pb2.Task = response.task
                return task
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                if not isinstance(error, UnavailableError) or attempt == calls.STREAM_ATTEMPTS:
                    raise error from exc
        raise AssertionError("unreachable")

    async def _server_message_limit(self) -> int:
        if self._server_max_message is None:
            await self.capabilities()
        assert self._server_max_message is not None
        return self._server_max_message

    async def status(self, task_id: str) -> ocr_pb2.Task:
        request = ocr_pb2.GetTaskStatusRequest(task_id=task_id)
        response: ocr_pb2.GetTaskStatusResponse = await self._call(
            self._stub.GetTaskStatus, request
        )
        return response.task

    async def result(self, task_id: str) -> ocr_pb2.GetResultResponse:
        """As OcrClient.result: parts fetched and joined."""
        merger = calls.ResultMerger()
        async for part in self.result_parts(task_id):
            merger.add(part)
        return merger.merged()

    async def result_parts(self, task_id: str) -> AsyncIterator[ocr_pb2.GetResultResponse]:
        token = ""
        while True:
            part: ocr_pb2.GetResultResponse = await self._call(
                self._stub.GetResult, calls.result_request(task_id, token)
            )
            yield part
            token = part.next_page_token
            if not token:
                return

    async def cancel(self, task_id: str) -> ocr_pb2.Task:
        request = ocr_pb2.CancelRequest(task_id=task_id)
        response: ocr_pb2.CancelResponse = await self._call(self._stub.Cancel, request)
        return response.task

    async def watch(
        self, task_id: str, timeout: float | None = None
    ) -> AsyncIterator[ocr_pb2.Task]:
        """As OcrClient.watch: a stream cut by UNAVAILABLE is opened again."""
        request = ocr_pb2.WatchTaskRequest(task_id=task_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        failures = 0
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            call = self._stub.WatchTask(request, timeout=remaining, metadata=self._metadata)
            try:
                async for response in call:
                    failures = 0
                    yield response.task
                return
            except grpc.RpcError as exc:
                if not calls.resumes_watch(exc, failures):
                    raise from_rpc_error(exc) from exc
                failures += 1
            finally:
                call.cancel()
            await asyncio.sleep(calls.resume_pause(failures))

    async def export(
        self,
        task_id: str,
        result_format: str | int,
        destination: str | Path | BinaryIO,
        *,
        timeout: float | None = None,
    ) -> ocr_pb2.ExportedFile:
        """As OcrClient.export; the file is written in a thread, chunk by chunk."""
        request = calls.export_request(task_id, result_format)
        if isinstance(destination, str | Path):
            with calls.whole_or_nothing(destination) as file:  # opening and renaming: quick
                return await self._export_into(request, file, timeout)
        return await self._export_into(request, destination, timeout)

    async def _export_into(
        self, request: ocr_pb2.ExportResultRequest, file: BinaryIO, timeout: float | None
    ) -> ocr_pb2.ExportedFile:
        receiver = ExportReceiver()
        call = self._stub.ExportResult(request, timeout=timeout, metadata=self._metadata)
        try:
            async for response in call:
                if chunk := receiver.add(response):
                    await asyncio.to_thread(file.write, chunk)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()
        return receiver.finish()

    async def capabilities(self) -> ocr_pb2.GetCapabilitiesResponse:
        response: ocr_pb2.GetCapabilitiesResponse = await self._call(
            self._stub.GetCapabilities, ocr_pb2.GetCapabilitiesRequest()
        )
        self._server_max_message = response.max_message_bytes
        return response

    async def list_tasks(
        self, filter: str = "", page_size: int = 0, page_token: str = ""
    ) -> ocr_pb2.ListTasksResponse:
        request = ocr_pb2.ListTasksRequest(
            filter=filter, page_size=page_size, page_token=page_token
        )
        response: ocr_pb2.ListTasksResponse = await self._call(self._stub.ListTasks, request)
        return response

    async def iter_tasks(self, filter: str = "", page_size: int = 0) -> AsyncIterator[ocr_pb2.Task]:
        token = ""
        while True:
            response = await self.list_tasks(filter, page_size, token)
            for task in response.tasks:
                yield task
            token = response.next_page_token
            if not token:
                return

    async def wait(self, task_id: str, timeout: float | None = None) -> ocr_pb2.Task:
        task = await self.status(task_id)
        async for task in self.watch(task_id, timeout=timeout):
            if task.state in FINAL_STATES:
                break
        return task

    async def recognize(
        self,
        document: bytes | str | Path,
        *,
        timeout: float | None = None,
        language: str = "",
        profile: str = "",
        pages: str = "",
        dpi: int = 0,
    ) -> ocr_pb2.OcrResult:
        task = await self.submit(document, language=language, profile=profile, pages=pages, dpi=dpi)
        task = await self.wait(task.task_id, timeout=timeout)
        if task.state != ocr_pb2.TASK_STATE_COMPLETED:
            raise task_failed(task)
        return (await self.result(task.task_id)).result

    async def _call(self, method: Callable[..., Awaitable[R]], request: object) -> R:
        try:
            return await method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc


async def _in_thread(
    requests: Iterator[ocr_pb2.SubmitStreamRequest],
) -> AsyncIterator[ocr_pb2.SubmitStreamRequest]:
    """A sync request generator (reading the file) driven from a thread, chunk by chunk."""
    done = object()
    while True:
        message = await asyncio.to_thread(next, requests, done)
        if message is done:
            return
        assert isinstance(message, ocr_pb2.SubmitStreamRequest)
        yield message
