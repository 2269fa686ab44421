"""Submit latency while the workers are saturated, measured by a client of its own.

The bench's own clients share one Python process (and its GIL) with watch streams, result
fetches and samplers, so timing Submit there measures the bench as much as the server. This
probe is a separate process, like any other client on the network: every INTERVAL seconds it
submits the next of its documents in turn and cancels it at once (a pending task costs no
worker time), until its standard input closes; then it prints each Submit's document type and
round trip in seconds as JSON.

    python -m benchlib.submit_probe TARGET TOKEN PROFILE FILE [FILE ...] < pipe
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from pathlib import Path

from ocr_client import OcrClient
from ocr_server.documents import detect_type

INTERVAL = 0.5


def main(target: str, token: str, profile: str, documents: list[Path]) -> None:
    contents = [(d.name, d.read_bytes()) for d in documents]
    kinds = [detect_type(content[:1024]) for _, content in contents]
    stop = threading.Event()

    def wait_for_stdin_to_close() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_stdin_to_close, daemon=True).start()
    samples: list[tuple[str, float]] = []
    with OcrClient(target, token, timeout=60) as client:
        client.capabilities()  # the SDK learns the server's limits once: not a Submit's cost
        # at least one Submit, however short the run
        for (name, content), kind in itertools.cycle(zip(contents, kinds, strict=True)):
            before = time.perf_counter()
            task = client.submit(content, profile=profile, filename=name)
            samples.append((kind, time.perf_counter() - before))
            client.cancel(task.task_id)
            if stop.wait(INTERVAL):
                break
    print(json.dumps(samples))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], [Path(a) for a in sys.argv[4:]])
