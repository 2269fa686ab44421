"""Each tenant's tasks in creation order, for ListTasks: pure in-memory logic, no I/O.

The local backend rebuilds it from the store at start-up (it reads every record then anyway,
to find the unfinished ones) and keeps it current as it writes, under its lock. A page costs a
binary search plus a walk over the tenant's own entries (only those a state filter skips),
never a read of other tenants' tasks. Memory: about 200 bytes per live task; the local
backend's throughput bounds that (a day of tasks on one machine is tens of thousands).
"""

from __future__ import annotations

import bisect
from collections.abc import Collection
from dataclasses import dataclass

from ocr_server.models import TaskRecord, TaskState

Key = tuple[float, str]  # (created, task_id): a total order, newest last


@dataclass
class _Entry:
    tenant: str
    key: Key
    state: TaskState
    expires: float


class TenantIndex:
    def __init__(self) -> None:
        self._keys: dict[str, list[Key]] = {}  # tenant -> keys, ascending
        self._entries: dict[str, _Entry] = {}  # task id -> entry

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, record: TaskRecord) -> None:
        """Add a task, or update its state."""
        entry = self._entries.get(record.task_id)
        if entry is not None:
            entry.state = record.state
            return
        key = (record.created, record.task_id)
        self._entries[record.task_id] = _Entry(record.tenant, key, record.state, record.expires)
        bisect.insort(self._keys.setdefault(record.tenant, []), key)

    def remove(self, task_id: str) -> None:
        entry = self._entries.pop(task_id, None)
        if entry is None:
            return
        keys = self._keys[entry.tenant]
        at = bisect.bisect_left(keys, entry.key)
        if at < len(keys) and keys[at] == entry.key:
            del keys[at]
        if not keys:
            del self._keys[entry.tenant]

    def in_state(self, state: TaskState) -> list[str]:
        return [task_id for task_id, entry in self._entries.items() if entry.state == state]

    def expire(self, now: float) -> int:
        """Forget every task expired at `now`; return how many."""
        gone = [task_id for task_id, e in self._entries.items() if e.expires <= now]
        for task_id in gone:
            self.remove(task_id)
        return len(gone)

    def page(
        self,
        tenant: str,
        states: Collection[TaskState],
        created_after: float | None,
        created_before: float | None,
        after_key: Key | None,
        size: int,
        now: float,
    ) -> tuple[list[str], Key | None]:
        """Up to `size` task ids, newest first, older than `after_key` (the cursor); and the
        cursor for the next page, or None when nothing older is left to look at."""
        keys = self._keys.get(tenant, [])
        upper = len(keys)
        if created_before is not None:
            upper = bisect.bisect_left(keys, (created_before, ""))
        if after_key is not None:
            upper = min(upper, bisect.bisect_left(keys, after_key))
        found: list[str] = []
        index = upper - 1
        while index >= 0 and len(found) < size:
            created, task_id = keys[index]
            if created_after is not None and created <= created_after:
                return found, None
            entry = self._entries[task_id]
            if (not states or entry.state in states) and entry.expires > now:
                found.append(task_id)
            index -= 1
        more = index >= 0 and (created_after is None or keys[index][0] > created_after)
        return found, (self._entries[found[-1]].key if more and found else None)
