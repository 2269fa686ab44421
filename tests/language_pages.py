"""Pages of text in a given language, rendered with Noto fonts, with their ground truth.

A page holds a few of `language_texts.SENTENCES` chosen by a seed, one sentence a line, at
the size of 11-12 pt body text scanned at 200 dpi. Right-to-left scripts are right-aligned
and shaped by Pillow's libraqm; the ground truth is in logical order, as OCR should return it.
Fonts are found through fontconfig (`fc-match`); `scripts/setup --dev` installs them.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.language_texts import SENTENCES

# The fontconfig family per language; Latin, Cyrillic, Greek and Vietnamese share Noto Sans.
FAMILIES = {
    "ar": "Noto Naskh Arabic",
    "he": "Noto Sans Hebrew",
    "hi": "Noto Sans Devanagari",
    "th": "Noto Sans Thai",
    "ko": "Noto Sans CJK KR",
    "ja": "Noto Sans CJK JP",
    "zh": "Noto Sans CJK SC",
    "zh-Hant": "Noto Sans CJK TC",
}
SERIF = "Noto Serif"  # every other page of a Latin/Cyrillic/Greek language, for variety
RIGHT_TO_LEFT = ("ar", "he")

PAGE_WIDTH = 1700
MARGIN = 100
FONT_PX = 34
LINE_SPACING = 1.9


@dataclass(frozen=True)
class LanguagePage:
    language: str
    png: bytes
    truth: str


@cache
def font_file(family: str) -> tuple[str, int]:
    """(file, face index) of an installed family; skips the test when it is missing."""
    if shutil.which("fc-match") is None:
        pytest.skip("fontconfig (fc-match) is not installed")
    out = subprocess.run(
        ["fc-match", "-f", "%{family[0]}|%{file}|%{index}", family],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found, path, index = out.split("|")
    if found != family:
        pytest.skip(f"font {family!r} is not installed (scripts/setup --dev installs it)")
    return path, int(index)


def family_for(language: str, seed: int) -> str:
    if language in FAMILIES:
        return FAMILIES[language]
    return SERIF if seed % 2 else "Noto Sans"


def render_page(language: str, seed: int, lines: int = 4, font_px: int = FONT_PX) -> LanguagePage:
    """A page of `lines` sentences of `language` chosen by `seed`, type `font_px` high (more
    lines than sentences: the sentences again, in other orders, for a page as full as a
    letter's)."""
    rng = random.Random(f"{language}:{seed}")
    chosen: list[str] = []
    while len(chosen) < lines:
        pool = SENTENCES[language]
        chosen += rng.sample(pool, min(len(pool), lines - len(chosen)))
    path, index = font_file(family_for(language, seed))
    font = ImageFont.truetype(path, font_px, index=index, layout_engine=ImageFont.Layout.RAQM)
    step = int(font_px * LINE_SPACING)
    height = 2 * MARGIN + step * lines
    page = Image.new("L", (PAGE_WIDTH, height), 255)
    draw = ImageDraw.Draw(page)
    rtl = language in RIGHT_TO_LEFT
    for row, sentence in enumerate(chosen):
        y = MARGIN + row * step
        direction = "rtl" if rtl else "ltr"
        width = draw.textlength(sentence, font=font, direction=direction)
        assert width <= PAGE_WIDTH - 2 * MARGIN, f"sentence too long for a line: {sentence}"
        x = PAGE_WIDTH - MARGIN - width if rtl else MARGIN
        draw.text((x, y), sentence, font=font, fill=0, direction=direction)
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    return LanguagePage(language, buffer.getvalue(), "\n".join(chosen))
