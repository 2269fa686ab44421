"""The task manager's events, as an interface: logs and metrics subscribe to the same calls, so
what is logged and what is counted cannot drift apart.

Observers are called under the task manager's lock, on its callers' threads: they must be
quick and must not raise (Fanout logs and swallows an observer's failure, so telemetry can
never fail a task).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from ocr_server.models import TaskRecord

log = logging.getLogger(__name__)


class TaskObserver(Protocol):
    def task_queued(self, record: TaskRecord, size_bytes: int) -> None:
        """A new task was accepted (not a retry answered with an existing task)."""

    def task_started(self, record: TaskRecord) -> None:
        """The task's first page went to a worker."""

    def page_done(self, record: TaskRecord, seconds: float) -> None:
        """A page was recognised, `seconds` after it was handed to a worker."""

    def task_finished(self, record: TaskRecord) -> None:
        """The task reached a final state (COMPLETED, FAILED or CANCELLED)."""

    def submit_refused(self, tenant: str, reason: str, message: str) -> None:
        """A Submit was refused; `reason` is a short fixed word (queue_full, ...)."""


class Fanout:
    """Calls every observer in turn; one that raises is logged and skipped."""

    def __init__(self, observers: Iterable[TaskObserver]) -> None:
        self._observers = list(observers)

    def task_queued(self, record: TaskRecord, size_bytes: int) -> None:
        for observer in self._observers:
            _quietly(observer.task_queued, record, size_bytes)

    def task_started(self, record: TaskRecord) -> None:
        for observer in self._observers:
            _quietly(observer.task_started, record)

    def page_done(self, record: TaskRecord, seconds: float) -> None:
        for observer in self._observers:
            _quietly(observer.page_done, record, seconds)

    def task_finished(self, record: TaskRecord) -> None:
        for observer in self._observers:
            _quietly(observer.task_finished, record)

    def submit_refused(self, tenant: str, reason: str, message: str) -> None:
        for observer in self._observers:
            _quietly(observer.submit_refused, tenant, reason, message)


def _quietly(call: object, *args: object) -> None:
    try:
        call(*args)  # type: ignore[operator]
    except Exception:
        log.exception("a telemetry observer failed; the task goes on")
