"""Submit latency while the workers are saturated, measured by a client of its own.

The bench's own clients share one Python process (and its GIL) with watch streams, result
fetches and samplers, so timing Submit there measures the bench as much as the server. This
probe is a separate process, like any other client on the network: every INTERVAL seconds it
submits the given document and cancels it at once (a pending task costs no worker time), until
its standard input closes; then it prints the Submit round trips in seconds as JSON.

    python -m benchlib.submit_probe TARGET TOKEN FILE PROFILE < pipe
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from ocr_client import OcrClient

INTERVAL = 0.5


def main(target: str, token: str, document: Path, profile: str) -> None:
    content = document.read_bytes()
    stop = threading.Event()

    def wait_for_stdin_to_close() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_stdin_to_close, daemon=True).start()
    latencies: list[float] = []
    with OcrClient(target, token, timeout=60) as client:
        client.capabilities()  # the SDK learns the server's limits once: not a Submit's cost
        while True:  # at least one Submit, however short the run
            before = time.perf_counter()
            task = client.submit(content, profile=profile, filename=document.name)
            latencies.append(time.perf_counter() - before)
            client.cancel(task.task_id)
            if stop.wait(INTERVAL):
                break
    print(json.dumps(latencies))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4])
