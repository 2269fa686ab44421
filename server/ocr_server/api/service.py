"""The gRPC servicer: authenticates, converts, delegates to the task manager, maps errors."""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import grpc

from ocr.v1 import ocr_pb2, ocr_pb2_grpc
from ocr_server.api.auth import TokenRegistry
from ocr_server.backends.events import TaskEvents
from ocr_server.capabilities import Capabilities
from ocr_server.convert import language_to_proto, task_to_proto
from ocr_server.errors import InvalidDocumentError, InvalidSettingsError, OcrServiceError
from ocr_server.exports import Exporter
from ocr_server.listing import parse_filter
from ocr_server.result_pages import result_part
from ocr_server.tasks.manager import TaskManager
from ocr_server.tasks.submission import Submission, SubmitOptions
from ocr_server.telemetry.observer import Fanout, TaskObserver

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def _status_from_errors(context: grpc.ServicerContext, method: str) -> Iterator[None]:
    """Turn service errors into their gRPC status; anything else is INTERNAL, logged. The one
    mapping for unary and streaming handlers alike."""
    try:
        yield
    except OcrServiceError as exc:
        context.abort(exc.code, str(exc))
    except Exception:
        log.exception("unexpected error in %s", method)
        context.abort(grpc.StatusCode.INTERNAL, "internal error; see the server log")


def _grpc_errors(method: Callable[P, R]) -> Callable[P, R]:
    """A unary handler's errors through `_status_from_errors`."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        context: grpc.ServicerContext = args[2]  # type: ignore[assignment]
        with _status_from_errors(context, method.__name__):
            return method(*args, **kwargs)
        raise AssertionError("unreachable")  # context.abort raises

    return wrapper


def _grpc_stream_errors(
    method: Callable[P, Iterator[R]],
) -> Callable[P, Iterator[R]]:
    """A streaming handler's errors, raised while it yields, through the same mapping."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
        context: grpc.ServicerContext = args[2]  # type: ignore[assignment]
        with _status_from_errors(context, method.__name__):
            yield from method(*args, **kwargs)

    return wrapper


@dataclass
class _Submitted:
    document_type: str = ""  # of the task queued (or answered); empty when refused


