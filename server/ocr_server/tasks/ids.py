"""Task ids: 160 random bits as 40 lowercase hex digits (safe in URLs, paths and shells)."""

from __future__ import annotations

import re
import secrets

from ocr_server.errors import InvalidSettingsError

TASK_ID_BYTES = 20
_TASK_ID_PATTERN = re.compile(r"[0-9a-f]{40}")


def new_task_id() -> str:
    return secrets.token_hex(TASK_ID_BYTES)


def check_task_id(task_id: str) -> None:
    """A malformed id is the caller's mistake, told before any look-up; a well-formed unknown
    id stays NOT_FOUND (unknown, expired and another tenant's look the same)."""
    if not _TASK_ID_PATTERN.fullmatch(task_id):
        shown = repr(task_id[:20]) + ("..." if len(task_id) > 20 else "")
        raise InvalidSettingsError(
            f"task_id must be 40 lowercase hex digits (got {len(task_id)} characters: {shown})"
        )
