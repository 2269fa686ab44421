"""Logging set-up (`--log-format text|json`) and the task event log: one line per task event
(queued, started, completed, failed, cancelled, refused) with the task id and tenant as fields.

Never logged: tokens (auth.py hashes them at once) and document text (page text and file
contents never reach a log call; the file name is the client's and is logged only as a length-
limited field). In JSON each line is one object: `time`, `level`, `logger`, `message`, then the
event's fields (`event`, `task_id`, `tenant`, ...), so a log pipeline can index them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from ocr_server.models import TaskRecord

EVENT_LOGGER = "ocr_server.events"
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def configure(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def configure_worker_logging(log_format: str) -> None:
    """A worker process logs warnings and errors only, tagged with its pid, in the server's
    format (so a JSON log stays one object per line)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"worker {os.getpid()}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRIBUTES}


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`: the event fields after the message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        return line


def _text_value(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(_fields(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class TaskEventLog:
    """The task event log (a TaskObserver)."""

    def __init__(self) -> None:
        self._log = logging.getLogger(EVENT_LOGGER)

    def task_queued(self, record: TaskRecord, size_bytes: int) -> None:
        self._emit(
            logging.INFO,
            "queued",
            record,
            document_type=record.document_type,
            pages=record.pages_total,
            size_bytes=size_bytes,
            profile=record.settings.profile,
            language=record.settings.language,
        )

    def task_started(self, record: TaskRecord) -> None:
        self._emit(
            logging.INFO, "started", record, waited_seconds=_since(record.created, record.started)
        )

    def page_done(self, record: TaskRecord, seconds: float) -> None:
        return  # per page: metrics only (a log line per page would drown the task events)

    def task_finished(self, record: TaskRecord) -> None:
        event = record.state.name.lower()
        fields: dict[str, Any] = {
            "duration_seconds": _since(record.created, record.ended),
            "pages": record.pages_done,
            "pages_total": record.pages_total,
        }
        if record.error_code:
            fields["error_code"] = record.error_code
            fields["error"] = record.error_message
        level = logging.WARNING if event == "failed" else logging.INFO
        self._emit(level, event, record, **fields)

    def submit_refused(self, tenant: str, reason: str, message: str) -> None:
        self._log.info(
            "submit refused: %s",
            message,
            extra={"event": "refused", "tenant": tenant, "reason": reason},
        )

    def _emit(self, level: int, event: str, record: TaskRecord, **fields: Any) -> None:
        self._log.log(
            level,
            "task %s %s",
            record.task_id,
            event,
            extra={"event": event, "task_id": record.task_id, "tenant": record.tenant, **fields},
        )


def _since(start: float, end: float) -> float:
    return round(max(0.0, end - start), 3) if start and end else 0.0
