"""ExportResult's work: find the tenant's task and its result (a COMPLETED task's, or the pages
a CANCELLED one finished, as GetResult), render the asked format, and hand the servicer the
file's size, SHA-256 and bytes.

Text, JSON, hOCR and ALTO are rendered from the stored result on every request (milliseconds
a page, docs/outputs.md). The searchable PDF also needs the document, which is therefore kept
until the task expires (unless the operator turned that off: --keep-documents off, and then
the PDF is FAILED_PRECONDITION); it is rendered on the first request
in a separate renderer process (not a worker, and not the server's own interpreter, whose lock
the RPC threads need) and kept in an exports document store until the task expires, so repeated
downloads cost nothing. At most PDF_RENDERS_AT_ONCE render at a time, at the workers' low
priority, and at most MAX_WAITING_EXPORTS requests wait for one: beyond, RESOURCE_EXHAUSTED,
so that exports cannot take every RPC thread or the machine from recognition.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ocr.v1 import ocr_pb2
from ocr_server import outputs
from ocr_server.backends.documents import DocumentStore
from ocr_server.documents import page_resolution
from ocr_server.errors import (
    DocumentMissingError,
    DocumentNotKeptError,
    InvalidSettingsError,
    QueueFullError,
)
from ocr_server.models import TaskRecord
from ocr_server.outputs.source import Source
from ocr_server.tasks.manager import TaskManager
from ocr_server.workers.worker import die_with_parent, lower_priority

PDF_RENDERS_AT_ONCE = 2
MAX_WAITING_EXPORTS = 16
CHUNK_BYTES = 256 * 1024  # far below the 4 MiB message limit other languages' clients keep
_NO_LIMIT = 2**62


class ExportStore(DocumentStore, Protocol):
    """Where rendered files are kept: a document store that can also drop what no live task
    wants (the local one's `sweep`)."""

    def sweep(self, wanted: Callable[[str], bool]) -> int: ...


@dataclass(frozen=True)
class ExportedFile:
    """A rendered file: what the header says, and its bytes in chunks of CHUNK_BYTES."""

    format: outputs.Format
    filename: str
    size: int
    sha256: str
    chunks: Iterator[bytes]


class Exporter:
    def __init__(
        self,
        manager: TaskManager,
        documents: DocumentStore,
        exports: ExportStore,
        scratch: Path,
        alive: Callable[[str], bool],
    ) -> None:
        """`documents`: the submitted documents; `exports`: where rendered files are kept;
        `scratch`: a directory for files being rendered; `alive(task_id)`: the task exists."""
        self._manager = manager
        self._documents = documents
        self._exports = exports
        self._scratch = scratch
        self._alive = alive
        self._pdf_renders = threading.BoundedSemaphore(PDF_RENDERS_AT_ONCE)
        self._waiting = threading.BoundedSemaphore(MAX_WAITING_EXPORTS)
        self._lock = threading.Lock()
        self._renderers: ProcessPoolExecutor | None = None

    def export(self, tenant: str, task_id: str, result_format: int) -> ExportedFile:
        """The file; NOT_FOUND as GetResult, FAILED_PRECONDITION before completion (and for
        a PDF of a document not kept), INVALID_ARGUMENT for an unknown format,
        RESOURCE_EXHAUSTED when too many wait."""
        chosen = outputs.FORMATS.get(result_format)
        if chosen is None:
            names = ", ".join(f.name for f in outputs.FORMATS.values())
            raise InvalidSettingsError(f"format {result_format} is not one of: {names}")
        record, serialised = self._manager.export_source(tenant, task_id)
        filename = _download_name(record, chosen)
        if not outputs.is_file_format(result_format):
            source = _source(record, None)
            result = ocr_pb2.OcrResult.FromString(serialised)
            data = outputs.render_bytes(result_format, result, source)
            digest = hashlib.sha256(data).hexdigest()
            pieces = (data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES))
            return ExportedFile(chosen, filename, len(data), digest, pieces)
        if not record.keep_document:  # deleted when the task ended (--keep-documents off)
            raise DocumentNotKeptError(record.task_id)
        if not self._exports.exists(record.task_id):
            self._render_once(record, serialised)
        try:
            size, digest = _measure(self._exports.chunks(record.task_id, CHUNK_BYTES))
        except DocumentMissingError:  # expired since: as GetResult would say
            return self.export(tenant, task_id, result_format)
        return ExportedFile(
            chosen, filename, size, digest, self._exports.chunks(record.task_id, CHUNK_BYTES)
        )

    def sweep(self) -> int:
        """Drop the kept files of tasks that expired."""
        return self._exports.sweep(self._alive)

    def close(self) -> None:
        with self._lock:
            if self._renderers is not None:
                self._renderers.shutdown(wait=False, cancel_futures=True)
                self._renderers = None

    def _render_once(self, record: TaskRecord, serialised: bytes) -> None:
        if not self._waiting.acquire(blocking=False):
            raise QueueFullError(f"{MAX_WAITING_EXPORTS} files are being rendered; ask again")
        try:
            with self._pdf_renders:
                if not self._exports.exists(record.task_id):  # a peer's render may have won
                    self._render_and_keep(record, serialised)
        finally:
            self._waiting.release()

    def _render_and_keep(self, record: TaskRecord, serialised: bytes) -> None:
        self._scratch.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.TemporaryDirectory(dir=self._scratch) as scratch,
            self._documents.local_file(record.document_ref) as document,
        ):
            output = Path(scratch) / "export.pdf"
            job = self._renderer_pool().submit(
                render_in_process, serialised, _source(record, document), output, record
            )
            try:
                job.result()
            except BrokenProcessPool:  # the renderer died (killed, out of memory)
                self.close()
                raise
            with (
                self._exports.create(record.task_id, _NO_LIMIT, record.expires) as writer,
                output.open("rb") as file,
            ):
                while chunk := file.read(CHUNK_BYTES):
                    writer.write(chunk)
                writer.commit()

    def _renderer_pool(self) -> ProcessPoolExecutor:
        """Started on the first PDF (spawned: safe beside gRPC's threads), then kept."""
        with self._lock:
            if self._renderers is None:
                self._renderers = ProcessPoolExecutor(
                    PDF_RENDERS_AT_ONCE,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_renderer_started,
                )
            return self._renderers


def render_in_process(serialised: bytes, source: Source, output: Path, record: TaskRecord) -> None:
    """The renderer process's job: the searchable PDF of `source` into `output`."""
    assert source.document is not None
    document, kind, dpi = source.document, source.document_type, record.settings.dpi

    def unrecognised(number: int) -> tuple[float, float]:
        return page_resolution(document, kind, number, dpi)

    outputs.render_file(ocr_pb2.OcrResult.FromString(serialised), source, output, unrecognised)


def _renderer_started() -> None:
    die_with_parent()
    lower_priority()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _source(record: TaskRecord, document: Path | None) -> Source:
    return Source(
        task_id=record.task_id,
        filename=record.filename,
        document_type=record.document_type,
        language=record.settings.language,
        profile=record.settings.profile,
        document=document,
    )


def _measure(chunks: Iterator[bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _download_name(record: TaskRecord, chosen: outputs.Format) -> str:
    """The submitted file's name (its last component, tamed) with the format's extension."""
    stem = Path(record.filename.replace("\\", "/")).stem if record.filename else ""
    stem = re.sub(r"[^\w.\- ]+", "_", stem).strip(" .") or record.task_id
    return stem[:200] + chosen.extension
