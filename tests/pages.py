"""Document pages drawn from real text for the recognition tests: the GPL-3 text that every
Debian system carries (base-files), set in DejaVu Sans (fonts-dejavu-core) at 200 dpi, with
what each test needs (a footnote in small print, a turned page, pages stacked into one tall
scan). The ground truth is the text drawn, line by line."""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

GPL = Path("/usr/share/common-licenses/GPL-3")
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
DPI = 200
LETTER = (1700, 2200)  # 8.5 x 11 in at 200 dpi
MARGIN = 150


@dataclass(frozen=True)
class Page:
    image: Image.Image
    lines: tuple[str, ...]  # every line drawn, top to bottom
    footnote: tuple[str, ...] = ()  # the small-print lines among them
    footnote_top: int = 0  # where they start (pixels from the top)

    @property
    def truth(self) -> str:
        return "\n".join(self.lines)


def require_text_and_font() -> None:
    if not GPL.is_file() or not FONT.is_file():
        pytest.skip(f"needs {GPL} (base-files) and {FONT} (fonts-dejavu-core)")


def points(size_pt: float) -> int:
    return round(size_pt * DPI / 72)


def gpl_lines(start: int, count: int, width: int = 72) -> list[str]:
    """`count` lines of the GPL's prose from paragraph `start`, wrapped at `width` characters."""
    require_text_and_font()
    paragraphs = [
        " ".join(p.split()) for p in GPL.read_text(encoding="utf-8").split("\n\n") if p.strip()
    ]
    lines: list[str] = []
    for paragraph in paragraphs[start:]:
        lines.extend(textwrap.wrap(paragraph, width))
        if len(lines) >= count:
            break
    return lines[:count]


def text_page(
    lines: list[str],
    size_pt: float = 11,
    footnote: list[str] | None = None,
    footnote_pt: float = 7,
    page_size: tuple[int, int] = LETTER,
) -> Page:
    """A white page with `lines` from the top margin and `footnote` at the bottom margin."""
    image = Image.new("L", page_size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), points(size_pt))
    step = round(points(size_pt) * 1.5)
    y = MARGIN
    for line in lines:
        draw.text((MARGIN, y), line, font=font, fill=0)
        y += step
    notes = footnote or []
    top = 0
    if notes:
        small = ImageFont.truetype(str(FONT), points(footnote_pt))
        small_step = round(points(footnote_pt) * 1.5)
        y = top = page_size[1] - MARGIN - small_step * len(notes)
        draw.line((MARGIN, y - small_step, MARGIN + 500, y - small_step), fill=0, width=2)
        for line in notes:
            draw.text((MARGIN, y), line, font=small, fill=0)
            y += small_step
    return Page(image.convert("RGB"), (*lines, *notes), tuple(notes), top)


def stacked(pages: list[Page], gap: int = 0) -> Page:
    """Pages one under the other in one tall image (a long scan, a receipt roll)."""
    width = max(p.image.width for p in pages)
    height = sum(p.image.height for p in pages) + gap * (len(pages) - 1)
    tall = Image.new("RGB", (width, height), "white")
    y = 0
    for page in pages:
        tall.paste(page.image, (0, y))
        y += page.image.height + gap
    return Page(tall, tuple(line for p in pages for line in p.lines))


def turned(page: Page, degrees: int) -> Image.Image:
    """The page turned clockwise by `degrees` (as a scanner that fed it sideways would)."""
    return page.image.rotate(-degrees, expand=True) if degrees else page.image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pdf_with_rotate(image: Image.Image, rotate: int) -> bytes:
    """A one-page image-only PDF (200 dpi) of the upright `image` whose page carries
    /Rotate `rotate`: a viewer (and poppler) shows it turned clockwise by that much."""
    import pikepdf

    buffer = io.BytesIO()
    image.save(buffer, format="PDF", resolution=float(DPI))
    with pikepdf.open(io.BytesIO(buffer.getvalue())) as pdf:
        pdf.pages[0].obj["/Rotate"] = rotate
        out = io.BytesIO()
        pdf.save(out)
    return out.getvalue()
