"""Submission: everything between a Submit request and a queued task, apart from the queue.

Field checks, settings resolution, document triage and room (the backend's reservation) run
here, so a front end without local workers can accept work exactly as the embedded server
does. The order keeps Submit cheap and safe: checks that need no I/O first; room is reserved
before the slow part (writing and inspecting the document) so concurrent Submits overshoot no
limit; nothing is left behind when a step fails.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import mmap
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ocr_server.backends.tasks import Reservation, TaskBackend
from ocr_server.capabilities import Capabilities
from ocr_server.clock import Clock, system_clock
from ocr_server.documents import (
    DocumentInfo,
    DocumentLimits,
    check_page_sizes,
    detect_type,
    inspect_image,
    inspect_pdf,
    parse_page_selection,
)
from ocr_server.errors import (
    DocumentTooLargeError,
    InvalidDocumentError,
    InvalidSettingsError,
    RequestIdReusedError,
    ShuttingDownError,
)
from ocr_server.models import Settings, TaskRecord, TaskState
from ocr_server.tasks.ids import new_task_id
from ocr_server.telemetry.observer import Fanout, TaskObserver

log = logging.getLogger(__name__)

MAX_REQUEST_ID = 128
MAX_FILENAME = 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEAD_BYTES = 1024  # what type detection needs (a PDF header may follow some junk)


@dataclass(frozen=True)
class SubmitOptions:
    """The client's part of a submission, as received."""

    language: str = ""
    profile: str = ""
    pages: str = ""
    dpi: int = 0
    request_id: str = ""
    filename: str = ""


@dataclass(frozen=True)
class SubmissionLimits:
    result_ttl: float
    max_document_bytes: int
    documents: DocumentLimits


class Submission:
    def __init__(
        self,
        backend: TaskBackend,
        capabilities: Callable[[], Capabilities],
        limits: SubmissionLimits,
        clock: Clock = system_clock,
        observer: TaskObserver | None = None,
        keep_documents: bool = True,
    ) -> None:
        """`capabilities()`: what is offered now (it may change: a cluster's worker hosts come
        and go). `keep_documents`: keep each document until its task expires (the searchable
        PDF is drawn over it), else delete it when the task ends (--keep-documents)."""
        self._backend = backend
        self._observer: TaskObserver = observer or Fanout(())
        self._documents = backend.documents
        self._capabilities = capabilities
        self._limits = limits
        self._clock = clock
        self._accepting = True
        self.keeps_documents = keep_documents

    def stop_accepting(self) -> None:
        self._accepting = False

    def submit(self, tenant: str, content: bytes, options: SubmitOptions) -> TaskRecord:
        """Triage the document and queue it; return the new (or idempotently same) task.
        RequestIdReusedError when the request_id names a task of another document."""
        existing = self.check(tenant, options)
        if existing is not None:
            return self._same_request(existing, options, [content])
        return self._submit(tenant, options, content, [content], content)

    def submit_stream(
        self,
        tenant: str,
        options: SubmitOptions,
        chunks: Iterable[bytes],
        declared_size: int = 0,
        declared_sha256: str = "",
    ) -> TaskRecord:
        """`submit` for a document that arrives in chunks (a streaming upload): it is never
        whole in memory, and one past the size limit is refused as soon as a chunk passes it
        (DocumentTooLargeError), or before any chunk when `declared_size` (the client's word
        for it, checked at the end) is over it. The type is detected from the first KiB.
        `declared_sha256` (the client's SHA-256 of the document, checked at the end) lets a
        retry be answered before any chunk is read."""
        if declared_sha256 and not _SHA256.fullmatch(declared_sha256):
            raise InvalidSettingsError("sha256 must be 64 lowercase hex digits")
        limit = self._limits.max_document_bytes
        if declared_size > limit:
            raise DocumentTooLargeError(
                f"the document is {declared_size:,} bytes; this server accepts documents up "
                f"to {limit:,} bytes (--max-document-mb); split it"
            )
        existing = self.check(tenant, options)
        if existing is not None and declared_sha256:
            fingerprint = request_fingerprint(declared_sha256, self.resolve(options))
            _check_same_request(existing, fingerprint)
            return existing
        if existing is not None:
            return self._same_request(existing, options, chunks)
        if declared_size or declared_sha256:
            chunks = _checked(chunks, declared_size, declared_sha256)
        iterator = iter(chunks)
        read: list[bytes] = []
        while sum(map(len, read)) < _HEAD_BYTES and (chunk := next(iterator, None)) is not None:
            read.append(chunk)
        head = b"".join(read)[:_HEAD_BYTES]
        return self._submit(tenant, options, head, itertools.chain(read, iterator), None)

    def _submit(
        self,
        tenant: str,
        options: SubmitOptions,
        head: bytes,
        chunks: Iterable[bytes],
        whole: bytes | None,
    ) -> TaskRecord:
        settings = self.resolve(options)
        document_type = detect_type(head)
        reservation = self._backend.reserve(tenant)
        try:
            return self._admit(reservation, chunks, whole, options, settings, document_type)
        finally:
            self._backend.release(reservation)  # a no-op once admitted

    def _same_request(
        self, existing: TaskRecord, options: SubmitOptions, chunks: Iterable[bytes]
    ) -> TaskRecord:
        """A retry is answered with its task, whatever room is left; the same key with another
        document or settings is refused (the document is only hashed, never stored)."""
        digest = _Digest(chunks, self._limits.max_document_bytes)
        for _ in digest:
            pass
        _check_same_request(
            existing, request_fingerprint(digest.hexdigest(), self.resolve(options))
        )
        return existing

    def check(self, tenant: str, options: SubmitOptions) -> TaskRecord | None:
        """The checks before any document byte is looked at; the existing task when the
        tenant's request_id already names one (a retried Submit is answered, never refused)."""
        if not self._accepting:
            raise ShuttingDownError("the server is shutting down; submit again shortly")
        _check_text_field("request_id", options.request_id, MAX_REQUEST_ID)
        _check_text_field("filename", options.filename, MAX_FILENAME)
        if options.request_id:
            return self._backend.lookup_request(tenant, options.request_id)
        return None

    def resolve(self, options: SubmitOptions) -> Settings:
        return self._capabilities().resolve(
            options.language, options.profile, options.pages, options.dpi
        )

    def _admit(
        self,
        reservation: Reservation,
        chunks: Iterable[bytes],
        whole: bytes | None,
        options: SubmitOptions,
        settings: Settings,
        document_type: str,
    ) -> TaskRecord:
        """Store the document, inspect it, and queue the task (its room is reserved).
        `whole`: the document's bytes when the caller has them anyway (images are inspected
        from memory; otherwise they are read back from the store)."""
        task_id = new_task_id()
        created = self._clock()
        expires = created + self._limits.result_ttl
        digest = _Digest(chunks)  # the writer enforces the size limit
        with self._documents.create(task_id, self._limits.max_document_bytes, expires) as writer:
            for chunk in digest:
                writer.write(chunk)
            ref = writer.commit()
        fingerprint = (
            request_fingerprint(digest.hexdigest(), settings) if options.request_id else ""
        )
        try:
            info = self._inspect(ref, document_type, whole)
            pages = parse_page_selection(settings.pages, info.page_count)
            check_page_sizes(info, pages, settings.dpi, self._limits.documents)
            if document_type != "pdf":  # an image's dpi is its own unless the client gave one
                settings = dataclasses.replace(settings, dpi=options.dpi)
            record = TaskRecord(
                task_id=task_id,
                tenant=reservation.tenant,
                state=TaskState.PENDING,
                settings=settings,
                document_type=document_type,
                page_numbers=pages,
                created=created,
                expires=expires,
                filename=options.filename,
                request_id=options.request_id,
                request_fingerprint=fingerprint,
                document_ref=ref,
                keep_document=self.keeps_documents,
            )
            admission = self._backend.admit(reservation, record)
        except BaseException:
            self._documents.delete(ref)
            raise
        if not admission.created:  # a concurrent Submit with the same request_id won
            self._documents.delete(ref)
            _check_same_request(admission.record, fingerprint)
        else:
            self._observer.task_queued(admission.record, digest.size)
        return admission.record

    def _inspect(self, ref: str, document_type: str, whole: bytes | None) -> DocumentInfo:
        limits = self._limits.documents
        if document_type != "pdf" and whole is not None:  # no need to read it back
            return inspect_image(whole, document_type, limits)
        with self._documents.local_file(ref) as path:  # a remote store copies it here
            if document_type == "pdf":
                return inspect_pdf(path, limits)
            # a streamed image is mapped, not read: the upload is never whole in memory
            with (
                path.open("rb") as file,
                mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data,
            ):
                return inspect_image(data, document_type, limits)


