"""RapidOCR, the peer users pick for CPU speed: `rapidocr_onnxruntime` 1.4.4 with the PP-OCRv4
ONNX models inside its wheel, at its own defaults (detection at 736 px on the short side, the
page first scaled to 2,000 px on its long side; 0/180 line classifier on), in N spawned
processes of one onnxruntime thread each, as the service runs N single-thread workers.

Its text is its boxes in its own order (top to bottom, then left to right), one per line:
what a user of the library gets. PDF pages are rasterised at 200 dpi with pdf2image, as the
service does, inside the timed page. Installed by `scripts/setup --dev` without its
dependencies (it would bring a second OpenCV beside PaddleX's opencv-contrib-python; every
other dependency is already there).
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from benchlib.datasets import EvalSet, Page
from benchlib.drive import drive
from benchlib.outcome import PageOutcome, SetRun
from ocr_server.documents import DEFAULT_DPI

PAGE_TIMEOUT = 300.0
LOAD_TIMEOUT = 300.0
VERSION = "1.4.4"


def available() -> str | None:
    """None when RapidOCR can run here, else why not."""
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        return f"rapidocr_onnxruntime not installed (scripts/setup --dev installs {VERSION})"
    return None


def _serve(conn: Connection) -> None:
    """A worker process: load RapidOCR once, then read pages until told to stop."""
    import numpy as np
    from PIL import Image
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
    conn.send(("ready", os.getpid()))
    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        path, document_type = message[1], message[2]
        started = time.perf_counter()
        try:
            if document_type == "pdf":
                from pdf2image import convert_from_path

                image = convert_from_path(path, dpi=DEFAULT_DPI, first_page=1, last_page=1)[0]
            else:
                image = Image.open(path)
            bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
            result, _ = engine(bgr)
            text = "\n".join(str(item[1]) for item in result or [])
            conn.send(("done", text, time.perf_counter() - started))
        except Exception as exc:  # a page that fails is reported, the worker goes on
            conn.send(("failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - started))


class RapidOcr:
    """N RapidOCR processes; use as a context manager."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._processes: list[BaseProcess] = []
        self._conns: list[Connection] = []

    def __enter__(self) -> RapidOcr:
        context = multiprocessing.get_context("spawn")
        env_before = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",)}
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            for index in range(self.workers):
                parent, child = context.Pipe()
                process = context.Process(
                    target=_serve, args=(child,), name=f"rapidocr-{index}", daemon=True
                )
                process.start()
                child.close()
                self._processes.append(process)
                self._conns.append(parent)
            for conn in self._conns:
                if not conn.poll(LOAD_TIMEOUT) or conn.recv()[0] != "ready":
                    raise RuntimeError("a RapidOCR worker did not start")
        except BaseException:
            self.__exit__()
            raise
        finally:
            for key, value in env_before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for process in self._processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def run(self, eval_set: EvalSet) -> SetRun:
        """Read every page of the set, N at a time; wall time over the whole set."""
        return drive(eval_set, self._conns, lambda: self.pids, self._read, "rapidocr", "")

    @staticmethod
    def _read(conn: Connection, page: Page) -> PageOutcome:
        conn.send(("page", str(page.path), page.document_type))
        if not conn.poll(PAGE_TIMEOUT):
            return PageOutcome(page.page_id, "", PAGE_TIMEOUT, "RapidOCR worker silent")
        message: tuple[Any, ...] = conn.recv()
        if message[0] == "done":
            return PageOutcome(page.page_id, str(message[1]), float(message[2]))
        return PageOutcome(page.page_id, "", float(message[2]), str(message[1]))
