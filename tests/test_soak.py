"""Memory soak on the real server with real PaddleOCR (slow; `pytest -m slow`): a few hundred
receipts with workers recycled every few dozen pages. Each worker's RSS is sampled from /proc
and must stay bounded (no growth from one worker generation to the next); with a short result
TTL, the store's size returns to its baseline once everything has expired and been swept.
Figures go to docs/reliability.md."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ocr.v1 import ocr_pb2
from tests.documents import SROIE, require_eval
from tests.harness import ServerProcess
from tests.test_faults import store_sizes, within
from tests.test_lifecycle import wait_for

TASKS = int(os.environ.get("OCR_SOAK_TASKS", "240"))
RECYCLE_AFTER = 30
TTL = 60.0
MIB = 1024 * 1024
RSS_CEILING = 2048 * MIB  # a worker with the mobile models sits well below this


def rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass
class RssSampler:
    """Samples every worker's RSS (and the server's) until stopped; series per pid."""

    server: ServerProcess
    series: dict[int, list[int]] = field(default_factory=dict)
    server_series: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        assert self.server.process is not None
        while not self.stop.wait(0.5):
            for pid in self.server.worker_pids():
                value = rss(pid)
                if value is not None:
                    self.series.setdefault(pid, []).append(value)
            value = rss(self.server.process.pid)
            if value is not None:
                self.server_series.append(value)


@pytest.mark.slow
def test_memory_soak_real_engine(tmp_path: Path) -> None:
    require_eval()
    receipts = sorted((SROIE / "img").glob("*.jpg"))[:20]
    documents = [path.read_bytes() for path in receipts]
    server = ServerProcess(
        tmp_path / "data",
        "--recycle-after",
        str(RECYCLE_AFTER),
        "--result-ttl",
        f"{TTL:.0f}s",
        "--sweep-interval",
        "5s",
        "--log-level",
        "WARNING",
    ).start()
    sampler = RssSampler(server)
    thread = threading.Thread(target=sampler.run, daemon=True)
    try:
        first_workers = server.worker_pids()
        baseline = store_sizes(server.data_dir)
        thread.start()
        started = time.monotonic()
        texts: list[int] = []

        def one(number: int) -> int:
            with server.client() as client:
                task = client.submit(documents[number % len(documents)])
                final = client.wait(task.task_id, timeout=600)
                assert final.state == ocr_pb2.TASK_STATE_COMPLETED, final.error.message
                return len(client.result(task.task_id).result.text)

        with ThreadPoolExecutor(4) as pool:
            texts = list(pool.map(one, range(TASKS)))
        took = time.monotonic() - started
        loaded = store_sizes(server.data_dir)
        assert all(length > 50 for length in texts)  # real text came back every time

        # everything expires TTL after its submission; the sweeper runs every 5 s
        wait_for(lambda: within(store_sizes(server.data_dir), baseline), timeout=TTL + 60)
        after = store_sizes(server.data_dir)
        sampler.stop.set()
        thread.join()
    finally:
        sampler.stop.set()
        server.stop()

    generations = [series for pid, series in sampler.series.items() if len(series) >= 4]
    first = [sampler.series[pid] for pid in first_workers if pid in sampler.series]
    last = generations[-2:]
    recycled = len(sampler.series) - len(first_workers)
    first_peak = max(max(s) for s in first)
    last_peak = max(max(s) for s in last)
    overall_peak = max(max(s) for s in sampler.series.values())
    assert recycled >= 2 * (TASKS // (2 * RECYCLE_AFTER)) - 2  # workers really were replaced
    assert overall_peak < RSS_CEILING
    assert last_peak <= 1.25 * first_peak  # no creep from one generation to the next
    lines = [
        f"Soak: {TASKS} receipts on PaddleOCR, 2 workers, --recycle-after {RECYCLE_AFTER}, "
        f"{took:.0f} s ({TASKS / took:.2f} pages/s); {len(sampler.series)} worker processes "
        f"({recycled} replacements)",
        "worker RSS MiB (start/max/end): "
        + ", ".join(
            f"{s[0] // MIB}/{max(s) // MIB}/{s[-1] // MIB}" for s in sampler.series.values()
        ),
        f"first generation peak {first_peak // MIB} MiB, last {last_peak // MIB} MiB, "
        f"overall {overall_peak // MIB} MiB; server RSS {min(sampler.server_series) // MIB}"
        f"-{max(sampler.server_series) // MIB} MiB",
        f"store volume KiB (baseline/after the run/after expiry): {baseline[0] // 1024}/"
        f"{loaded[0] // 1024}/{after[0] // 1024}; its files on disk with sqlite's WAL: "
        f"{baseline[1] // 1024}/{loaded[1] // 1024}/{after[1] // 1024}",
    ]
    print("\n" + "\n".join(lines))
