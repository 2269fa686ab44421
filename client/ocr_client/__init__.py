"""Python SDK for the OCR service: `OcrClient` (submit, status, result, cancel, watch,
recognize, export) and the `ocr` command line."""

from ocr_client.client import ExportError, OcrClient, TaskFailedError, tls_credentials

__all__ = ["ExportError", "OcrClient", "TaskFailedError", "tls_credentials"]
