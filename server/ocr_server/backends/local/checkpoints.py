"""SQLite write-ahead-log checkpoints in a thread of their own, off every request's path.

SQLite checkpoints inside the commit that takes the log past 1,000 pages: that commit copies
the log into the database and fsyncs both, which took 14 to 340 ms (perf trace) on a disk
shared with other work, and it is whichever write came next: a Submit's own, or the pool's
made under the backend's lock that a Submit then waits for. The store's caches are opened
with that threshold raised to AUTOCHECKPOINT_PAGES (a safety net, should this thread fall
behind) and this thread checkpoints a cache instead once it has taken CHECKPOINT_WRITES
writes (a diskcache write is 4-5 pages of log), about as often as SQLite would have.

Checkpointing every second instead was measured worse: 11 fsyncs a second against 5 a
minute, and every writer slowed down by the disk's extra work (docs/benchmarks.md).

Durability is unchanged: in WAL mode with `synchronous=NORMAL` (diskcache's) a commit is a
write to the log, never an fsync, wherever checkpoints run; a checkpoint only moves
committed pages from the log into the database file. A SIGKILLed process loses nothing.

PASSIVE checkpoints never block a reader or a writer. The log starts over at the first write
after a checkpoint that found every page copied, so a checkpoint that raced writes is
repeated (each pass copies only what came meanwhile) and the log stays about as small as
SQLite's own checkpoints keep it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINT_WRITES = 200
AUTOCHECKPOINT_PAGES = 10_000
# diskcache applies `sqlite_*` settings as PRAGMAs on every connection it opens.
SQLITE_SETTINGS = {"sqlite_wal_autocheckpoint": AUTOCHECKPOINT_PAGES}
_PASSES = 3  # per checkpoint, while writes keep racing it


class Checkpointer:
    """Checkpoints each named database after `writes` writes were counted to it."""

    def __init__(self, databases: Mapping[str, Path], writes: int = CHECKPOINT_WRITES) -> None:
        self._databases = dict(databases)
        self._writes = writes
        self._counts = dict.fromkeys(self._databases, 0)
        self._due: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self.rounds = 0  # checkpoints run so far (tests and diagnostics)
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints", daemon=True)
        self._thread.start()

    def wrote(self, name: str, count: int = 1) -> None:
        """Count writes to a database; cheap (no I/O), called on the writer's path."""
        with self._lock:
            self._counts[name] += count
            if self._counts[name] < self._writes:
                return
            self._counts[name] = 0
            self._due.add(name)
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        connections: dict[str, sqlite3.Connection] = {}
        try:
            while True:
                self._wake.wait()
                with self._lock:
                    self._wake.clear()
                    due, self._due = self._due, set()
                if self._stopped:
                    return
                for name in sorted(due):
                    try:
                        if name not in connections:
                            connections[name] = _connect(self._databases[name])
                        checkpoint(connections[name])
                        self.rounds += 1
                    except sqlite3.Error as exc:  # busy or a full disk: SQLite's own net holds
                        log.warning("could not checkpoint %s: %s", self._databases[name], exc)
                        with contextlib.suppress(sqlite3.Error):
                            connections.pop(name).close()
        finally:
            for connection in connections.values():
                connection.close()


def checkpoint(connection: sqlite3.Connection) -> bool:
    """A PASSIVE checkpoint, repeated while writes land meanwhile; True once the whole log
    was copied (its next write then starts it over)."""
    for _ in range(_PASSES):
        busy, logged, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if not busy and copied >= logged:
            return True
    return False


def _connect(database: Path) -> sqlite3.Connection:
    """Made and used by the checkpoint thread alone."""
    return sqlite3.connect(database, timeout=1, isolation_level=None)
