"""Hostile and broken documents, built in memory (Pillow, zlib, hand-written PDF and TIFF).

Each builder is deterministic and fast (all together well under a second or two), so the
corpus needs no files in the repository. Documents that carry text are made from a SROIE
receipt (../shared/eval) so a test can check the text survives the odd encoding.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from tests.documents import RECEIPTS, encode, receipt, receipt_jpeg, receipts_document

# --- raw building blocks ---------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_from_rows(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG whose IDAT is the given filtered scanlines, compressed (any declared size)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows, 9))
        + png_chunk(b"IEND", b"")
    )


def pdf_document(
    pages: list[bytes | None], *, count: int | None = None, size: tuple[int, int] = (612, 792)
) -> bytes:
    """A minimal valid PDF: one page per entry (its content stream, or None for a blank page),
    US letter unless `size` (points) says otherwise. `count` overrides /Count (a lying tree)."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    box = f"/MediaBox [0 0 {size[0]} {size[1]}]"
    for content in pages:
        page_number = len(objects) + 1
        kids.append(f"{page_number} 0 R".encode())
        if content is None:
            objects.append(f"<< /Type /Page /Parent 2 0 R {box} >>".encode())
        else:
            objects.append(
                f"<< /Type /Page /Parent 2 0 R {box} /Contents {page_number + 1} 0 R >>".encode()
            )
            objects.append(
                f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream"
            )
    total = len(pages) if count is None else count
    objects[1] = b"<< /Type /Pages /Kids [" + b" ".join(kids) + f"] /Count {total} >>".encode()
    return assemble_pdf(objects)


