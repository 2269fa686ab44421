"""Long scans (receipt rolls, several pages scanned as one image) read in page-shaped tiles.

The detector works on an image scaled to a fixed area, so a scan three pages long would reach
it at a third of a page's scale, and its text would vanish (98% CER on three stacked pages,
issue 11). Cut into overlapping tiles the shape of a page, each tile is read at a page's scale.
A line belongs to the tile whose own zone (the tile less half the overlap at each inner edge)
holds its centre: a line shorter than the overlap then lies whole inside that tile, and the
cut-off pieces of it that the neighbouring tile saw are dropped. Only tall images are cut: the
lines of a wide image run along its length, and cutting them would split words.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ocr_server.engines.base import Image, RecognizedLine
from ocr_server.reading.geometry import shifted

# Taller than this many widths: cut into tiles (a US legal page is 1.65, A4 1.41).
MAX_ASPECT = 2.0
# A tile is this many widths tall (A4's shape).
TILE_ASPECT = math.sqrt(2)
# Tiles overlap by this share of the width, at least OVERLAP_MIN pixels: more than the
# tallest ordinary line (a heading of a 200-dpi page is about 80 px, the width 1,700).
OVERLAP_SHARE = 0.15
OVERLAP_MIN = 64


@dataclass(frozen=True)
class Tile:
    """Rows top..bottom of the image; lines whose centre lies in keep_top..keep_bottom are
    this tile's."""

    top: int
    bottom: int
    keep_top: float
    keep_bottom: float


def plan(height: int, width: int) -> list[Tile]:
    """One tile for a page-shaped image, else overlapping page-shaped tiles down its length."""
    if height <= width * MAX_ASPECT:
        return [Tile(0, height, 0.0, float(height))]
    overlap = max(OVERLAP_MIN, round(width * OVERLAP_SHARE))
    length = max(round(width * TILE_ASPECT), 2 * overlap)
    count = math.ceil((height - overlap) / (length - overlap))
    step = (height - length) / (count - 1) if count > 1 else 0.0
    tops = [round(index * step) for index in range(count)]
    tiles = []
    for index, top in enumerate(tops):
        bottom = min(top + length, height)
        keep_top = 0.0 if index == 0 else (top + tops[index - 1] + length) / 2
        keep_bottom = float(height) if index == count - 1 else (tops[index + 1] + bottom) / 2
        tiles.append(Tile(top, bottom, keep_top, keep_bottom))
    return tiles


def read_tiled(
    image: Image, recognize: Callable[[Image], list[RecognizedLine]]
) -> list[RecognizedLine]:
    """Every tile recognised, its own lines kept, in page coordinates."""
    height, width = image.shape[:2]
    tiles = plan(height, width)
    if len(tiles) == 1:
        return recognize(image)
    lines: list[RecognizedLine] = []
    for tile in tiles:
        for line in recognize(image[tile.top : tile.bottom]):
            centre = tile.top + sum(y for _, y in line.polygon) / len(line.polygon)
            if tile.keep_top <= centre < tile.keep_bottom:
                lines.append(shifted(line, 0.0, float(tile.top)))
    return lines
