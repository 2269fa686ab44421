"""The Tesseract engine, for scripts that no installable PaddleOCR model reads: PaddleOCR's
language-neutral text detector finds the lines, Tesseract (in-process, through `tesserocr`)
reads each line crop as one line.

Why not Tesseract's own page layout: it drops most of a Korean page (80% CER at --psm 3 on
our pages, where this reads 0%) and costs about as much. Why in-process: a `tesseract`
process per page spends 0.05-0.13 s more CPU starting and loading its data again (the
comparison is in docs/languages.md). Right-to-left text (Arabic, Hebrew) comes out in
logical order, as it is stored and typed, words ordered by Tesseract's result iterator.

The language data (`<name>.traineddata`) comes from Debian's `tesseract-ocr-<name>`
packages, installed by `scripts/setup` (`--languages` adds more); nothing is downloaded.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ocr_server.engines.base import Image, Polygon, RecognizedLine, RecognizedWord
from ocr_server.engines.paddle import DET_LIMIT_SIDE_LEN, bgr_for_detection
from ocr_server.engines.profiles import ONNX_ENGINE_CONFIG, Profile
from ocr_server.languages.catalog import split

# Where Debian and the upstream build put the language data, newest first.
TESSDATA_CANDIDATES = (
    Path("/usr/share/tesseract-ocr/5/tessdata"),
    Path("/usr/share/tesseract-ocr/4.00/tessdata"),
    Path("/usr/share/tessdata"),
    Path("/usr/local/share/tessdata"),
)

# Tesseract reads a line best at a certain size: each line box (the detector's, which
# reaches well above and below the letters) is scaled to a height in pixels, within limits.
SCALE_LIMITS = (0.2, 3.0)

# Tesseract handles (one per language combination) kept per worker; each holds its data.
MAX_APIS = 4

_PSM_SINGLE_LINE = 7
_PSM_RAW_LINE = 13
# (page segmentation mode, line height, white margin as a share of it) tried in turn until
# one gives words. Single-line mode at 36 pixels reads best (Thai's stacked marks need the
# height: 0.34% CER, 0.77% at 28), but discards some clean Arabic lines as noise (one in
# five); smaller it keeps them; raw-line mode, which skips that step, is the last resort (on
# a tight crop: with a wide margin it misreads). Measured in docs/languages.md.
_ATTEMPTS = (
    (_PSM_SINGLE_LINE, 36, 0.5),
    (_PSM_SINGLE_LINE, 28, 0.5),
    (_PSM_SINGLE_LINE, 20, 0.5),
    (_PSM_RAW_LINE, 28, 0.1),
)


def find_tessdata(explicit: Path | None = None) -> Path | None:
    """The directory of the installed language data: `explicit`, $TESSDATA_PREFIX, or
    the first of Debian's places that holds any; None when there is none."""
    candidates = [explicit] if explicit else []
    if os.environ.get("TESSDATA_PREFIX"):
        candidates.append(Path(os.environ["TESSDATA_PREFIX"]))
    candidates += TESSDATA_CANDIDATES
    for directory in candidates:
        if directory is not None and any(directory.glob("*.traineddata")):
            return directory
    return None


def installed_data(tessdata: Path | None) -> frozenset[str]:
    """Names of the installed language data (`rus`, `chi_tra`; not `osd`)."""
    if tessdata is None:
        return frozenset()
    return frozenset(p.stem for p in tessdata.glob("*.traineddata") if p.stem != "osd")


def tesseract_languages(language: str) -> str:
    """Tesseract's name for a canonical language string: `ru+en` -> `rus+eng`."""
    return "+".join(language.tesseract for language in split(language))


class TesseractEngine:
    """PaddleOCR detection + Tesseract line recognition. Not thread-safe: one per worker."""

    def __init__(self, profile: Profile, model_dir: Path, tessdata: Path | None) -> None:
        from paddleocr import TextDetection  # heavy imports: only in worker processes

        tessdata = find_tessdata(tessdata)
        if tessdata is None:
            raise FileNotFoundError("no Tesseract language data; run scripts/setup")
        self._tessdata = tessdata
        det_options = {k.removeprefix("text_det_"): v for k, v in profile.det_options.items()}
        self._detector = TextDetection(
            model_name=profile.det_model,
            model_dir=str(profile.model_dirs(model_dir)[0]),
            engine="onnxruntime",
            engine_config=dict(ONNX_ENGINE_CONFIG),
            device="cpu",
            limit_side_len=DET_LIMIT_SIDE_LEN,
            limit_type="max",
            **det_options,
        )
        self._apis: OrderedDict[str, Any] = OrderedDict()

    def recognize(self, image: Image, language: str) -> list[RecognizedLine]:
        bgr, pad = bgr_for_detection(image)
        found = next(iter(self._detector.predict(bgr)), None)
        if found is None:
            return []
        api = self._api(tesseract_languages(language))
        height, width = image.shape[:2]
        lines: list[RecognizedLine] = []
        for quad in found["dt_polys"]:
            corners = np.asarray(quad, dtype=np.float32) - pad
            line = self._read_line(api, image, corners)
            if line is not None:
                lines.append(_clip(line, width, height))
        return lines

    def _api(self, languages: str) -> Any:
        """A Tesseract handle for these languages, kept for the next page (LRU)."""
        if languages in self._apis:
            self._apis.move_to_end(languages)
            return self._apis[languages]
        import tesserocr

        api = tesserocr.PyTessBaseAPI(path=f"{self._tessdata}/", lang=languages)
        self._apis[languages] = api
        while len(self._apis) > MAX_APIS:
            self._apis.popitem(last=False)[1].End()
        return api

    def _read_line(
        self, api: Any, image: Image, corners: npt.NDArray[np.float32]
    ) -> RecognizedLine | None:
        from PIL import Image as PilImage

        pieces: list[_Piece] = []
        for psm, line_height, margin in _ATTEMPTS:
            crop, to_page = _line_crop(image, corners, line_height, margin)
            api.SetPageSegMode(psm)
            api.SetImage(PilImage.fromarray(crop))
            api.Recognize()
            pieces = list(_pieces(api))
            if pieces:
                break
        if not pieces:
            return None
        # The line's own text, not the pieces joined: Tesseract knows where its scripts put
        # spaces (none between Thai or Chinese words) and orders right-to-left words.
        text = " ".join(api.GetUTF8Text().split())
        words = tuple(_word(piece, to_page) for piece in _group_by_spaces(pieces, text))
        weights = [len(piece.text) for piece in pieces]
        confidence = float(np.average([piece.confidence for piece in pieces], weights=weights))
        polygon: Polygon = tuple((float(x), float(y)) for x, y in corners)
        return RecognizedLine(text, confidence, polygon, words)


