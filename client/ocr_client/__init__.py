"""Python SDK for the OCR service: `OcrClient` (submit, status, result, cancel, watch,
recognize) and the `ocr` command line."""

from ocr_client.client import OcrClient, TaskFailedError

__all__ = ["OcrClient", "TaskFailedError"]
