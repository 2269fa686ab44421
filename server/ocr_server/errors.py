"""One error hierarchy for everything a client can be told. Each error carries the gRPC status
code it maps to, so the servicer converts errors in one place and messages stay actionable.

    OcrServiceError                    (INTERNAL unless a subclass says otherwise)
    ├── InvalidDocumentError           INVALID_ARGUMENT   refused at Submit
    ├── InvalidSettingsError           INVALID_ARGUMENT
    ├── TaskNotFoundError              NOT_FOUND
    ├── TaskNotCompletedError          FAILED_PRECONDITION  a file of a task without a result
    ├── QueueFullError                 RESOURCE_EXHAUSTED
    │   └── TenantLimitError           RESOURCE_EXHAUSTED
    ├── StoreFullError                 RESOURCE_EXHAUSTED
    ├── DocumentTooLargeError          RESOURCE_EXHAUSTED
    ├── ResultTooLargeError            RESOURCE_EXHAUSTED  a whole result over one response
    ├── RequestIdReusedError           ALREADY_EXISTS     a request_id with another document
    ├── DamagedEntryError              DATA_LOSS
    ├── DocumentMissingError           DATA_LOSS
    ├── ShuttingDownError              UNAVAILABLE
    ├── NoWorkerHostError              UNAVAILABLE        a cluster no worker host has joined
    ├── DocumentNotKeptError           FAILED_PRECONDITION  a PDF of a deleted document
    └── TaskError                      ends a task: goes into Task.error, never an RPC status
        ├── DamagedPageError           INVALID_ARGUMENT   a page only decoding shows damaged
        ├── EngineError                INTERNAL
        ├── PageTimeoutError           DEADLINE_EXCEEDED
        ├── WorkerDiedTwiceError       ABORTED
        ├── DocumentLostError          DATA_LOSS
        ├── PageResultLostError        DATA_LOSS
        └── ResultNotStoredError       RESOURCE_EXHAUSTED
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from ocr_server.models import TaskRecord


class OcrServiceError(Exception):
    """Base of every error that reaches a client as a gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    # A short fixed word for metrics and logs (refused submits by reason): bounded labels.
    reason: str = "internal"


class InvalidDocumentError(OcrServiceError):
    """The document is empty, of an unsupported type, damaged, or over a limit."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "invalid_document"


class InvalidSettingsError(OcrServiceError):
    """A recognition setting or request field is out of range or unknown."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "invalid_settings"


class TaskNotFoundError(OcrServiceError):
    """Unknown, expired, or another tenant's task: deliberately indistinguishable."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "not_found"

    def __init__(self, task_id: str) -> None:
        shown = task_id if len(task_id) <= 64 else task_id[:64] + "..."
        super().__init__(f"task {shown!r} not found or expired")


class TaskNotCompletedError(OcrServiceError):
    """A file was asked of a task that has no result (yet, or ever)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "not_completed"

    def __init__(self, record: TaskRecord) -> None:
        if record.state.is_final:
            hint = "it has no result; submit the document again"
        else:
            hint = "ask again once it is COMPLETED (WatchTask tells when)"
        super().__init__(f"task {record.task_id} is {record.state.name}: {hint}")


class QueueFullError(OcrServiceError):
    """Too many tasks waiting (in total or for this tenant): retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "queue_full"


class TenantLimitError(QueueFullError):
    """This tenant has --max-pending-per-tenant tasks unfinished; others are still served."""

    reason = "tenant_limit"


class StoreFullError(OcrServiceError):
    """The task store reached its size limit: nothing is evicted to make room."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "store_full"


class DamagedEntryError(OcrServiceError):
    """A stored entry of one task cannot be read back intact (disk damage, tampering)."""

    code = grpc.StatusCode.DATA_LOSS
    reason = "damaged_entry"

    def __init__(self, task_id: str, what: str) -> None:
        super().__init__(
            f"the stored {what} of task {task_id} is damaged or unreadable; "
            "submit the document again"
        )
        self.task_id = task_id


class ShuttingDownError(OcrServiceError):
    """The server is draining; another replica (or this one after restart) will serve."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "shutting_down"


class NoWorkerHostError(OcrServiceError):
    """A cluster's front end knows of no worker host, live or seen before: it cannot tell
    what would be read, so it accepts nothing yet (retry once a host has started)."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "no_worker_host"


class DocumentNotKeptError(OcrServiceError):
    """A searchable PDF was asked of a task whose document was deleted when it ended."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "document_not_kept"

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"task {task_id}: no searchable PDF, because its document was deleted when the "
            "task ended (the server that took it runs with --keep-documents off, "
            "OCR_KEEP_DOCUMENTS=off, to save memory) and the PDF is drawn over the document's "
            "pages; text, json, hocr and alto work from the result. For a PDF, submit the "
            "document again to a server that keeps documents (GetCapabilities.searchable_pdf)"
        )


class DocumentTooLargeError(OcrServiceError):
    """The document grew past the size limit while it arrived (checked chunk by chunk)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "too_large"


class ResultTooLargeError(OcrServiceError):
    """A result (or one page of it) does not fit in one response within default limits."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "result_too_large"


class RequestIdReusedError(OcrServiceError):
    """A request_id already names a task made from another document or other settings."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "request_id_reused"


class DocumentMissingError(OcrServiceError):
    """A document reference that names nothing stored (deleted, expired or never written)."""

    code = grpc.StatusCode.DATA_LOSS
    reason = "document_missing"


# --- task failures ------------------------------------------------------------------------
# What ends a task while it runs (AIP-151): stored in the task's `error`, never raised to a
# client as an RPC status. Each class carries its status code; the message is the only
# argument, so a failure pickles across the worker pipe unchanged.


class TaskError(OcrServiceError):
    """Base of every error that fails a task after it was queued."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DamagedPageError(TaskError):
    """A page that only decoding shows to be damaged (the document passed triage)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class EngineError(TaskError):
    """The engine raised on a page; the worker survives."""

    code = grpc.StatusCode.INTERNAL

    @classmethod
    def from_exception(cls, exc: BaseException) -> EngineError:
        return cls(f"recognition failed: {type(exc).__name__}: {exc}")


class PageTimeoutError(TaskError):
    """A page ran past --page-timeout; its worker was killed."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED

    @classmethod
    def after(cls, page_number: int, limit: float) -> PageTimeoutError:
        return cls(
            f"page {page_number} took longer than the per-page limit of {limit:.0f} s; "
            "the worker was stopped"
        )


class WorkerDiedTwiceError(TaskError):
    """The same page killed its worker twice (retried once, then the task fails)."""

    code = grpc.StatusCode.ABORTED

    @classmethod
    def on_page(cls, page_number: int, reason: str) -> WorkerDiedTwiceError:
        return cls(
            f"page {page_number}: the worker died twice while recognising it ({reason}); "
            "the page may be too large or crash the engine"
        )


class DocumentLostError(TaskError):
    """The stored document of an unfinished task is gone (found at recovery)."""

    code = grpc.StatusCode.DATA_LOSS


class PageResultLostError(TaskError):
    """A stored page result was damaged: never hand out a result without it."""

    code = grpc.StatusCode.DATA_LOSS

    @classmethod
    def on_page(cls, page_number: int) -> PageResultLostError:
        return cls(
            f"the recognised text of page {page_number} was damaged in the store; "
            "submit the document again"
        )


class ResultNotStoredError(TaskError):
    """The store refused the page or result (full disk, size limit)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
