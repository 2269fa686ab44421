"""Fault-injection engine for tests: crashes, hangs, slowness and errors on demand.

Never the proof that recognition works (the tests run real PaddleOCR for that); it lets tests
provoke faults that a real engine cannot be made to produce on cue. Rules pick a behaviour by
the page image's width, so one server can hold a crashing task beside healthy ones:

    OCR_FAKE_RULES="default=slow:0.2,777=crash-once,778=hang,779=crash,780=error,781=lines:5000"

A page whose width has its own rule announces which worker holds it: the worker writes its pid
to `<state_dir>/fake-running-<width>` as it starts the page, so a test can SIGKILL exactly that
process in the middle of the page.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ocr_server.engines.base import Image, Polygon, RecognizedLine, RecognizedWord


class FakeEngine:
    def __init__(self, rules: str, state_dir: Path) -> None:
        self._rules: dict[str, str] = {}
        for rule in filter(None, (r.strip() for r in rules.split(","))):
            key, _, behaviour = rule.partition("=")
            self._rules[key.strip()] = behaviour.strip()
        self._state_dir = state_dir

    def recognize(self, image: Image, language: str) -> list[RecognizedLine]:
        height, width = image.shape[:2]
        if str(width) in self._rules:
            self._announce(width)
        behaviour = self._rules.get(str(width), self._rules.get("default", "echo"))
        name, _, argument = behaviour.partition(":")
        if name == "slow":
            time.sleep(float(argument or 1))
        elif name == "hang":
            while True:
                time.sleep(3600)
        elif name == "crash" or (name == "crash-once" and self._first_time(width)):
            os.kill(os.getpid(), signal.SIGKILL)
        elif name == "error":
            raise RuntimeError("fake engine error")
        if name == "lines":  # many lines: results larger than a message (tests of paging)
            return [
                _line(f"fake line {n:05d} " + "x" * 100, width, height)
                for n in range(int(argument or 1))
            ]
        return [_line(f"fake page {width}x{height}", width, height)]

    def _announce(self, width: int) -> None:
        marker = self._state_dir / f"fake-running-{width}"
        partial = marker.with_suffix(f".{os.getpid()}")
        partial.write_text(str(os.getpid()))
        partial.replace(marker)

    def _first_time(self, width: int) -> bool:
        marker = self._state_dir / f"fake-crashed-{width}"
        if marker.exists():
            return False
        marker.touch()
        return True


def _line(text: str, width: int, height: int) -> RecognizedLine:
    """One line over the whole page, its words spread evenly across it."""
    return RecognizedLine(text, 1.0, _box(0, width, height), _even_words(text, width, height))


def _box(left: float, right: float, height: int) -> Polygon:
    return ((left, 0.0), (right, 0.0), (right, float(height)), (left, float(height)))


def _even_words(text: str, width: int, height: int) -> tuple[RecognizedWord, ...]:
    """Words spread evenly over the page's width (a real engine locates them)."""
    step = width / max(len(text), 1)
    words, start = [], 0
    for word in text.split(" "):
        box = _box(start * step, (start + len(word)) * step, height)
        words.append(RecognizedWord(word, 1.0, box))
        start += len(word) + 1
    return tuple(words)
