"""The persistent task store: task records, page results, final results and idempotency keys
in diskcache, under one data directory (the documents are `documents.py`'s).

diskcache is configured so that nothing is ever evicted early (no size limit culling); every
entry carries the task's absolute expiry, and `sweep()` deletes what has expired, because
diskcache's own expiry is lazy. Writes the disk refuses raise StoreFullError
(RESOURCE_EXHAUSTED) rather than anything being evicted. Results carry a SHA-256 digest and
task records must parse, so a damaged entry is reported as such (DamagedEntryError,
DATA_LOSS) for its task alone instead of being served or crashing.

Expiry is read from the injected clock. diskcache keeps its own expiry times in real time:
they are set to the task's absolute expiry, and the sweep passes the clock's time, so a test
clock moved past the expiry makes entries vanish for reads and for the sweep alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import diskcache

from ocr_server.backends.local.capacity import writing
from ocr_server.backends.local.checkpoints import SQLITE_SETTINGS, Checkpointer
from ocr_server.backends.tasks import STAND_IN
from ocr_server.clock import Clock, system_clock
from ocr_server.errors import DamagedEntryError
from ocr_server.models import PageResult, TaskRecord

log = logging.getLogger(__name__)

# Never cull: a task may only disappear when it expires. Checkpoints in their own thread.
_SETTINGS = {
    "size_limit": 2**62,
    "eviction_policy": "none",
    "cull_limit": 0,
    "statistics": False,
    **SQLITE_SETTINGS,
}
# Submit checks the store's size (--max-store-mb) twice; the caches' part of it is a few
# SQLite queries each, so it is read at most this often (documents are counted exactly).
VOLUME_MAX_AGE = 1.0

_DIGEST = hashlib.sha256
_DIGEST_SIZE = _DIGEST().digest_size


class TaskStore:
    """Thread-safe persistence for tasks; the caller serialises state transitions."""

    def __init__(self, directory: Path, clock: Clock = system_clock) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._clock = clock
        self._tasks = diskcache.Cache(str(directory / "tasks"), **_SETTINGS)
        self._pages = diskcache.Cache(str(directory / "pages"), **_SETTINGS)
        self._results = diskcache.Cache(str(directory / "results"), **_SETTINGS)
        self._request_ids = diskcache.Cache(str(directory / "request-ids"), **_SETTINGS)
        self._caches = (self._tasks, self._pages, self._results, self._request_ids)
        self._checkpoints = Checkpointer({_name(c): _database(c) for c in self._caches})
        with contextlib.suppress(OSError, sqlite3.Error):  # a full disk: get_task's fallback
            self._tasks.add(_STAND_IN_KEY, _STAND_IN)
        self._volume_lock = threading.Lock()
        self._volume: tuple[float, int] | None = None  # (when read, bytes)

    def close(self) -> None:
        self._checkpoints.stop()
        for cache in self._caches:
            cache.close()

    # --- tasks ---------------------------------------------------------------------------

    def put_task(self, record: TaskRecord) -> None:
        with writing():
            self._tasks.set(record.task_id, record.to_json(), expire=_remaining(record.expires))
        self._checkpoints.wrote("tasks")

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

    def _parse_task(self, task_id: str, text: str | None) -> TaskRecord | None:
        if text is None:
            return None
        try:
            record = TaskRecord.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            raise DamagedEntryError(task_id, "record") from exc
        return record if record.expires > self._clock() else None

    def task_ids(self) -> Iterator[str]:
        return (key for key in self._tasks.iterkeys() if key != _STAND_IN_KEY)

    def live_tasks(self) -> Iterator[TaskRecord]:
        """Every unexpired task, in no particular order. A damaged record is logged and
        skipped: it must not stop the server from starting."""
        for task_id in self.task_ids():
            try:
                record = self.get_task(task_id)
            except DamagedEntryError as exc:
                log.error("%s", exc)
                continue
            if record is not None:
                yield record

    def claim_request_id(self, tenant: str, request_id: str, task_id: str, expires: float) -> str:
        """Bind (tenant, request_id) to task_id unless already bound; return the bound task."""
        key = f"{tenant}\x00{request_id}"
        with writing():
            added = self._request_ids.add(key, task_id, expire=_remaining(expires))
        self._checkpoints.wrote("request-ids")
        if added:
            return task_id
        existing = self._request_ids.get(key)
        return str(existing) if existing is not None else task_id

    def bind_request_id(self, tenant: str, request_id: str, task_id: str, expires: float) -> None:
        key = f"{tenant}\x00{request_id}"
        with writing():
            self._request_ids.set(key, task_id, expire=_remaining(expires))
        self._checkpoints.wrote("request-ids")

    def release_request_id(self, tenant: str, request_id: str) -> None:
        self._request_ids.delete(f"{tenant}\x00{request_id}")
        self._checkpoints.wrote("request-ids")

    def lookup_request_id(self, tenant: str, request_id: str) -> str | None:
        value = self._request_ids.get(f"{tenant}\x00{request_id}")
        return str(value) if value is not None else None

    # --- page results and final results ----------------------------------------------------

    def put_page(self, record: TaskRecord, page_number: int, page_json: str) -> None:
        """Store a page result already serialised (`PageResult.to_json`): the caller does
        that outside the backend's lock."""
        key = f"{record.task_id}:{page_number}"
        with writing():
            self._pages.set(key, page_json, expire=_remaining(record.expires))
        self._checkpoints.wrote("pages")

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
        self._checkpoints.wrote("pages", len(record.page_numbers))

    def put_result(self, record: TaskRecord, result: bytes) -> None:
        sealed = _DIGEST(result).digest() + result
        with writing():
            self._results.set(record.task_id, sealed, expire=_remaining(record.expires))
        self._checkpoints.wrote("results")

    def get_result(self, task_id: str) -> bytes | None:
        """The serialised result; None when absent; DamagedEntryError when it does not match
        the digest written with it (or cannot be read)."""
        try:
            value, expires = self._results.get(task_id, expire_time=True)
        except OSError as exc:
            raise DamagedEntryError(task_id, "result") from exc
        if value is None or (expires is not None and expires <= self._clock()):
            return None
        if not isinstance(value, bytes) or len(value) < _DIGEST_SIZE:
            raise DamagedEntryError(task_id, "result")
        digest, result = value[:_DIGEST_SIZE], value[_DIGEST_SIZE:]
        if _DIGEST(result).digest() != digest:
            raise DamagedEntryError(task_id, "result")
        return result

    def delete_result(self, task_id: str) -> None:
        self._results.delete(task_id)
        self._checkpoints.wrote("results")

    # --- capacity and expiry -------------------------------------------------------------

    def volume(self) -> int:
        """Bytes of the caches on disk (the documents are counted by their own store), as
        read at most VOLUME_MAX_AGE seconds ago."""
        with self._volume_lock:
            now = time.monotonic()
            if self._volume is None or now - self._volume[0] > VOLUME_MAX_AGE:
                self._volume = (now, int(sum(cache.volume() for cache in self._caches)))
            return self._volume[1]

    def sweep(self) -> int:
        """Delete expired entries; return how many went."""
        now = self._clock()
        removed = sum(_expire_all(cache, now) for cache in self._caches)
        if removed:
            for cache in self._caches:
                _truncate_wal(_database(cache))
            with self._volume_lock:
                self._volume = None
        return removed


# What get_task reads and parses for an unknown id (backends.tasks.STAND_IN). Its key is not
# 40 hex digits, so no request ever looks it up; it never expires in diskcache.
_STAND_IN = STAND_IN.to_json()
_STAND_IN_KEY = "stand-in"
_ABSENT_KEY = "absent"  # never stored


def _expire_all(cache: diskcache.Cache, now: float) -> int:
    """diskcache's expire() stops early when many entries share one expiry time: repeat."""
    removed = 0
    while count := int(cache.expire(now=now)):
        removed += count
    return removed


def _name(cache: diskcache.Cache) -> str:
    return Path(cache.directory).name


def _database(cache: diskcache.Cache) -> Path:
    return Path(cache.directory) / "cache.db"


def _truncate_wal(database: Path) -> None:
    """Deleting leaves sqlite's write-ahead log at its high-water mark (megabytes per cache);
    checkpoint and truncate it so the store's files shrink back after expiry."""
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=1)) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:  # busy: the next sweep tries again
        log.debug("could not truncate %s-wal: %s", database, exc)


def _remaining(expires: float) -> float:
    """diskcache takes an expiry relative to its own (real) clock: this makes its absolute
    expiry time the task's, whatever clock the store reads."""
    return max(expires - time.time(), 0.001)
