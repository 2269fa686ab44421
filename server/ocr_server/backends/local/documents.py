"""Documents as plain files in one directory (poppler needs a path): the local DocumentStore.

A document is written to `<ref>.part` chunk by chunk and renamed into place on commit, so a
reader never sees half a document and a crash leaves only a `.part` file for the sweep. The
reference is the task id (40 hex digits, also the file name); anything else names nothing, so
a reference can never point outside the directory.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ocr_server.backends.documents import CHUNK_BYTES, DocumentWriter
from ocr_server.backends.local.capacity import Capacity, writing
from ocr_server.clock import Clock, system_clock
from ocr_server.errors import DocumentMissingError

log = logging.getLogger(__name__)

_REF = re.compile(r"[0-9a-f]{40}")
_PART = ".part"
# A document this process is still admitting (written, no record yet) is spared this long;
# any other document no task wants (its task expired, or it was left by a Submit cut short by
# a restart) goes at the next sweep.
ORPHAN_AGE = 60.0


class LocalDocumentStore:
    """Thread-safe; keeps its total size for the store's capacity check."""

    def __init__(self, directory: Path, capacity: Capacity, clock: Clock = system_clock) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._capacity = capacity
        self._clock = clock
        # Bytes of committed documents, kept as files come and go: Submit checks the size
        # limit every time, and stat-ing every queued document made it O(queue length).
        self._lock = threading.Lock()
        self._bytes = sum(_size(p) for p in directory.iterdir() if p.suffix != _PART)
        self._unclaimed: set[str] = set()  # created here; no sweep has seen them wanted yet
        capacity.add_volume(self.volume)

    def volume(self) -> int:
        with self._lock:
            return self._bytes

    # --- DocumentStore ------------------------------------------------------------------

    def create(self, task_id: str, max_bytes: int, expires: float) -> DocumentWriter:
        path = self._path(task_id)
        self._capacity.check(0)
        with self._lock:
            self._unclaimed.add(path.name)
        return _FileWriter(self, path, max_bytes)

    def chunks(self, ref: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        try:
            handle = self._path(ref).open("rb")
        except FileNotFoundError as exc:
            raise DocumentMissingError(f"document {ref} is gone") from exc
        with handle:
            while chunk := handle.read(chunk_bytes):
                yield chunk

    @contextlib.contextmanager
    def local_file(self, ref: str) -> Iterator[Path]:
        path = self._path(ref)
        if not path.is_file():
            raise DocumentMissingError(f"document {ref} is gone")
        yield path  # the stored file itself: nothing to copy or clean up

    def exists(self, ref: str) -> bool:
        try:
            return self._path(ref).is_file()
        except DocumentMissingError:
            return False

    def delete(self, ref: str) -> None:
        with contextlib.suppress(DocumentMissingError):
            self._unlink(self._path(ref))
        self._forget(ref)

    def _forget(self, ref: str) -> None:
        with self._lock:
            self._unclaimed.discard(ref)

    # --- upkeep ---------------------------------------------------------------------------

    def sweep(self, wanted: Callable[[str], bool]) -> int:
        """Delete documents no task wants any more (`wanted(ref)` False): at once, unless this
        process is still admitting them (then once older than ORPHAN_AGE), and `.part` files
        of abandoned writes once older than ORPHAN_AGE."""
        removed = 0
        for path in self.directory.iterdir():
            ref = path.name.removesuffix(_PART)
            if path.suffix != _PART and wanted(ref):
                with self._lock:
                    self._unclaimed.discard(ref)
                continue
            with self._lock:
                admitting = path.suffix == _PART or ref in self._unclaimed
            if admitting and self._clock() - _mtime(path) <= ORPHAN_AGE:
                continue
            with self._lock:
                self._unclaimed.discard(ref)
            if path.suffix == _PART:  # not counted in the volume until committed
                path.unlink(missing_ok=True)
            else:
                self._unlink(path)
            removed += 1
        return removed

    # --- internals ------------------------------------------------------------------------

    def _path(self, ref: str) -> Path:
        if not _REF.fullmatch(ref):
            raise DocumentMissingError(f"no document is stored under {ref[:60]!r}")
        return self.directory / ref

    def _unlink(self, path: Path) -> None:
        size = _size(path)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        with self._lock:
            self._bytes = max(0, self._bytes - size)

    def _committed(self, size: int) -> None:
        with self._lock:
            self._bytes += size


class _FileWriter(DocumentWriter):
    def __init__(self, store: LocalDocumentStore, path: Path, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self._store = store
        self._path = path
        self._part = path.with_suffix(_PART)
        self._handle: BinaryIO | None = None

    def _append(self, chunk: bytes) -> None:
        self._store._capacity.check(self.size + len(chunk))
        with writing():
            if self._handle is None:
                self._handle = self._part.open("wb")
            self._handle.write(chunk)

    def _commit(self) -> str:
        with writing():
            if self._handle is None:
                self._handle = self._part.open("wb")
            self._handle.close()
        self._part.replace(self._path)
        self._store._committed(self.size)
        return self._path.name

    def _abort(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
        self._part.unlink(missing_ok=True)  # a half-written document must not fill the disk
        self._store._forget(self._path.name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return math.inf  # gone already: nothing to sweep
