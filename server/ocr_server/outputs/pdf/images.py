"""An image document as PDF pages, without re-encoding where the format allows.

img2pdf embeds JPEG and JPEG 2000 data as they are, PNG data without decoding it, and
CCITT-compressed TIFF pages as they are; it turns an EXIF orientation into the page's
/Rotate. What it refuses (an alpha channel, a mirrored EXIF orientation, some TIFF and GIF
layouts) is flattened onto white as the worker does before recognition and embedded as a
lossless PNG. Each page's size follows its resolution: `resolution(n)` for page n.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import img2pdf
import pikepdf
from PIL import Image, ImageOps

POINTS_PER_INCH = 72.0

Resolution = Callable[[int], tuple[float, float]]


def image_pdf(path: Path, resolution: Resolution) -> pikepdf.Pdf:
    """One page per image frame, in order."""
    try:
        data = img2pdf.convert(
            str(path), layout_fun=_layout(resolution), rotation=img2pdf.Rotation.ifvalid
        )
    except Exception:  # img2pdf refuses this image's layout: flatten it losslessly
        frames = list(_flattened_frames(path))
        data = img2pdf.convert(frames, layout_fun=_layout(resolution))
    return pikepdf.open(io.BytesIO(data))


def _layout(resolution: Resolution) -> Callable[..., tuple[float, float, float, float]]:
    """img2pdf's layout function: called once per frame, in order."""
    pages = itertools.count(1)

    def layout(width_px: int, height_px: int, _ndpi: object) -> tuple[float, float, float, float]:
        x_dpi, y_dpi = resolution(next(pages))
        width = width_px * POINTS_PER_INCH / x_dpi
        height = height_px * POINTS_PER_INCH / y_dpi
        return width, height, width, height

    return layout


def _flattened_frames(path: Path) -> Iterator[bytes]:
    with Image.open(path) as image:
        for frame in range(getattr(image, "n_frames", 1)):
            image.seek(frame)
            upright = ImageOps.exif_transpose(image) or image
            out = io.BytesIO()
            _flatten(upright).save(out, format="PNG")
            yield out.getvalue()


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode in ("1", "L", "RGB"):
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.point(lambda v: v / 256).convert("L")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
