"""The document store: submitted documents, named by opaque references, never by local paths.

Local files today (`local/documents.py`); Redis chunks with the task's expiry in a cluster; an
S3-style store would fit the same calls. A document arrives in chunks through a writer that
enforces the size limit as they arrive (it is never whole in memory on the way in), and is
read back in chunks, or as a local file for a worker (a remote store copies the chunks to a
temporary file on the worker's host for the duration of the page).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Protocol

from ocr_server.errors import DocumentTooLargeError

CHUNK_BYTES = 4 * 1024 * 1024
"""Chunk size for reading and copying (a single 64 MiB Redis SET stalls other clients)."""


class DocumentWriter(abc.ABC):
    """Accepts a document chunk by chunk; `commit()` makes it readable under its reference,
    `abort()` (or leaving the `with` block without committing) leaves nothing behind.

    Backends implement `_append`, `_commit` and `_abort`; the size limit is enforced here,
    before a chunk past it is stored.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._open = True

    def write(self, chunk: bytes) -> None:
        """Append a chunk. DocumentTooLargeError past `max_bytes` (the document is then
        aborted); StoreFullError when the store has no room for it."""
        if not self._open:
            raise RuntimeError("write to a document writer that was committed or aborted")
        if self.size + len(chunk) > self.max_bytes:
            self.abort()
            raise DocumentTooLargeError(
                f"the document is larger than this server's limit of {_mib(self.max_bytes)}; "
                "split it or lower its resolution"
            )
        try:
            self._append(chunk)
        except BaseException:
            self.abort()
            raise
        self.size += len(chunk)

    def commit(self) -> str:
        """Make the document readable; return its reference."""
        if not self._open:
            raise RuntimeError("commit of a document writer that was committed or aborted")
        try:
            ref = self._commit()
        except BaseException:
            self.abort()
            raise
        self._open = False
        return ref

    def abort(self) -> None:
        if self._open:
            self._open = False
            self._abort()

    def __enter__(self) -> DocumentWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.abort()  # a no-op after commit

    @abc.abstractmethod
    def _append(self, chunk: bytes) -> None: ...

    @abc.abstractmethod
    def _commit(self) -> str: ...

    @abc.abstractmethod
    def _abort(self) -> None: ...


class DocumentStore(Protocol):
    def create(self, task_id: str, max_bytes: int, expires: float) -> DocumentWriter:
        """A writer for the document of `task_id` (the task's key, so a sharded store can
        keep a task's entries together). `expires`: absolute Unix time after which the store
        may drop the document whatever happens (a remote store sets it as the key's expiry).
        StoreFullError when the store has no room at all."""
        ...

    def chunks(self, ref: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The document's bytes in order; DocumentMissingError when it is gone."""
        ...

    def local_file(self, ref: str) -> AbstractContextManager[Path]:
        """A local file holding the document while the context is open (a worker reads it;
        poppler needs a path). DocumentMissingError when it is gone."""
        ...

    def exists(self, ref: str) -> bool: ...

    def delete(self, ref: str) -> None:
        """Remove the document; no error if it is already gone."""
        ...


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"
