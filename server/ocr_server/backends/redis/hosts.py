"""Worker hosts register in Redis with a TTL'd heartbeat: front ends read who is alive
(health SERVING only with at least one ready worker; GetCapabilities lists the profiles the
live hosts have installed). A host that dies simply stops renewing its key."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis

from ocr_server.backends.redis.errors import redis_errors
from ocr_server.backends.redis.keys import Keys


@dataclass(frozen=True)
class HostInfo:
    host_id: str
    workers: int  # workers with their engine loaded
    profiles: tuple[str, ...]  # installed on this host


class HostRegistry:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    def register(self, info: HostInfo, ttl: float) -> None:
        with redis_errors():
            pipe = self._client.pipeline(transaction=True)
            pipe.set(self._keys.host(info.host_id), json.dumps(asdict(info)), px=int(ttl * 1000))
            pipe.sadd(self._keys.hosts, info.host_id)
            pipe.execute()

    def unregister(self, host_id: str) -> None:
        with redis_errors():
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self._keys.host(host_id))
            pipe.srem(self._keys.hosts, host_id)
            pipe.execute()

    def live(self) -> list[HostInfo]:
        """The hosts whose heartbeat has not lapsed (lapsed ones are forgotten)."""
        with redis_errors():
            ids = sorted(_text(i) for i in self._client.smembers(self._keys.hosts))
            if not ids:
                return []
            values = self._client.mget([self._keys.host(i) for i in ids])
            gone = [i for i, value in zip(ids, values, strict=True) if value is None]
            if gone:
                self._client.srem(self._keys.hosts, *gone)
        hosts = []
        for value in values:
            if value is not None:
                data = json.loads(value)
                hosts.append(HostInfo(data["host_id"], data["workers"], tuple(data["profiles"])))
        return hosts


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
