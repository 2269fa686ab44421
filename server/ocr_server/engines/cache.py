"""The engines a worker holds: built on first use, the least recently used one dropped beyond a
bound, so a worker's memory stays that of the profiles it is actually asked for.

Each loaded PaddleOCR profile costs a worker 250-450 MB (measured in docs/benchmarks.md): a
worker that kept every profile it had ever loaded grew to 1 GB after three. The default
profile (or whatever key is pinned) is never dropped: it is loaded at start-up, most requests
use it, and reloading it would cost seconds on the next ordinary page.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import sys
from collections import OrderedDict
from collections.abc import Callable

from ocr_server.engines.base import OcrEngine

log = logging.getLogger(__name__)

# Engines a worker keeps loaded at once, the pinned default included.
DEFAULT_MAX_ENGINES = 2


class EngineCache:
    """Engines by a short key (a profile name, or an engine's own name such as "tesseract"):
    at most `max_engines` loaded, the pinned key always among them. Not thread-safe (one per
    worker process)."""

    def __init__(
        self,
        build: Callable[[str], OcrEngine],
        pinned: str,
        max_engines: int = DEFAULT_MAX_ENGINES,
    ) -> None:
        if max_engines < 1:
            raise ValueError("a worker must be allowed at least one engine")
        self._build = build
        self._pinned = pinned
        self._max = max_engines
        self._engines: OrderedDict[str, OcrEngine] = OrderedDict()

    def get(self, key: str) -> OcrEngine:
        """The engine for `key`, loading it (and dropping the least recently used unpinned
        engine when the bound is reached) if it is not loaded."""
        engine = self._engines.get(key)
        if engine is not None:
            self._engines.move_to_end(key)
            return engine
        while len(self._engines) >= self._max and self._evict_one():
            pass
        engine = self._build(key)
        self._engines[key] = engine
        settle_heap()
        return engine

    @property
    def loaded(self) -> list[str]:
        """Keys of the loaded engines, least recently used first."""
        return list(self._engines)

    def _evict_one(self) -> bool:
        for key in self._engines:
            if key != self._pinned:
                del self._engines[key]
                log.info("dropped engine %r (at most %d per worker)", key, self._max)
                release_memory()
                return True
        return False  # only the pinned engine is loaded: the new one goes beside it


def settle_heap() -> None:
    """Move every object alive now (the loaded models' Python side: about 190,000 objects)
    out of the garbage collector's sight. Full collections walked them all again and again,
    17 ms of CPU per manual page; 0.4 ms frozen (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()


def release_memory() -> None:
    """Collect the dropped engine's cycles (unfrozen for that) and hand freed heap back to
    the kernel: glibc keeps freed arenas otherwise, and the worker's RSS would not fall."""
    gc.unfreeze()
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
