"""The task domain: states, settings and records, as plain data that is stored as JSON and
sent between processes. Nothing here knows about gRPC or diskcache."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from typing import Any

from ocr_server.engines.base import Polygon, RecognizedLine, RecognizedWord


class TaskState(enum.IntEnum):
    """Mirrors ocr.v1.TaskState (same numbers)."""

    PENDING = 1
    PROCESSING = 2
    COMPLETED = 3
    FAILED = 4
    CANCELLED = 5

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED})


@dataclass(frozen=True)
class Settings:
    """Recognition settings with the server's defaults filled in."""

    language: str
    profile: str
    pages: str
    dpi: int


@dataclass
class TaskRecord:
    """A task as stored. Times are Unix seconds; 0 means not yet."""

    task_id: str
    tenant: str
    state: TaskState
    settings: Settings
    document_type: str
    page_numbers: list[int]
    created: float
    expires: float
    filename: str = ""
    request_id: str = ""
    # SHA-256 of the document and settings, to tell a retry from a reused request_id.
    request_fingerprint: str = ""
    pages_done: int = 0
    started: float = 0.0
    ended: float = 0.0
    error_code: int = 0
    error_message: str = ""
    # Pages whose worker died, each retried once before the task fails.
    retried_pages: list[int] = field(default_factory=list)
    # The document store's reference; records written before references existed have none
    # and name their document by the task id.
    document_ref: str = ""
    # Keep the document until the task expires (e.g. to render over the original page);
    # otherwise it is deleted as soon as the task ends.
    keep_document: bool = False

    def __post_init__(self) -> None:
        if not self.document_ref:
            self.document_ref = self.task_id

    @property
    def pages_total(self) -> int:
        return len(self.page_numbers)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TaskRecord:
        data: dict[str, Any] = json.loads(text)
        data["state"] = TaskState(data["state"])
        data["settings"] = Settings(**data["settings"])
        return cls(**data)


@dataclass(frozen=True)
class PageWarning:
    """A reason to doubt a page's text (ocr.v1.PageWarning): a stable code and a message."""

    code: str
    message: str


@dataclass(frozen=True)
class PageResult:
    """One recognised page, in reading order."""

    page_number: int
    width: int
    height: int
    text: str
    lines: tuple[RecognizedLine, ...]
    # The page image's resolution, pixels per inch across and down (0: not known).
    x_dpi: float = 0.0
    y_dpi: float = 0.0
    warnings: tuple[PageWarning, ...] = ()
    # Clockwise degrees the page's text was turned (it was read turned back).
    rotation: int = 0

    def to_json(self) -> str:
        """The same JSON as `dataclasses.asdict` gives, built field by field: asdict
        deep-copies every float of every outline, 18 ms of the pool's thread (and of the GIL
        a Submit waits for) on a dense page instead of under 2."""
        data = {
            "page_number": self.page_number,
            "width": self.width,
            "height": self.height,
            "text": self.text,
            "lines": [_line_dict(line) for line in self.lines],
            "x_dpi": self.x_dpi,
            "y_dpi": self.y_dpi,
            "warnings": [{"code": w.code, "message": w.message} for w in self.warnings],
            "rotation": self.rotation,
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PageResult:
        data: dict[str, Any] = json.loads(text)
        lines = tuple(
            RecognizedLine(
                text=line["text"],
                confidence=line["confidence"],
                polygon=_polygon(line["polygon"]),
                words=tuple(
                    RecognizedWord(
                        text=word["text"],
                        confidence=word["confidence"],
                        polygon=_polygon(word["polygon"]),
                    )
                    for word in line.get("words", ())
                ),
            )
            for line in data.pop("lines")
        )
        warnings = tuple(PageWarning(**warning) for warning in data.pop("warnings", ()))
        return cls(lines=lines, warnings=warnings, **data)


def _line_dict(line: RecognizedLine) -> dict[str, Any]:
    return {
        "text": line.text,
        "confidence": line.confidence,
        "polygon": line.polygon,
        "words": [
            {"text": w.text, "confidence": w.confidence, "polygon": w.polygon} for w in line.words
        ],
    }


def _polygon(points: list[list[float]]) -> Polygon:
    return tuple((float(x), float(y)) for x, y in points)
