"""Figures for docs/reliability.md (Security): what TLS costs per call, and whether response
times tell another tenant's task id from an id that never existed.

    PYTHONPATH=.:server:client:client/generated .venv/bin/python scripts/bench_security.py

Runs real servers on loopback with the fault-injection engine (recognition is not measured).
"""

from __future__ import annotations

import io
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ocr_client import OcrClient, tls_credentials
from tests.harness import TOKENS, ServerProcess
from tests.tls_certs import TestCA

ROUNDS = 1000


def tls_cost(work: Path) -> None:
    ca = TestCA(work / "pki", "bench")
    server, client = ca.issue_server(), ca.issue_client()
    tls = ["--tls-cert", str(server.cert), "--tls-key", str(server.key)]
    setups: dict[str, tuple[list[str], dict[str, object]]] = {
        "plaintext": ([], {}),
        "TLS": (tls, {"ca_file": ca.cert}),
        "mTLS": (
            [*tls, "--tls-client-ca", str(ca.cert)],
            {"ca_file": ca.cert, "client_cert": client.cert, "client_key": client.key},
        ),
    }
    print("GetCapabilities latency, medians (new channel: connect + handshake + first call)")
    for name, (args, options) in setups.items():
        credentials = tls_credentials(**options) if options else None  # type: ignore[arg-type]
        process = ServerProcess(
            work / name,
            "--engine",
            "fake",
            *args,
            env={"OCR_WORKERS": "1"},
            credentials=credentials,
        ).start()
        try:
            first, later = [], []
            for _ in range(50):
                started = time.perf_counter()
                with OcrClient(process.target, TOKENS["alice"], **options) as ocr:  # type: ignore[arg-type]
                    ocr.capabilities()
                    first.append(time.perf_counter() - started)
                    for _ in range(20):
                        started = time.perf_counter()
                        ocr.capabilities()
                        later.append(time.perf_counter() - started)
            print(
                f"  {name:9} new channel {statistics.median(first) * 1000:6.2f} ms, "
                f"later calls {statistics.median(later) * 1000:6.3f} ms "
                f"({len(first)} channels, {len(later)} calls)"
            )
        finally:
            process.stop()


def not_found_timing(work: Path) -> None:
    calls: dict[str, Callable[[OcrClient, str], object]] = {
        "GetTaskStatus": lambda c, t: c.status(t),
        "GetResult": lambda c, t: c.result(t),
        "Cancel": lambda c, t: c.cancel(t),
        "WatchTask": lambda c, t: list(c.watch(t, timeout=10)),
    }
    process = ServerProcess(
        work / "tenants",
        "--engine",
        "fake",
        "--fake-rules",
        "default=slow:600",
        "--shutdown-grace",
        "1s",
        env={"OCR_WORKERS": "1"},
    ).start()
    try:
        with process.client() as alice, process.client("bob") as bob:
            foreign = [alice.submit(_blank_png()).task_id for _ in range(2)]
            samples: dict[tuple[str, str], list[float]] = {}
            for round_number in range(ROUNDS + 50):
                for rpc, call in calls.items():
                    kinds = [("foreign", foreign[round_number % 2]), ("unknown", "")]
                    if round_number % 2:
                        kinds.reverse()
                    for kind, task_id in kinds:
                        task_id = task_id or secrets.token_hex(20)
                        started = time.perf_counter()
                        try:
                            call(bob, task_id)
                        except grpc.RpcError as error:
                            assert error.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
                        elapsed = time.perf_counter() - started
                        if round_number >= 50:  # the first rounds warm up
                            samples.setdefault((rpc, kind), []).append(elapsed)
        print(f"NOT_FOUND for bob, medians of {ROUNDS} interleaved calls each")
        for rpc in calls:
            foreign_ms = statistics.median(samples[rpc, "foreign"]) * 1000
            unknown_ms = statistics.median(samples[rpc, "unknown"]) * 1000
            print(
                f"  {rpc:13} alice's task {foreign_ms:.3f} ms, never existed {unknown_ms:.3f} ms, "
                f"difference {(foreign_ms - unknown_ms) * 1000:+.0f} us"
            )
    finally:
        process.stop()


def _blank_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (400, 200), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        tls_cost(Path(directory))
        not_found_timing(Path(directory))


if __name__ == "__main__":
    main()
