"""A page's invisible text: one text object per line, each word stretched onto its box.

Every word is placed by its own text matrix, built from its quadrilateral in PDF space: the
baseline runs along the bottom edge, the glyph box (0.2 em below the baseline to 0.8 em above)
fills the quadrilateral's height, and horizontal scaling (Tz) makes the word exactly as wide
as its box. So a rotated page, a slanted line or a non-square pixel all come out right, and a
viewer's selection highlights the word's own box. Between two words a space is drawn across
the gap, so that text extraction always sees a word break.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pikepdf

from ocr_server.outputs.layout import PlacedWord, Point
from ocr_server.outputs.pdf.font import ADVANCE, DESCENT, UNITS_PER_EM, encode

FONT_RESOURCE = pikepdf.Name("/OCR")
_DESCENT_SHARE = -DESCENT / UNITS_PER_EM  # of the glyph box's height below the baseline
_WIDTH_PER_CHAR = ADVANCE / UNITS_PER_EM  # in em
_INVISIBLE = 3
# Operators built once: making a pikepdf object per instruction is most of the layer's cost.
_TR, _BT, _ET, _TF, _TZ, _TJ, _TM = (
    pikepdf.Operator(name) for name in ("Tr", "BT", "ET", "Tf", "Tz", "Tj", "Tm")
)
_SPACE = encode(" ")
_MIN_SIZE = 0.5  # points: smaller boxes are degenerate
# Text extraction (poppler) breaks words at gaps wider than a tenth of the font size, whatever
# space characters say; words closer than this to the next are drawn narrower.
_MIN_GAP_SHARE = 0.15
# Glyphs at least this share of the font size apart: poppler drops a character that repeats
# within 0.2 of the font size as a duplicate (fake bold), so a word squeezed narrower than
# this (a very tall box) gets a smaller font size, centred in its box, instead.
_MIN_PITCH_SHARE = 0.3


@dataclass(frozen=True)
class PageTransform:
    """Maps page-image pixels (origin top left, y down) to the PDF page's user space:
    x' = a*x + c*y + e, y' = b*x + d*y + f."""

    a: float
    b: float
    c: float
    d: float
    e: float
    f: float

    def __call__(self, point: Point) -> Point:
        x, y = point
        return (self.a * x + self.c * y + self.e, self.b * x + self.d * y + self.f)

    @classmethod
    def for_page(
        cls, box: Sequence[float], rotate: int, width_px: int, height_px: int
    ) -> PageTransform:
        """For a page image that shows `box` (x0, y0, x1, y1 in user space) turned
        clockwise by `rotate` degrees, as a viewer and poppler show it."""
        x0, y0, x1, y1 = (float(v) for v in box)
        rotate %= 360
        shown_w, shown_h = (x1 - x0, y1 - y0) if rotate in (0, 180) else (y1 - y0, x1 - x0)
        sx, sy = shown_w / max(width_px, 1), shown_h / max(height_px, 1)
        if rotate == 90:  # the image's top left is the box's bottom left
            return cls(0.0, sx, sy, 0.0, x0, y0)
        if rotate == 180:
            return cls(-sx, 0.0, 0.0, sy, x1, y0)
        if rotate == 270:
            return cls(0.0, -sx, -sy, 0.0, x1, y1)
        return cls(sx, 0.0, 0.0, -sy, x0, y1)


Instruction = tuple[list[object], pikepdf.Operator]


def text_layer(lines: Iterable[Sequence[PlacedWord]], transform: PageTransform) -> bytes:
    """The content stream that draws every line's words invisibly, in reading order."""
    operators: list[Instruction] = [([_INVISIBLE], _TR)]
    for words in lines:
        placed = [p for p in (_Placed.of(word, transform) for word in words) if p is not None]
        if placed:
            operators.append(([], _BT))
            _line(operators, placed)
            operators.append(([], _ET))
    return pikepdf.unparse_content_stream(operators)  # type: ignore[arg-type]