def assemble_pdf(objects: list[bytes], trailer_extra: bytes = b"") -> bytes:
    """Number the objects from 1, write them with a correct xref table and trailer."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R ".encode()
        + trailer_extra
        + f">>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def tiff_many_pages(count: int) -> bytes:
    """A little-endian TIFF of `count` 1x1 white pages, one IFD each, written by hand (Pillow
    would take seconds for thousands of frames)."""
    entries = 8
    ifd_size = 2 + entries * 12 + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    pixel_offset = 8 + count * ifd_size
    for index in range(count):
        next_ifd = 8 + (index + 1) * ifd_size if index + 1 < count else 0
        tags = [
            (256, 4, 1, 1),  # width
            (257, 4, 1, 1),  # height
            (258, 3, 1, 8),  # bits per sample
            (259, 3, 1, 1),  # no compression
            (262, 3, 1, 1),  # black is zero
            (273, 4, 1, pixel_offset),  # strip offset
            (278, 4, 1, 1),  # rows per strip
            (279, 4, 1, 1),  # strip byte count
        ]
        out += struct.pack("<H", entries)
        for tag, kind, number, value in tags:
            out += struct.pack("<HHII", tag, kind, number, value)
        out += struct.pack("<I", next_ifd)
    out += b"\xff"
    return bytes(out)


TIFF_IFD_SIZE = 2 + 8 * 12 + 4
TIFF_ENTRIES = {256: 0, 257: 1, 258: 2, 259: 3}  # tag -> entry index in tiff_many_pages


def tiff_patched(pages: int, page: int, tag: int, value: int, *, new_tag: int = 0) -> bytes:
    """tiff_many_pages with one entry of one page changed: its value, or its tag number."""
    data = bytearray(tiff_many_pages(pages))
    entry = 8 + (page - 1) * TIFF_IFD_SIZE + 2 + TIFF_ENTRIES[tag] * 12
    if new_tag:
        data[entry : entry + 2] = new_tag.to_bytes(2, "little")
    else:
        data[entry + 8 : entry + 12] = value.to_bytes(4, "little")
    return bytes(data)


# --- text images ------------------------------------------------------------------------------


def text_image() -> Image.Image:
    """The first test receipt, upright, RGB (its ground truth is receipt_truth(RECEIPTS[0]))."""
    return receipt(RECEIPTS[0])


def cmyk_jpeg() -> bytes:
    return encode([text_image().convert("CMYK")], "JPEG", quality=92)


def gray16_png() -> bytes:
    """16 bits per sample: a decoder that keeps the low byte sees noise, not text."""
    gray = np.asarray(text_image().convert("L"), dtype=np.uint16) * 257
    return encode([Image.fromarray(gray)], "PNG")


def rgb48_png() -> bytes:
    """16-bit RGB (Pillow cannot write it, so the scanlines are written by hand)."""
    rgb = np.asarray(text_image(), dtype=np.uint16) * 257
    height, width = rgb.shape[:2]
    big_endian = rgb.astype(">u2").tobytes()
    row = width * 6
    rows = b"".join(b"\x00" + big_endian[y * row : (y + 1) * row] for y in range(height))
    return png_from_rows(width, height, 16, 2, rows)


def palette_alpha_png() -> bytes:
    """Palette PNG whose background is a fully transparent *black* entry: flattening that
    drops the alpha instead of compositing on white turns the page black."""
    gray = np.asarray(text_image().convert("L"))
    indices = np.where(gray > 200, 255, gray).astype(np.uint8)
    image = Image.fromarray(indices, mode="L").convert("P")
    palette = [level for i in range(256) for level in (i, i, i)]
    palette[255 * 3 : 256 * 3] = [0, 0, 0]
    image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=255)
    return buffer.getvalue()


def animated_gif() -> bytes:
    """Three frames: the receipt, then two noise frames (animation, not pages)."""
    rng = np.random.default_rng(7)
    noise = [Image.fromarray(rng.integers(0, 255, (300, 200), dtype=np.uint8)) for _ in range(2)]
    first = text_image()
    frames = [first, *(n.resize(first.size).convert("RGB") for n in noise)]
    return encode(frames, "GIF", duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    """Pixels stored turned 90 degrees anticlockwise; EXIF Orientation 6 tells a viewer to turn
    them clockwise, so the receipt is upright as displayed."""
    upright = text_image()
    stored = upright.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode([stored], "JPEG", quality=92, exif=exif.tobytes())


def strip_20000x20() -> bytes:
    return encode([Image.new("L", (20_000, 20), 255)], "PNG")


def one_pixel() -> bytes:
    return encode([Image.new("RGB", (1, 1), (255, 255, 255))], "PNG")


# --- broken and hostile ------------------------------------------------------------------------


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    return data[: int(len(data) * fraction)]


def random_bytes() -> bytes:
    return random.Random(3).randbytes(4096)


def huge_png_header() -> bytes:
    """Declares 100000x100000 pixels (10 G); the IDAT holds almost nothing."""
    return png_from_rows(100_000, 100_000, 8, 0, b"")


def png_bomb() -> bytes:
    """A real, complete PNG: 12000x12000 1-bit pixels (144 M, over the 100 M limit) that
    compress to about 20 kB. Decoding it as RGB would take 430 MB."""
    rows = (b"\x00" + b"\xff" * (12_000 // 8)) * 12_000
    return png_from_rows(12_000, 12_000, 1, 0, rows)


def pdf_bomb_page() -> bytes:
    """A 339-byte PDF whose only page is 200x200 inches: 40000x40000 pixels at 200 dpi."""
    return pdf_document([None], size=(14_400, 14_400))


def encrypted_pdf(user_password: str = "secret") -> bytes:
    """The receipts PDF encrypted with pypdf; with an empty user password it opens in any viewer
    (only the owner's permissions are set)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(three_page_pdf())))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def three_page_pdf() -> bytes:
    return receipts_document("PDF")


# --- the corpus --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """A document (with settings) that Submit must refuse with `code`; every fragment must
    appear in the message."""

    name: str
    build: Callable[[], bytes]
    fragments: tuple[str, ...]
    settings: dict[str, object] = field(default_factory=dict)


REFUSED: list[Refused] = [
    Refused("empty", lambda: b"", ("empty", "0 bytes")),
    Refused("random-bytes", random_bytes, ("unrecognised document type", "PNG, JPEG")),
    Refused("broken-pdf", lambda: b"%PDF-1.7\n garbage that is not a pdf", ("PDF",)),
    Refused("png-signature-only", lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, ("PNG",)),
    Refused("truncated-png", lambda: truncated(receipts_document("PNG")), ("PNG", "truncated")),
    Refused("truncated-jpeg", lambda: truncated(receipt_jpeg()), ("JPEG", "truncated")),
    Refused("truncated-tiff", lambda: truncated(receipts_document("TIFF")), ("TIFF", "truncated")),
    Refused("truncated-bmp", lambda: truncated(receipts_document("BMP")), ("BMP", "truncated")),
    Refused("truncated-pdf", lambda: truncated(three_page_pdf()), ("PDF", "damaged")),
    Refused("png-100000x100000", huge_png_header, ("100000x100000", "100,000,000")),
    Refused("png-bomb-12000x12000", png_bomb, ("12000x12000", "100,000,000")),
    Refused("pdf-page-bomb", pdf_bomb_page, ("40000x40000", "100,000,000", "dpi")),
    Refused("tiff-3000-pages", lambda: tiff_many_pages(3000), ("more than 2000 pages",)),
    Refused(
        "tiff-3000-pages-with-selection",
        lambda: tiff_many_pages(3000),
        ("more than 2000 pages",),
        {"pages": "1"},
    ),
    # found by the fuzz run (tests/test_fuzz_documents.py): each escaped as INTERNAL before
    Refused("tiff-no-width", lambda: tiff_patched(1, 1, 256, 0, new_tag=0x8000), ("no width",)),
    Refused(
        "tiff-unknown-compression-page-2",
        lambda: tiff_patched(2, 2, 259, 54785),
        ("TIFF page 2 uses compression code 54785", "cannot decode"),
    ),
    Refused(
        "tiff-bomb-on-page-3",
        lambda: tiff_patched(3, 3, 256, 200_000_000),
        ("TIFF page 3 is 200000000x1", "100,000,000"),
    ),
    Refused("pdf-5000-pages", lambda: pdf_document([None] * 5000), ("5000 pages", "at most 2000")),
    Refused("pdf-encrypted", encrypted_pdf, ("encrypted", "password")),
    Refused("pdf-no-pages", lambda: pdf_document([]), ("no pages",)),
    Refused("pdf-count-lies", lambda: pdf_document([None], count=0), ("no pages",)),
    Refused("dpi-10000", three_page_pdf, ("dpi 10000", "72-600"), {"dpi": 10000}),
    Refused("dpi-1", three_page_pdf, ("dpi 1 ", "72-600"), {"dpi": 1}),
    Refused("pages-beyond", three_page_pdf, ("page 9", "has 3"), {"pages": "5-9"}),
    Refused("pages-not-a-list", three_page_pdf, ("page list",), {"pages": "abc"}),
    Refused("pages-zero", three_page_pdf, ("starts at 0",), {"pages": "0-2"}),
    Refused(
        "language-unknown",
        three_page_pdf,
        ("unknown language 'klingon'", "installed: en, fr, de"),
        {"language": "klingon"},
    ),
    Refused("profile-unknown", three_page_pdf, ("unknown profile",), {"profile": "turbo"}),
    Refused(
        "request-id-10kB", one_pixel, ("request_id", "at most 128"), {"request_id": "r" * 10_240}
    ),
    Refused("filename-10kB", one_pixel, ("filename", "at most 1024"), {"filename": "f" * 10_240}),
    Refused("filename-control", one_pixel, ("control characters",), {"filename": "a\x00b"}),
]


@dataclass(frozen=True)
class Accepted:
    """A valid but odd document: it must complete. `has_text` means the receipt's text must be
    recognised (the conversion was right, not merely survived)."""

    name: str
    build: Callable[[], bytes]
    document_type: str
    has_text: bool
    settings: dict[str, object] = field(default_factory=dict)


ACCEPTED: list[Accepted] = [
    Accepted("1x1", one_pixel, "png", has_text=False),
    Accepted("strip-20000x20", strip_20000x20, "png", has_text=False),
    Accepted("cmyk-jpeg", cmyk_jpeg, "jpeg", has_text=True),
    Accepted("gray16-png", gray16_png, "png", has_text=True),
    Accepted("rgb48-png", rgb48_png, "png", has_text=True),
    Accepted("palette-alpha-png", palette_alpha_png, "png", has_text=True),
    Accepted("animated-gif", animated_gif, "gif", has_text=True),
    Accepted("exif-rotated-jpeg", exif_rotated_jpeg, "jpeg", has_text=True),
    Accepted(
        "pdf-owner-password-only",
        lambda: encrypted_pdf(""),
        "pdf",
        has_text=True,
        settings={"pages": "1"},
    ),
    Accepted("dpi-0-means-200", three_page_pdf, "pdf", has_text=True, settings={"pages": "1"}),
]
