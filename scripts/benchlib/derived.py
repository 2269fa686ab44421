"""Sets made from the others, for what documents do outside the upright-page box (issue 11):

- `rotated`: the pdfset's 200-dpi pages turned 90, 180 and 270 degrees in turn (a page fed
  sideways or upside down); the same ground truth. Tesseract reads them with `--psm 1`
  (automatic layout with orientation detection), its own way of reading such pages.
- `stacked`: the pdfset's row-order pages three at a time in one tall image (a long scan, or
  pages scanned as one); ground truth the three pages' in order.
- `rolls`: SROIE receipts five at a time, each scaled to 600 px wide, one under the other (a
  receipt roll); scored case-insensitively like SROIE.

They are written once under `build/eval/derived/<set>/` (PNG + ground truth), deterministically
from their sources, and rebuilt when missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

TURNS = (90, 180, 270)
PAGES_PER_STACK = 3
RECEIPTS_PER_ROLL = 5
ROLL_WIDTH = 600
ROLL_GAP = 40


@dataclass(frozen=True)
class Source:
    """A page of a source set: its image file and ground truth."""

    page_id: str
    path: Path
    truth: str


def build(
    folder: Path,
    items: Sequence[tuple[str, list[Source]]],
    draw: Callable[[list[Source]], Image.Image],
) -> list[tuple[str, Path, str]]:
    """(id, PNG, truth) for every item, drawing the PNGs that are not there yet."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for item_id, sources in items:
        path = folder / f"{item_id}.png"
        truth = "\n".join(s.truth.rstrip("\n") for s in sources) + "\n"
        if not path.is_file():
            draw(sources).save(path.with_suffix(".tmp.png"))
            path.with_suffix(".tmp.png").rename(path)
        out.append((item_id, path, truth))
    return out


def rotated(folder: Path, pages: list[Source]) -> list[tuple[str, Path, str]]:
    out = []
    for index, page in enumerate(pages):
        degrees = TURNS[index % len(TURNS)]

        def draw(sources: list[Source], degrees: int = degrees) -> Image.Image:
            with Image.open(sources[0].path) as image:
                return image.rotate(-degrees, expand=True)

        out.extend(build(folder, [(f"{page.page_id}-r{degrees}", [page])], draw))
    return out


def stacked(folder: Path, pages: list[Source]) -> list[tuple[str, Path, str]]:
    groups = [
        pages[i : i + PAGES_PER_STACK]
        for i in range(0, len(pages) - PAGES_PER_STACK + 1, PAGES_PER_STACK)
    ]
    items = [("+".join(p.page_id for p in group), group) for group in groups]
    return build(folder, items, lambda group: _stack(group, None, 0))


def rolls(folder: Path, receipts: list[Source]) -> list[tuple[str, Path, str]]:
    groups = [
        receipts[i : i + RECEIPTS_PER_ROLL]
        for i in range(0, len(receipts) - RECEIPTS_PER_ROLL + 1, RECEIPTS_PER_ROLL)
    ]
    items = [(f"roll-{group[0].page_id}", group) for group in groups]
    return build(folder, items, lambda group: _stack(group, ROLL_WIDTH, ROLL_GAP))


def _stack(sources: list[Source], width: int | None, gap: int) -> Image.Image:
    images: list[Image.Image] = []
    for source in sources:
        with Image.open(source.path) as image:
            page: Image.Image = image.convert("L")
        if width is not None:
            page = page.resize(
                (width, round(page.height * width / page.width)), Image.Resampling.LANCZOS
            )
        images.append(page)
    canvas_width = max(i.width for i in images)
    canvas = Image.new(
        "L", (canvas_width, sum(i.height for i in images) + gap * (len(images) - 1)), 255
    )
    y = 0
    for page in images:
        canvas.paste(page, (0, y))
        y += page.height + gap
    return canvas
