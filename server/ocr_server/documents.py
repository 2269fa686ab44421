"""Documents: detect the type from the bytes, triage at submission, load one page in a worker.

Submission does only cheap structural checks (signature, header, dimensions, page count,
encryption) so Submit stays fast; a worker decodes the page for real, and a page that turns out
to be damaged fails its task with INVALID_ARGUMENT. Pixel and page limits are enforced before
any pixel is decoded, which is what stops decompression bombs.
"""

from __future__ import annotations

import contextlib
import io
import math
import mmap
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import numpy as np
from PIL import ExifTags, Image, ImageOps, TiffImagePlugin, UnidentifiedImageError

from ocr_server.engines.base import Image as PageImage
from ocr_server.errors import InvalidDocumentError, InvalidSettingsError
from ocr_server.pdfinfo import read_pdf_info
from ocr_server.tiff import TiffStructureError, read_pages

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PIL_FORMATS = {
    "png": "PNG",
    "jpeg": "JPEG",
    "bmp": "BMP",
    "tiff": "TIFF",
    "gif": "GIF",
    "webp": "WEBP",
}
MIN_DPI, MAX_DPI, DEFAULT_DPI = 72, 600, 200
# A PDF page is rasterised whole (its MediaBox, as pdftoppm does by default), not just the
# CropBox a viewer shows; the searchable PDF maps recognised pixels back onto the same box.
RASTERISE_CROPBOX = False
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
    page_sizes: dict[int, tuple[float, float]] = field(default_factory=dict)  # PDF, in points


def detect_type(data: bytes) -> str:
    """Return the document type from its signature; the file name is never trusted."""
    if not data:
        raise InvalidDocumentError("the document is empty (content has 0 bytes)")
    head = data[:16]
    if head.startswith(_PNG_SIGNATURE):
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


Content = bytes | mmap.mmap
"""A document in memory, or memory-mapped from the document store (a streamed upload is
never read into memory whole)."""


def _reader(data: Content) -> IO[bytes]:
    """A file object over the document for Pillow, without copying a mapped one (an mmap has
    read, seek and tell, all Pillow asks of a file)."""
    if isinstance(data, mmap.mmap):
        data.seek(0)
        return cast(IO[bytes], data)
    return io.BytesIO(data)


def inspect_image(data: Content, document_type: str, limits: DocumentLimits) -> DocumentInfo:
    """Read an image's header (not its pixels) and check it against the limits."""
    if document_type == "tiff":
        return _inspect_tiff(data, limits)
    what = f"the {document_type.upper()} image is damaged"
    with _decoder_errors(what), _open_image(_reader(data), document_type) as image:
        _check_pixels(image.size, limits, "image")
    if document_type == "png":
        _check_png_chunks(data)
    tail = data if isinstance(data, bytes) else data[-65536:]
    if document_type == "jpeg" and not tail.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise InvalidDocumentError("the JPEG is truncated (no end-of-image marker)")
    if document_type == "bmp":
        _check_bmp_length(data)
    return DocumentInfo(document_type, 1)


_PNG_CHUNK_TYPE = re.compile(rb"\w{4}")  # what Pillow's PNG reader accepts as a chunk type


def _check_png_chunks(data: Content) -> None:
    """Every chunk's CRC up to the end marker, as Pillow's `verify()` checks them, without
    decoding pixels. Walked here over the buffer itself: Pillow's reads copy each chunk in
    Python (0.35 ms of a 370 kB page's Submit, against 0.1 ms here)."""
    with memoryview(data) as view:
        offset, end = len(_PNG_SIGNATURE), len(view)
        while True:
            if offset + 8 > end:
                raise InvalidDocumentError("the PNG image is damaged: truncated PNG file")
            (length,) = struct.unpack_from(">I", view, offset)
            kind = bytes(view[offset + 4 : offset + 8])
            if not _PNG_CHUNK_TYPE.fullmatch(kind):
                raise InvalidDocumentError(f"the PNG image is damaged: broken chunk {kind!r}")
            if kind == b"IEND":  # the end marker itself is not checked, as in Pillow
                return
            stop = offset + 8 + length
            if stop + 4 > end:
                raise InvalidDocumentError(
                    f"the PNG image is damaged: truncated PNG file (in its {kind!r} chunk)"
                )
            if zlib.crc32(view[offset + 4 : stop]) != struct.unpack_from(">I", view, stop)[0]:
                raise InvalidDocumentError(
                    f"the PNG image is damaged: bad checksum in its {kind!r} chunk"
                )
            offset = stop + 4


