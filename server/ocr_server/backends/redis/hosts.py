"""Worker hosts register in Redis with a TTL'd heartbeat: front ends read who is alive
(health SERVING only with at least one ready worker) and what they read (each host's
readers: its installed profiles and the languages each reads, its Tesseract data included),
which is what the front ends offer (`offer.py`). A host that dies simply stops renewing its
key."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from ocr_server.backends.redis.errors import redis_errors
from ocr_server.backends.redis.keys import Keys
from ocr_server.languages.routing import Reader


@dataclass(frozen=True)
class HostInfo:
    host_id: str
    workers: int  # workers with their engine loaded
    readers: tuple[Reader, ...]  # what this host reads: its installed profiles' languages

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(reader.profile for reader in self.readers)


class HostRegistry:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    def register(self, info: HostInfo, ttl: float) -> None:
        value = {
            "host_id": info.host_id,
            "workers": info.workers,
            "readers": readers_to_json(info.readers),
        }
        with redis_errors():
            pipe = self._client.pipeline(transaction=True)
            pipe.set(self._keys.host(info.host_id), json.dumps(value), px=int(ttl * 1000))
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
                readers = readers_from_json(data.get("readers", []))
                hosts.append(HostInfo(data["host_id"], data["workers"], readers))
        return hosts

    def remember_offer(self, readers: Sequence[Reader]) -> None:
        """Keep what the live hosts read, for the front ends' use while none is alive."""
        with redis_errors():
            self._client.set(self._keys.offer, json.dumps(readers_to_json(readers)))

    def last_offer(self) -> tuple[Reader, ...] | None:
        """What the hosts last seen alive read; None when no host was ever seen."""
        with redis_errors():
            value = self._client.get(self._keys.offer)
        return None if value is None else readers_from_json(json.loads(value))


def readers_to_json(readers: Sequence[Reader]) -> list[dict[str, Any]]:
    return [
        {
            "profile": reader.profile,
            "engine": reader.engine,
            "reads": sorted(reader.reads),
            "reads_well": sorted(reader.reads_well),
        }
        for reader in readers
    ]


def readers_from_json(data: list[dict[str, Any]]) -> tuple[Reader, ...]:
    return tuple(
        Reader(
            str(item["profile"]),
            str(item["engine"]),
            frozenset(map(str, item["reads"])),
            frozenset(map(str, item["reads_well"])),
        )
        for item in data
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
