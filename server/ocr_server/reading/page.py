"""Reading one page: turned upright, tiled if it is a long scan, recognised, put in reading
order, its lines mapped back onto the page as the client sent it, with a warning when which
way up it is could not be told. (The language checks, low confidence among them, are
languages/scripts.py's, on the lines this returns.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ocr_server.engines.base import Image, OcrEngine, RecognizedLine
from ocr_server.languages.catalog import split
from ocr_server.layout import order_lines, page_text
from ocr_server.models import PageWarning
from ocr_server.reading.geometry import line_to_sent_frame, upright
from ocr_server.reading.orientation import (
    UPRIGHT,
    Orientation,
    OrientationClassifier,
    is_page_like,
)
from ocr_server.reading.tiling import read_tiled

# Below this probability the classifier's pick is checked: the page is read at the
# runner-up's rotation too, and the reading with the more confident text wins. Measured on
# 448 turned document pages, right picks scored 0.69-0.93 (docs/benchmarks.md).
SURE = 0.8
# One orientation's reading must have this many times the other's confidently read text for
# the choice between them to go without a warning.
CLEAR_MARGIN = 1.5


@dataclass(frozen=True)
class PageReading:
    """The page's text and lines in reading order, lines on the page as sent."""

    text: str
    lines: list[RecognizedLine]
    rotation: int = 0  # clockwise degrees the text was turned on the page as sent
    warnings: list[PageWarning] = field(default_factory=list)


def read_page(
    image: Image,
    engine: OcrEngine,
    language: str,
    classifier: OrientationClassifier | None,
) -> PageReading:
    """Recognise the page in whichever of the four orientations it is in; boxes on the page
    as sent."""
    height, width = image.shape[:2]
    orientation = UPRIGHT
    if classifier is not None and is_page_like(height, width):
        orientation = classifier.classify(image)

    def read_at(rotation: int) -> list[RecognizedLine]:
        return read_tiled(upright(image, rotation), lambda tile: engine.recognize(tile, language))

    rotation, lines, warnings = _read_oriented(orientation, read_at)
    rows = order_lines(lines)  # in the upright frame, where rows run left to right
    if all(each.right_to_left for each in split(language)):
        rows = [row[::-1] for row in rows]  # a row split in parts reads from the right
    return PageReading(
        text=page_text(rows),
        lines=[line_to_sent_frame(line, rotation, width, height) for row in rows for line in row],
        rotation=rotation,
        warnings=warnings,
    )


def _read_oriented(
    orientation: Orientation, read_at: Callable[[int], list[RecognizedLine]]
) -> tuple[int, list[RecognizedLine], list[PageWarning]]:
    """Read at the classifier's pick; when it was unsure, at the runner-up's too, keeping the
    reading with more confidently read text."""
    lines = read_at(orientation.rotation)
    if orientation.confidence >= SURE:
        return orientation.rotation, lines, []
    readings = [
        (orientation.rotation, lines),
        (orientation.runner_up, read_at(orientation.runner_up)),
    ]
    readings.sort(key=lambda reading: _evidence(reading[1]), reverse=True)
    (chosen, best), (rejected, other) = readings
    warnings = []
    if best and _evidence(best) < CLEAR_MARGIN * _evidence(other):
        warnings.append(
            PageWarning(
                "ORIENTATION_UNCERTAIN",
                f"which way up this page is could not be told: it was read turned by {chosen} "
                f"degrees (rather than {rejected}); check the text, or send the page upright",
            )
        )
    return chosen, best, warnings


def _evidence(lines: list[RecognizedLine]) -> float:
    """Confidently read characters: wrong-way-up text reads as few, doubtful characters."""
    return sum(len(line.text) * line.confidence**4 for line in lines)
