"""ListTasks' filter: a small subset of AIP-160, parsed into what `TaskBackend.list_tasks`
takes (states and exclusive creation-time bounds). Pure, tested without a server.

Grammar: terms joined by AND; a term is `state = NAME`, a parenthesised OR of such state
comparisons, or `create_time OP "RFC 3339"` with OP in < <= > >=. Anything else is
INVALID_ARGUMENT with a message that shows the grammar, never silently ignored. Paging (the
page token, newest first) is the backend's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

from ocr_server.errors import InvalidSettingsError
from ocr_server.models import TaskRecord, TaskState

MAX_FILTER = 1000
_GRAMMAR = (
    "e.g. 'state = PENDING', '(state = COMPLETED OR state = FAILED) AND create_time >= \""
    "2025-01-31T00:00:00Z\"'"
)
_TOKEN = re.compile(
    r"\s*(?:(?P<paren>[()])|(?P<word>AND|OR)\b|(?P<field>state|create_time)\b"
    r'|(?P<op><=|>=|<|>|=)|"(?P<string>[^"]*)"|(?P<name>[A-Za-z_]+))'
)


@dataclass(frozen=True)
class TaskQuery:
    states: frozenset[TaskState] = frozenset()  # empty: any state
    created_after: float | None = None  # exclusive bounds, Unix seconds
    created_before: float | None = None

    def matches(self, record: TaskRecord) -> bool:
        return (
            (not self.states or record.state in self.states)
            and (self.created_after is None or record.created > self.created_after)
            and (self.created_before is None or record.created < self.created_before)
        )


def parse_filter(text: str) -> TaskQuery:
    """Parse a ListTasks filter; InvalidSettingsError (INVALID_ARGUMENT) says what is wrong."""
    if len(text) > MAX_FILTER:
        raise InvalidSettingsError(f"filter is {len(text)} characters; at most {MAX_FILTER}")
    tokens = _tokenize(text)
    states: set[TaskState] | None = None
    bounds: dict[str, float] = {}
    position = 0
    while position < len(tokens):
        if tokens[position] == ("paren", "("):
            group, position = _state_group(tokens, position + 1)
            states = group if states is None else states & group
        elif tokens[position] == ("field", "state"):
            group = {_comparison_state(tokens, position)}
            states = group if states is None else states & group
            position += 3
        elif tokens[position] == ("field", "create_time"):
            op, when = _comparison_time(tokens, position)
            # inclusive bounds become the exclusive ones next to them
            if op in (">", ">="):
                bound = when if op == ">" else math.nextafter(when, -math.inf)
                bounds["after"] = max(bounds.get("after", -math.inf), bound)
            else:
                bound = when if op == "<" else math.nextafter(when, math.inf)
                bounds["before"] = min(bounds.get("before", math.inf), bound)
            position += 3
        else:
            raise _bad(f"unexpected {tokens[position][1]!r}")
        if position < len(tokens):
            if tokens[position] != ("word", "AND"):
                raise _bad(f"expected AND, got {tokens[position][1]!r}")
            position += 1
            if position == len(tokens):
                raise _bad("nothing after AND")
    if states is not None and not states:  # contradictory: matches nothing
        return TaskQuery(states=frozenset(), created_after=math.inf)
    return TaskQuery(
        states=frozenset(states or ()),
        created_after=bounds.get("after"),
        created_before=bounds.get("before"),
    )


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise _bad(f"cannot read {text[position : position + 20].strip()!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _state_group(tokens: list[tuple[str, str]], position: int) -> tuple[set[TaskState], int]:
    states = set()
    while True:
        if position >= len(tokens) or tokens[position] != ("field", "state"):
            raise _bad("a parenthesised group may only hold 'state = NAME' joined by OR")
        states.add(_comparison_state(tokens, position))
        position += 3
        if position < len(tokens) and tokens[position] == ("word", "OR"):
            position += 1
            continue
        if position < len(tokens) and tokens[position] == ("paren", ")"):
            return states, position + 1
        raise _bad("expected OR or ')' in a state group")


def _comparison_state(tokens: list[tuple[str, str]], position: int) -> TaskState:
    operands = tokens[position + 1 : position + 3]
    if len(operands) < 2 or operands[0] != ("op", "=") or operands[1][0] != "name":
        raise _bad("state takes '= NAME' (PENDING, PROCESSING, COMPLETED, FAILED, CANCELLED)")
    name = operands[1][1].upper().removeprefix("TASK_STATE_")
    if name not in TaskState.__members__:
        raise _bad(
            f"unknown state {operands[1][1]!r}; one of "
            + ", ".join(state.name for state in TaskState)
        )
    return TaskState[name]


def _comparison_time(tokens: list[tuple[str, str]], position: int) -> tuple[str, float]:
    operands = tokens[position + 1 : position + 3]
    if len(operands) < 2 or operands[0][0] != "op" or operands[1][0] != "string":
        raise _bad("create_time takes < <= > or >= and a quoted RFC 3339 time")
    if operands[0][1] == "=":
        raise _bad("create_time takes < <= > or >=, not =")
    try:
        when = datetime.fromisoformat(operands[1][1].replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(f"{operands[1][1]!r} is not an RFC 3339 time") from exc
    if when.tzinfo is None:
        raise _bad(f"{operands[1][1]!r} has no time zone (add Z or +01:00)")
    return operands[0][1], when.timestamp()


def _bad(reason: str) -> InvalidSettingsError:
    return InvalidSettingsError(f"filter: {reason}; {_GRAMMAR}")
