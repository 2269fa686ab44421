"""Python SDK for the OCR service: `OcrClient` (sync), `AsyncOcrClient` (asyncio), both with
`export()` for the result files (text, JSON, hOCR, ALTO, searchable PDF), one error hierarchy
(`OcrError` and its subclasses, errors.py), and the `ocr` command line."""

from ocr_client.aio import AsyncOcrClient
from ocr_client.client import OcrClient, tls_credentials
from ocr_client.errors import (
    AlreadyExistsError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    ExportError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OcrError,
    PermissionDeniedError,
    ResourceExhaustedError,
    RpcFailedError,
    TaskCancelledError,
    TaskFailedError,
    UnauthenticatedError,
    UnavailableError,
)

__all__ = [
    "AlreadyExistsError",
    "AsyncOcrClient",
    "CancelledError",
    "DataLossError",
    "DeadlineExceededError",
    "ExportError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "OcrClient",
    "OcrError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RpcFailedError",
    "TaskCancelledError",
    "TaskFailedError",
    "UnauthenticatedError",
    "UnavailableError",
    "tls_credentials",
]
