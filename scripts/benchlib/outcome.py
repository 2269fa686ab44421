"""What one engine produced on one set: per-page text and timings, and the run's resources.
Every runner returns this; scoring and reporting read only this."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PageOutcome:
    page_id: str
    text: str
    seconds: float  # time to recognise this page once started (see docs/benchmarks.md)
    error: str = ""  # empty when the page was recognised


@dataclass
class SetRun:
    engine: str  # "raw", "service" or "tesseract"
    profile: str  # the PaddleOCR profile; "" for Tesseract
    set_name: str
    wall_seconds: float  # first page dispatched to last page's text in hand
    pages: list[PageOutcome]
    peak_rss_bytes: dict[int, int] = field(default_factory=dict)  # per worker process
    cpu_per_core: list[float] = field(default_factory=list)
    # CPU seconds the engine's own processes used on the set (0: not measured)
    engine_cpu_seconds: float = 0.0
    rss_timeline: list[tuple[float, dict[int, int]]] = field(default_factory=list)
    # service only
    submit_seconds: list[float] = field(default_factory=list)  # while the workers are busy
    submit_types: list[str] = field(default_factory=list)  # each one's document type
    # the server's Submit histogram over the same window, per document type (benchlib.metrics)
    server_submits: dict[str, dict[float, float]] = field(default_factory=dict)
    watch_delays: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.profile}" if self.profile else self.engine
