"""Conversions between the domain (models.py) and the protobuf API, in one place."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import status_pb2

from ocr.v1 import ocr_pb2
from ocr_server.engines.base import Polygon
from ocr_server.languages.catalog import BY_CODE
from ocr_server.languages.routing import Route
from ocr_server.models import PageResult, Settings, TaskRecord

# Between pages: a newline ends the page's last line, then a form feed (as pdftotext writes).
PAGE_SEPARATOR = "\n\f"


def _timestamp(seconds: float) -> Timestamp | None:
    if not seconds:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def settings_to_proto(settings: Settings) -> ocr_pb2.RecognitionSettings:
    return ocr_pb2.RecognitionSettings(
        language=settings.language, profile=settings.profile, pages=settings.pages, dpi=settings.dpi
    )


def task_to_proto(record: TaskRecord, queue_position: int = 0) -> ocr_pb2.Task:
    task = ocr_pb2.Task(
        task_id=record.task_id,
        state=int(record.state),  # type: ignore[arg-type]
        pages_total=record.pages_total,
        pages_done=record.pages_done,
        queue_position=queue_position,
        create_time=_timestamp(record.created),
        start_time=_timestamp(record.started),
        end_time=_timestamp(record.ended),
        expire_time=_timestamp(record.expires),
        settings=settings_to_proto(record.settings),
        filename=record.filename,
        request_id=record.request_id,
        document_type=record.document_type,
    )
    if record.error_code:
        task.error.CopyFrom(status_pb2.Status(code=record.error_code, message=record.error_message))
    return task


def page_to_proto(page: PageResult) -> ocr_pb2.Page:
    return ocr_pb2.Page(
        page_number=page.page_number,
        width=page.width,
        height=page.height,
        text=page.text,
        lines=[
            ocr_pb2.Line(
                text=line.text,
                confidence=line.confidence,
                polygon=_points(line.polygon),
                words=[
                    ocr_pb2.Word(text=w.text, confidence=w.confidence, polygon=_points(w.polygon))
                    for w in line.words
                ],
            )
            for line in page.lines
        ],
        x_dpi=page.x_dpi,
        y_dpi=page.y_dpi,
        warnings=[ocr_pb2.PageWarning(code=w.code, message=w.message) for w in page.warnings],
        rotation=page.rotation,
    )


def _points(polygon: Polygon) -> list[ocr_pb2.Point]:
    return [ocr_pb2.Point(x=x, y=y) for x, y in polygon]


def join_pages(texts: Iterable[str]) -> str:
    """Pages' texts as one, a newline before each form feed, so that a page's last line is a
    line for every tool that reads lines (`wc -l`, `grep`, diff)."""
    return PAGE_SEPARATOR.join(texts)


def build_result(pages: Iterable[PageResult]) -> bytes:
    """Assemble the final result from the page results, in page order, serialised."""
    ordered = sorted(pages, key=lambda p: p.page_number)
    result = ocr_pb2.OcrResult(
        text=join_pages(p.text for p in ordered),
        pages=[page_to_proto(p) for p in ordered],
    )
    return result.SerializeToString()


def language_to_proto(route: Route) -> ocr_pb2.Language:
    language = BY_CODE[route.language]
    return ocr_pb2.Language(
        code=language.code,
        name=language.name,
        script=language.script,
        engine=route.engine,
        profile=route.profile,
        profiles=list(route.profiles),
        right_to_left=language.right_to_left,
    )
