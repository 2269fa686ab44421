"""The time the task code sees: injectable, so expiry and timestamps are tested without sleeps.

Everything that stamps or expires a task (submission, the task backends, the store) takes a
`Clock` instead of calling `time.time()`; tests hand in a `ManualClock` and move it forward.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Returns Unix time in seconds (wall-clock: task times are shown to clients as timestamps)."""

system_clock: Clock = time.time


class ManualClock:
    """A clock that moves only when told (tests)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
