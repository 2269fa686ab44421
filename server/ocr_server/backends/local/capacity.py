"""The local store's size limit (--max-store-mb) and its full disk, said the same way.

Nothing is ever evicted to make room: a write that would pass the limit, or that the disk
refuses (ENOSPC, quota, SQLITE_FULL), raises StoreFullError (RESOURCE_EXHAUSTED) instead.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Callable, Iterator

from ocr_server.errors import StoreFullError

_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SQLITE_FULL = 13


class Capacity:
    """The sum of the store's parts (the caches, the documents) against one limit."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._volumes: list[Callable[[], int]] = []

    def add_volume(self, volume: Callable[[], int]) -> None:
        self._volumes.append(volume)

    def volume(self) -> int:
        return sum(volume() for volume in self._volumes)

    def check(self, incoming: int) -> None:
        """StoreFullError when `incoming` more bytes would pass the limit."""
        if self.volume() + incoming > self.max_bytes:
            raise StoreFullError(
                "the task store is at its size limit; retry after results expire "
                "(nothing is evicted to make room)"
            )


@contextlib.contextmanager
def writing() -> Iterator[None]:
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
