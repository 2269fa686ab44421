"""A worker host of a Redis cluster: today's worker pool, fed from the shared queue.

The pool (spawn, deaths, time limits, recycling) is unchanged; the task manager is its job
source as on one machine. Around it this class keeps the host known to the cluster: every
heartbeat it registers (TTL'd: a dead host drops out of health by itself), with what it reads
(its readers: the front ends offer what every live host reads), and renews the
stream entries of its pages in flight, so no other host reclaims them while it lives; it
wakes the pool when a front end announces work (besides the pool's own poll every second);
at shutdown it gives its pages back at once (`release_page`), so another host runs them
without waiting for the reclaim time.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

import redis

from ocr_server.backends.redis.backend import RedisTaskBackend
from ocr_server.backends.redis.hosts import HostInfo, HostRegistry
from ocr_server.errors import OcrServiceError
from ocr_server.languages.routing import Reader
from ocr_server.tasks.manager import TaskManager
from ocr_server.workers.pool import WorkerPool

log = logging.getLogger(__name__)


SIZE_EVERY = 12  # heartbeats between two reads of the cluster's size


def new_host_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class WorkerHost:
    def __init__(
        self,
        backend: RedisTaskBackend,
        manager: TaskManager,
        pool: WorkerPool,
        readers: tuple[Reader, ...],
        heartbeat: float,
    ) -> None:
        self.backend = backend
        self.host_id = backend.consumer
        self._manager = manager
        self._pool = pool
        self._readers = readers
        self._heartbeat = heartbeat
        self._registry = HostRegistry(backend.client, backend.keys)
        self._stopped = threading.Event()
        self._beats = 0

    def start(self) -> None:
        """Feed the pool (its workers must be spawned already) and keep the host alive."""
        self._pool.run(self._manager)
        threading.Thread(target=self._beat, name="host-heartbeat", daemon=True).start()
        threading.Thread(target=self._listen_for_work, name="work-wakeup", daemon=True).start()

    def stop(self, grace: float) -> int:
        """Stop taking pages; let pages in flight finish for `grace` seconds, then stop the
        workers and give back the pages still unfinished. Returns how many went back."""
        self._stopped.set()
        self._manager.stop_accepting()
        try:
            self._registry.unregister(self.host_id)
        except OcrServiceError as exc:
            log.warning("could not unregister from Redis: %s", exc)
        unfinished = self._pool.drain(grace)
        self._pool.stop()
        released = self._manager.release_unfinished(unfinished)
        if released:
            log.info("gave back %d pages in flight", released)
        return released

    def _beat(self) -> None:
        while not self._stopped.is_set():
            started = time.monotonic()
            try:
                self._beat_once()
            except (OcrServiceError, redis.RedisError) as exc:
                log.warning("heartbeat failed: %s", exc)
            self._stopped.wait(max(0.0, self._heartbeat - (time.monotonic() - started)))

    def _beat_once(self) -> None:
        info = HostInfo(self.host_id, self._pool.ready_count, self._readers)
        self._registry.register(info, ttl=3 * self._heartbeat)
        lost = self.backend.renew(self._manager.lease_ids())
        for lease_id in lost:
            log.warning(
                "page %s was taken over by another host (this one was too slow to answer)",
                lease_id,
            )
        # up to 2 tasks started per live worker in the whole cluster, as on one machine; the
        # registry read is O(hosts), so only every SIZE_EVERY beats (it changes slowly)
        self._beats += 1
        if self._beats % SIZE_EVERY == 1:
            workers = sum(host.workers for host in self._registry.live())
            self.backend.max_active = max(2, 2 * workers)

    def _listen_for_work(self) -> None:
        pubsub = self.backend.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        channel = self.backend.keys.work_channel
        while not self._stopped.is_set():
            try:
                if not pubsub.subscribed:
                    pubsub.subscribe(channel)
                if pubsub.get_message(timeout=1.0) is not None:
                    self._pool.wake()
            except (redis.RedisError, ValueError) as exc:
                log.debug("work announcements: %s; subscribing again", exc)
                self._stopped.wait(1.0)
                pubsub.close()
                pubsub = self.backend.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.close()
