"""Submission: everything between a Submit request and a queued task, apart from the queue.

Field checks, settings resolution, document triage and room (the backend's reservation) run
here, so a front end without local workers can accept work exactly as the embedded server
does. The order keeps Submit cheap and safe: checks that need no I/O first; room is reserved
before the slow part (writing and inspecting the document) so concurrent Submits overshoot no
limit; nothing is left behind when a step fails.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterable
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
from ocr_server.errors import InvalidSettingsError, ShuttingDownError
from ocr_server.models import Settings, TaskRecord, TaskState
from ocr_server.tasks.ids import new_task_id

log = logging.getLogger(__name__)

MAX_REQUEST_ID = 128
MAX_FILENAME = 1024
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
    keep_document: bool = False  # keep the original until the task expires, not its end


@dataclass(frozen=True)
class SubmissionLimits:
    result_ttl: float
    max_document_bytes: int
    documents: DocumentLimits


class Submission:
    def __init__(
        self,
        backend: TaskBackend,
        capabilities: Capabilities,
        limits: SubmissionLimits,
        clock: Clock = system_clock,
    ) -> None:
        self._backend = backend
        self._documents = backend.documents
        self._capabilities = capabilities
        self._limits = limits
        self._clock = clock
        self._accepting = True

    def stop_accepting(self) -> None:
        self._accepting = False

    def submit(self, tenant: str, content: bytes, options: SubmitOptions) -> TaskRecord:
        """Triage the document and queue it; return the new (or idempotently same) task."""
        existing = self.check(tenant, options)
        if existing is not None:
            return existing
        return self._submit(tenant, options, content, [content], content)

    def submit_stream(
        self, tenant: str, options: SubmitOptions, chunks: Iterable[bytes]
    ) -> TaskRecord:
        """`submit` for a document that arrives in chunks (a streaming upload): it is never
        whole in memory, and one past the size limit is refused as soon as a chunk passes it
        (DocumentTooLargeError). The type is detected from the first KiB."""
        existing = self.check(tenant, options)
        if existing is not None:
            return existing
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
        return self._capabilities.resolve(
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
        with self._documents.create(task_id, self._limits.max_document_bytes, expires) as writer:
            for chunk in chunks:
                writer.write(chunk)
            ref = writer.commit()
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
                document_ref=ref,
                keep_document=options.keep_document,
            )
            admission = self._backend.admit(reservation, record)
        except BaseException:
            self._documents.delete(ref)
            raise
        if not admission.created:  # a concurrent Submit with the same request_id won
            self._documents.delete(ref)
        return admission.record

    def _inspect(self, ref: str, document_type: str, whole: bytes | None) -> DocumentInfo:
        limits = self._limits.documents
        with self._documents.local_file(ref) as path:
            if document_type == "pdf":
                return inspect_pdf(path, limits)
            content = whole if whole is not None else path.read_bytes()
        return inspect_image(content, document_type, limits)


def _check_text_field(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidSettingsError(f"{name} is {len(value)} characters; at most {limit} allowed")
    if any(ord(c) < 32 for c in value):
        raise InvalidSettingsError(f"{name} contains control characters")