def _line(operators: list[Instruction], placed: list[_Placed]) -> None:
    """Draw a line's words. After a word (stretched by Tz) the text position is at its end,
    and after the space (stretched across the gap) at the next word: a word on the same
    baseline at the same size needs no new text matrix, which halves the operators."""
    size: float | None = None
    cursor: _Placed | None = None  # the frame the text position follows, None: none set
    for index, word in enumerate(placed):
        if size is None or abs(word.size - size) > 0.02 * size:
            size = word.size
            operators.append(([FONT_RESOURCE, _round(size)], _TF))
            cursor = None
        if cursor is None or not cursor.continues_to(word):
            word.set_matrix(operators, size)
        following = _along(word, placed[index + 1].origin_bottom) if index + 1 < len(placed) else 0
        if index + 1 == len(placed):
            _show(operators, word.text_codes, word.width, size)
            continue
        width = min(word.width, max(following - _MIN_GAP_SHARE * size, word.width / 2))
        _show(operators, word.text_codes, width, size)
        _show(operators, _SPACE, max(following - width, size * 0.05), size)
        cursor = word


def _show(operators: list[Instruction], codes: bytes, width: float, size: float) -> None:
    """Draw `codes` from the text position, stretched to `width`."""
    natural = len(codes) // 2 * _WIDTH_PER_CHAR * size
    operators.append(([_round(100 * width / natural)], _TZ))
    operators.append(([codes], _TJ))  # bytes become a PDF string


@dataclass
class _Placed:
    """A word's frame in user space: unit baseline (ux, uy), unit up (vx, vy), glyph box
    height `size`, and the bottom-left corner of its box."""

    ux: float
    uy: float
    vx: float
    vy: float
    size: float
    origin_bottom: Point
    width: float = 0.0
    text_codes: bytes = b""

    @classmethod
    def of(cls, word: PlacedWord, transform: PageTransform) -> _Placed | None:
        top_left, top_right, bottom_right, bottom_left = (transform(p) for p in word.quad)
        width = math.dist(bottom_left, bottom_right)
        height = (math.dist(bottom_left, top_left) + math.dist(bottom_right, top_right)) / 2
        if width < _MIN_SIZE or height < _MIN_SIZE or not word.text.strip():
            return None
        ux = (bottom_right[0] - bottom_left[0]) / width
        uy = (bottom_right[1] - bottom_left[1]) / width
        up_x = (top_left[0] - bottom_left[0] + top_right[0] - bottom_right[0]) / 2
        up_y = (top_left[1] - bottom_left[1] + top_right[1] - bottom_right[1]) / 2
        up = math.hypot(up_x, up_y)
        vx, vy = up_x / up, up_y / up
        codes = encode(word.text)
        size = min(height, width / (len(codes) // 2) / _MIN_PITCH_SHARE)
        lift = (height - size) / 2
        origin = (bottom_left[0] + vx * lift, bottom_left[1] + vy * lift)
        return cls(ux, uy, vx, vy, size, origin, width, codes)

    def continues_to(self, other: _Placed) -> bool:
        """Whether `other` lies on this word's baseline, turned the same way."""
        same_turn = abs(self.ux - other.ux) + abs(self.uy - other.uy) < 1e-3
        dx = other.origin_bottom[0] - self.origin_bottom[0]
        dy = other.origin_bottom[1] - self.origin_bottom[1]
        off_line = abs(-dx * self.uy + dy * self.ux)  # distance from the baseline
        return same_turn and off_line < 0.02 * self.size

    def set_matrix(self, operators: list[Instruction], size: float) -> None:
        """Put the text position at this word's baseline start, glyph boxes filling its box."""
        x = self.origin_bottom[0] + self.vx * size * _DESCENT_SHARE
        y = self.origin_bottom[1] + self.vy * size * _DESCENT_SHARE
        matrix = [_unit(self.ux), _unit(self.uy), _unit(self.vx), _unit(self.vy)]
        operators.append(([*matrix, _round(x), _round(y)], _TM))


def _along(word: _Placed, point: Point) -> float:
    """How far `point` lies along the word's baseline from the word's start."""
    return (point[0] - word.origin_bottom[0]) * word.ux + (
        point[1] - word.origin_bottom[1]
    ) * word.uy


def _round(value: float) -> float:
    return round(value, 2)


def _unit(value: float) -> float:
    return round(value, 5)
