"""One error hierarchy for everything a client can be told. Each error carries the gRPC status
code it maps to, so the servicer converts errors in one place and messages stay actionable."""

from __future__ import annotations

import grpc


class OcrServiceError(Exception):
    """Base of every error that reaches a client as a gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidDocumentError(OcrServiceError):
    """The document is empty, of an unsupported type, damaged, or over a limit."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidSettingsError(OcrServiceError):
    """A recognition setting or request field is out of range or unknown."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class TaskNotFoundError(OcrServiceError):
    """Unknown, expired, or another tenant's task: deliberately indistinguishable."""

    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, task_id: str) -> None:
        shown = task_id if len(task_id) <= 64 else task_id[:64] + "..."
        super().__init__(f"task {shown!r} not found or expired")


class QueueFullError(OcrServiceError):
    """Too many tasks waiting (in total or for this tenant): retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class StoreFullError(OcrServiceError):
    """The task store reached its size limit: nothing is evicted to make room."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DamagedEntryError(OcrServiceError):
    """A stored entry of one task cannot be read back intact (disk damage, tampering)."""

    code = grpc.StatusCode.DATA_LOSS

    def __init__(self, task_id: str, what: str) -> None:
        super().__init__(
            f"the stored {what} of task {task_id} is damaged or unreadable; "
            "submit the document again"
        )
        self.task_id = task_id


class ShuttingDownError(OcrServiceError):
    """The server is draining; another replica (or this one after restart) will serve."""

    code = grpc.StatusCode.UNAVAILABLE


class PageFailedError(Exception):
    """Raised in a worker when one page cannot be recognised; carries the status to report."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
