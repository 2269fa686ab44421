"""A PDF's page count, encryption and page sizes: read in-process with qpdf (pikepdf) when the
file is healthy, else from poppler's `pdfinfo`, with its errors turned into messages a client
can act on.

Submit counts pages while the client waits. Starting `pdfinfo` costs about 12 ms, which alone
broke the 10 ms Submit target for PDFs (docs/benchmarks.md); qpdf reads a healthy one-page PDF
in under 1 ms. Poppler renders the pages later, so it stays the authority whenever the two
could disagree: a file qpdf can only open by repairing it (a broken cross-reference table, a
truncated file), or whose page tree's /Count differs from its pages (poppler believes
/Count), goes to `pdfinfo` as before. Harmless warnings (a page without /Resources) do not.
So a damaged or hostile PDF gets exactly poppler's verdict, at poppler's cost.

pdf2image's own wrapper reads only the first page's size ("Page size" is absent when a page
range is given) and hides poppler's reason behind "Unable to get page count"; this one asks for
the sizes of the first pages up to the limit in the same call (about 25 ms for 2,000 pages).
The document's metadata (title, subject, ...) is printed before the fields read here and can
contain newlines (a title "x\\nPages: 1" forges a line), so only what follows the last
"Pages:" line is read.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_server.errors import InvalidDocumentError

PDFINFO_TIMEOUT = 30.0
# Longer documents are counted by poppler: qpdf takes about 17 us per page to list them
# (87 ms for 5,000), and such a Submit is rare.
_IN_PROCESS_MAX_PAGES = 2000
_MAX_INHERITANCE_DEPTH = 32
_ENCRYPTED_MESSAGE = (
    "the PDF is encrypted and needs a password to open; remove the password and submit it again"
)
_PAGE_SIZE = re.compile(r"^Page\s+(\d+) size:\s+([\d.]+) x ([\d.]+)", re.MULTILINE)
_PREFIX = re.compile(r"^(Syntax Error|Syntax Warning|Command Line Error|Internal Error)[^:]*:\s*")


@dataclass(frozen=True)
class PdfInfo:
    page_count: int
    encrypted: bool
    page_sizes: dict[int, tuple[float, float]] = field(default_factory=dict)  # points


def read_pdf_info(path: Path, first: int = 1, last: int = 1) -> PdfInfo:
    """Page count and encryption, and the sizes of pages `first`..`last` (clamped)."""
    info = _read_in_process(path, first, last)
    return info if info is not None else _read_with_poppler(path, first, last)


def _read_in_process(path: Path, first: int, last: int) -> PdfInfo | None:
    """The same facts from qpdf, or None when poppler should decide (see the module's doc)."""
    import pikepdf  # the server's import; workers read page sizes too

    try:
        with pikepdf.open(path, attempt_recovery=False) as pdf:
            declared = pdf.Root.Pages.get("/Count")
            if not isinstance(declared, int) or not 1 <= declared <= _IN_PROCESS_MAX_PAGES:
                return None  # no pages, a lie, or a long document: poppler's words for it
            pages = pdf.pages
            if len(pages) != declared:
                return None
            sizes = {}
            for number in range(max(first, 1), min(last, declared) + 1):
                size = _media_size(pages[number - 1].obj)
                if size is None:
                    return None
                sizes[number] = size
            return PdfInfo(declared, pdf.is_encrypted, sizes)
    except pikepdf.PasswordError:
        raise InvalidDocumentError(_ENCRYPTED_MESSAGE) from None
    except Exception:  # damaged, odd or hostile: poppler reads it (or says why it cannot)
        return None


def _media_size(page: Any) -> tuple[float, float] | None:
    """The page's /MediaBox (inherited from its parents if need be) as (width, height) in
    points: what pdftoppm renders."""
    node = page
    for _ in range(_MAX_INHERITANCE_DEPTH):
        box = node.get("/MediaBox")
        if box is not None:
            try:
                x0, y0, x1, y1 = (float(v) for v in box)
            except (TypeError, ValueError):
                return None
            width, height = abs(x1 - x0), abs(y1 - y0)
            return (width, height) if width > 0 and height > 0 else None
        node = node.get("/Parent")
        if node is None:
            return None
    return None


def _read_with_poppler(path: Path, first: int, last: int) -> PdfInfo:
    try:
        done = subprocess.run(
            ["pdfinfo", "-f", str(first), "-l", str(last), str(path)],
            capture_output=True,
            timeout=PDFINFO_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InvalidDocumentError(
            f"the PDF could not be read within {PDFINFO_TIMEOUT:.0f} s; it is damaged or hostile"
        ) from exc
    out = done.stdout.decode("utf-8", errors="replace")
    err = done.stderr.decode("utf-8", errors="replace")
    if done.returncode != 0:
        raise _error_from(err)
    starts = [m.start() for m in re.finditer(r"^Pages:", out, re.MULTILINE)]
    fields = out[starts[-1] :] if starts else ""  # past the metadata a document can forge
    pages = _field(fields, "Pages")
    if not pages.isdigit() or int(pages) < 1:
        raise InvalidDocumentError("the PDF has no pages")
    sizes = {int(n): (float(w), float(h)) for n, w, h in _PAGE_SIZE.findall(fields)}
    return PdfInfo(int(pages), _field(fields, "Encrypted").startswith("yes"), sizes)


def _field(text: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def _error_from(stderr: str) -> InvalidDocumentError:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = " ".join(lines).lower()
    if "incorrect password" in text:
        return InvalidDocumentError(_ENCRYPTED_MESSAGE)
    if "invalid page count 0" in text or "first page (1) can not be after" in text:
        return InvalidDocumentError("the PDF has no pages")
    reasons = []
    for line in lines:
        reason = _PREFIX.sub("", line)
        if reason not in reasons:
            reasons.append(reason)
    reason = "; ".join(reasons[:3])[:300] or "poppler cannot read it"
    return InvalidDocumentError(f"the PDF is damaged: {reason}")
