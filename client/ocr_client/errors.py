"""The SDK's one error hierarchy: every failed call raises a subclass of `OcrError`.

    OcrError
    ├── RpcFailedError            the server (or the channel) answered with a gRPC status
    │   ├── InvalidArgumentError  INVALID_ARGUMENT: the document, a setting or an id is wrong
    │   ├── NotFoundError         NOT_FOUND: unknown, expired, or another tenant's task
    │   ├── AlreadyExistsError    ALREADY_EXISTS: request_id reused for another document
    │   ├── FailedPreconditionError FAILED_PRECONDITION: no result to export yet
    │   ├── ResourceExhaustedError RESOURCE_EXHAUSTED: queue, store or tenant limit; too large
    │   ├── UnauthenticatedError  UNAUTHENTICATED: no token or a wrong one
    │   ├── PermissionDeniedError PERMISSION_DENIED
    │   ├── UnavailableError      UNAVAILABLE: server down, restarting, draining, unreachable
    │   ├── DeadlineExceededError DEADLINE_EXCEEDED: the call's own timeout
    │   ├── DataLossError         DATA_LOSS: the task's stored entry is damaged
    │   ├── CancelledError        CANCELLED: the call (not the task) was cancelled
    │   └── (others: RpcFailedError itself, with .code)
    ├── TaskFailedError           the task ended FAILED or CANCELLED (recognize(), wait())
    │   └── TaskCancelledError    the task was cancelled
    └── ExportError               an exported file arrived damaged (size or SHA-256 differ)

Both clients (`OcrClient`, `AsyncOcrClient`) convert through `from_rpc_error`, so callers
catch the same classes whichever they use; the gRPC error stays available as `__cause__`.
`RpcFailedError` is also a `grpc.RpcError` with `code()` and `details()`.
"""

from __future__ import annotations

import grpc

from ocr.v1 import ocr_pb2


class OcrError(Exception):
    """Base of every error the SDK raises."""


class RpcFailedError(OcrError, grpc.RpcError):
    """A call failed with a gRPC status; `code()` and `details()` say which and why, as on
    grpc's own errors (it is a grpc.RpcError too, so code written for the plain stub, or for
    this SDK before it had these classes, keeps working)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class InvalidArgumentError(RpcFailedError):
    """The document is damaged, unsupported or over a limit, or a setting or id is invalid."""


class NotFoundError(RpcFailedError):
    """The task is unknown, expired, or another tenant's (deliberately indistinguishable)."""


class AlreadyExistsError(RpcFailedError):
    """The request_id was already used for a different document or settings."""


class FailedPreconditionError(RpcFailedError):
    """The task is not in a state for this call: ExportResult before the task has a result
    (still PENDING or PROCESSING, FAILED, or CANCELLED before any page was read)."""


class ResourceExhaustedError(RpcFailedError):
    """The queue, the store or this tenant's limit is full, or a message is too large."""


class UnauthenticatedError(RpcFailedError):
    """No token, or one the server does not know."""


class PermissionDeniedError(RpcFailedError):
    """The token is known but not allowed to do this."""


class UnavailableError(RpcFailedError):
    """The server is unreachable, restarting or draining; retrying later is safe."""


class DeadlineExceededError(RpcFailedError):
    """The call's own timeout passed (the task itself may still be running)."""


class DataLossError(RpcFailedError):
    """The task's stored record or result is damaged; submit the document again."""


class CancelledError(RpcFailedError):
    """The call was cancelled (by this client or the server), not necessarily the task."""


_BY_CODE: dict[grpc.StatusCode, type[RpcFailedError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.DATA_LOSS: DataLossError,
    grpc.StatusCode.CANCELLED: CancelledError,
}


def from_rpc_error(error: grpc.RpcError) -> RpcFailedError:
    """The SDK exception for a gRPC error (sync or asyncio), keeping code and details."""
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details = details_of() if callable(details_of) else str(error)
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    return _BY_CODE.get(code, RpcFailedError)(code, details or "")


class TaskFailedError(OcrError):
    """The task ended FAILED (or CANCELLED, see the subclass); `task` holds its final state
    and `task.error` the server's code and message."""

    def __init__(self, task: ocr_pb2.Task) -> None:
        state = ocr_pb2.TaskState.Name(task.state).removeprefix("TASK_STATE_")
        detail = f": {task.error.message}" if task.error.message else ""
        super().__init__(f"task {task.task_id} {state}{detail}")
        self.task = task


class TaskCancelledError(TaskFailedError):
    """The task was cancelled; pages finished before the cancel can still be fetched."""


def task_failed(task: ocr_pb2.Task) -> TaskFailedError:
    if task.state == ocr_pb2.TASK_STATE_CANCELLED:
        return TaskCancelledError(task)
    return TaskFailedError(task)


class ExportError(OcrError):
    """An exported file did not arrive whole: its size or SHA-256 differ from its header, or
    the stream lacked the header. Nothing is left at a destination path; asking again is safe."""
