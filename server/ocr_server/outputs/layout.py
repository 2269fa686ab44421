"""What every file format needs from a stored page: boxes, words and blocks of lines.

Pure functions over the result's protobuf messages, shared by the hOCR, ALTO and PDF
renderers so that they agree on every word and box.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ocr.v1 import ocr_pb2

Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]

# Consecutive lines (in reading order) share a block while the gap between them is at most
# this many median line heights and their horizontal extents overlap.
BLOCK_GAP_LINES = 0.8


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in whole page pixels (hOCR's bbox, ALTO's HPOS/VPOS/...)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


@dataclass(frozen=True)
class PlacedWord:
    text: str
    confidence: float
    quad: Quad  # clockwise from the top-left, in page pixels


def box_of(points: Sequence[Point]) -> Box:
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    return Box(math.floor(min(xs)), math.floor(min(ys)), math.ceil(max(xs)), math.ceil(max(ys)))


def union(boxes: Sequence[Box]) -> Box:
    return Box(
        min(b.left for b in boxes),
        min(b.top for b in boxes),
        max(b.right for b in boxes),
        max(b.bottom for b in boxes),
    )


def polygon(message: ocr_pb2.Line | ocr_pb2.Word) -> list[Point]:
    return [(p.x, p.y) for p in message.polygon]


def quad_of(points: Sequence[Point]) -> Quad:
    """Four corners, clockwise from the top-left: the points themselves when there are four,
    else their bounding box."""
    if len(points) == 4:
        return (points[0], points[1], points[2], points[3])
    box = box_of(points) if points else Box(0, 0, 0, 0)
    return (
        (box.left, box.top),
        (box.right, box.top),
        (box.right, box.bottom),
        (box.left, box.bottom),
    )


def words_of(line: ocr_pb2.Line) -> list[PlacedWord]:
    """The line's words as the engine located them; for an engine that could not, the text
    split at spaces and spread along the line by character count (better than no words)."""
    if line.words:
        return [PlacedWord(w.text, w.confidence, quad_of(polygon(w))) for w in line.words if w.text]
    quad = quad_of(polygon(line))
    length = max(len(line.text), 1)
    words, position = [], 0
    for part in line.text.split(" "):
        if part:
            start, end = position / length, (position + len(part)) / length
            words.append(PlacedWord(part, line.confidence, _stretch(quad, start, end)))
        position += len(part) + 1
    return words


def _stretch(quad: Quad, start: float, end: float) -> Quad:
    top_left, top_right, bottom_right, bottom_left = quad

    def along(a: Point, b: Point, t: float) -> Point:
        return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)

    return (
        along(top_left, top_right, start),
        along(top_left, top_right, end),
        along(bottom_left, bottom_right, end),
        along(bottom_left, bottom_right, start),
    )


def baseline(line: ocr_pb2.Line) -> tuple[float, float]:
    """hOCR's baseline: slope, and offset from the bottom of the line's box at its left."""
    quad = quad_of(polygon(line))
    (x3, y3), (x2, y2) = quad[3], quad[2]
    slope = (y2 - y3) / (x2 - x3) if abs(x2 - x3) > 1e-6 else 0.0
    box = box_of(polygon(line))
    offset = y3 + slope * (box.left - x3) - box.bottom
    return slope, offset


def blocks(lines: Sequence[ocr_pb2.Line]) -> Iterator[list[ocr_pb2.Line]]:
    """Consecutive lines in reading order grouped into blocks (paragraphs, table rows,
    columns): a new block starts at a wide vertical gap or where the next line does not
    overlap the previous one horizontally."""
    boxes = [box_of(polygon(line)) for line in lines]
    if not boxes:
        return
    height = statistics.median(max(b.height, 1) for b in boxes)
    current = [lines[0]]
    for previous, box, line in zip(boxes, boxes[1:], lines[1:], strict=False):
        gap = box.top - previous.bottom
        overlaps = box.left < previous.right and previous.left < box.right
        if gap > BLOCK_GAP_LINES * height or not overlaps or box.bottom <= previous.top:
            yield current
            current = []
        current.append(line)
    yield current
