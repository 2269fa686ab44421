"""Reading order: turn a page's unordered lines into rows, top to bottom, left to right.

Lines whose vertical extents overlap by more than half the smaller height share a row (so a
table row or a label and its value stay on one line of text). Multi-column layouts are a later
refinement (see docs/).
"""

from __future__ import annotations

from collections.abc import Sequence

from ocr_server.engines.base import RecognizedLine

ROW_OVERLAP = 0.5


def _extent(line: RecognizedLine) -> tuple[float, float, float]:
    ys = [y for _, y in line.polygon]
    xs = [x for x, _ in line.polygon]
    return min(ys), max(ys), min(xs)


def order_lines(lines: Sequence[RecognizedLine]) -> list[list[RecognizedLine]]:
    """Group lines into rows in reading order; each row sorted left to right."""
    rows: list[tuple[float, float, list[RecognizedLine]]] = []
    for line in sorted(lines, key=lambda ln: (_extent(ln)[0] + _extent(ln)[1]) / 2):
        top, bottom, _ = _extent(line)
        if rows:
            row_top, row_bottom, members = rows[-1]
            overlap = min(bottom, row_bottom) - max(top, row_top)
            smaller = max(min(bottom - top, row_bottom - row_top), 1.0)
            if overlap / smaller > ROW_OVERLAP:
                members.append(line)
                rows[-1] = (min(top, row_top), max(bottom, row_bottom), members)
                continue
        rows.append((top, bottom, [line]))
    return [sorted(members, key=lambda ln: _extent(ln)[2]) for _, _, members in rows]


def page_text(rows: Sequence[Sequence[RecognizedLine]]) -> str:
    return "\n".join(" ".join(line.text for line in row) for row in rows)
