"""A PDF's pages counted in-process (qpdf) agree with poppler's `pdfinfo`, and every file qpdf
cannot vouch for goes to poppler, which renders the pages later."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ocr_server.errors import InvalidDocumentError
from ocr_server.pdfinfo import _read_in_process, _read_with_poppler, read_pdf_info
from tests import hostile_corpus as corpus

HEALTHY: dict[str, Callable[[], bytes]] = {
    "three-pages": corpus.three_page_pdf,
    "owner-password-only": lambda: corpus.encrypted_pdf(""),
    "blank-letter": lambda: corpus.pdf_document([None]),
    "large-page": corpus.pdf_bomb_page,
}
FOR_POPPLER: dict[str, Callable[[], bytes]] = {
    "truncated": lambda: corpus.truncated(corpus.three_page_pdf()),
    "garbage": lambda: b"%PDF-1.7\n garbage that is not a pdf",
    "count-lies": lambda: corpus.pdf_document([None], count=0),
    "no-pages": lambda: corpus.pdf_document([]),
}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_pdfs_are_read_in_process_as_poppler_reads_them(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, HEALTHY[name]())
    fast = _read_in_process(path, 1, 3)
    assert fast is not None
    assert fast == _read_with_poppler(path, 1, 3)


@pytest.mark.parametrize("name", FOR_POPPLER)
def test_damaged_or_inconsistent_pdfs_go_to_poppler(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, FOR_POPPLER[name]())
    assert _read_in_process(path, 1, 3) is None


def test_a_password_is_refused_without_poppler(tmp_path: Path) -> None:
    path = write(tmp_path, "encrypted", corpus.encrypted_pdf())
    with pytest.raises(InvalidDocumentError, match="needs a password"):
        read_pdf_info(path)
