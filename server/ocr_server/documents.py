"""Documents: detect the type from the bytes, triage at submission, load one page in a worker.

Submission does only cheap structural checks (signature, header, dimensions, page count,
encryption) so Submit stays fast; a worker decodes the page for real, and a page that turns out
to be damaged fails its task with INVALID_ARGUMENT. Pixel and page limits are enforced before
any pixel is decoded, which is what stops decompression bombs.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ocr_server.engines.base import Image as PageImage
from ocr_server.errors import InvalidDocumentError, InvalidSettingsError

PIL_FORMATS = {
    "png": "PNG",
    "jpeg": "JPEG",
    "bmp": "BMP",
    "tiff": "TIFF",
    "gif": "GIF",
    "webp": "WEBP",
}
MIN_DPI, MAX_DPI, DEFAULT_DPI = 72, 600, 200
PDF_POINTS_PER_INCH = 72.0

# PIL's own bomb check raises on open with a message that names no dimensions; ours
# (DocumentLimits) reads the size from the header and refuses before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class DocumentLimits:
    """Guards against decompression bombs and runaway documents."""

    max_pixels: int = 100_000_000
    max_pages: int = 2000


@dataclass(frozen=True)
class DocumentInfo:
    document_type: str
    page_count: int


def detect_type(data: bytes) -> str:
    """Return the document type from its signature; the file name is never trusted."""
    if not data:
        raise InvalidDocumentError("the document is empty (content has 0 bytes)")
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    if b"%PDF-" in data[:1024]:
        return "pdf"
    raise InvalidDocumentError(
        "unsupported or unrecognised document type (first bytes "
        f"{data[:8].hex(' ')}); send PNG, JPEG, BMP, TIFF, GIF, WEBP or PDF"
    )


def inspect_image(data: bytes, document_type: str, limits: DocumentLimits) -> DocumentInfo:
    """Read an image's header (not its pixels) and check it against the limits."""
    try:
        with _open_image(io.BytesIO(data), document_type) as image:
            _check_pixels(image.size, limits, "image")
            frames = getattr(image, "n_frames", 1) if document_type == "tiff" else 1
            if frames > limits.max_pages:
                raise InvalidDocumentError(
                    f"the TIFF has {frames} pages; this server accepts at most {limits.max_pages}"
                )
        if document_type == "png":
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                image.verify()  # chunk CRCs and the end marker, without decoding pixels
        if document_type == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            raise InvalidDocumentError("the JPEG is truncated (no end-of-image marker)")
    except InvalidDocumentError:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, EOFError) as exc:
        raise InvalidDocumentError(f"the {document_type.upper()} image is damaged: {exc}") from exc
    return DocumentInfo(document_type, frames)


def inspect_pdf(path: Path, limits: DocumentLimits) -> DocumentInfo:
    """Count a PDF's pages with poppler, refusing encrypted and page-less documents."""
    from pdf2image import pdfinfo_from_path
    from pdf2image.exceptions import PDFPageCountError

    try:
        info = pdfinfo_from_path(str(path), timeout=30)
    except PDFPageCountError as exc:
        text = str(exc)
        if "password" in text.lower() or "encrypt" in text.lower():
            raise InvalidDocumentError(
                "the PDF is encrypted; remove the password and submit it again"
            ) from exc
        raise InvalidDocumentError(f"the PDF is damaged: {_first_line(text)}") from exc
    if str(info.get("Encrypted", "no")).startswith("yes"):
        raise InvalidDocumentError("the PDF is encrypted; remove the password and submit it again")
    pages = int(info.get("Pages", 0) or 0)
    if pages < 1:
        raise InvalidDocumentError("the PDF has no pages")
    if pages > limits.max_pages:
        raise InvalidDocumentError(
            f"the PDF has {pages} pages; this server accepts at most {limits.max_pages} "
            "(split it, or choose pages with settings.pages)"
        )
    return DocumentInfo("pdf", pages)


