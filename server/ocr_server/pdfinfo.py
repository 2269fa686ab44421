"""A PDF's page count, encryption and page sizes from poppler's `pdfinfo`, with its errors turned
into messages a client can act on.

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

from ocr_server.errors import InvalidDocumentError

PDFINFO_TIMEOUT = 30.0
_PAGE_SIZE = re.compile(r"^Page\s+(\d+) size:\s+([\d.]+) x ([\d.]+)", re.MULTILINE)
_PREFIX = re.compile(r"^(Syntax Error|Syntax Warning|Command Line Error|Internal Error)[^:]*:\s*")


@dataclass(frozen=True)
class PdfInfo:
    page_count: int
    encrypted: bool
    page_sizes: dict[int, tuple[float, float]] = field(default_factory=dict)  # points


def read_pdf_info(path: Path, first: int = 1, last: int = 1) -> PdfInfo:
    """Page count and encryption, and the sizes of pages `first`..`last` (clamped)."""
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
        return InvalidDocumentError(
            "the PDF is encrypted and needs a password to open; remove the password "
            "and submit it again"
        )
    if "invalid page count 0" in text or "first page (1) can not be after" in text:
        return InvalidDocumentError("the PDF has no pages")
    reasons = []
    for line in lines:
        reason = _PREFIX.sub("", line)
        if reason not in reasons:
            reasons.append(reason)
    reason = "; ".join(reasons[:3])[:300] or "poppler cannot read it"
    return InvalidDocumentError(f"the PDF is damaged: {reason}")
