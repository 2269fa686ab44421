"""Task events over Redis pub/sub: one subscriber connection per front end.

The scripts publish a snapshot of the record (every field) with its queue position on the
task's channel with every change, in the order they make them; a position-only message when a
task starts and watched tasks move up (the scripts know which are watched from the `watched`
hash this class keeps). One listener thread reads the connection and hands each message to the
task's subscriptions (the same queues as the local backend's). After a lost connection it
subscribes again and hands every watcher a fresh read of its task, so a change published while
it was away is not missed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import redis

from ocr_server.backends.events import Snapshot, Subscription
from ocr_server.backends.local.events import QueueSubscription
from ocr_server.backends.redis.codec import record_from_fields
from ocr_server.backends.redis.errors import redis_errors
from ocr_server.backends.redis.keys import Keys
from ocr_server.errors import DamagedEntryError

log = logging.getLogger(__name__)

Reader = Callable[[str], Snapshot | None]
"""Reads a task's snapshot now (after a reconnection); None when it is gone."""


class RedisTaskEvents:
    def __init__(self, client: redis.Redis, keys: Keys, read: Reader) -> None:
        self._client = client
        self._keys = keys
        self._read = read
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[QueueSubscription]] = defaultdict(set)
        self._pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        self._confirmed: set[str] = set()  # channels Redis confirmed (subscribe replies)
        self._confirmation = threading.Condition(self._lock)
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, task_id: str) -> QueueSubscription:
        subscription = QueueSubscription(task_id)
        with self._lock:
            if task_id not in self._subscribers:
                with redis_errors():  # Redis away: UNAVAILABLE, nothing left behind
                    self._client.hincrby(self._keys.watched, task_id, 1)
                    # subscribe() returns once the command is sent; the listener reads the
                    # confirmation. A change published before Redis processed it would be
                    # lost, so wait for it below (the reader then reads the record: no gap).
                    self._pubsub.subscribe(self._keys.task(task_id, "events"))
                self._start()
            self._subscribers[task_id].add(subscription)
        self._wait_subscribed(self._keys.task(task_id, "events"))
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        task_id = subscription.task_id
        with self._lock:
            subscribers = self._subscribers.get(task_id)
            if subscribers is None or not isinstance(subscription, QueueSubscription):
                return
            subscribers.discard(subscription)
            if subscribers:
                return
            del self._subscribers[task_id]
            try:
                self._pubsub.unsubscribe(self._keys.task(task_id, "events"))
                if self._client.hincrby(self._keys.watched, task_id, -1) <= 0:
                    self._client.hdel(self._keys.watched, task_id)
            except redis.RedisError as exc:  # Redis away: the expiry tidy forgets it
                log.warning("could not unsubscribe from task %s: %s", task_id, exc)

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pubsub.close()

    # --- the listener ---------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._listen, name="task-events", daemon=True)
            self._thread.start()

    def _wait_subscribed(self, channel: str, timeout: float = 5.0) -> None:
        with self._confirmation:
            if not self._confirmation.wait_for(lambda: channel in self._confirmed, timeout):
                log.warning("subscription to %s not confirmed within %.0f s", channel, timeout)

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                if not self._pubsub.subscribed:
                    time.sleep(0.05)
                    continue
                message = self._pubsub.get_message(timeout=0.5)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("task events: lost Redis (%s); subscribing again", exc)
                self._reconnect()
                continue
            except (ValueError, RuntimeError):  # closed or not yet subscribed
                time.sleep(0.05)
                continue
            if message is None:
                continue
            kind, channel = message.get("type"), _text(message["channel"])
            if kind == "message":
                self._deliver(channel, message["data"])
            elif kind in ("subscribe", "unsubscribe"):
                with self._confirmation:
                    if kind == "subscribe":
                        self._confirmed.add(channel)
                    else:
                        self._confirmed.discard(channel)
                    self._confirmation.notify_all()

    def _reconnect(self) -> None:
        while not self._closed.is_set():
            time.sleep(0.5)
            try:
                self._pubsub.ping()
            except redis.RedisError:
                continue
            break
        with self._lock:
            watched = {task_id: list(subs) for task_id, subs in self._subscribers.items()}
        for task_id, subscriptions in watched.items():
            try:
                snapshot = self._read(task_id)
            except (redis.RedisError, DamagedEntryError):
                continue
            if snapshot is not None:
                for subscription in subscriptions:
                    subscription.put(snapshot)

    def _deliver(self, channel: str, data: bytes | str) -> None:
        task_id = channel.split("{", 1)[1].split("}", 1)[0]
        with self._lock:
            subscriptions = list(self._subscribers.get(task_id, ()))
        if not subscriptions:
            return
        try:
            message = json.loads(data)
            fields = message.get("r")
            record = record_from_fields(task_id, fields) if fields else None
            snapshot: Snapshot = (record, int(message["p"]))
        except (ValueError, KeyError, TypeError, DamagedEntryError) as exc:
            log.error("task %s: unreadable event: %s", task_id, exc)
            return
        for subscription in subscriptions:
            subscription.put(snapshot)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
