"""Which page runs next: a FIFO of waiting tasks and a fair share among started ones.

Pages are the unit of work. Up to `max_active` tasks are started at once and each free worker
takes a page from the started task that was served least recently, so a long document does not
block a short one for its whole duration, and a stream of short tasks cannot starve a long one.
Pure in-memory logic without locks or I/O: the task manager calls it under its own lock.
"""

from __future__ import annotations

import itertools
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field


@dataclass
class _ActiveTask:
    remaining: deque[int]
    in_flight: set[int] = field(default_factory=set)
    last_served: int = -1


class Scheduler:
    def __init__(self, max_active: int) -> None:
        self._max_active = max(1, max_active)
        self._pending: OrderedDict[str, list[int]] = OrderedDict()
        self._active: dict[str, _ActiveTask] = {}
        self._clock = itertools.count()
        self._owners: dict[str, str] = {}  # task id -> tenant, while waiting or started
        self._unfinished = Counter[str]()  # tenant -> tasks waiting or started

    def enqueue(self, task_id: str, pages: list[int], owner: str = "") -> None:
        """Queue a task behind every other waiting task."""
        self._pending[task_id] = list(pages)
        if task_id not in self._owners:
            self._owners[task_id] = owner
            self._unfinished[owner] += 1

    def remove(self, task_id: str) -> None:
        """Forget a task (cancelled, failed or expired); pages in flight are left to finish."""
        self._pending.pop(task_id, None)
        self._active.pop(task_id, None)
        self._forget_owner(task_id)

    def unfinished_by_owner(self) -> dict[tuple[str, str], int]:
        """(tenant, "pending" | "processing") -> tasks, for the metrics."""
        counts: Counter[tuple[str, str]] = Counter()
        for task_id, owner in self._owners.items():
            counts[owner, "processing" if task_id in self._active else "pending"] += 1
        return dict(counts)

    def unfinished_count(self, owner: str) -> int:
        """The owner's tasks still waiting or started (what the per-tenant limit counts)."""
        return self._unfinished[owner]

    def _forget_owner(self, task_id: str) -> None:
        owner = self._owners.pop(task_id, None)
        if owner is not None:
            self._unfinished[owner] -= 1
            if not self._unfinished[owner]:
                del self._unfinished[owner]

    def requeue_page(self, task_id: str, page_number: int) -> None:
        """Put a page whose worker died back at the front of its task."""
        task = self._active.get(task_id)
        if task is not None:
            task.in_flight.discard(page_number)
            task.remaining.appendleft(page_number)

    def page_finished(self, task_id: str, page_number: int) -> bool:
        """Record a finished page; True when the task has no page left to run or running."""
        task = self._active.get(task_id)
        if task is None:
            return False
        task.in_flight.discard(page_number)
        if not task.remaining and not task.in_flight:
            del self._active[task_id]
            self._forget_owner(task_id)
            return True
        return False

    def next_page(self) -> tuple[str, int] | None:
        """(task id, page number) a free worker should take now, or None if nothing waits."""
        candidates = [(t.last_served, tid) for tid, t in self._active.items() if t.remaining]
        if self._pending and (not candidates or len(self._active) < self._max_active):
            task_id, pages = self._pending.popitem(last=False)
            # joins the round at the back: tasks already started are not pushed aside
            joined = next(self._clock)
            self._active[task_id] = _ActiveTask(remaining=deque(pages), last_served=joined)
            candidates.append((joined, task_id))
        if not candidates:
            return None
        _, task_id = min(candidates)
        task = self._active[task_id]
        page = task.remaining.popleft()
        task.in_flight.add(page)
        task.last_served = next(self._clock)
        return task_id, page

    def queue_position(self, task_id: str) -> int:
        """1 for the next task to start, 0 when the task is not waiting."""
        if task_id not in self._pending:
            return 0
        for position, waiting in enumerate(self._pending, start=1):
            if waiting == task_id:
                return position
        return 0

    def queue_positions(self) -> dict[str, int]:
        """Every waiting task's queue position, in one pass."""
        return {task_id: position for position, task_id in enumerate(self._pending, start=1)}

    def waiting_ids(self) -> list[str]:
        return list(self._pending)

    @property
    def pending_count(self) -> int:
        return len(self._pending)
