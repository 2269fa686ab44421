"""Words from a CTC recogniser's character positions, mapped back onto the page.

A CTC recogniser reads a line crop as a row of frames (one per 8 pixels of the crop resized to
48 pixels high) and emits each character on the frame where its run of predictions starts.
`DecodedText` carries those frames along with the text; `locate_words` splits the text at
spaces and turns each word's first and last character frames into a stretch of the crop's
width, then into a quadrilateral on the page by following the line's polygon (the crop is the
line's rotated rectangle warped upright, so a fraction of its width is the same fraction along
the polygon's top and bottom edges, whatever the line's slant).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from ocr_server.engines.base import Polygon, RecognizedWord

# A character's frame is where its prediction starts; the glyph itself reaches on average
# this many frames to the left of it and ends this many frames after the last character's
# frame (fitted on born-digital pages against `pdftotext -bbox`, docs/outputs.md).
LEAD_FRAMES = 1.0
TRAIL_FRAMES = 1.3

# Two words are at least this many frames apart: a space was read between them, and text
# extraction (poppler) finds word breaks by such gaps.
MIN_GAP_FRAMES = 0.8

# PaddleX crops a line upright by a quarter turn when it is this much taller than wide.
VERTICAL_ASPECT = 1.5


class DecodedText(str):
    """Recognised text that remembers where each character was read.

    `columns[i]` is the frame at which character i starts; `frames` is how many frames span
    the crop's width (the recogniser pads narrow crops on the right); `probabilities[i]` is the
    recogniser's probability for character i.
    """

    columns: tuple[int, ...]
    frames: float
    probabilities: tuple[float, ...]

    def __new__(
        cls,
        text: str,
        columns: Sequence[int],
        frames: float,
        probabilities: Sequence[float],
    ) -> DecodedText:
        decoded = super().__new__(cls, text)
        decoded.columns = tuple(columns)
        decoded.frames = frames
        decoded.probabilities = tuple(probabilities)
        return decoded


def locate_words(text: str, polygon: Polygon, confidence: float) -> tuple[RecognizedWord, ...]:
    """The words of a recognised line with their page polygons, or () when the recogniser did
    not say where its characters were (`text` is not a DecodedText) or the line is not a
    four-cornered box. A word's confidence is the mean of its characters' probabilities."""
    if not isinstance(text, DecodedText) or len(polygon) != 4 or text.frames <= 0:
        return ()
    columns, probabilities = text.columns, text.probabilities
    if len(columns) != len(text) or len(probabilities) != len(text):
        return ()
    plain = str(text)
    characters = _word_spans(plain)
    extents = [
        [
            max((columns[start] - LEAD_FRAMES) / text.frames, 0.0),
            min((columns[end - 1] + TRAIL_FRAMES) / text.frames, 1.0),
        ]
        for start, end in characters
    ]
    gap = MIN_GAP_FRAMES / text.frames
    for previous, following in itertools.pairwise(extents):
        if previous[1] + gap > following[0]:  # estimates may overlap by a frame
            middle = (previous[1] + following[0]) / 2
            previous[1], following[0] = middle - gap / 2, middle + gap / 2
    line = _LineFrame(polygon)
    words = []
    for (first, last), (left, right) in zip(characters, extents, strict=True):
        words.append(
            RecognizedWord(
                text=plain[first:last],
                confidence=float(sum(probabilities[first:last]) / (last - first)),
                polygon=line.stretch(left, max(right, left)),
            )
        )
    return tuple(words)


def _word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each run of non-space characters."""
    spans: list[tuple[int, int]] = []
    start = -1
    for index, char in enumerate(text):
        if char.isspace():
            if start >= 0:
                spans.append((start, index))
                start = -1
        elif start < 0:
            start = index
    if start >= 0:
        spans.append((start, len(text)))
    return spans


class _LineFrame:
    """Maps a fraction of the crop's width to a stretch of the line's polygon."""

    def __init__(self, polygon: Polygon) -> None:
        p0, p1, p2, p3 = polygon
        width = max(_distance(p0, p1), _distance(p2, p3))
        height = max(_distance(p0, p3), _distance(p1, p2))
        if height >= VERTICAL_ASPECT * width:
            # The crop was turned a quarter counter-clockwise: its width runs down the line,
            # from the top edge (p0, p1) to the bottom edge (p3, p2).
            self._start_edge = (p0, p3)
            self._end_edge = (p1, p2)
            self._vertical = True
        else:
            self._start_edge = (p0, p1)
            self._end_edge = (p3, p2)
            self._vertical = False

    def stretch(self, left: float, right: float) -> Polygon:
        a0 = _lerp(*self._start_edge, left)
        a1 = _lerp(*self._start_edge, right)
        b1 = _lerp(*self._end_edge, right)
        b0 = _lerp(*self._end_edge, left)
        if self._vertical:  # clockwise from the top-left: a0, b0, b1, a1
            return (a0, b0, b1, a1)
        return (a0, a1, b1, b0)


def _lerp(a: tuple[float, float], b: tuple[float, float], t: float) -> tuple[float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(b[0] - a[0], b[1] - a[1])
