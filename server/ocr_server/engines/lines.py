"""Detection, line crops and recognition with the pipeline's own models, called directly.

PaddleX's OCR pipeline wraps each step in generic machinery that a worker reading one page
at a time does not need: the page is copied to BGR for it, every line goes through image
readers, a batch sampler and a result object of its own, and each line is cut out with a
perspective warp even when its box is upright. Called directly, the steps are PaddleX's own
wherever they decide anything (the detector's resize and DB post-processing, the order of the
boxes, the crop of a turned box, the recogniser's resize, the CTC decoder), while the pixels
are normalised through look-up tables straight from the RGB page (the channel swap included)
and an upright box is sliced out of the page where PaddleX's warp would copy exactly those
pixels. It reads exactly what the pipeline reads (tests/test_engine_lines.py: every page of
the nine bench sets came out the same), for 8-12% less CPU per 200-dpi manual page, the
changes that came with it included (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from ocr_server.engines.base import Image

# PaddleX's crop turns a line crop this much taller than wide a quarter turn (words.py follows).
VERTICAL_ASPECT = 1.5
# A rotated-rectangle corner this close to its upright neighbour's coordinate counts as upright
# (OpenCV's corner arithmetic leaves a few ten-thousandths of a pixel).
UPRIGHT_TOLERANCE = 0.01


@dataclass(frozen=True)
class LineReading:
    """One detected line: its box on the image (4 corners, clockwise from top-left), its text
    (a words.DecodedText when the decoder says where each character is) and confidence."""

    polygon: npt.NDArray[np.int16]
    text: str
    confidence: float


class DirectPipeline:
    """A PaddleX OCR pipeline's detector and recogniser, run one page at a time on RGB input.

    `supports(pipeline)` says whether the pipeline is one this knows how to call (the
    pre-processing of the PP-OCR detection and recognition models PaddleX builds); the
    engine falls back to the pipeline itself for anything else."""

    def __init__(self, pipeline: Any) -> None:
        det, rec = pipeline.text_det_model, pipeline.text_rec_model
        self._det_resize = det.pre_tfs["Resize"]
        self._det_runner = det.runner
        self._det_post = det.post_op
        self._det_params = {
            "thresh": pipeline.text_det_thresh,
            "box_thresh": pipeline.text_det_box_thresh,
            "unclip_ratio": pipeline.text_det_unclip_ratio,
        }
        # The models read channels in the order their reader gives them: BGR (OpenCV) for
        # the PP-OCR models; our pages are RGB.
        self._det_channels = _channel_order(det.pre_tfs["Read"].format)
        self._det_lut = _detector_lut(det.pre_tfs["Normalize"])
        self._sort = pipeline._sort_boxes
        self._rotated_crop = pipeline._crop_by_polys.get_minarea_rect_crop
        resize = rec.pre_tfs["ReisizeNorm"]
        _, self._rec_height, self._rec_min_width = resize.rec_image_shape
        self._rec_max_width = int(resize.max_imgW)
        self._rec_channels = _channel_order(rec.pre_tfs["Read"].format)
        self._rec_runner = rec.runner
        self._decode = rec.post_op
        self._score_threshold = float(pipeline.text_rec_score_thresh or 0.0)

    @staticmethod
    def supports(pipeline: Any) -> bool:
        det = getattr(pipeline, "text_det_model", None)
        rec = getattr(pipeline, "text_rec_model", None)
        if det is None or rec is None or getattr(pipeline, "text_type", None) != "general":
            return False
        det_steps = getattr(det, "pre_tfs", {})
        rec_steps = getattr(rec, "pre_tfs", {})
        resize = rec_steps.get("ReisizeNorm")
        return (
            list(det_steps) == ["Read", "Resize", "Normalize", "ToCHW", "ToBatch"]
            and list(rec_steps) == ["Read", "ReisizeNorm", "ToBatch"]
            and type(det_steps["Resize"]).__name__ == "DetResizeForTest"
            and type(det_steps["Normalize"]).__name__ == "NormalizeImage"
            and getattr(det_steps["Read"], "format", None) in ("BGR", "RGB")
            and getattr(rec_steps["Read"], "format", None) in ("BGR", "RGB")
            and resize is not None
            and getattr(resize, "input_shape", None) is None
            and len(getattr(resize, "rec_image_shape", ())) == 3
        )

    def read(self, page: Image, side_limit: int, max_side_limit: int) -> list[LineReading]:
        """Every line on an RGB page, in PaddleX's box order (top to bottom, then left to
        right within 10 px); lines the recogniser scores below the pipeline's threshold, or
        whose crop is empty, are left out."""
        polygons = self._detect(page, side_limit, max_side_limit)
        if len(polygons) == 0:
            return []
        lines = []
        for polygon in self._sort(list(polygons)):
            crop = self._crop(page, polygon)
            if crop.size == 0:
                continue
            text, confidence = self._recognise(crop)
            if confidence >= self._score_threshold:
                lines.append(LineReading(polygon, text, confidence))
        return lines

    def _detect(self, page: Image, side_limit: int, max_side_limit: int) -> Any:
        """The detector's boxes on the page: PaddleX's resize and DB post-processing around
        the model, the page normalised through look-up tables. (Detecting on only the
        window of the page that holds ink saved 3% of a page's CPU but moved boxes by a
        pixel or two: pdf200 CER 5.88 -> 5.89%, docs/benchmarks.md.)"""
        resized, shapes = self._det_resize(
            imgs=[page], limit_side_len=side_limit, limit_type="max", max_side_limit=max_side_limit
        )
        image = resized[0]
        x = np.empty((1, 3, *image.shape[:2]), dtype=np.float32)
        for channel, source in enumerate(self._det_channels):
            np.take(self._det_lut[channel], image[:, :, source], out=x[0, channel])
        polygons, _scores = self._det_post(self._det_runner(x=[x]), shapes, **self._det_params)
        return polygons[0]

    def _crop(self, page: Image, polygon: npt.NDArray[Any]) -> Image:
        """The line upright: a slice of the page when its box is upright, else PaddleX's
        perspective warp of the rotated rectangle (with its quarter turn of tall crops)."""
        box = _upright_box(polygon)
        if box is None:
            crop: Image = self._rotated_crop(page, np.asarray(polygon))
            return crop
        top, bottom, left, right = box
        crop = page[top:bottom, left:right]
        if crop.shape[1] and crop.shape[0] / crop.shape[1] >= VERTICAL_ASPECT:
            crop = np.rot90(crop)
        return crop

    def _recognise(self, crop: Image) -> tuple[str, float]:
        """PaddleX's recogniser input for one line (scaled to the model's height, padded on
        the right to at least its minimum width), the model, the decoder."""
        height, width = crop.shape[:2]
        ratio = width / float(height)
        widest = max(self._rec_min_width / self._rec_height, ratio)
        padded_width = int(self._rec_height * widest)
        if padded_width > self._rec_max_width:
            padded_width = text_width = self._rec_max_width
        else:
            text_width = min(math.ceil(self._rec_height * ratio), padded_width)
        resized = np.asarray(cv2.resize(crop, (text_width, self._rec_height)), dtype=np.uint8)
        x = np.empty((1, 3, self._rec_height, padded_width), dtype=np.float32)
        x[0, :, :, text_width:] = 0.0
        for channel, source in enumerate(self._rec_channels):
            np.take(_REC_LUT, resized[:, :, source], out=x[0, channel, :, :text_width])
        texts, scores = self._decode(
            self._rec_runner(x=[x]),
            return_word_box=False,
            wh_ratio_list=[ratio],
            max_wh_ratio=widest,
        )
        return texts[0], float(scores[0])


def _upright_box(polygon: npt.NDArray[Any]) -> tuple[int, int, int, int] | None:
    """Top, bottom, left and right of a box whose crop by PaddleX's perspective warp is an
    exact copy of those pixels: its minimum-area rectangle is upright (within
    UPRIGHT_TOLERANCE) and the crop's size, which PaddleX truncates from the rectangle's
    edge lengths, is the rectangle's own. None otherwise (turned, or an edge a few
    ten-thousandths of a pixel short, which the warp squeezes the line into one pixel
    fewer): such a box is warped as PaddleX warps it."""
    corners = cv2.boxPoints(cv2.minAreaRect(np.asarray(polygon).astype(np.int32)))
    xs, ys = corners[:, 0], corners[:, 1]
    left, right, top, bottom = xs.min(), xs.max(), ys.min(), ys.max()
    near = np.minimum(np.abs(xs - left), np.abs(xs - right)) < UPRIGHT_TOLERANCE
    if not (
        near.all() and (np.minimum(np.abs(ys - top), np.abs(ys - bottom)) < UPRIGHT_TOLERANCE).all()
    ):
        return None
    box = round(top), round(bottom), round(left), round(right)
    if _warp_size(corners) != (box[3] - box[2], box[1] - box[0]):
        return None
    return box


def _warp_size(corners: npt.NDArray[Any]) -> tuple[int, int]:
    """The width and height of PaddleX's crop of a minimum-area rectangle (its
    get_minarea_rect_crop and get_rotate_crop_image, in their float32 arithmetic)."""
    points = sorted(corners, key=lambda point: point[0])
    a, d = (0, 1) if points[1][1] > points[0][1] else (1, 0)
    b, c = (2, 3) if points[3][1] > points[2][1] else (3, 2)
    p0, p1, p2, p3 = points[a], points[b], points[c], points[d]
    width = int(max(np.linalg.norm(p0 - p1), np.linalg.norm(p2 - p3)))
    height = int(max(np.linalg.norm(p0 - p3), np.linalg.norm(p1 - p2)))
    return width, height


def _channel_order(model_format: str) -> list[int]:
    """Which RGB page channel feeds each of the model's channels."""
    return [2, 1, 0] if model_format == "BGR" else [0, 1, 2]


def _detector_lut(normalize: Any) -> npt.NDArray[np.float32]:
    """NormalizeImage as a table per channel: byte value -> value * alpha + beta, computed
    in float32 as NormalizeImage computes it."""
    values = np.arange(256, dtype=np.float32)
    return np.stack(
        [
            values * np.float32(a) + np.float32(b)
            for a, b in zip(normalize.alpha, normalize.beta, strict=True)
        ]
    )


def _recogniser_lut() -> npt.NDArray[np.float32]:
    """The recogniser's normalisation, (value / 255 - 0.5) / 0.5 in float32, as a table."""
    values = np.arange(256, dtype=np.float32) / np.float32(255)
    values -= 0.5
    values /= 0.5
    return values


_REC_LUT = _recogniser_lut()
