"""Bounded fuzzing of the document path in process: type detection, submission triage
(inspect) and decoding every page (load_page), on mutated valid files of every supported type.

The contract: whatever the bytes, only InvalidDocumentError (the client's INVALID_ARGUMENT)
or InvalidSettingsError escapes, within the per-example deadline. Not in the default suite:

    .venv/bin/pytest -m fuzz                         # 8,000 examples, about 3 minutes
    OCR_FUZZ_EXAMPLES=20000 .venv/bin/pytest -m fuzz  # longer

Each seed is small (a few kB) and the limits are scaled down so a mutated header that
declares a large but legal image costs milliseconds, not seconds.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from ocr_server.documents import (
    DocumentLimits,
    check_page_sizes,
    detect_type,
    inspect_image,
    inspect_pdf,
    load_page,
    parse_page_selection,
)
from ocr_server.errors import InvalidDocumentError, InvalidSettingsError
from tests import hostile_corpus as corpus

pytestmark = [pytest.mark.slow, pytest.mark.fuzz]

EXAMPLES = int(os.environ.get("OCR_FUZZ_EXAMPLES", "8000"))
LIMITS = DocumentLimits(max_pixels=4_000_000, max_pages=20)
FUZZ_DPI = 72  # PDF seeds are US letter: 612x792 pixels at 72 dpi


def _page(text: str, mode: str = "RGB") -> Image.Image:
    image = Image.new("RGB", (160, 60), "white")
    ImageDraw.Draw(image).text((8, 20), text, fill="black")
    return image.convert(mode)


def _save(images: list[Image.Image], fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    first, *rest = images
    if rest:
        options.update(save_all=True, append_images=rest)
    first.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _seeds() -> dict[str, bytes]:
    one, two = _page("TOTAL 12.50"), _page("CASH 20.00")
    return {
        "png": _save([one], "PNG"),
        "png-palette-alpha": _save([one.convert("P")], "PNG", transparency=0),
        "png-16bit": corpus.png_from_rows(4, 3, 16, 0, (b"\x00" + b"\x12\x34" * 4) * 3),
        "jpeg": _save([one], "JPEG", quality=80),
        "jpeg-cmyk": _save([one.convert("CMYK")], "JPEG"),
        "jpeg-progressive": _save([one], "JPEG", progressive=True),
        "tiff-lzw-2pages": _save([one, two], "TIFF", compression="tiff_lzw"),
        "tiff-raw": _save([one.convert("L")], "TIFF"),
        "tiff-g4": _save([one.convert("1")], "TIFF", compression="group4"),
        "tiff-handmade-5pages": corpus.tiff_many_pages(5),
        "gif-animated": _save([one, two], "GIF", duration=50),
        "webp": _save([one], "WEBP", quality=60),
        "webp-lossless": _save([one], "WEBP", lossless=True),
        "bmp": _save([one], "BMP"),
        "pdf-pillow": _save([one, two], "PDF", resolution=72.0),
        "pdf-handmade": corpus.pdf_document([b"BT /F1 12 Tf 72 700 Td (Hi) Tj ET", None]),
    }


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed with a few mutations: bit flips, overwritten runs, cuts, insertions, repeats."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "overwrite", "truncate", "insert", "repeat"]))
        # mutations cluster in the first 512 bytes, where the headers are, half the time
        window = min(len(data), 512) if draw(st.booleans()) else len(data)
        at = draw(st.integers(0, max(0, window - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            run = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(run)] = run
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def run_document_path(data: bytes, workdir: Path) -> None:
    """What Submit and then a worker do with the bytes, in one process."""
    document_type = detect_type(data)
    path = workdir / "document"
    path.write_bytes(data)
    if document_type == "pdf":
        info = inspect_pdf(path, LIMITS)
    else:
        info = inspect_image(data, document_type, LIMITS)
    pages = parse_page_selection("", info.page_count)
    check_page_sizes(info, pages, FUZZ_DPI, LIMITS)
    for page_number in pages[:3]:
        image = load_page(path, document_type, page_number, FUZZ_DPI, LIMITS)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype.name == "uint8"
        assert image.shape[0] * image.shape[1] <= LIMITS.max_pixels


def test_seeds_are_valid() -> None:
    """Every seed goes through untouched, so the mutations start from accepted documents."""
    with tempfile.TemporaryDirectory() as workdir:
        for name, data in SEEDS.items():
            try:
                run_document_path(data, Path(workdir))
            except Exception as exc:
                raise AssertionError(f"seed {name} is refused: {exc}") from exc


@settings(
    max_examples=EXAMPLES,
    deadline=10_000,  # ms per example: a hang or a runaway decode fails the run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
@given(data=mutated())
def test_document_path_raises_only_documented_errors(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        try:
            run_document_path(data, Path(workdir))
            event("accepted")
        except (InvalidDocumentError, InvalidSettingsError) as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "our own check"
            event(f"refused ({cause})")  # --hypothesis-show-statistics lists these
