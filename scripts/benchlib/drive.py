"""Feeding a set's pages to N engine processes, one pipe each, and timing the whole set: the
loop the raw engine and RapidOCR share."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from benchlib.datasets import EvalSet, Page
from benchlib.outcome import PageOutcome, SetRun
from benchlib.resources import CpuMeter, MemorySampler, ProcessCpu, peak_rss, reset_peaks


def drive(
    eval_set: EvalSet,
    conns: list[Connection],
    pids: Callable[[], list[int]],
    read: Callable[[Connection, Page], PageOutcome],
    engine: str,
    profile: str = "",
) -> SetRun:
    """Every page of the set read by whichever process is free; wall time over the whole set,
    each process's peak RSS and the cores' busy share over it."""
    todo: queue.SimpleQueue[Page] = queue.SimpleQueue()
    for page in eval_set.pages:
        todo.put(page)
    outcomes: dict[str, PageOutcome] = {}
    reset_peaks(pids())
    cpu = CpuMeter()
    engine_cpu = ProcessCpu(pids)
    memory = MemorySampler(pids).start()

    def drain(conn: Connection) -> None:
        while True:
            try:
                page = todo.get_nowait()
            except queue.Empty:
                return
            try:
                outcomes[page.page_id] = read(conn, page)
            except (EOFError, OSError, TimeoutError) as exc:  # this process is gone
                outcomes[page.page_id] = PageOutcome(page.page_id, "", 0.0, f"worker lost: {exc!r}")
                return

    threads = [threading.Thread(target=drain, args=(conn,)) for conn in conns]
    cpu.start()
    engine_cpu.start()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    engine_cpu.stop()
    cpu.stop()
    memory.stop()
    peaks = {pid: peak for pid in pids() if (peak := peak_rss(pid)) is not None}
    return SetRun(
        engine=engine,
        profile=profile,
        set_name=eval_set.name,
        wall_seconds=wall,
        pages=[
            outcomes.get(p.page_id) or PageOutcome(p.page_id, "", 0.0, "not run: no worker left")
            for p in eval_set.pages
        ],
        peak_rss_bytes=peaks or memory.peaks,
        cpu_per_core=cpu.per_core,
        engine_cpu_seconds=engine_cpu.seconds,
    )
