"""Tesseract, the engine we compare with: Debian's `tesseract-ocr` (English), one thread per
process (OMP_THREAD_LIMIT=1), N processes at once, as the service runs N single-thread workers.

A page's latency is the wall time of its process(es): for an image-only PDF that is pdftoppm
rasterising it at 200 dpi (as the service does) plus Tesseract, both counted, since the
service's figure includes its own rasterising too. Peak RSS comes from wait4's rusage, the
kernel's exact figure for a process too short-lived to sample.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchlib.datasets import EvalSet, Page
from benchlib.outcome import PageOutcome, SetRun
from benchlib.resources import CpuMeter
from ocr_server.documents import DEFAULT_DPI

PAGE_TIMEOUT = 300.0


def available() -> str | None:
    """None when Tesseract can run here, else why not."""
    if shutil.which("tesseract") is None:
        return "tesseract not installed (scripts/setup --dev installs Debian's tesseract-ocr)"
    if shutil.which("pdftoppm") is None:
        return "pdftoppm not installed (poppler-utils; scripts/setup installs it)"
    return None


def _run(command: list[str], env: dict[str, str]) -> tuple[int, bytes, int, float]:
    """(exit code, stdout, peak RSS in bytes, CPU seconds) of one process, reaped with wait4."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert process.stdout is not None
    timer = threading.Timer(PAGE_TIMEOUT, process.kill)
    timer.start()
    try:
        out = process.stdout.read()
        process.stdout.close()
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return process.returncode, out, usage.ru_maxrss * 1024, cpu  # ru_maxrss is in KiB


class Tesseract:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def run(self, eval_set: EvalSet) -> SetRun:
        peaks: list[int] = []
        cpu_seconds: list[float] = []
        lock = threading.Lock()

        def one(page: Page) -> PageOutcome:
            outcome, peak, used = self._page(page, eval_set.tesseract_psm)
            with lock:
                peaks.append(peak)
                cpu_seconds.append(used)
            return outcome

        cpu = CpuMeter()
        cpu.start()
        started = time.perf_counter()
        with ThreadPoolExecutor(self.workers) as pool:
            outcomes = list(pool.map(one, eval_set.pages))
        wall = time.perf_counter() - started
        cpu.stop()
        return SetRun(
            engine="tesseract",
            profile="",
            set_name=eval_set.name,
            wall_seconds=wall,
            pages=outcomes,
            # processes are per page, not per worker: report the largest as the worker figure
            peak_rss_bytes={0: max(peaks, default=0)},
            cpu_per_core=cpu.per_core,
            engine_cpu_seconds=sum(cpu_seconds),
        )

    def _page(self, page: Page, psm: int) -> tuple[PageOutcome, int, float]:
        """The page's outcome, its processes' peak RSS and their CPU seconds."""
        started = time.perf_counter()
        peak = 0
        used = 0.0
        with tempfile.TemporaryDirectory(prefix="bench-tess-") as tmp:
            image = page.path
            if page.document_type == "pdf":
                prefix = Path(tmp) / "page"
                command = ["pdftoppm", "-r", str(DEFAULT_DPI), "-singlefile", "-png"]
                code, _, peak, used = _run([*command, str(page.path), str(prefix)], self._env)
                image = prefix.with_suffix(".png")
                if code != 0:
                    seconds = time.perf_counter() - started
                    failed = PageOutcome(page.page_id, "", seconds, f"pdftoppm exit {code}")
                    return failed, peak, used
            command = ["tesseract", str(image), "stdout", "-l", "eng", "--psm", str(psm)]
            code, out, tess_peak, tess_used = _run(command, self._env)
        seconds = time.perf_counter() - started
        error = "" if code == 0 else f"tesseract exit {code}"
        text = out.decode("utf-8", errors="replace")
        outcome = PageOutcome(page.page_id, text, seconds, error)
        return outcome, max(peak, tess_peak), used + tess_used
