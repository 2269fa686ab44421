"""Task events: what WatchTask listens to. One interface; in-process now (`local/events.py`),
Redis pub/sub in a cluster.

A task backend publishes a snapshot with every change it makes, in the order it makes them. A
watcher must subscribe *before* it reads the task's record: then a change made between the
read and the first event is still delivered (a repeat of a state is harmless; a missed final
state would leave the watcher waiting for ever).
"""

from __future__ import annotations

from typing import Protocol

from ocr_server.models import TaskRecord

Snapshot = tuple[TaskRecord | None, int]
"""A copy of the task record and its queue position at the time of the change; the record is
None when only the queue position changed."""


class Subscription(Protocol):
    task_id: str

    def get(self, timeout: float) -> Snapshot | None:
        """The next change; raises queue.Empty after `timeout` seconds without one; None once
        closed. Of several position-only changes in a row only the latest is returned."""
        ...

    def close(self) -> None:
        """Wake the reader with None (the client left); safe from any thread, more than once."""
        ...


class TaskEvents(Protocol):
    def subscribe(self, task_id: str) -> Subscription: ...

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget the subscription; nothing is left behind for the task."""
        ...
