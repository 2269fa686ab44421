"""Reading order on synthetic pages: columns, tables, receipts, skew and a watermark."""

from __future__ import annotations

import math

from ocr_server.engines.base import RecognizedLine
from ocr_server.layout import order_lines, page_text

LINE_HEIGHT = 30.0


def box(
    text: str, x: float, y: float, width: float, height: float = LINE_HEIGHT, angle: float = 0.0
) -> RecognizedLine:
    """A line whose unrotated top-left corner is (x, y), turned by `angle` degrees about the
    page origin (clockwise on screen, as a scanner's skew), corners from the top left
    clockwise like the detector's."""
    theta = math.radians(angle)
    corners = ((x, y), (x + width, y), (x + width, y + height), (x, y + height))
    polygon = tuple(
        (px * math.cos(theta) - py * math.sin(theta), px * math.sin(theta) + py * math.cos(theta))
        for px, py in corners
    )
    return RecognizedLine(text, 0.9, polygon)


def texts(lines: list[RecognizedLine]) -> list[list[str]]:
    return [[line.text for line in row] for row in order_lines(lines)]


def two_column_page(angle: float = 0.0) -> tuple[list[RecognizedLine], list[str]]:
    """A full-width title, two columns of 12 lines on the same baselines, a centred page
    number; returns the lines (shuffled) and the texts in reading order."""
    title = box("Title across both columns", 100, 50, 1400, angle=angle)
    left = [box(f"left {i}", 100, 150 + 45 * i, 650, angle=angle) for i in range(12)]
    right = [box(f"right {i}", 850, 150 + 45 * i, 650, angle=angle) for i in range(12)]
    # A paragraph's last line is short; the columns are still text columns.
    left[5] = box("left 5", 100, 150 + 45 * 5, 200, angle=angle)
    number = box("- 1 -", 760, 800, 80, angle=angle)
    order = [title, *left, *right, number]
    shuffled = order[1::2] + order[::2]
    return shuffled, [line.text for line in order]


def test_two_columns_read_column_by_column() -> None:
    lines, expected = two_column_page()
    assert [t for row in texts(lines) for t in row] == expected


def test_two_columns_on_a_skewed_scan_read_column_by_column() -> None:
    lines, expected = two_column_page(angle=1.5)
    assert [t for row in texts(lines) for t in row] == expected


def test_a_table_stays_in_row_order() -> None:
    """Short cells with a wide gap between the columns: row by row, not column by column."""
    names = ["name", "options", "value", "x", "y", "width", "height", "fontName"]
    lines = []
    for i, name in enumerate(names):
        y = 100 + 40 * i
        lines += [
            box(name, 100, y, 25 * len(name)),
            box(f"meaning of {name}", 500, y + 4, 300 + 20 * i),
            box(str(i), 1300, y + 8, 30),
        ]
    expected = [[name, f"meaning of {name}", str(i)] for i, name in enumerate(names)]
    assert texts(lines[::-1]) == expected


def test_receipt_label_and_amount_share_a_row() -> None:
    items = ["COFFEE", "TEA WITH MILK", "TOAST", "SUBTOTAL", "TAX 6%", "TOTAL"]
    lines = []
    for i, item in enumerate(items):
        y = 200 + 38 * i
        lines += [box(item, 40, y, 20 * len(item)), box(f"{i + 1}.50", 520, y + 3, 80)]
    assert page_text(order_lines(lines)).splitlines() == [
        f"{item} {i + 1}.50" for i, item in enumerate(items)
    ]


def test_rows_of_a_skewed_page_do_not_merge() -> None:
    """At 1.5 degrees a 1500-pixel line drops 39 pixels: its axis-aligned box covers most of
    the next line's (the detector's boxes, unclipped, already touch). Rows must still be the
    page's lines, one each."""
    lines = [box(f"line {i}", 100, 100 + 40 * i, 1500, 44, angle=1.5) for i in range(20)]
    assert texts(lines[::-1]) == [[f"line {i}"] for i in range(20)]


def test_rows_of_a_page_skewed_the_other_way_do_not_merge() -> None:
    lines = [box(f"line {i}", 100, 200 + 40 * i, 1500, 44, angle=-1.5) for i in range(20)]
    assert texts(lines) == [[f"line {i}"] for i in range(20)]


def test_a_diagonal_watermark_does_not_swallow_the_rows_it_crosses() -> None:
    lines = [box(f"line {i}", 100, 100 + 40 * i, 1400) for i in range(20)]
    watermark = box("DRAFT COPY", 600, -400, 900, height=120, angle=40)
    assert texts([watermark, *lines]) == [[f"line {i}"] for i in range(20)] + [["DRAFT COPY"]]


def test_empty_page_has_no_rows() -> None:
    assert order_lines([]) == []
    assert page_text([]) == ""