def request_fingerprint(document_sha256: str, settings: Settings) -> str:
    """What makes two Submits "the same request" for request_id: the document's bytes and the
    settings in effect (not the filename, which is bookkeeping)."""
    material = json.dumps([document_sha256, dataclasses.astuple(settings)])
    return hashlib.sha256(material.encode()).hexdigest()


def _check_same_request(existing: TaskRecord, fingerprint: str) -> None:
    """AIP-155: a key names one request. Answering another document with the first one's task
    would hand out the wrong result, so a reuse with different content is ALREADY_EXISTS.
    Records from before fingerprints existed match any repeat."""
    if existing.request_fingerprint and existing.request_fingerprint != fingerprint:
        raise RequestIdReusedError(
            f"request_id {existing.request_id!r} was already used for task "
            f"{existing.task_id} with a different document or different settings; use a new "
            "request_id for a new document (the same request_id only repeats the same Submit)"
        )


class _Digest:
    """Passes chunks through, hashing and counting them, with the size limit enforced (for a
    document that is only compared, never stored, the writer is not there to enforce it)."""

    def __init__(self, chunks: Iterable[bytes], limit: int | None = None) -> None:
        self._chunks = chunks
        self._limit = limit
        self._hash = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.size += len(chunk)
            if self._limit is not None and self.size > self._limit:
                raise DocumentTooLargeError(
                    f"the document is larger than this server's limit of "
                    f"{self._limit / 2**20:.0f} MiB (--max-document-mb); split it"
                )
            self._hash.update(chunk)
            yield chunk

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _checked(chunks: Iterable[bytes], size: int, sha256: str) -> Iterator[bytes]:
    """The chunks, then a check that they match the size and digest the client announced."""
    received = 0
    digest = hashlib.sha256()
    for chunk in chunks:
        received += len(chunk)
        digest.update(chunk)
        yield chunk
    if size and received != size:
        raise InvalidDocumentError(
            f"the upload ended after {received:,} bytes but its header announced {size:,}; "
            "the document was cut short, send it again"
        )
    if sha256 and digest.hexdigest() != sha256:
        raise InvalidDocumentError(
            "the document's bytes do not match the sha256 in the upload's header; it was "
            "damaged on the way, send it again"
        )


def _check_text_field(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidSettingsError(f"{name} is {len(value)} characters; at most {limit} allowed")
    if any(ord(c) < 32 for c in value):
        raise InvalidSettingsError(f"{name} contains control characters")