def _line_crop(
    image: Image, corners: npt.NDArray[np.float32], line_height: int, margin_share: float
) -> tuple[Image, npt.NDArray[np.float64]]:
    """The line straightened into a rectangle with a white margin, scaled so Tesseract sees
    it at a readable size, and the transform from crop pixels back to page pixels."""
    import cv2

    top = float(np.linalg.norm(corners[1] - corners[0]))
    left = float(np.linalg.norm(corners[3] - corners[0]))
    scale = min(max(line_height / max(left, 1.0), SCALE_LIMITS[0]), SCALE_LIMITS[1])
    width, height = max(1, round(top * scale)), max(1, round(left * scale))
    margin = max(4, round(margin_share * height))
    rectangle = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    # Warp the line alone, then add white around it: warping the margin too would bring
    # the neighbouring lines' ascenders and descenders in, which Tesseract reads as marks.
    to_line = cv2.getPerspectiveTransform(corners, rectangle)
    to_crop = cv2.getPerspectiveTransform(corners, rectangle + np.float32(margin))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    line = cv2.warpPerspective(
        image, to_line, (width, height), flags=interpolation, borderMode=cv2.BORDER_REPLICATE
    )
    crop = cv2.copyMakeBorder(
        line, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=(255, 255, 255)
    )
    return np.asarray(crop, dtype=np.uint8), np.linalg.inv(to_crop).astype(np.float64)


@dataclass(frozen=True)
class _Piece:
    """A word as Tesseract segments it, its box in crop pixels (x0, y0, x1, y1)."""

    text: str
    confidence: float
    box: tuple[int, int, int, int]


def _pieces(api: Any) -> Iterable[_Piece]:
    """Tesseract's words of the line just recognised, in reading order."""
    from tesserocr import RIL, iterate_level

    iterator = api.GetIterator()
    if iterator is None:
        return
    for word in iterate_level(iterator, RIL.WORD):
        try:
            text = word.GetUTF8Text(RIL.WORD).strip()
        except RuntimeError:  # tesserocr's way of saying "no text here"
            continue
        box = word.BoundingBox(RIL.WORD)
        if text and box is not None:
            yield _Piece(text, float(word.Confidence(RIL.WORD)) / 100.0, tuple(box))


def _group_by_spaces(pieces: list[_Piece], text: str) -> list[_Piece]:
    """Tesseract's pieces as the line's space-separated words, each with the line's spelling.

    Tesseract cuts Korean and Chinese into syllables or characters, where a reader (and hOCR,
    search) wants the words between spaces; and it spells a right-to-left word's piece in
    visual order while the line's text is in logical order. So pieces are gathered until
    they hold the same characters as the next word of the line, in any order. The pieces as
    they are when they do not add up to the line's words."""
    grouped: list[_Piece] = []
    queue = iter(pieces)
    for token in text.split():
        parts: list[_Piece] = []
        held = ""
        while sorted(held) != sorted(token):
            part = next(queue, None)
            if part is None or len(held) + len(part.text) > len(token):
                return pieces
            parts.append(part)
            held += part.text
        weights = [len(p.text) for p in parts]
        grouped.append(
            _Piece(
                token,
                float(np.average([p.confidence for p in parts], weights=weights)),
                (
                    min(p.box[0] for p in parts),
                    min(p.box[1] for p in parts),
                    max(p.box[2] for p in parts),
                    max(p.box[3] for p in parts),
                ),
            )
        )
    return grouped if next(queue, None) is None else pieces


def _word(piece: _Piece, to_page: npt.NDArray[np.float64]) -> RecognizedWord:
    """A piece with its box mapped from the crop back onto the page."""
    x0, y0, x1, y1 = piece.box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], dtype=float)
    mapped = corners @ to_page.T
    points = mapped[:, :2] / mapped[:, 2:3]
    polygon = tuple((float(x), float(y)) for x, y in points)
    return RecognizedWord(piece.text, piece.confidence, polygon)


def _clip(line: RecognizedLine, width: int, height: int) -> RecognizedLine:
    def inside(polygon: Polygon) -> Polygon:
        return tuple((min(max(x, 0.0), width), min(max(y, 0.0), height)) for x, y in polygon)

    words = tuple(RecognizedWord(w.text, w.confidence, inside(w.polygon)) for w in line.words)
    return RecognizedLine(line.text, line.confidence, inside(line.polygon), words)
