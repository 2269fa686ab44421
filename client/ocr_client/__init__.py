"""Python SDK for the OCR service: `OcrClient` (sync), `AsyncOcrClient` (asyncio), one error
hierarchy (`OcrError` and its subclasses, errors.py), and the `ocr` command line."""

from ocr_client.aio import AsyncOcrClient
from ocr_client.client import OcrClient, tls_credentials
from ocr_client.errors import (
    AlreadyExistsError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
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
