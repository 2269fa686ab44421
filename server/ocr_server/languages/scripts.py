"""Does a page's text look like the language asked for? A cheap check after recognition, so
that a page read in the wrong language or script says so instead of passing junk as text.

Two signals, both measured on rendered pages (docs/languages.md):
- the script of the letters read: an engine that is not restricted to the language's
  letters (Tesseract, Chinese and Japanese on PaddleOCR) shows a foreign script outright;
- the recogniser's confidence: a restricted recogniser on a foreign script still outputs the
  allowed letters, but doubts them. PaddleOCR gives 0.97-0.99 (mean line confidence) on
  pages in the requested language and 0.0-0.84 on Cyrillic, Greek, Arabic, Devanagari, Thai,
  Korean, Japanese or Chinese pages read as English; Tesseract 0.86-0.96 on its languages.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter
from collections.abc import Sequence

from ocr_server.engines.base import RecognizedLine
from ocr_server.languages.catalog import split
from ocr_server.models import PageWarning

# Which scripts' letters count as the language's own (ISO 15924 of the catalog -> Unicode
# scripts of its letters). Latin letters are welcome in every language (names, codes, units).
_OWN_SCRIPTS = {
    "Latn": {"Latn"},
    "Cyrl": {"Cyrl", "Latn"},
    "Grek": {"Grek", "Latn"},
    "Arab": {"Arab", "Latn"},
    "Hebr": {"Hebr", "Latn"},
    "Deva": {"Deva", "Latn"},
    "Thai": {"Thai", "Latn"},
    "Kore": {"Hang", "Hani", "Latn"},
    "Jpan": {"Hira", "Kana", "Hani", "Latn"},
    "Hans": {"Hani", "Latn"},
    "Hant": {"Hani", "Latn"},
}

# Unicode script of a letter by its name's first word (unicodedata has no script property).
_NAME_PREFIXES = {
    "LATIN": "Latn",
    "CYRILLIC": "Cyrl",
    "GREEK": "Grek",
    "ARABIC": "Arab",
    "HEBREW": "Hebr",
    "DEVANAGARI": "Deva",
    "THAI": "Thai",
    "HANGUL": "Hang",
    "HIRAGANA": "Hira",
    "KATAKANA": "Kana",
    "CJK": "Hani",
}

# A page needs this many letters before either signal is trusted (a stamp, a page number).
MIN_LETTERS = 20
# Warn when less than this share of the letters is in the language's scripts.
MIN_OWN_SCRIPT_SHARE = 0.5
# Warn when the length-weighted mean confidence is below this, per engine: PaddleOCR gives
# 0.94-0.99 on real English scans (SROIE receipts) and at most 0.84 on foreign scripts.
MIN_CONFIDENCE = {"paddleocr": 0.88, "tesseract": 0.6}


@functools.lru_cache(maxsize=4096)  # every character read: a page has a few dozen distinct ones
def script_of(ch: str) -> str | None:
    """The Unicode script of a letter (ISO 15924), or None for anything else."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    return _NAME_PREFIXES.get(name.split(" ", 1)[0], "Zyyy")


def check_page(
    lines: Sequence[RecognizedLine], language: str, engine: str
) -> tuple[PageWarning, ...]:
    """Warnings about a page's text read for `language` (canonical, `en+de`) by `engine`
    ("paddleocr" or "tesseract")."""
    languages = split(language)
    own = set().union(*(_OWN_SCRIPTS.get(lang.script, {lang.script}) for lang in languages))
    scripts: Counter[str] = Counter()
    weighted = weight = 0.0
    for line in lines:
        letters = [s for s in map(script_of, line.text) if s is not None]
        scripts.update(letters)
        weighted += line.confidence * len(line.text)
        weight += len(line.text)
    total = sum(scripts.values())
    if total < MIN_LETTERS:
        return ()
    names = ", ".join(f"{lang.name} ({lang.code})" for lang in languages)
    warnings: list[PageWarning] = []
    share = sum(n for script, n in scripts.items() if script in own) / total
    if share < MIN_OWN_SCRIPT_SHARE:
        found = scripts.most_common(1)[0][0]
        warnings.append(
            PageWarning(
                "SCRIPT_MISMATCH",
                f"only {share:.0%} of the letters read are in the script of {names}; the "
                f"page looks like {found} script: submit it again with its language "
                "(GetCapabilities lists them)",
            )
        )
    confidence = weighted / weight
    if confidence < MIN_CONFIDENCE[engine]:
        warnings.append(
            PageWarning(
                "LOW_CONFIDENCE",
                f"the recogniser doubts this page (mean confidence {confidence:.2f}): it may "
                f"not be in {names}, or the scan may be unreadable; check the language, or "
                "scan at 300 dpi",
            )
        )
    return tuple(warnings)