def parse_page_selection(spec: str, page_count: int) -> list[int]:
    """Turn "1-3,7,10-" into sorted 1-based page numbers, all within the document."""
    if not spec.strip():
        return list(range(1, page_count + 1))
    if len(spec) > 1000 or not re.fullmatch(r"[\d\s,\-]+", spec):
        raise InvalidSettingsError(
            f"settings.pages {spec[:40]!r} is not a page list like '1-3,7,10-'"
        )
    pages: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d*)\s*-\s*(\d*)|(\d+)", part)
        if not part or match is None:
            raise InvalidSettingsError(f"settings.pages has an empty or malformed part {part!r}")
        if match.group(3):
            first = last = int(match.group(3))
        else:
            first = int(match.group(1) or 1)
            last = int(match.group(2) or page_count)
        if first < 1 or last < first:
            raise InvalidSettingsError(f"settings.pages range {part!r} is empty or starts at 0")
        if last > page_count:
            raise InvalidSettingsError(
                f"settings.pages asks for page {last} but the document has {page_count}"
            )
        pages.update(range(first, last + 1))
    return sorted(pages)


def load_page(
    path: Path, document_type: str, page_number: int, dpi: int, limits: DocumentLimits
) -> PageImage:
    """Decode one page as an upright RGB array (in a worker; one page in memory at a time)."""
    if document_type == "pdf":
        return _rasterise_pdf_page(path, page_number, dpi, limits)
    try:
        with _open_image(path, document_type) as image:
            _check_pixels(image.size, limits, "image")
            if page_number > 1:
                image.seek(page_number - 1)
            return _to_rgb_array(ImageOps.exif_transpose(image) or image)
    except InvalidDocumentError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidDocumentError(
            f"page {page_number} of the {document_type.upper()} cannot be decoded: {exc}"
        ) from exc


def _rasterise_pdf_page(
    path: Path, page_number: int, dpi: int, limits: DocumentLimits
) -> PageImage:
    from pdf2image import convert_from_path, pdfinfo_from_path
    from pdf2image.exceptions import PDFPageCountError, PDFSyntaxError

    try:
        info = pdfinfo_from_path(str(path), first_page=page_number, last_page=page_number)
        width_pt, height_pt = _page_size_points(str(info.get("Page size", "")))
        if width_pt and height_pt:
            scale = dpi / PDF_POINTS_PER_INCH
            _check_pixels((int(width_pt * scale), int(height_pt * scale)), limits, "PDF page")
        images = convert_from_path(
            str(path), dpi=dpi, first_page=page_number, last_page=page_number, timeout=120
        )
    except (PDFPageCountError, PDFSyntaxError) as exc:
        raise InvalidDocumentError(
            f"page {page_number} of the PDF cannot be rendered: {_first_line(str(exc))}"
        ) from exc
    if not images:
        raise InvalidDocumentError(f"page {page_number} of the PDF rendered to nothing")
    return _to_rgb_array(images[0])


def _page_size_points(text: str) -> tuple[float, float]:
    match = re.match(r"\s*([\d.]+)\s*x\s*([\d.]+)", text)
    return (float(match.group(1)), float(match.group(2))) if match else (0.0, 0.0)


def _open_image(source: Path | io.BytesIO, document_type: str) -> Image.Image:
    return Image.open(source, formats=[PIL_FORMATS[document_type]])


def _check_pixels(size: tuple[int, int], limits: DocumentLimits, what: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise InvalidDocumentError(f"the {what} has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise InvalidDocumentError(
            f"the {what} is {width}x{height} = {width * height:,} pixels; this server accepts "
            f"at most {limits.max_pixels:,} per page (lower the dpi or scale the image down)"
        )


def _to_rgb_array(image: Image.Image) -> PageImage:
    """Flatten any mode (CMYK, 16-bit, palette with alpha, ...) to 8-bit RGB on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((wide >> 8).clip(0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
