"""Accuracy, scored by the eval data's reference scorer `../shared/eval/cer.py` (imported, not
re-implemented, so our figures and the README's reference figures mean the same thing).

Per page we keep cer.py's raw counts (edits and reference lengths); a set's rates are
micro-averaged: total edits over total reference length, as cer.py aggregates them.
"""

from __future__ import annotations

import collections
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from types import ModuleType

from benchlib.datasets import eval_dir

Counts = dict[str, int]


@dataclass(frozen=True)
class Rates:
    cer: float
    wer: float
    bow: float
    ref_chars: int


@cache
def _cer_module() -> ModuleType:
    path = eval_dir() / "cer.py"
    spec = importlib.util.spec_from_file_location("eval_cer", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot load the reference scorer {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def score_page(truth: str, text: str, ignore_case: bool) -> Counts:
    """cer.py's counts for one page: ref_chars, char_edits, ref_words, word_edits, bow_miss."""
    counts: Counts = _cer_module().score(truth, text, ignore_case=ignore_case)
    return counts


def micro_average(pages: Iterable[Counts]) -> Rates | None:
    """Total edits over total reference length; None for no pages."""
    total: collections.Counter[str] = collections.Counter()
    n = 0
    for counts in pages:
        total.update(counts)
        n += 1
    if n == 0:
        return None
    rates = _cer_module()._rates(total)
    return Rates(rates["CER"], rates["WER"], rates["BOW"], total["ref_chars"])


def cjk_count(text: str) -> int:
    """Characters from CJK scripts: an English page read with language=en should have none."""
    return sum(1 for ch in text if _is_cjk(ord(ch)))


def _is_cjk(code: int) -> bool:
    return (
        0x2E80 <= code <= 0x9FFF  # radicals, kana, CJK symbols and unified ideographs
        or 0xAC00 <= code <= 0xD7AF  # Hangul syllables
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0xFF00 <= code <= 0xFF60  # full-width forms
        or 0x20000 <= code <= 0x2FA1F  # extension planes
    )
