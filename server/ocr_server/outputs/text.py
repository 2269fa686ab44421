"""Plain text: the result's text, pages separated by a form feed, as UTF-8."""

from __future__ import annotations

from ocr.v1 import ocr_pb2

MEDIA_TYPE = "text/plain; charset=utf-8"


def render(result: ocr_pb2.OcrResult) -> bytes:
    text = result.text
    return (text if text.endswith("\n") or not text else text + "\n").encode("utf-8")
