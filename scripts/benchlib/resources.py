"""Memory and CPU figures read from /proc (Linux), so every engine is measured the same way.

Peak RSS comes from the kernel's own high-water mark (VmHWM), sampled for long-lived workers
and read from wait4's rusage for short-lived Tesseract processes, so no peak between two
samples is missed. CPU use per core is the /proc/stat busy share over the measured interval.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MIB = 1024 * 1024


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def peak_rss(pid: int) -> int | None:
    """The process's peak resident set size so far, in bytes."""
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib * 1024


def reset_peaks(pids: list[int]) -> None:
    """Restart the processes' high-water marks (Linux: "5" into clear_refs), so a set's peak
    is its own and not carried over from an earlier set; silently kept where not allowed."""
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def current_rss(pid: int) -> int | None:
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib * 1024


def spawned_children(pid: int) -> list[int]:
    """A server's worker processes: its multiprocessing-spawned children, not the resource
    tracker (also a spawned child, but one that holds no engine)."""
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return []
    pids = []
    for child in children:
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "spawn_main" in cmdline and "resource_tracker" not in cmdline:
            pids.append(child.pid)
    return pids


def _cpu_times() -> list[tuple[int, int]]:
    """(busy, total) jiffies per core."""
    cores = []
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(v) for v in values]
            idle = numbers[3] + numbers[4]  # idle + iowait
            cores.append((sum(numbers) - idle, sum(numbers)))
    return cores


def process_cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds each process has used so far (processes gone are left out)."""
    out = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        out[pid] = times.user + times.system
    return out


class ProcessCpu:
    """CPU seconds a changing set of engine processes used between start() and stop(): the
    figure that compares engines on a shared machine, where wall time also measures the other
    tenants' load (and a worker at nice 10 loses more of it than a Tesseract at nice 0)."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self._pids = pids
        self._start: dict[int, float] = {}
        self.seconds = 0.0

    def start(self) -> None:
        self._start = process_cpu_seconds(self._pids())

    def stop(self) -> float:
        end = process_cpu_seconds(self._pids())
        self.seconds = sum(used - self._start.get(pid, 0.0) for pid, used in end.items())
        return self.seconds


class CpuMeter:
    """Busy percentage of each core between start() and stop()."""

    def __init__(self) -> None:
        self._start: list[tuple[int, int]] = []
        self.per_core: list[float] = []

    def start(self) -> None:
        self._start = _cpu_times()

    def stop(self) -> list[float]:
        end = _cpu_times()
        self.per_core = [
            round(100.0 * (b1 - b0) / (t1 - t0), 1) if t1 > t0 else 0.0
            for (b0, t0), (b1, t1) in zip(self._start, end, strict=True)
        ]
        return self.per_core


@dataclass
class MemorySampler:
    """Samples the peak and current RSS of a changing set of worker pids in a thread."""

    pids: Callable[[], list[int]]
    interval: float = 0.5
    peaks: dict[int, int] = field(default_factory=dict)
    timeline: list[tuple[float, dict[int, int]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()  # a last look, so a short run has at least one sample

    def sample(self) -> None:
        now: dict[int, int] = {}
        for pid in self.pids():
            peak, rss = peak_rss(pid), current_rss(pid)
            if peak is not None:
                self.peaks[pid] = max(self.peaks.get(pid, 0), peak)
            if rss is not None:
                now[pid] = rss
        if now:
            self.timeline.append((time.monotonic(), now))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()
