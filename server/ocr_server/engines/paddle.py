"""The PaddleOCR adapter: builds the `paddleocr` pipeline from local model directories only.

Every optional sub-model (document orientation, unwarping, text-line orientation) is switched
off: PaddleX would download any sub-model that has no local directory, and this service never
touches the network.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ocr_server.engines.base import Image, Polygon, RecognizedLine, RecognizedWord
from ocr_server.engines.charset import MaskedCtcDecoder, strip_disallowed
from ocr_server.engines.lines import DirectPipeline
from ocr_server.engines.profiles import Profile
from ocr_server.engines.words import locate_words

# A small image (a cropped line or word, short side below SMALL_IMAGE pixels) gets a white
# margin of twice its short side, at least PAD_MIN, before detection: the detector misses text
# that touches the border and needs blank context around a lone line. Pages have their own
# margins; padding them measurably lowered accuracy (docs/benchmarks.md).
SMALL_IMAGE = 256
PAD_SHARE = 2.0
PAD_MIN = 16

# The detector sees an image scaled down to this longest side: a US letter page at 200 dpi
# becomes 742 x 960, the scale this profile was tuned at, and single text lines read best at
# it too (full scale cost UW-III 0.51 -> 0.63% CER; docs/benchmarks.md). Long scans are cut
# into page-shaped tiles before they get here (reading/tiling.py). A strip's short side would
# shrink to a few pixels (a 20,000 x 100 px strip, padded: 23), so no image's short side goes
# below DET_MIN_SHORT_SIDE, and no image beyond DET_MAX_AREA pixels (memory).
DET_LIMIT_SIDE_LEN = 960
DET_MIN_SHORT_SIDE = 96
DET_MAX_AREA = 4_000_000
PADDLEX_MAX_SIDE_LIMIT = 4000  # PaddleX's own cap on the longest side, raised when needed

# PaddleX pads every text line to at least 320 px (at 48 px high) before recognition; a third
# of a manual page's lines are shorter (page numbers, table cells, code), and the recogniser's
# cost grows with the width. 160 px cut a 200-dpi page's CPU by about 15% with CER unchanged
# or better on every set (pdfset 5.85 -> 5.88%, held-out 0.80 -> 0.78%, SROIE 5.14 -> 5.10%,
# UW-III 0.51 -> 0.48%; docs/benchmarks.md).
REC_MIN_WIDTH = 160

# Text lines recognised per inference call (sorted by width, so a batch pads little).
REC_BATCH_SIZE = 1

# Stops PaddleX from probing model hosts at import time.
os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")


class ModelsMissingError(RuntimeError):
    """A profile's model directories are not installed."""


class PaddleOcrEngine:
    """One PaddleOCR pipeline for one profile. Not thread-safe: one per worker process."""

    def __init__(self, profile: Profile, model_dir: Path) -> None:
        det_dir, rec_dir = profile.model_dirs(model_dir)
        if not profile.is_installed(model_dir):
            raise ModelsMissingError(
                f"profile {profile.name!r} needs {det_dir} and {rec_dir}; "
                "install them with scripts/setup (or point OCR_MODEL_DIR at them)"
            )
        from paddleocr import PaddleOCR  # heavy import: only in worker processes

        options: dict[str, Any] = {
            "text_detection_model_name": profile.det_model,
            "text_detection_model_dir": str(det_dir),
            "text_recognition_model_name": profile.rec_model,
            "text_recognition_model_dir": str(rec_dir),
            "use_doc_orientation_classify": False,
            "use_doc_unwarping": False,
            "use_textline_orientation": False,
            "text_det_limit_type": "max",
            "text_recognition_batch_size": REC_BATCH_SIZE,
            "engine": profile.engine,
            "engine_config": profile.engine_config(),
            "device": "cpu",
            **profile.det_options,
        }
        self._pipeline = PaddleOCR(**options)
        self._decoder = _mask_decoder(self._pipeline)
        _narrow_line_padding(self._pipeline, REC_MIN_WIDTH)
        paddlex = self._pipeline.paddlex_pipeline
        self._direct = DirectPipeline(paddlex) if DirectPipeline.supports(paddlex) else None

    def recognize(self, image: Image, language: str) -> list[RecognizedLine]:
        height, width = image.shape[:2]
        page, pad = with_margin(image)
        if self._decoder is not None:
            self._decoder.language = language
        lines: list[RecognizedLine] = []
        for poly, text, score in self._read(page):
            if self._decoder is None:
                text = strip_disallowed(text, language)
            if not text.strip():
                continue
            # Words follow the crop's own polygon (in padded coordinates), then every
            # point is moved back onto the page.
            words = tuple(
                RecognizedWord(w.text, w.confidence, _unpad(w.polygon, pad, width, height))
                for w in locate_words(text, _polygon(poly), score)
            )
            lines.append(
                RecognizedLine(
                    text=str(text),
                    confidence=score,
                    polygon=_unpad(_polygon(poly), pad, width, height),
                    words=words,
                )
            )
        return lines

    def _read(self, page: Image) -> list[tuple[Any, str, float]]:
        """Each line's box, text and confidence, from the models called directly, or for a
        pipeline whose steps DirectPipeline does not know, from PaddleX's pipeline itself."""
        limit = detection_side_limit(*page.shape[:2])
        max_side = max(PADDLEX_MAX_SIDE_LIMIT, limit)
        if self._direct is not None:
            return [
                (line.polygon, line.text, line.confidence)
                for line in self._direct.read(page, limit, max_side)
            ]
        # The `paddleocr` wrapper does not pass the side limit on: PaddleX's pipeline does.
        results = self._pipeline.paddlex_pipeline.predict(
            np.ascontiguousarray(page[:, :, ::-1]),  # BGR, as the pipeline expects
            text_det_limit_side_len=limit,
            text_det_max_side_limit=max_side,
        )
        return [
            (poly, text, float(score))
            for result in results
            for text, score, poly in zip(
                result["rec_texts"], result["rec_scores"], result["rec_polys"], strict=True
            )
        ]


