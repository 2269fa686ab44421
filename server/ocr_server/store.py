"""The persistent task store: task records, page results, final results, idempotency keys and
the submitted documents, under one data directory.

diskcache is configured so that nothing is ever evicted early (no size limit culling); every
entry carries the task's absolute expiry, and `sweep()` deletes what has expired, because
diskcache's own expiry is lazy. The store is full when it reaches `max_bytes`, or when its disk
is: writes then raise StoreFullError (RESOURCE_EXHAUSTED) rather than anything being evicted.
Results carry a SHA-256 digest and task records must parse, so a damaged entry is reported as
such (DamagedEntryError, DATA_LOSS) for its task alone instead of being served or crashing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import diskcache

from ocr_server.errors import DamagedEntryError, StoreFullError
from ocr_server.models import PageResult, Settings, TaskRecord, TaskState

log = logging.getLogger(__name__)

# Never cull: a task may only disappear when it expires.
_NO_EVICTION = {
    "size_limit": 2**62,
    "eviction_policy": "none",
    "cull_limit": 0,
    "statistics": False,
}

_DIGEST = hashlib.sha256
_DIGEST_SIZE = _DIGEST().digest_size
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SQLITE_FULL = 13


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    """A full disk (or quota) is the store being full: say so, with the status clients expect."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as exc:
        full = (
            exc.errno in _DISK_FULL_ERRNOS
            if isinstance(exc, OSError)
            else getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL
        )
        if full:
            raise StoreFullError(
                "the task store's disk is full; retry after results expire "
                "(nothing is evicted to make room)"
            ) from exc
        raise


