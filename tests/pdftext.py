"""Words and boxes of a PDF as poppler's `pdftotext -bbox` reads them (what users' tools see)."""

from __future__ import annotations

import re
import subprocess
from html import unescape
from pathlib import Path

Word = tuple[str, float, float, float, float]
_WORD = re.compile(
    r'<word xMin="([-\d.]+)" yMin="([-\d.]+)" xMax="([-\d.]+)" yMax="([-\d.]+)">(.*?)</word>'
)


def pdftotext_words(path: Path, page: int = 1) -> list[Word]:
    """(text, x0, y0, x1, y1) in points, origin top left of the page as shown."""
    out = subprocess.run(
        ["pdftotext", "-bbox", "-f", str(page), "-l", str(page), str(path), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [(unescape(m[5]), *(float(v) for v in m.groups()[:4])) for m in _WORD.finditer(out)]


def pdftotext(path: Path, page: int | None = None) -> str:
    pages = ["-f", str(page), "-l", str(page)] if page else []
    return subprocess.run(
        ["pdftotext", *pages, str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def page_size(path: Path, page: int = 1) -> tuple[float, float]:
    """The page's size in points as shown (after /Rotate), from pdfinfo."""
    out = subprocess.run(
        ["pdfinfo", "-f", str(page), "-l", str(page), str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(rf"Page\s+{page} size:\s+([\d.]+) x ([\d.]+)", out)
    assert match, out
    width, height = float(match[1]), float(match[2])
    rotation = re.search(rf"Page\s+{page} rot:\s+(\d+)", out)
    if rotation and int(rotation[1]) % 180:
        width, height = height, width
    return width, height
