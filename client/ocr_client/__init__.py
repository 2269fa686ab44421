"""Python SDK for the OCR service: `OcrClient` (submit, status, result, cancel, watch,
recognize) and the `ocr` command line."""

from ocr_client.client import OcrClient, TaskFailedError, tls_credentials

__all__ = ["OcrClient", "TaskFailedError", "tls_credentials"]