class OcrServicer(ocr_pb2_grpc.OcrServiceServicer):
    def __init__(
        self,
        manager: TaskManager,
        submission: Submission,
        events: TaskEvents,
        tokens: TokenRegistry,
        capabilities: Callable[[], Capabilities],
        info: dict[str, int],
        heartbeat: float,
        exporter: Exporter,
        observer: TaskObserver | None = None,
        submit_timer: Callable[[str, str, float], None] | None = None,
    ) -> None:
        """`capabilities()`: what is offered now (on a cluster's front end, what the live
        worker hosts read; it changes as hosts come and go)."""
        self._exporter = exporter
        self._manager = manager
        self._submission = submission
        self._events = events
        self._tokens = tokens
        self._capabilities = capabilities
        self._info = info
        self._heartbeat = heartbeat
        self._observer: TaskObserver = observer or Fanout(())
        self._submit_timer = submit_timer

    @contextlib.contextmanager
    def _submitting(self, method: str, tenant: str) -> Iterator[_Submitted]:
        """Time a Submit (by the type of the document it queued) and tell the observers why
        it was refused, if it was."""
        started = time.monotonic()
        submitted = _Submitted()
        try:
            yield submitted
        except OcrServiceError as exc:
            self._observer.submit_refused(tenant, exc.reason, str(exc))
            raise
        finally:
            if self._submit_timer is not None:
                self._submit_timer(method, submitted.document_type, started)

    def _tenant(self, context: grpc.ServicerContext) -> str:
        tenant = self._tokens.tenant_from_metadata(context.invocation_metadata())
        if tenant is None:  # the interceptor already refuses these; defence in depth
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid access token")
        assert tenant is not None
        return tenant

    @_grpc_errors
    def Submit(
        self, request: ocr_pb2.SubmitRequest, context: grpc.ServicerContext
    ) -> ocr_pb2.SubmitResponse:
        tenant = self._tenant(context)
        options = _submit_options(request.settings, request.request_id, request.filename)
        with self._submitting("Submit", tenant) as submitted:
            record = self._submission.submit(tenant, request.content, options)
            submitted.document_type = record.document_type
        position = self._manager.queue_position(record.task_id)
        return ocr_pb2.SubmitResponse(task=task_to_proto(record, position))

    @_grpc_errors
    def SubmitStream(
        self, request_iterator: Iterator[ocr_pb2.SubmitStreamRequest], context: grpc.ServicerContext
    ) -> ocr_pb2.SubmitStreamResponse:
        tenant = self._tenant(context)
        with self._submitting("SubmitStream", tenant) as submitted:
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("part") != "header":
                raise InvalidSettingsError(
                    "SubmitStream's first message must carry the header (settings, request_id, "
                    "filename), then the document in chunks"
                )
            header = first.header
            options = _submit_options(header.settings, header.request_id, header.filename)
            record = self._submission.submit_stream(
                tenant,
                options,
                _chunks(request_iterator, context),
                header.size_bytes,
                header.sha256,
            )
            submitted.document_type = record.document_type
        position = self._manager.queue_position(record.task_id)
        return ocr_pb2.SubmitStreamResponse(task=task_to_proto(record, position))

    @_grpc_errors
    def GetTaskStatus(
        self, request: ocr_pb2.GetTaskStatusRequest, context: grpc.ServicerContext
    ) -> ocr_pb2.GetTaskStatusResponse:
        record, position = self._manager.find(self._tenant(context), request.task_id)
        return ocr_pb2.GetTaskStatusResponse(task=task_to_proto(record, position))

    @_grpc_errors
    def GetResult(
        self, request: ocr_pb2.GetResultRequest, context: grpc.ServicerContext
    ) -> ocr_pb2.GetResultResponse:
        record, result = self._manager.result(self._tenant(context), request.task_id)
        response = ocr_pb2.GetResultResponse(task=task_to_proto(record))
        if result is not None:
            part = result_part(record.task_id, result, request.page_size, request.page_token)
            response.result.CopyFrom(part.result)
            response.next_page_token = part.next_page_token
        return response

    @_grpc_errors
    def ListTasks(
        self, request: ocr_pb2.ListTasksRequest, context: grpc.ServicerContext
    ) -> ocr_pb2.ListTasksResponse:
        tenant = self._tenant(context)
        query = parse_filter(request.filter)
        listed = self._manager.list_tasks(
            tenant,
            query.states,
            query.created_after,
            query.created_before,
            request.page_size,
            request.page_token,
        )
        return ocr_pb2.ListTasksResponse(
            tasks=[
                task_to_proto(record, self._manager.queue_position(record.task_id))
                for record in listed.tasks
            ],
            next_page_token=listed.next_page_token,
        )

    @_grpc_errors
    def Cancel(
        self, request: ocr_pb2.CancelRequest, context: grpc.ServicerContext
    ) -> ocr_pb2.CancelResponse:
        record = self._manager.cancel(self._tenant(context), request.task_id)
        return ocr_pb2.CancelResponse(task=task_to_proto(record))

    @_grpc_stream_errors
    def WatchTask(
        self, request: ocr_pb2.WatchTaskRequest, context: grpc.ServicerContext
    ) -> Iterator[ocr_pb2.WatchTaskResponse]:
        tenant = self._tenant(context)
        self._manager.find(tenant, request.task_id)
        subscription = self._events.subscribe(request.task_id)
        context.add_callback(subscription.close)  # the client left: unblock and clean up
        try:
            # Subscribed first, then read: no change can fall between the two.
            record, position = self._manager.find(tenant, request.task_id)
            while True:
                yield ocr_pb2.WatchTaskResponse(task=task_to_proto(record, position))
                if record.state.is_final or not context.is_active():
                    return
                try:
                    snapshot = subscription.get(timeout=self._heartbeat)
                except queue.Empty:  # nothing changed: repeat, so proxies keep the stream
                    record, position = self._manager.find(tenant, request.task_id)
                    continue
                if snapshot is None:
                    return
                changed, position = snapshot
                record = changed if changed is not None else record
        finally:
            self._events.unsubscribe(subscription)

    @_grpc_stream_errors
    def ExportResult(
        self, request: ocr_pb2.ExportResultRequest, context: grpc.ServicerContext
    ) -> Iterator[ocr_pb2.ExportResultResponse]:
        tenant = self._tenant(context)
        exported = self._exporter.export(tenant, request.task_id, request.format)
        yield ocr_pb2.ExportResultResponse(
            file=ocr_pb2.ExportedFile(
                format=request.format,
                media_type=exported.format.media_type,
                size_bytes=exported.size,
                sha256=exported.sha256,
                filename=exported.filename,
            )
        )
        for chunk in exported.chunks:
            if not context.is_active():
                return
            yield ocr_pb2.ExportResultResponse(chunk=chunk)

    @_grpc_errors
    def GetCapabilities(
        self, request: ocr_pb2.GetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> ocr_pb2.GetCapabilitiesResponse:
        self._tenant(context)
        offered = self._capabilities()
        return ocr_pb2.GetCapabilitiesResponse(
            languages=list(offered.languages),
            profiles=[
                ocr_pb2.Profile(
                    name=p.name,
                    description=p.description,
                    available=p.name in offered.installed_profiles,
                )
                for p in offered.profiles.values()
            ],
            default_profile=offered.default_profile,
            supported_languages=[language_to_proto(route) for route in offered.routes()],
            searchable_pdf=self._submission.keeps_documents,
            **self._info,
        )


def _submit_options(
    settings: ocr_pb2.RecognitionSettings, request_id: str, filename: str
) -> SubmitOptions:
    """The options of a Submit or a SubmitStream header."""
    return SubmitOptions(
        language=settings.language,
        profile=settings.profile,
        pages=settings.pages,
        dpi=settings.dpi,
        request_id=request_id,
        filename=filename,
    )


def _chunks(
    messages: Iterator[ocr_pb2.SubmitStreamRequest], context: grpc.ServicerContext
) -> Iterator[bytes]:
    """The document's bytes from the messages after the header (one chunk in memory at once).
    A stream that ends because the client went away is not a complete document."""
    for message in messages:
        if message.WhichOneof("part") != "chunk":
            raise InvalidSettingsError("SubmitStream sends the header once, first; then chunks")
        yield message.chunk
    if not context.is_active():
        raise InvalidDocumentError("the upload was cancelled before its end; nothing was queued")
