"""Reading order: turn a page's unordered lines into rows, column by column where the page has
text columns.

1. Deskew: the page's dominant text slope is estimated from the lines' long edges and every
   box is rotated back by it, so that on a slightly skewed scan neighbouring lines do not
   overlap (a tall axis-aligned box around a tilted line would swallow the lines beside it).
   Lines far off that slope (a diagonal watermark, vertical margin text) are read last.
2. Columns (a recursive XY-cut over the line boxes): a block is cut at a vertical gutter only
   when both sides look like text columns (several long, column-filling lines each); lines
   that cross the gutter (a title, a page number) split the block into horizontal sections
   that are cut again on their own. Tables, forms and label/value rows (receipts) fail the
   text-column test and stay in row order, as `pdftotext -layout` gives them.
3. Rows: within a block, lines whose vertical extents overlap by more than half the smaller
   height share a row (a table row, a label and its value); each row reads left to right.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ocr_server.engines.base import RecognizedLine

ROW_OVERLAP = 0.5
# Lines this far (degrees) off the page's slope are not part of the text flow.
OFF_SLOPE_DEGREES = 20.0
# A slope below this is noise: the page is read as it is.
MIN_SKEW_DEGREES = 0.05
# Only lines this much longer than high vote for the page's slope.
SLOPE_MIN_ASPECT = 3.0

# A text column: at least this many lines, most of them long (width / height) and filling
# the column's width. Table cells and receipt labels are short or ragged and fail it.
COLUMN_MIN_LINES = 3
COLUMN_MIN_ASPECT = 8.0
COLUMN_MIN_FILL = 0.6
# A gutter lies in the middle of its block: each side is at least this share of its width.
COLUMN_MIN_SHARE = 0.15
# At most this share of a block's lines may cross a candidate gutter.
GUTTER_MAX_CROSSING = 0.5
GUTTER_BINS = 400


@dataclass(frozen=True, eq=False)
class _Box:
    """A line in deskewed page coordinates."""

    line: RecognizedLine
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def height(self) -> float:
        return max(self.y1 - self.y0, 1.0)

    @property
    def width(self) -> float:
        return max(self.x1 - self.x0, 1.0)

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2


def order_lines(lines: Sequence[RecognizedLine]) -> list[list[RecognizedLine]]:
    """Group lines into rows in reading order; each row sorted left to right."""
    if not lines:
        return []
    slopes = [_slope(line) for line in lines]
    skew = _page_skew(lines, slopes)
    flow: list[_Box] = []
    off_slope: list[_Box] = []
    for line, slope in zip(lines, slopes, strict=True):
        box = _deskewed_box(line, skew)
        if slope is not None and abs(_angle_difference(slope, skew)) > OFF_SLOPE_DEGREES:
            off_slope.append(box)
        else:
            flow.append(box)
    rows = _cut(flow) + _rows(off_slope)
    return [[box.line for box in row] for row in rows]


def page_text(rows: Sequence[Sequence[RecognizedLine]]) -> str:
    return "\n".join(" ".join(line.text for line in row) for row in rows)


def _slope(line: RecognizedLine) -> float | None:
    """The direction (degrees, image y down) of a quadrilateral's long edges, if it has them."""
    if len(line.polygon) != 4:
        return None
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = line.polygon
    top = (x1 - x0, y1 - y0)
    bottom = (x2 - x3, y2 - y3)
    dx, dy = top[0] + bottom[0], top[1] + bottom[1]
    if dx == 0 and dy == 0:
        return None
    return math.degrees(math.atan2(dy, dx))


def _angle_difference(a: float, b: float) -> float:
    return (a - b + 180.0) % 360.0 - 180.0


def _page_skew(lines: Sequence[RecognizedLine], slopes: Sequence[float | None]) -> float:
    """The length-weighted median slope of the long, nearly horizontal lines."""
    votes: list[tuple[float, float]] = []
    for line, slope in zip(lines, slopes, strict=True):
        if slope is None or abs(slope) > OFF_SLOPE_DEGREES:
            continue
        (x0, y0), (x1, y1), _, (x3, y3) = line.polygon
        length = math.hypot(x1 - x0, y1 - y0)
        height = math.hypot(x3 - x0, y3 - y0)
        if length >= SLOPE_MIN_ASPECT * max(height, 1.0):
            votes.append((slope, length))
    if not votes:
        return 0.0
    votes.sort()
    half = sum(weight for _, weight in votes) / 2
    running = 0.0
    for slope, weight in votes:
        running += weight
        if running >= half:
            return slope if abs(slope) >= MIN_SKEW_DEGREES else 0.0
    return 0.0


def _deskewed_box(line: RecognizedLine, skew: float) -> _Box:
    theta = math.radians(skew)
    cos, sin = math.cos(theta), math.sin(theta)
    xs = [x * cos + y * sin for x, y in line.polygon]
    ys = [y * cos - x * sin for x, y in line.polygon]
    return _Box(line, min(xs), min(ys), max(xs), max(ys))


