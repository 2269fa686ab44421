"""The engine contract: what a worker needs from an OCR engine, nothing more.

Only plain data crosses the process boundary, so results are small frozen dataclasses that
pickle cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
"""An RGB page image, height x width x 3."""


Polygon = tuple[tuple[float, float], ...]
"""An outline in page pixels (origin top left), clockwise from the top-left corner."""


@dataclass(frozen=True, slots=True)
class RecognizedWord:
    """One word of a line: its text, confidence and outline in page pixels, as the engine
    located it (not split evenly from the line box)."""

    text: str
    confidence: float
    polygon: Polygon


@dataclass(frozen=True, slots=True)
class RecognizedLine:
    """One text line: its text, the recogniser's confidence and its outline in page pixels;
    `words` is empty when the engine cannot locate words."""

    text: str
    confidence: float
    polygon: Polygon
    words: tuple[RecognizedWord, ...] = ()


class OcrEngine(Protocol):
    """Recognises the text lines on one page image. Instances need not be thread-safe."""

    def recognize(self, image: Image, language: str) -> list[RecognizedLine]:
        """Return the lines found on the page, in any order (layout orders them), reading
        only the characters of `language` where the engine can restrict itself."""
        ...
