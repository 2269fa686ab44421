"""A TIFF's pages from its chain of image directories (IFDs), without decoding a pixel.

Pillow's `n_frames` walks every directory of the file, however many there are; this walk
stops one past the page limit, detects loops, and also reads each page's size and where its
image data ends, so submission can refuse a page bomb on page 700 or a file cut short before
any worker decodes it. Only classic TIFF ("II*\\0", "MM\\0*") is read; detection refuses the rest.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

import numpy as np

WIDTH, HEIGHT, COMPRESSION = 256, 257, 259
STRIP_OFFSETS, STRIP_BYTE_COUNTS = 273, 279
TILE_OFFSETS, TILE_BYTE_COUNTS = 324, 325
_WANTED = {
    WIDTH,
    HEIGHT,
    COMPRESSION,
    STRIP_OFFSETS,
    STRIP_BYTE_COUNTS,
    TILE_OFFSETS,
    TILE_BYTE_COUNTS,
}
_INTEGER_TYPES = {1: "u1", 3: "u2", 4: "u4"}  # BYTE, SHORT, LONG


class TiffStructureError(ValueError):
    """The directory chain is damaged; the message says where."""


@dataclass(frozen=True)
class TiffPage:
    width: int
    height: int
    compression: int  # TIFF code: 1 none, 5 LZW, 4 CCITT G4, ...
    data_end: int  # one past the last byte of the page's strips or tiles


def read_pages(data: bytes | mmap.mmap, limit: int) -> list[TiffPage]:
    """The pages in file order, at most `limit + 1` of them (more than `limit` is over it)."""
    if len(data) < 8:
        raise TiffStructureError(f"the header is cut short ({len(data)} bytes)")
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(order + "I", data, 4)
    pages: list[TiffPage] = []
    seen: set[int] = set()
    while offset and len(pages) <= limit:
        number = len(pages) + 1
        if offset in seen:
            raise TiffStructureError(f"page {number}'s directory loops back to an earlier one")
        seen.add(offset)
        if offset + 2 > len(data):
            raise TiffStructureError(
                f"truncated: page {number}'s directory starts at byte {offset}, "
                f"past the end of the file ({len(data)} bytes)"
            )
        (count,) = struct.unpack_from(order + "H", data, offset)
        end = offset + 2 + 12 * count
        if end + 4 > len(data):
            raise TiffStructureError(
                f"truncated: page {number}'s directory ends past the end of the file"
            )
        tags: dict[int, np.ndarray] = {}
        for entry in range(offset + 2, end, 12):
            tag, kind, n = struct.unpack_from(order + "HHI", data, entry)
            if tag in _WANTED and kind in _INTEGER_TYPES:
                tags[tag] = _values(data, order, kind, n, entry + 8, number)
        pages.append(_page(tags, number))
        (offset,) = struct.unpack_from(order + "I", data, end)
    return pages


def _values(
    data: bytes | mmap.mmap, order: str, kind: int, n: int, field: int, number: int
) -> np.ndarray:
    """A tag's values: inline when they fit in 4 bytes, else at the offset stored there."""
    dtype = np.dtype(order + _INTEGER_TYPES[kind])
    size = dtype.itemsize * n
    start = field if size <= 4 else struct.unpack_from(order + "I", data, field)[0]
    if start + size > len(data):
        raise TiffStructureError(f"truncated: a field of page {number} lies past the end of file")
    return np.frombuffer(data, dtype=dtype, count=n, offset=start).astype(np.int64)


def _page(tags: dict[int, np.ndarray], number: int) -> TiffPage:
    width, height = tags.get(WIDTH), tags.get(HEIGHT)
    if width is None or height is None or not width.size or not height.size:
        raise TiffStructureError(f"page {number} has no width or height")
    offsets = tags.get(STRIP_OFFSETS, tags.get(TILE_OFFSETS))
    counts = tags.get(STRIP_BYTE_COUNTS, tags.get(TILE_BYTE_COUNTS))
    if offsets is None or counts is None or not offsets.size:
        raise TiffStructureError(f"page {number} has no image data")
    if offsets.size != counts.size:
        raise TiffStructureError(f"page {number} has {offsets.size} strips but {counts.size} sizes")
    compression = tags.get(COMPRESSION)
    code = int(compression[0]) if compression is not None and compression.size else 1
    return TiffPage(int(width[0]), int(height[0]), code, int((offsets + counts).max()))
