"""Result files: each format is a pure function of the stored result (and, for the searchable
PDF, the stored document). `render` picks the module; the servicer streams what it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ocr.v1 import ocr_pb2
from ocr_server.outputs import alto, hocr, json_mapping, pdf, text
from ocr_server.outputs.source import Source


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    extension: str


FORMATS: dict[int, Format] = {
    ocr_pb2.RESULT_FORMAT_TEXT: Format("text", text.MEDIA_TYPE, ".txt"),
    ocr_pb2.RESULT_FORMAT_JSON: Format("json", json_mapping.MEDIA_TYPE, ".json"),
    ocr_pb2.RESULT_FORMAT_HOCR: Format("hocr", hocr.MEDIA_TYPE, ".hocr"),
    ocr_pb2.RESULT_FORMAT_ALTO: Format("alto", alto.MEDIA_TYPE, ".alto.xml"),
    ocr_pb2.RESULT_FORMAT_PDF: Format("pdf", pdf.MEDIA_TYPE, ".pdf"),
}

RESULT_FORMATS_BY_NAME: dict[str, int] = {f.name: code for code, f in FORMATS.items()}

_IN_MEMORY: dict[int, Callable[[ocr_pb2.OcrResult, Source], bytes]] = {
    ocr_pb2.RESULT_FORMAT_TEXT: lambda result, _source: text.render(result),
    ocr_pb2.RESULT_FORMAT_JSON: lambda result, _source: json_mapping.render(result),
    ocr_pb2.RESULT_FORMAT_HOCR: hocr.render,
    ocr_pb2.RESULT_FORMAT_ALTO: alto.render,
}


def is_file_format(result_format: int) -> bool:
    """Formats rendered to a file on disk (large, kept) rather than in memory."""
    return result_format == ocr_pb2.RESULT_FORMAT_PDF


def render_bytes(result_format: int, result: ocr_pb2.OcrResult, source: Source) -> bytes:
    return _IN_MEMORY[result_format](result, source)


def render_file(
    result: ocr_pb2.OcrResult,
    source: Source,
    output: Path,
    unrecognised: Callable[[int], tuple[float, float]],
) -> None:
    pdf.render(result, source, output, unrecognised)


__all__ = [
    "FORMATS",
    "RESULT_FORMATS_BY_NAME",
    "Format",
    "Source",
    "is_file_format",
    "render_bytes",
    "render_file",
]