def _cut(boxes: list[_Box]) -> list[list[_Box]]:
    """Rows in reading order: columns one after the other where the block has them."""
    if len(boxes) < 2 * COLUMN_MIN_LINES:
        return _rows(boxes)
    gutter = _find_gutter(boxes)
    if gutter is None:
        return _rows(boxes)
    crossing = [b for b in boxes if b.x0 < gutter < b.x1]
    if not crossing:
        left = [b for b in boxes if b.cx < gutter]
        right = [b for b in boxes if b.cx >= gutter]
        if _is_text_column(left) and _is_text_column(right):
            return _cut(left) + _cut(right)
        return _rows(boxes)
    return [row for section in _sections(boxes, crossing) for row in _cut_section(section)]


def _cut_section(section: tuple[list[_Box], bool]) -> list[list[_Box]]:
    boxes, is_separator = section
    return _rows(boxes) if is_separator else _cut(boxes)


def _sections(boxes: list[_Box], crossing: list[_Box]) -> list[tuple[list[_Box], bool]]:
    """Split a block into horizontal bands at the lines that cross its gutter.

    Each crossing line is a band of its own (with any line beside it in the same row); the
    lines between two crossing lines form a band that is cut again.
    """
    separators = sorted(crossing, key=lambda b: b.cy)
    bands: list[tuple[list[_Box], bool]] = []
    crossing_set = set(crossing)
    others = sorted((b for b in boxes if b not in crossing_set), key=lambda b: b.cy)
    index = 0
    for separator in separators:
        between: list[_Box] = []
        while index < len(others) and others[index].cy < separator.y0:
            between.append(others[index])
            index += 1
        if between:
            bands.append((between, False))
        row = [separator]
        while index < len(others) and others[index].cy <= separator.y1:
            row.append(others[index])
            index += 1
        if bands and bands[-1][1] and _same_band(bands[-1][0], separator):
            bands[-1][0].extend(row)
        else:
            bands.append((row, True))
    if index < len(others):
        bands.append((others[index:], False))
    return bands


def _same_band(band: list[_Box], box: _Box) -> bool:
    return box.cy <= max(b.y1 for b in band)


def _find_gutter(boxes: list[_Box]) -> float | None:
    """The x of the emptiest vertical strip in the block's middle, if few lines cross it."""
    left = min(b.x0 for b in boxes)
    right = max(b.x1 for b in boxes)
    width = right - left
    if width <= 0:
        return None
    scale = GUTTER_BINS / width
    coverage = [0] * (GUTTER_BINS + 1)
    for b in boxes:
        coverage[int((b.x0 - left) * scale)] += 1
        coverage[min(int((b.x1 - left) * scale), GUTTER_BINS)] -= 1
    running = 0
    for i, delta in enumerate(coverage):
        running += delta
        coverage[i] = running
    lo = int(COLUMN_MIN_SHARE * GUTTER_BINS)
    hi = GUTTER_BINS - lo
    fewest = min(coverage[lo:hi])
    if fewest > GUTTER_MAX_CROSSING * len(boxes):
        return None
    # The widest run of emptiest bins; its middle is the gutter.
    best_start, best_length, start = -1, 0, -1
    for i in range(lo, hi + 1):
        empty = i < hi and coverage[i] == fewest
        if empty and start < 0:
            start = i
        elif not empty and start >= 0:
            if i - start > best_length:
                best_start, best_length = start, i - start
            start = -1
    return left + (best_start + best_length / 2) / scale


def _is_text_column(boxes: list[_Box]) -> bool:
    """Several lines, most of them long and filling the column's width: running text."""
    if len(boxes) < COLUMN_MIN_LINES:
        return False
    column_width = max(b.x1 for b in boxes) - min(b.x0 for b in boxes)
    aspect = statistics.median(b.width / b.height for b in boxes)
    fill = statistics.median(b.width / column_width for b in boxes)
    return aspect >= COLUMN_MIN_ASPECT and fill >= COLUMN_MIN_FILL


def _rows(boxes: list[_Box]) -> list[list[_Box]]:
    """Group a block's lines into rows, top to bottom, each left to right.

    A line joins the current row when it overlaps the row's typical extent (the median of
    its members', so that one tall box cannot stretch the row over its neighbours).
    """
    rows: list[list[_Box]] = []
    for box in sorted(boxes, key=lambda b: b.cy):
        if rows:
            members = rows[-1]
            top = statistics.median(b.y0 for b in members)
            bottom = statistics.median(b.y1 for b in members)
            overlap = min(box.y1, bottom) - max(box.y0, top)
            smaller = max(min(box.height, bottom - top), 1.0)
            if overlap / smaller > ROW_OVERLAP:
                members.append(box)
                continue
        rows.append([box])
    return [sorted(row, key=lambda b: b.x0) for row in rows]