def _check_bmp_length(data: Content) -> None:
    """An uncompressed BMP's pixel rows have a known length: a shorter file was cut short."""
    if len(data) < 34 or struct.unpack_from("<I", data, 14)[0] < 40:
        return  # old OS/2 header: Pillow's decoder is the check
    offset = struct.unpack_from("<I", data, 10)[0]
    width, height, _, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    if compression in (0, 3):  # BI_RGB, BI_BITFIELDS
        needed = offset + (abs(width) * bits + 31) // 32 * 4 * abs(height)
        if len(data) < needed:
            raise InvalidDocumentError(
                f"the BMP is truncated: its pixels need {needed:,} bytes but the file has "
                f"{len(data):,}"
            )


def _inspect_tiff(data: Content, limits: DocumentLimits) -> DocumentInfo:
    """Every page's size and data extent from the directories; the count stops past the limit."""
    try:
        pages = read_pages(data, limits.max_pages)
    except TiffStructureError as exc:
        raise InvalidDocumentError(f"the TIFF is damaged: {exc}") from exc
    if len(pages) > limits.max_pages:
        raise InvalidDocumentError(
            f"the TIFF has more than {limits.max_pages} pages; this server accepts at most "
            f"{limits.max_pages} (split it)"
        )
    for number, page in enumerate(pages, start=1):
        _check_pixels((page.width, page.height), limits, f"TIFF page {number}")
        if page.compression not in TiffImagePlugin.COMPRESSION_INFO:
            raise InvalidDocumentError(
                f"TIFF page {number} uses compression code {page.compression}, which this "
                "server cannot decode (use none, LZW, Deflate, PackBits, JPEG or CCITT G3/G4)"
            )
        if page.data_end > len(data):
            raise InvalidDocumentError(
                f"the TIFF is truncated: page {number}'s image data ends at byte "
                f"{page.data_end:,} but the file has {len(data):,} bytes"
            )
    with _decoder_errors("the TIFF is damaged"), _open_image(_reader(data), "tiff"):
        pass  # Pillow reads the first directory: compression and layout it can decode
    return DocumentInfo("tiff", len(pages))


def inspect_pdf(path: Path, limits: DocumentLimits) -> DocumentInfo:
    """Count a PDF's pages with poppler, refusing password-protected and page-less ones."""
    info = read_pdf_info(path, 1, limits.max_pages + 1)
    if info.page_count > limits.max_pages:
        raise InvalidDocumentError(
            f"the PDF has {info.page_count} pages; this server accepts at most "
            f"{limits.max_pages} (split it)"
        )
    # An encrypted PDF that opens without a password (only the owner's permissions are set)
    # is rendered by poppler as by any viewer, so it is accepted; one that needs a password
    # was refused by read_pdf_info.
    return DocumentInfo("pdf", info.page_count, info.page_sizes)


def check_page_sizes(
    info: DocumentInfo, pages: list[int], dpi: int, limits: DocumentLimits
) -> None:
    """Refuse a selected PDF page that would rasterise to more pixels than the limit."""
    for number in pages:
        if number in info.page_sizes:
            _check_pixels(
                _pixels_at(info.page_sizes[number], dpi), limits, f"PDF page {number} at {dpi} dpi"
            )


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
    what = f"page {page_number} of the {document_type.upper()} cannot be decoded"
    with _decoder_errors(what), _open_image(path, document_type) as image:
        if page_number > 1:
            image.seek(page_number - 1)
        _check_pixels(image.size, limits, f"page {page_number}")  # this frame's own size
        return _to_rgb_array(_upright(image))


