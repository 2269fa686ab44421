"""Redis memory per kept MiB of document, through the cluster's own document store.

Starts a scratch `redis-server` (no persistence) on a free loopback port, writes sets of
random (incompressible) documents through `RedisDocumentStore` in 1 MiB writes, as uploads
arrive, and prints for each set what Redis says they cost: the keys' `MEMORY USAGE` (every
element counted) and the growth of `used_memory` (which also moves with transient buffers,
such as the last upload's query buffer), as bytes per MiB of document.

    .venv/bin/python scripts/measure_redis_documents.py
"""

from __future__ import annotations

import math
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import redis

from ocr_server.backends.redis.documents import RedisDocumentStore
from ocr_server.backends.redis.keys import Keys

MIB = 1 << 20


def document_sets() -> dict[str, list[int]]:
    rng = random.Random(7)
    log_uniform = [math.exp(rng.uniform(math.log(1e5), math.log(2e7))) for _ in range(60)]
    return {
        "scans, 0.2-1.5 MB (uniform)": [int(rng.uniform(2e5, 1.5e6)) for _ in range(100)],
        "0.1-20 MB (log-uniform)": [int(size) for size in log_uniform],
        "exactly 1, 4 and 8 MiB": [MIB, 4 * MIB, 8 * MIB] * 5,
    }


def main() -> None:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed (scripts/setup --dev)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="ocr-redis-memory-")
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory]
    process = subprocess.Popen(
        [*command, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        info = client.info()
        print(f"redis {info['redis_version']}, {info['mem_allocator']}")
        store = RedisDocumentStore(client, Keys("measure"))
        for label, sizes in document_sets().items():
            before = int(client.info("memory")["used_memory"])
            keys = []
            for size in sizes:
                task_id = secrets.token_hex(20)
                content = os.urandom(size)
                with store.create(task_id, 1 << 40, time.time() + 3600) as writer:
                    for start in range(0, size, MIB):
                        writer.write(content[start : start + MIB])
                    writer.commit()
                keys.append(f"measure:{{{task_id}}}:doc")
            grown = int(client.info("memory")["used_memory"]) - before
            usage = sum(int(client.memory_usage(key, samples=0) or 0) for key in keys)
            elements = sum(int(client.llen(key)) for key in keys)
            total = sum(sizes)
            print(
                f"{label}: {len(sizes)} documents, {total / MIB:.0f} MiB, "
                f"{elements / len(sizes):.1f} elements each; MEMORY USAGE {usage / total:.4f}x "
                f"= {usage / total * MIB:,.0f} bytes per MiB; used_memory grew "
                f"{grown / total:.4f}x = {grown / total * MIB:,.0f} bytes per MiB"
            )
            client.delete(*keys)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
