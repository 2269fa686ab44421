"""Task records as Redis hash fields and back, field by field from the dataclass (a field added
to TaskRecord is stored without a change here; a record stored before it existed reads with the
field's default).

Every value is a string Redis stores as given: times keep their full precision (the scripts
compare them with `tonumber` but only ever write strings the client made), lists are JSON,
booleans "1"/"0" (the scripts read `state`, `expires`, `started`, `page_numbers`,
`retried_pages`, `keep_document`, `document_ref`). Fields whose name starts with `_` belong to
the scripts (scheduling state) and are not part of the record.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable, Mapping
from typing import Any

from ocr_server.errors import DamagedEntryError
from ocr_server.models import Settings, TaskRecord, TaskState

_HINTS = typing.get_type_hints(TaskRecord)
_FIELDS = [f for f in dataclasses.fields(TaskRecord)]


def _encoder(kind: Any) -> Callable[[Any], str]:
    if kind is TaskState:
        return lambda value: str(int(value))
    if kind is Settings:
        return lambda value: json.dumps(dataclasses.asdict(value))
    if kind is bool:
        return lambda value: "1" if value else "0"
    if kind is float:
        return repr
    if kind is int:
        return str
    if kind is str:
        return lambda value: str(value)
    return json.dumps  # lists


def _decoder(kind: Any) -> Callable[[str], Any]:
    if kind is TaskState:
        return lambda text: TaskState(int(text))
    if kind is Settings:
        return lambda text: Settings(**json.loads(text))
    if kind is bool:
        return lambda text: text == "1"
    if kind is float:
        return float
    if kind is int:
        return int
    if kind is str:
        return lambda text: text
    return lambda text: [int(n) for n in json.loads(text)]  # list[int]


_ENCODE = {f.name: _encoder(_HINTS[f.name]) for f in _FIELDS}
_DECODE = {f.name: _decoder(_HINTS[f.name]) for f in _FIELDS}
_REQUIRED = {
    f.name
    for f in _FIELDS
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
}


def record_to_fields(record: TaskRecord) -> dict[str, str]:
    return {name: encode(getattr(record, name)) for name, encode in _ENCODE.items()}


def record_from_fields(task_id: str, raw: Mapping[bytes | str, bytes | str]) -> TaskRecord:
    """DamagedEntryError when a required field is missing or a field does not parse."""
    fields = {_text(k): _text(v) for k, v in raw.items()}
    try:
        if not fields.keys() >= _REQUIRED:
            raise KeyError(sorted(_REQUIRED - fields.keys()))
        values = {name: _DECODE[name](text) for name, text in fields.items() if name in _DECODE}
        return TaskRecord(**values)
    except (KeyError, ValueError, TypeError) as exc:
        raise DamagedEntryError(task_id, "record") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
