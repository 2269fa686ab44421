"""An image document as PDF pages, without re-encoding where the format allows.

img2pdf embeds JPEG and JPEG 2000 data as they are, PNG data without decoding it, and
CCITT-compressed TIFF pages as they are, an alpha channel as a soft mask; it turns an EXIF
orientation into the page's /Rotate. What it refuses (a mirrored EXIF orientation, a palette
with transparency, some TIFF layouts) is flattened onto white as the worker does before
recognition and embedded as a lossless PNG. Each page's size follows its resolution:
`resolution(n, width, height)` for page n, whose image img2pdf sees `width` x `height` pixels.
"""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import img2pdf
import pikepdf
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

POINTS_PER_INCH = 72.0

Resolution = Callable[[int, int, int], tuple[float, float]]


def image_pdf(path: Path, resolution: Resolution, shown: dict[int, tuple[int, int]]) -> pikepdf.Pdf:
    """One page per image frame, in order. `shown` holds the recognised pages' upright sizes
    in pixels: a page that img2pdf would turn otherwise (an EXIF orientation it reads
    differently from Pillow) makes the whole document flattened instead, so that the text
    layer always matches what was recognised."""
    try:
        data = img2pdf.convert(str(path), layout_fun=_layout(resolution), rotation=_rotation(path))
        pdf = pikepdf.open(io.BytesIO(data))
        if _upright_as_recognised(pdf, shown):
            return pdf
        pdf.close()
    except Exception as exc:  # img2pdf refuses this image (alpha, mirrored EXIF, ...)
        log.info("%s: embedding flattened pages (%s)", path.name, exc)
    frames = list(_flattened_frames(path))
    return pikepdf.open(io.BytesIO(img2pdf.convert(frames, layout_fun=_layout(resolution))))


def _rotation(path: Path) -> object:
    """img2pdf reads a PNG's EXIF by decoding every pixel (half the PDF's cost): a PNG whose
    header carries no EXIF is not turned."""
    with Image.open(path) as image:
        if image.format == "PNG" and "exif" not in image.info:
            return img2pdf.Rotation.none
    return img2pdf.Rotation.ifvalid


def _upright_as_recognised(pdf: pikepdf.Pdf, shown: dict[int, tuple[int, int]]) -> bool:
    for number, (width, height) in shown.items():
        if number > len(pdf.pages) or width == height:
            continue
        page = pdf.pages[number - 1]
        box = page.mediabox
        page_w, page_h = float(box[2]) - float(box[0]), float(box[3]) - float(box[1])
        if int(page.obj.get(pikepdf.Name.Rotate, 0)) % 180:
            page_w, page_h = page_h, page_w
        if (page_w > page_h) != (width > height):
            return False
    return True


def _layout(resolution: Resolution) -> Callable[..., tuple[float, float, float, float]]:
    """img2pdf's layout function: called once per frame, in order."""
    pages = itertools.count(1)

    def layout(width_px: int, height_px: int, _ndpi: object) -> tuple[float, float, float, float]:
        x_dpi, y_dpi = resolution(next(pages), width_px, height_px)
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