# A resolution an image file states outside this range (a 1-dpi placeholder, a corrupt
# header) is not believed: the page is sized at DEFAULT_DPI instead.
FILE_DPI_RANGE = (50.0, 2400.0)
_QUARTER_TURN_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def page_resolution(
    path: Path, document_type: str, page_number: int, dpi: int
) -> tuple[float, float]:
    """A page's resolution across and down, as the worker's upright image has it: a PDF's
    rasterising dpi; for an image, the request's dpi, else the file's own, else DEFAULT_DPI
    (the searchable PDF sizes the page by it)."""
    if document_type == "pdf" or dpi:
        resolution = float(dpi or DEFAULT_DPI)
        return resolution, resolution
    try:
        with _open_image(path, document_type) as image:
            if page_number > 1:
                image.seek(page_number - 1)
            stated = image.info.get("dpi")
            orientation = image.getexif().get(0x0112, 1)
    except Exception:  # the page decoded for recognition: a header quirk here only loses dpi
        return float(DEFAULT_DPI), float(DEFAULT_DPI)
    low, high = FILE_DPI_RANGE
    try:
        x_dpi, y_dpi = (float(v) for v in stated or ())
    except (TypeError, ValueError):
        return float(DEFAULT_DPI), float(DEFAULT_DPI)
    if not (low <= x_dpi <= high and low <= y_dpi <= high):
        return float(DEFAULT_DPI), float(DEFAULT_DPI)
    if orientation in _QUARTER_TURN_ORIENTATIONS:
        return y_dpi, x_dpi
    return x_dpi, y_dpi


def _rasterise_pdf_page(
    path: Path, page_number: int, dpi: int, limits: DocumentLimits
) -> PageImage:
    from pdf2image import convert_from_path

    size = read_pdf_info(path, page_number, page_number).page_sizes.get(page_number)
    if size is not None:
        _check_pixels(_pixels_at(size, dpi), limits, f"PDF page {page_number} at {dpi} dpi")
    with _decoder_errors(f"page {page_number} of the PDF cannot be rendered"):
        images = convert_from_path(
            str(path),
            dpi=dpi,
            first_page=page_number,
            last_page=page_number,
            timeout=120,
            use_cropbox=RASTERISE_CROPBOX,
        )
        if not images:
            raise InvalidDocumentError(f"page {page_number} of the PDF rendered to nothing")
        return _to_rgb_array(images[0])


def _pixels_at(size_points: tuple[float, float], dpi: int) -> tuple[int, int]:
    scale = dpi / PDF_POINTS_PER_INCH
    return math.ceil(size_points[0] * scale), math.ceil(size_points[1] * scale)


@contextlib.contextmanager
def _decoder_errors(what: str) -> Iterator[None]:
    """Whatever a decoder raises on untrusted bytes (OSError, SyntaxError, but also TypeError,
    struct.error, IndexError, MemoryError, ...) means the document is damaged."""
    try:
        yield
    except InvalidDocumentError:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidDocumentError(f"{what}: its header cannot be read") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidDocumentError(f"{what}: {_first_line(str(exc)) or 'unreadable'}") from exc
    except Exception as exc:  # e.g. Pillow's KeyError for an unknown TIFF compression code
        raise InvalidDocumentError(f"{what}: {type(exc).__name__} {_first_line(str(exc))}") from exc


def _open_image(source: Path | IO[bytes], document_type: str) -> Image.Image:
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


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF (or XMP) orientation says. Without one to apply it is
    the image itself: `exif_transpose` would copy the page (6 ms of a 200-dpi page's CPU)."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) not in _TURNING_ORIENTATIONS:
        return image
    return ImageOps.exif_transpose(image)


_TURNING_ORIENTATIONS = frozenset(range(2, 9))


def _to_rgb_array(image: Image.Image) -> PageImage:
    """Flatten any mode (CMYK, 16-bit, palette with alpha, ...) to 8-bit RGB on white (an
    RGB image straight to its array: converting it first would copy the page again)."""
    if image.mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
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
    return text.strip().splitlines()[0][:300] if text.strip() else ""
