"""In-process task events (see backends/events.py): each watcher has a queue of snapshots.

The local backend hands over snapshots it will not change again, so a watcher sees every change in
order; a watcher that goes away unsubscribes and leaves nothing behind. When a task starts,
every waiting watched task moves up one place: those updates carry only the new position (no
record, so no store read per watcher), and a watcher that lags behind gets only the latest of
several in a row, so hundreds of watchers cost O(watchers) per start, not O(watchers^2).
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict

from ocr_server.backends.events import Snapshot, Subscription


class QueueSubscription:
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._queue: queue.SimpleQueue[Snapshot | None] = queue.SimpleQueue()
        self._held: list[Snapshot | None] = []  # read ahead while skipping stale positions

    def put(self, snapshot: Snapshot) -> None:
        self._queue.put(snapshot)

    def get(self, timeout: float) -> Snapshot | None:
        """Next change; raises queue.Empty after `timeout`; None once closed. Of several
        position-only updates in a row, only the latest is returned (one reader only)."""
        item = self._held.pop() if self._held else self._queue.get(timeout=timeout)
        while item is not None and item[0] is None:
            try:
                following = self._queue.get_nowait()
            except queue.Empty:
                break
            if following is None or following[0] is not None:
                self._held.append(following)
                break
            item = following
        return item

    def close(self) -> None:
        self._queue.put(None)


class LocalTaskEvents:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[QueueSubscription]] = defaultdict(set)

    def subscribe(self, task_id: str) -> QueueSubscription:
        subscription = QueueSubscription(task_id)
        with self._lock:
            self._subscribers[task_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            subscribers = self._subscribers.get(subscription.task_id)
            if subscribers is not None and isinstance(subscription, QueueSubscription):
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[subscription.task_id]

    def is_watched(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._subscribers

    def watched(self) -> list[str]:
        with self._lock:
            return list(self._subscribers)

    def publish(self, task_id: str, snapshot: Snapshot) -> None:
        with self._lock:
            subscribers = list(self._subscribers.get(task_id, ()))
        for subscription in subscribers:
            subscription.put(snapshot)