def _polygon(points: Any) -> Polygon:
    return tuple((float(x), float(y)) for x, y in points)


def _unpad(polygon: Polygon, pad: int, width: int, height: int) -> Polygon:
    """From the padded image back onto the page, clamped to it (a page's lines and words
    are nearly all on it already: given back as they are)."""
    if not pad and all(0.0 <= x <= width and 0.0 <= y <= height for x, y in polygon):
        return polygon
    return tuple(
        (min(max(x - pad, 0.0), float(width)), min(max(y - pad, 0.0), float(height)))
        for x, y in polygon
    )


def _narrow_line_padding(pipeline: Any, width: int) -> None:
    """Pad text lines to `width` instead of the model's 320 px, where the recogniser's
    pre-processing allows it; its configuration too, which later steps read the padding
    from (the share of each line's frames that is text)."""
    recogniser = getattr(pipeline.paddlex_pipeline, "text_rec_model", None)
    resize = getattr(recogniser, "pre_tfs", {}).get("ReisizeNorm")
    if recogniser is None or resize is None or len(getattr(resize, "rec_image_shape", ())) != 3:
        return
    channels, height, _ = resize.rec_image_shape
    resize.rec_image_shape = [channels, height, width]
    for op in recogniser.config["PreProcess"]["transform_ops"]:
        if "RecResizeImg" in op:
            op["RecResizeImg"]["image_shape"] = [channels, height, width]


def _mask_decoder(pipeline: Any) -> MaskedCtcDecoder | None:
    """Put a language mask in front of the recogniser's CTC decoder (None if it has none)."""
    recogniser = getattr(pipeline.paddlex_pipeline, "text_rec_model", None)
    decoder = getattr(recogniser, "post_op", None)
    if recogniser is None or decoder is None or not hasattr(decoder, "character"):
        return None
    masked = MaskedCtcDecoder(decoder)
    recogniser.post_op = masked
    return masked


def detection_side_limit(height: int, width: int) -> int:
    """The longest side the detector should see this image at (never enlarged)."""
    scale = min(1.0, DET_LIMIT_SIDE_LEN / max(height, width))
    scale = max(scale, min(1.0, DET_MIN_SHORT_SIDE / min(height, width)))
    scale = min(scale, math.sqrt(DET_MAX_AREA / (height * width)))
    return max(32, math.ceil(scale * max(height, width)))


def _padding(height: int, width: int) -> int:
    short = min(height, width)
    return int(max(PAD_SHARE * short, PAD_MIN)) if short < SMALL_IMAGE else 0


def with_margin(image: Image) -> tuple[Image, int]:
    """The page with the white margin a small image needs, and that margin's width (the page
    itself, unpadded, otherwise)."""
    height, width = image.shape[:2]
    pad = _padding(height, width)
    if pad:
        return np.pad(image, ((pad, pad), (pad, pad), (0, 0)), constant_values=255), pad
    return image, 0


def bgr_for_detection(image: Image) -> tuple[Image, int]:
    """The page in BGR, as PaddleX's detector and pipeline expect (ours are RGB), with the
    white margin a small image needs; and that margin's width. The copy must be contiguous:
    given a reversed view, every line crop copies the whole page again (a third more CPU per
    page, docs/benchmarks.md)."""
    page, pad = with_margin(image)
    return np.ascontiguousarray(page[:, :, ::-1]), pad
