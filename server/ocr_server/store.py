"""The persistent task store: task records, page results, final results, idempotency keys and
the submitted documents, under one data directory.

diskcache is configured so that nothing is ever evicted early (no size limit culling); every
entry carries the task's absolute expiry, and `sweep()` deletes what has expired, because
diskcache's own expiry is lazy. The store is full when it reaches `max_bytes`: Submit is then
refused rather than anything evicted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import diskcache

from ocr_server.models import PageResult, Settings, TaskRecord, TaskState

log = logging.getLogger(__name__)

# Never cull: a task may only disappear when it expires.
_NO_EVICTION = {
    "size_limit": 2**62,
    "eviction_policy": "none",
    "cull_limit": 0,
    "statistics": False,
}


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
        self._documents = directory / "documents"
        self._documents.mkdir(exist_ok=True)

    def close(self) -> None:
        for cache in self._caches:
            cache.close()

    # --- tasks ---------------------------------------------------------------------------

    def put_task(self, record: TaskRecord) -> None:
        self._tasks.set(record.task_id, record.to_json(), expire=_remaining(record.expires))

    def get_task(self, task_id: str) -> TaskRecord | None:
        """The record, or None when unknown or expired (even if not yet swept).

        An unknown id costs what a known one costs: a miss parses a stand-in record, so that
        "another tenant's task" (found, parsed, then refused) and "no such task" take the same
        time and a client cannot probe which ids exist."""
        text = self._tasks.get(task_id)
        record = TaskRecord.from_json(text if text is not None else _STAND_IN)
        if text is None:
            return None
        return record if record.expires > time.time() else None

    def unfinished_tasks(self) -> list[TaskRecord]:
        """Pending and processing tasks, oldest first: what a restart must run again."""
        records = []
        for task_id in self._tasks.iterkeys():
            record = self.get_task(task_id)
            if record is not None and not record.state.is_final:
                records.append(record)
        return sorted(records, key=lambda r: (r.created, r.task_id))

    def claim_request_id(self, tenant: str, request_id: str, task_id: str, expires: float) -> str:
        """Bind (tenant, request_id) to task_id unless already bound; return the bound task."""
        key = f"{tenant}\x00{request_id}"
        if self._request_ids.add(key, task_id, expire=_remaining(expires)):
            return task_id
        existing = self._request_ids.get(key)
        return str(existing) if existing is not None else task_id

    def bind_request_id(self, tenant: str, request_id: str, task_id: str, expires: float) -> None:
        key = f"{tenant}\x00{request_id}"
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
        tmp.write_bytes(content)
        tmp.replace(path)
        return path

    def delete_document(self, task_id: str) -> None:
        self.document_path(task_id).unlink(missing_ok=True)

    # --- page results and final results ----------------------------------------------------

    def put_page(self, record: TaskRecord, page: PageResult) -> None:
        key = f"{record.task_id}:{page.page_number}"
        self._pages.set(key, page.to_json(), expire=_remaining(record.expires))

    def get_pages(self, record: TaskRecord) -> dict[int, PageResult]:
        pages = {}
        for number in record.page_numbers:
            text = self._pages.get(f"{record.task_id}:{number}")
            if text is not None:
                pages[number] = PageResult.from_json(text)
        return pages

    def delete_pages(self, record: TaskRecord) -> None:
        for number in record.page_numbers:
            self._pages.delete(f"{record.task_id}:{number}")

    def put_result(self, record: TaskRecord, result: bytes) -> None:
        self._results.set(record.task_id, result, expire=_remaining(record.expires))

    def get_result(self, task_id: str) -> bytes | None:
        value = self._results.get(task_id)
        return bytes(value) if value is not None else None

    # --- capacity and expiry -------------------------------------------------------------

    def volume(self) -> int:
        """Bytes on disk: the caches plus the documents waiting to be recognised."""
        caches: int = sum(cache.volume() for cache in self._caches)
        documents = 0
        for path in self._documents.iterdir():
            with contextlib.suppress(FileNotFoundError):
                documents += path.stat().st_size
        return caches + documents

    def is_full(self, incoming: int) -> bool:
        return self.volume() + incoming > self.max_bytes

    def sweep(self) -> int:
        """Delete expired entries and orphaned documents; return how many entries went."""
        removed: int = sum(cache.expire() for cache in self._caches)
        for path in self._documents.iterdir():
            task_id = path.name.removesuffix(".part")
            record = self.get_task(task_id)
            if record is None or record.state.is_final:
                age = time.time() - _mtime(path)
                if age > 60:  # a document being written by Submit has no record yet
                    path.unlink(missing_ok=True)
                    removed += 1
        if removed:
            log.info("swept %d expired entries", removed)
        return removed


# A typical record (one page, default settings): what get_task parses for an unknown id.
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


def _remaining(expires: float) -> float:
    """diskcache takes a relative expiry; keep the task's absolute one across updates."""
    return max(expires - time.time(), 0.001)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()
