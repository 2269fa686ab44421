"""Turning images and outlines by quarter turns, so that boxes found on the upright page are
given back in the coordinates of the page as the client sent it."""

from __future__ import annotations

import numpy as np

from ocr_server.engines.base import Image, Polygon, RecognizedLine, RecognizedWord

QUARTER_TURNS = (0, 90, 180, 270)


def upright(image: Image, rotation: int) -> Image:
    """The page turned back (counter-clockwise) by `rotation`, the clockwise angle its text
    is turned by; contiguous, as the engine's crops need."""
    turns = _turns(rotation)
    return image if turns == 0 else np.ascontiguousarray(np.rot90(image, turns))


def to_sent_frame(
    point: tuple[float, float], rotation: int, width: int, height: int
) -> tuple[float, float]:
    """A point of the upright page mapped onto the page as sent (`width` x `height`)."""
    u, v = point
    turns = _turns(rotation)
    if turns == 0:
        return u, v
    if turns == 1:  # upright = sent turned 90 degrees counter-clockwise
        return width - v, u
    if turns == 2:
        return width - u, height - v
    return v, height - u  # upright = sent turned 90 degrees clockwise


def polygon_to_sent_frame(polygon: Polygon, rotation: int, width: int, height: int) -> Polygon:
    """Every point mapped; the order is kept, so the outline still starts at the text's own
    top-left corner (where reading starts) and runs clockwise."""
    return tuple(to_sent_frame(p, rotation, width, height) for p in polygon)


def line_to_sent_frame(
    line: RecognizedLine, rotation: int, width: int, height: int
) -> RecognizedLine:
    """The line and its words with their outlines on the page as sent."""
    if _turns(rotation) == 0:
        return line
    return RecognizedLine(
        text=line.text,
        confidence=line.confidence,
        polygon=polygon_to_sent_frame(line.polygon, rotation, width, height),
        words=tuple(
            RecognizedWord(
                text=word.text,
                confidence=word.confidence,
                polygon=polygon_to_sent_frame(word.polygon, rotation, width, height),
            )
            for word in line.words
        ),
    )


def shifted(line: RecognizedLine, dx: float, dy: float) -> RecognizedLine:
    """The line (and its words) moved by (dx, dy): from a tile's coordinates to the page's."""
    return RecognizedLine(
        text=line.text,
        confidence=line.confidence,
        polygon=tuple((x + dx, y + dy) for x, y in line.polygon),
        words=tuple(
            RecognizedWord(
                word.text, word.confidence, tuple((x + dx, y + dy) for x, y in word.polygon)
            )
            for word in line.words
        ),
    )


def _turns(rotation: int) -> int:
    if rotation not in QUARTER_TURNS:
        raise ValueError(f"rotation must be one of {QUARTER_TURNS}, not {rotation}")
    return rotation // 90
