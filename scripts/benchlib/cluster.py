"""`scripts/bench --cluster`: pages/s of the Redis backend with 1 and with 2 worker hosts.

A redis-server (from PATH, in a temporary directory), one front end (`ocr-server --backend
redis --workers 0`) and `ocr-worker` hosts of `--host-workers` workers each (default 1), all
on this machine. The same pages (the sroie receipts, then pdf200 if built) go through the
cluster with one host, then with two: each page one task, a window of 4 tasks per worker in
flight. Printed and written to bench-results/<time>/cluster.json: pages/s of each run (wall
clock, first Submit to last result) and their ratio (2 hosts of 1 worker on 2 cores: the
target is >= 1.7x), plus the CPU seconds the hosts and their workers used per page, which
stays meaningful on a machine shared with other work (wall-clock ratios do not).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import redis

from benchlib.datasets import ROOT, Page, load_sets
from benchlib.service import _free_port
from ocr_client import OcrClient
from ocr_server.backends.redis.hosts import HostRegistry
from ocr_server.backends.redis.keys import Keys

START_TIMEOUT = 600.0


def _say(message: str) -> None:
    print(f"bench cluster: {message}", flush=True)


class Cluster:
    def __init__(self, directory: Path, profile: str) -> None:
        self.directory = directory
        self.profile = profile
        self.redis_port = _free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.target = f"127.0.0.1:{_free_port()}"
        self.token = secrets.token_urlsafe(24)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.hosts: list[subprocess.Popen[bytes]] = []

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Any:
        log = (self.directory / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        self.processes.append(process)
        return process

    def start(self) -> None:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise SystemExit("bench cluster: redis-server is not installed (scripts/setup --dev)")
        self._spawn(
            "redis",
            [redis_server, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--save", "", "--appendonly", "yes",
             "--maxmemory-policy", "noeviction"],
        )  # fmt: skip
        self._spawn(
            "front-end",
            [sys.executable, "-m", "ocr_server", "--backend", "redis", "--redis-url",
             self.redis_url, "--workers", "0", "--listen", self.target, "--data-dir",
             str(self.directory / "front-end"), "--default-profile", self.profile],
            {"OCR_TOKENS": f"bench={self.token}"},
        )  # fmt: skip

    def add_host(self, workers: int) -> None:
        index = len(self.hosts) + 1
        self.hosts.append(
            self._spawn(
                f"host{index}",
                [
                    sys.executable,
                    "-m",
                    "ocr_server.workers.cli",
                    "--redis-url",
                    self.redis_url,
                    "--workers",
                    str(workers),
                    "--data-dir",
                    str(self.directory / f"host{index}"),
                    "--default-profile",
                    self.profile,
                ],
            )
        )

    def wait_workers(self, workers: int) -> None:
        """Until the hosts' registry in Redis counts `workers` workers with their engines
        loaded (what the front end's health follows too)."""
        registry = HostRegistry(redis.Redis.from_url(self.redis_url), Keys("ocr"))
        deadline = time.monotonic() + START_TIMEOUT
        while sum(h.workers for h in registry.live()) < workers:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"bench cluster: {workers} workers not ready; see {self.directory}"
                )
            time.sleep(0.5)

    def host_cpu_seconds(self) -> float:
        total = 0.0
        for host in self.hosts:
            try:
                process = psutil.Process(host.pid)
                for member in [process, *process.children(recursive=True)]:
                    times = member.cpu_times()
                    total += times.user + times.system
            except psutil.NoSuchProcess:
                continue
        return total

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def _run(client: OcrClient, pages: list[Page], window: int) -> tuple[float, int]:
    """Every page as a task, `window` in flight; (wall seconds, pages that failed)."""

    def one(page: Page) -> bool:
        task = client.submit(page.path.read_bytes())
        final = client.wait(task.task_id, timeout=600)
        return final.state == 3  # COMPLETED

    started = time.perf_counter()
    with ThreadPoolExecutor(window) as pool:
        results = list(pool.map(one, pages))
    return time.perf_counter() - started, results.count(False)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench --cluster")
    parser.add_argument("--smoke", action="store_true", help="a few pages: the harness works")
    parser.add_argument("--host-workers", type=int, default=1, help="workers per host (1)")
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    sets, skipped = load_sets(["sroie", "pdf200"], "quick", build=False)
    for note in skipped:
        _say(note)
    pages = [p for s in sets for p in s.pages]
    if args.smoke:
        pages = pages[:4]
    if not pages:
        _say("no evaluation data (../shared/eval): nothing to measure")
        return 2
    started_at = dt.datetime.now(dt.UTC)
    out = args.out or ROOT / "bench-results" / started_at.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as scratch:
        cluster = Cluster(Path(scratch), args.profile)
        try:
            cluster.start()
            client = OcrClient(cluster.target, cluster.token, timeout=120)
            for hosts in (1, 2):
                while len(cluster.hosts) < hosts:
                    cluster.add_host(args.host_workers)
                cluster.wait_workers(hosts * args.host_workers)
                # warm: every host's engine has run (a first inference is slow)
                _run(client, (pages * 4)[: 4 * hosts * args.host_workers], 2 * hosts)
                cpu_before = cluster.host_cpu_seconds()
                wall, failed = _run(client, pages, 4 * hosts * args.host_workers)
                cpu = cluster.host_cpu_seconds() - cpu_before
                runs[f"{hosts} hosts"] = {
                    "hosts": hosts,
                    "workers_per_host": args.host_workers,
                    "pages": len(pages),
                    "failed": failed,
                    "wall_s": round(wall, 2),
                    "pages_per_s": round(len(pages) / wall, 3),
                    "host_cpu_s_per_page": round(cpu / len(pages), 3),
                }
                _say(f"{hosts} host(s): {runs[f'{hosts} hosts']}")
            client.close()
        finally:
            cluster.stop()
    ratio = runs["2 hosts"]["pages_per_s"] / runs["1 hosts"]["pages_per_s"]
    results = {
        "started": started_at.isoformat(timespec="seconds"),
        "command": " ".join(["scripts/bench", "--cluster", *argv]),
        "cpus": os.cpu_count(),
        "load_at_end": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "runs": runs,
        "ratio_2_to_1": round(ratio, 2),
        "target": ">= 1.7 with 2 hosts of 1 worker on 2 cores (a quiet machine)",
    }
    (out / "cluster.json").write_text(json.dumps(results, indent=2) + "\n")
    _say(f"2 hosts / 1 host = {ratio:.2f}x pages/s (target >= 1.7x on a quiet 2-core machine)")
    if args.smoke:
        _say("smoke run: too few pages for the ratio to mean anything; it checks the harness")
    _say(f"wrote {out}/cluster.json")
    return 0
