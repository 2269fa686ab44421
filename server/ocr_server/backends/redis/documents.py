"""Documents in Redis, in chunks: the cluster's DocumentStore.

A document is a list of chunks of just under CHUNK_BYTES (4 MiB): one 64 MiB SET stalled
every other client for 250 ms, a 4 MiB append costs 20-80 ms. The sizes are cut to Redis's
allocator: jemalloc rounds each list element up to a size class (four per power of two), so
an element of exactly 4 MiB took 5 MiB and 4 MiB chunks cost 1.10-1.25x the documents'
bytes; cut to fill classes (`element_sizes`) they cost 1.00x (measured in docs/scale-out.md).
A document is written under `...:doc:part`
and renamed into place on commit, so a reader never sees half a document; the part expires
on its own if its writer dies. Both carry the task's absolute expiry (PEXPIREAT). The
reference is the task id, so the document shares its task's hash tag. A worker host copies
the chunks to a temporary file for the page (poppler needs a path) and keeps the last few
copies (a document is never changed once committed): the pages of one PDF mostly run one
after another on the same host, and a 100-page document copied for each page moved 100 times
its size.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from ocr_server.backends.documents import CHUNK_BYTES, DocumentWriter
from ocr_server.backends.redis.errors import redis_errors
from ocr_server.backends.redis.keys import Keys
from ocr_server.errors import DocumentMissingError

_REF = re.compile(r"[0-9a-f]{40}")
# A list element must leave this much of its size class free for Redis's own header (16
# bytes measured with jemalloc 5.3, Redis 7.0: a 4 MiB - 16 B element fits the 4 MiB class).
ELEMENT_HEADROOM = 64
ELEMENT_BYTES = CHUNK_BYTES - ELEMENT_HEADROOM
_SPLIT_ABOVE = 64 * 1024  # a last piece smaller than this is stored as it is
PART_TTL_MS = 3_600_000  # an abandoned upload's part lives at most an hour
KEEP_COPIES = 4  # local copies kept once no page uses them
KEEP_SECONDS = 300.0  # ... for at most this long


@dataclass
class _Copy:
    path: Path
    users: int = 0
    last_used: float = 0.0


class RedisDocumentStore:
    def __init__(
        self, client: redis.Redis, keys: Keys, scratch: Path | None = None, kind: str = "doc"
    ) -> None:
        """`kind`: the key's last part, so that one task can have a submitted document
        ("doc") and rendered files ("export") side by side."""
        self._client = client
        self._keys = keys
        self._scratch = scratch  # where local_file copies go (None: the system's temp dir)
        self._kind = kind
        self._lock = threading.Lock()
        self._copies: OrderedDict[str, _Copy] = OrderedDict()  # ref -> copy, oldest first

    def create(self, task_id: str, max_bytes: int, expires: float) -> DocumentWriter:
        return _ChunkWriter(self, self._key(task_id), max_bytes, expires)

    def chunks(self, ref: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """Stored chunks are read one at a time (LINDEX), re-cut to `chunk_bytes`."""
        key = self._key(ref)
        with redis_errors():
            count = int(self._client.llen(key))
        if count == 0:
            raise DocumentMissingError(f"document {ref} is gone")
        buffer = b""
        for index in range(count):
            with redis_errors():
                chunk = self._client.lindex(key, index)
            if chunk is None:
                raise DocumentMissingError(f"document {ref} is gone")
            buffer += bytes(chunk)  # type: ignore[arg-type]
            while len(buffer) >= chunk_bytes:
                yield buffer[:chunk_bytes]
                buffer = buffer[chunk_bytes:]
        if buffer:
            yield buffer

    @contextlib.contextmanager
    def local_file(self, ref: str) -> Iterator[Path]:
        """A local copy, shared by the pages of the document that run at once and kept a
        while after (KEEP_COPIES, KEEP_SECONDS) for the next page; DocumentMissingError when
        the document is gone from Redis (checked on every use, so an ended task's copy is
        never handed out again)."""
        copy = self._take(ref)
        try:
            yield copy.path
        finally:
            self._give_back(ref, copy)

    def _take(self, ref: str) -> _Copy:
        if not self.exists(ref):
            raise DocumentMissingError(f"document {ref} is gone")
        with self._lock:
            copy = self._copies.get(ref)
            if copy is not None and copy.path.exists():
                copy.users += 1
                self._copies.move_to_end(ref)
                return copy
        handle, name = tempfile.mkstemp(prefix="ocr-doc-", dir=self._scratch)
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as file:
                for chunk in self.chunks(ref):
                    file.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        copy = _Copy(path, users=1)
        with self._lock:
            replaced = self._copies.pop(ref, None)
            self._copies[ref] = copy
        if replaced is not None and replaced.users == 0:
            replaced.path.unlink(missing_ok=True)
        return copy

    def _give_back(self, ref: str, copy: _Copy) -> None:
        now = time.monotonic()
        with self._lock:
            copy.users -= 1
            copy.last_used = now
            if self._copies.get(ref) is not copy and copy.users == 0:
                copy.path.unlink(missing_ok=True)  # replaced meanwhile
            idle = [r for r, c in self._copies.items() if c.users == 0]
            stale = [r for r in idle if now - self._copies[r].last_used > KEEP_SECONDS]
            stale += idle[: max(0, len(idle) - KEEP_COPIES)]
            for old in dict.fromkeys(stale):
                self._copies.pop(old).path.unlink(missing_ok=True)

    def sweep(self, wanted: Callable[[str], bool]) -> int:
        """Nothing to do: every key expires with its task (PEXPIREAT)."""
        return 0

    def drop_copies(self) -> None:
        """Delete every local copy (at shutdown)."""
        with self._lock:
            copies, self._copies = list(self._copies.values()), OrderedDict()
        for copy in copies:
            copy.path.unlink(missing_ok=True)

    def exists(self, ref: str) -> bool:
        try:
            key = self._key(ref)
        except DocumentMissingError:
            return False
        with redis_errors():
            return bool(self._client.exists(key))

    def delete(self, ref: str) -> None:
        with contextlib.suppress(DocumentMissingError), redis_errors():
            self._client.delete(self._key(ref))

    def _key(self, ref: str) -> str:
        if not _REF.fullmatch(ref):
            raise DocumentMissingError(f"no document is stored under {ref[:60]!r}")
        return self._keys.task(ref, self._kind)


class _ChunkWriter(DocumentWriter):
    def __init__(self, store: RedisDocumentStore, key: str, max_bytes: int, expires: float):
        super().__init__(max_bytes)
        self._client = store._client
        self._key = key
        self._part = key + ":part"
        self._expires_ms = int(expires * 1000)
        self._buffer = bytearray()

    def _append(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= ELEMENT_BYTES:
            self._push([bytes(self._buffer[:ELEMENT_BYTES])])
            del self._buffer[:ELEMENT_BYTES]

    def _push(self, elements: list[bytes]) -> None:
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            for element in elements:
                pipe.rpush(self._part, element)
            pipe.pexpire(self._part, PART_TTL_MS)
            pipe.execute()

    def _commit(self) -> str:
        if self._buffer or self.size == 0:
            rest, start = memoryview(self._buffer), 0
            elements = []
            for size in element_sizes(len(rest)):
                elements.append(bytes(rest[start : start + size]))
                start += size
            rest.release()
            self._push(elements)
            self._buffer.clear()
        with redis_errors():
            pipe = self._client.pipeline(transaction=True)
            pipe.rename(self._part, self._key)
            pipe.pexpireat(self._key, self._expires_ms)
            pipe.execute()
        return self._key.split("{", 1)[1].split("}", 1)[0]

    def _abort(self) -> None:
        self._buffer.clear()
        with contextlib.suppress(redis.RedisError):
            self._client.delete(self._part)


def element_sizes(size: int) -> list[int]:
    """How to store the last `size` bytes of a document (less than a full chunk) as list
    elements that each fill one of jemalloc's size classes: the largest class that fits,
    again for the rest, down to _SPLIT_ABOVE. Empty documents are one empty element."""
    sizes = []
    while size > _SPLIT_ABOVE:
        element = _size_class_at_most(size + ELEMENT_HEADROOM) - ELEMENT_HEADROOM
        sizes.append(element)
        size -= element
    if size or not sizes:
        sizes.append(size)
    return sizes


def _size_class_at_most(size: int) -> int:
    """The largest jemalloc size class not above `size` (classes from 2^k step by 2^(k-2))."""
    step = 1 << (size.bit_length() - 3)
    return size // step * step
