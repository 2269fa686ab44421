"""The pure parts of reading a page, in-process: quarter turns of outlines agree with the
turned image, tiles cover a long scan and keep every line once, and an uncertain orientation
reaches the client as a warning (low confidence is the language checks' warning:
languages/scripts.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ocr_server.engines.base import Image, RecognizedLine, RecognizedWord
from ocr_server.reading import geometry, page, tiling
from ocr_server.reading.orientation import Orientation, is_page_like, squares


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_points_on_the_upright_page_map_to_the_same_pixel_as_sent(rotation: int) -> None:
    sent = np.zeros((30, 50, 3), dtype=np.uint8)
    sent[7, 41] = 255  # one marked pixel at x=41, y=7
    upright = geometry.upright(sent, rotation)
    (v,), (u,) = np.nonzero(upright[:, :, 0])
    # the pixel's centre, mapped back, is the marked pixel's centre
    x, y = geometry.to_sent_frame((u + 0.5, v + 0.5), rotation, 50, 30)
    assert (x, y) == pytest.approx((41.5, 7.5))


def test_a_line_and_its_words_are_mapped_together() -> None:
    word = RecognizedWord("ab", 0.9, ((0.0, 0.0), (2.0, 0.0), (2.0, 1.0), (0.0, 1.0)))
    line = RecognizedLine("ab", 0.9, word.polygon, (word,))
    mapped = geometry.line_to_sent_frame(line, 90, width=10, height=20)
    assert mapped.polygon == ((10.0, 0.0), (10.0, 2.0), (9.0, 2.0), (9.0, 0.0))
    assert mapped.words[0].polygon == mapped.polygon


def test_page_shaped_images_are_one_tile() -> None:
    assert tiling.plan(2200, 1700) == [tiling.Tile(0, 2200, 0.0, 2200.0)]
    assert tiling.plan(100, 20_000) == [tiling.Tile(0, 100, 0.0, 100.0)]  # wide: never cut


def test_tiles_cover_a_long_scan_and_their_own_zones_partition_it() -> None:
    height, width = 6600, 1700
    tiles = tiling.plan(height, width)
    assert len(tiles) >= 3
    assert tiles[0].top == 0 and tiles[-1].bottom == height
    overlap = tiling.OVERLAP_SHARE * width
    for before, after in itertools.pairwise(tiles):
        assert before.bottom - after.top >= overlap - 1  # at least the overlap
        assert before.keep_bottom == after.keep_top  # zones meet, without gap or overlap
    assert tiles[0].keep_top == 0 and tiles[-1].keep_bottom == height
    for tile in tiles:
        assert tile.bottom - tile.top <= round(width * tiling.TILE_ASPECT)


def test_a_line_in_an_overlap_is_kept_once_and_a_cut_one_not_at_all() -> None:
    image = np.full((6600, 1700, 3), 255, dtype=np.uint8)
    tiles = tiling.plan(6600, 1700)
    seam = tiles[1].top + (tiles[0].bottom - tiles[1].top) / 2  # middle of the first overlap
    tops = iter(t.top for t in tiles)  # read_tiled reads the tiles in order

    def recognize(tile: Image) -> list[RecognizedLine]:
        """Both tiles around the seam see the whole line there, and every tile a piece of a
        line its lower edge cuts."""
        top = next(tops)
        lines = []
        y = seam - 20 - top
        if y >= 0 and y + 40 <= tile.shape[0]:
            lines.append(RecognizedLine("seam", 0.9, box(100, y, 900, y + 40)))
        edge = tile.shape[0]
        lines.append(RecognizedLine("cut", 0.5, box(100, edge - 10, 900, edge)))
        return lines

    read = tiling.read_tiled(image, recognize)
    texts = [line.text for line in read]
    assert texts.count("seam") == 1
    assert texts.count("cut") == 1  # only the last tile's, whose edge is the page's
    (seam_line,) = [line for line in read if line.text == "seam"]
    assert seam_line.polygon[0][1] == pytest.approx(seam - 20)


def box(x0: float, y0: float, x1: float, y1: float) -> tuple[tuple[float, float], ...]:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def test_the_classifier_looks_at_page_like_images_only_along_their_length() -> None:
    assert is_page_like(2200, 1700) and not is_page_like(60, 1500)
    tall = np.full((6600, 1700, 3), 255, dtype=np.uint8)
    assert len(squares(tall)) == 4  # one per page length
    assert all(s.shape == (224, 224, 3) for s in squares(tall))


class Engine:
    """Reads the page's upright text only when the page it is given is upright."""

    def __init__(self, upright_width: int, confidence: float = 0.95) -> None:
        self.upright_width = upright_width
        self.confidence = confidence
        self.calls = 0

    def recognize(self, image: Image, language: str) -> list[RecognizedLine]:
        self.calls += 1
        if image.shape[1] == self.upright_width:
            return [RecognizedLine("Hello world", self.confidence, box(10, 10, 300, 40))]
        return [RecognizedLine("plɹoʍ", 0.3, box(10, 10, 40, 300))]


class Classifier:
    def __init__(self, orientation: Orientation) -> None:
        self.orientation = orientation

    def classify(self, image: Image) -> Orientation:
        return self.orientation


def test_a_sure_orientation_is_read_once_and_reported() -> None:
    sent = np.full((1700, 2200, 3), 255, dtype=np.uint8)  # turned 90 degrees: upright is 1700 wide
    engine = Engine(upright_width=1700)
    reading = page.read_page(sent, engine, "en", Classifier(Orientation(90, 0.93, 0, 0.03)))
    assert (reading.rotation, reading.text, reading.warnings) == (90, "Hello world", [])
    assert engine.calls == 1
    # the line is given on the page as sent: it runs down the page
    xs = [x for x, _ in reading.lines[0].polygon]
    ys = [y for _, y in reading.lines[0].polygon]
    assert max(ys) - min(ys) > max(xs) - min(xs)


def test_an_unsure_orientation_is_settled_by_reading_the_runner_up_too() -> None:
    sent = np.full((1700, 2200, 3), 255, dtype=np.uint8)
    engine = Engine(upright_width=1700)
    unsure = Classifier(Orientation(0, 0.5, 270, 0.4))  # wrong pick, right runner-up
    reading = page.read_page(sent, engine, "en", unsure)
    assert (reading.rotation, reading.text, reading.warnings) == (270, "Hello world", [])
    assert engine.calls == 2


def test_an_orientation_nothing_settles_is_a_warning() -> None:
    sent = np.full((2000, 2000, 3), 255, dtype=np.uint8)  # square: both readings alike
    reading = page.read_page(
        sent,
        Engine(upright_width=2000),
        "en",
        Classifier(Orientation(0, 0.5, 180, 0.45)),
    )
    assert [w.code for w in reading.warnings] == ["ORIENTATION_UNCERTAIN"], reading.warnings