class TaskStore:
    """Thread-safe persistence for tasks; the caller serialises state transitions."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.max_bytes = max_bytes
        self._tasks = diskcache.Cache(str(directory / "tasks"), **_NO_EVICTION)
        self._pages = diskcache.Cache(str(directory / "pages"), **_NO_EVICTION)
        self._results = diskcache.Cache(str(directory / "results"), **_NO_EVICTION)
        self._request_ids = diskcache.Cache(str(directory / "request-ids"), **_NO_EVICTION)
        self._caches = (self._tasks, self._pages, self._results, self._request_ids)
        with contextlib.suppress(OSError, sqlite3.Error):  # a full disk: get_task's fallback
            self._tasks.add(_STAND_IN_KEY, _STAND_IN)
        self._documents = directory / "documents"
        self._documents.mkdir(exist_ok=True)
        # Bytes of the documents directory, kept as files come and go: Submit checks the size
        # limit every time, and stat-ing every queued document made it O(queue length).
        self._documents_lock = threading.Lock()
        self._document_bytes = sum(
            _size(path) for path in self._documents.iterdir() if path.suffix != ".part"
        )

    def close(self) -> None:
        for cache in self._caches:
            cache.close()

    # --- tasks ---------------------------------------------------------------------------

    def put_task(self, record: TaskRecord) -> None:
        with _writing():
            self._tasks.set(record.task_id, record.to_json(), expire=_remaining(record.expires))

    def get_task(self, task_id: str) -> TaskRecord | None:
        """The record, or None when unknown or expired (even if not yet swept);
        DamagedEntryError when it is stored but cannot be parsed."""
        return self._parse_task(task_id, self._tasks.get(task_id))

    def get_task_evenly(self, task_id: str) -> TaskRecord | None:
        """get_task for a client's look-up: an unknown id costs what a known one costs, so
        that "another tenant's task" (found, parsed, then refused) and "no such task" take the
        same time and a client cannot probe which ids exist. Either way SQLite reads one row
        and misses one key, and one record is parsed: a miss reads the stand-in stored under a
        key no task id can take, a hit also looks up a key never stored."""
        text = self._tasks.get(task_id)
        other = self._tasks.get(_STAND_IN_KEY if text is None else _ABSENT_KEY, _STAND_IN)
        record = self._parse_task(task_id, text if text is not None else other)
        return record if text is not None else None

    @staticmethod
    def _parse_task(task_id: str, text: str | None) -> TaskRecord | None:
        if text is None:
            return None
        try:
            record = TaskRecord.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            raise DamagedEntryError(task_id, "record") from exc
        return record if record.expires > time.time() else None

    def task_ids(self) -> Iterator[str]:
        return (key for key in self._tasks.iterkeys() if key != _STAND_IN_KEY)

    def unfinished_tasks(self) -> list[TaskRecord]:
        """Pending and processing tasks, oldest first: what a restart must run again.
        A damaged record is logged and skipped: it must not stop the server from starting."""
        records = []
        for task_id in self.task_ids():
            try:
                record = self.get_task(task_id)
            except DamagedEntryError as exc:
                log.error("%s", exc)
                continue
            if record is not None and not record.state.is_final:
                records.append(record)
        return sorted(records, key=lambda r: (r.created, r.task_id))

    def claim_request_id(self, tenant: str, request_id: str, task_id: str, expires: float) -> str:
        """Bind (tenant, request_id) to task_id unless already bound; return the bound task."""
        key = f"{tenant}\x00{request_id}"
        with _writing():
            added = self._request_ids.add(key, task_id, expire=_remaining(expires))
        if added:
            return task_id
        existing = self._request_ids.get(key)
        return str(existing) if existing is not None else task_id

    def bind_request_id(self, tenant: str, request_id: str, task_id: str, expires: float) -> None:
        key = f"{tenant}\x00{request_id}"
        with _writing():
            self._request_ids.set(key, task_id, expire=_remaining(expires))

    def release_request_id(self, tenant: str, request_id: str) -> None:
        self._request_ids.delete(f"{tenant}\x00{request_id}")

    def lookup_request_id(self, tenant: str, request_id: str) -> str | None:
        value = self._request_ids.get(f"{tenant}\x00{request_id}")
        return str(value) if value is not None else None

    # --- documents -----------------------------------------------------------------------

    def document_path(self, task_id: str) -> Path:
        return self._documents / task_id

    def put_document(self, task_id: str, content: bytes) -> Path:
        path = self.document_path(task_id)
        tmp = path.with_suffix(".part")
        try:
            with _writing():
                tmp.write_bytes(content)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a half-written document must not fill the disk
            raise
        tmp.replace(path)
        with self._documents_lock:
            self._document_bytes += len(content)
        return path

    def delete_document(self, task_id: str) -> None:
        self._unlink_document(self.document_path(task_id))

    def _unlink_document(self, path: Path) -> None:
        size = _size(path)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        with self._documents_lock:
            self._document_bytes = max(0, self._document_bytes - size)

    # --- page results and final results ----------------------------------------------------

    def put_page(self, record: TaskRecord, page: PageResult) -> None:
        key = f"{record.task_id}:{page.page_number}"
        with _writing():
            self._pages.set(key, page.to_json(), expire=_remaining(record.expires))

    def get_pages(self, record: TaskRecord) -> dict[int, PageResult]:
        pages = {}
        for number in record.page_numbers:
            text = self._pages.get(f"{record.task_id}:{number}")
            if text is None:
                continue
            try:
                pages[number] = PageResult.from_json(text)
            except (ValueError, TypeError, KeyError):  # damaged: recognise the page again
                log.error("page %d of task %s is damaged in the store", number, record.task_id)
        return pages

    def delete_pages(self, record: TaskRecord) -> None:
        for number in record.page_numbers:
            self._pages.delete(f"{record.task_id}:{number}")

    def put_result(self, record: TaskRecord, result: bytes) -> None:
        sealed = _DIGEST(result).digest() + result
        with _writing():
            self._results.set(record.task_id, sealed, expire=_remaining(record.expires))

    def get_result(self, task_id: str) -> bytes | None:
        """The serialised result; None when absent; DamagedEntryError when it does not match
        the digest written with it (or cannot be read)."""
        try:
            value = self._results.get(task_id)
        except OSError as exc:
            raise DamagedEntryError(task_id, "result") from exc
        if value is None:
            return None
        if not isinstance(value, bytes) or len(value) < _DIGEST_SIZE:
            raise DamagedEntryError(task_id, "result")
        digest, result = value[:_DIGEST_SIZE], value[_DIGEST_SIZE:]
        if _DIGEST(result).digest() != digest:
            raise DamagedEntryError(task_id, "result")
        return result

    # --- capacity and expiry -------------------------------------------------------------

    def volume(self) -> int:
        """Bytes on disk: the caches plus the documents waiting to be recognised."""
        caches: int = sum(cache.volume() for cache in self._caches)
        with self._documents_lock:
            return caches + self._document_bytes

    def is_full(self, incoming: int) -> bool:
        return self.volume() + incoming > self.max_bytes

    def sweep(self) -> int:
        """Delete expired entries and orphaned documents; return how many entries went."""
        removed = sum(_expire_all(cache) for cache in self._caches)
        for path in self._documents.iterdir():
            task_id = path.name.removesuffix(".part")
            try:
                record = self.get_task(task_id)
            except DamagedEntryError:
                continue  # kept: its task stays visible (and damaged) until it expires
            if record is None or record.state.is_final:
                age = time.time() - _mtime(path)
                if age > 60:  # a document being written by Submit has no record yet
                    if path.suffix == ".part":  # not counted in the volume until complete
                        path.unlink(missing_ok=True)
                    else:
                        self._unlink_document(path)
                    removed += 1
        if removed:
            log.info("swept %d expired entries", removed)
            for cache in self._caches:
                _truncate_wal(Path(cache.directory) / "cache.db")
        return removed


# A typical record (one page, default settings): what get_task reads and parses for an
# unknown id. Its key is not 40 hex digits, so no request ever looks it up; it never expires
# and, expired itself (expires=0), is never returned as a task.
_STAND_IN = TaskRecord(
    task_id="0" * 40,
    tenant="stand-in",
    state=TaskState.PENDING,
    settings=Settings(language="en", profile="fast", pages="", dpi=200),
    document_type="png",
    page_numbers=[1],
    created=0.0,
    expires=0.0,
    filename="document.png",
    request_id="0" * 32,
).to_json()
_STAND_IN_KEY = "stand-in"
_ABSENT_KEY = "absent"  # never stored


def _expire_all(cache: diskcache.Cache) -> int:
    """diskcache's expire() stops early when many entries share one expiry time: repeat."""
    removed = 0
    while count := int(cache.expire()):
        removed += count
    return removed


def _truncate_wal(database: Path) -> None:
    """Deleting leaves sqlite's write-ahead log at its high-water mark (megabytes per cache);
    checkpoint and truncate it so the store's files shrink back after expiry."""
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=1)) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:  # busy: the next sweep tries again
        log.debug("could not truncate %s-wal: %s", database, exc)


def _remaining(expires: float) -> float:
    """diskcache takes a relative expiry; keep the task's absolute one across updates."""
    return max(expires - time.time(), 0.001)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()
