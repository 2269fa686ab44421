"""The gRPC servicer: authenticates, converts, delegates to the task manager, maps errors."""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import grpc

from ocr.v1 import ocr_pb2, ocr_pb2_grpc
from ocr_server.api.auth import TokenRegistry
from ocr_server.backends.events import TaskEvents
from ocr_server.capabilities import Capabilities
from ocr_server.convert import task_to_proto
from ocr_server.errors import OcrServiceError
from ocr_server.exports import Exporter
from ocr_server.tasks.manager import TaskManager
from ocr_server.tasks.submission import Submission, SubmitOptions

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


class OcrServicer(ocr_pb2_grpc.OcrServiceServicer):
    def __init__(
        self,
        manager: TaskManager,
        submission: Submission,
        events: TaskEvents,
        tokens: TokenRegistry,
        capabilities: Capabilities,
        info: dict[str, int],
        heartbeat: float,
        exporter: Exporter,
    ) -> None:
        self._exporter = exporter
        self._manager = manager
        self._submission = submission
        self._events = events
        self._tokens = tokens
        self._capabilities = capabilities
        self._info = info
        self._heartbeat = heartbeat

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
        settings = request.settings
        options = SubmitOptions(
            language=settings.language,
            profile=settings.profile,
            pages=settings.pages,
            dpi=settings.dpi,
            request_id=request.request_id,
            filename=request.filename,
            keep_document=True,  # any format may be asked until expiry (the PDF needs it)
        )
        record = self._submission.submit(tenant, request.content, options)
        position = self._manager.queue_position(record.task_id)
        return ocr_pb2.SubmitResponse(task=task_to_proto(record, position))

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
            response.result.ParseFromString(result)
        return response

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
        return ocr_pb2.GetCapabilitiesResponse(
            languages=list(self._capabilities.languages),
            profiles=[
                ocr_pb2.Profile(
                    name=p.name,
                    description=p.description,
                    available=p.name in self._capabilities.installed_profiles,
                )
                for p in self._capabilities.profiles.values()
            ],
            default_profile=self._capabilities.default_profile,
            **self._info,
        )
