"""The detector and recogniser called directly (engines/lines.py): the window of a page the
detector sees, which boxes are sliced rather than warped, and, on a real page through the
real `fast` models, the same lines as PaddleX's own pipeline reads."""

from __future__ import annotations

import difflib

import numpy as np
import pytest
from PIL import Image

from ocr_server.engines import lines
from ocr_server.engines.lines import GRID, WINDOW_MARGIN, _upright_box, ink_window
from tests import pages


def blank(height: int = 960, width: int = 736) -> np.ndarray:
    return np.full((height, width, 3), 255, dtype=np.uint8)


def test_the_detector_sees_the_inked_window_with_a_margin_on_its_grid() -> None:
    page = blank()
    page[300:340, 200:500] = 0  # a line of text
    page[600:610, 210:260, 1] = 0  # a magenta word: ink in one channel is ink
    top, bottom, left, right = ink_window(page)
    assert (top, bottom, left, right) == (256, 672, 160, 544)
    assert all(edge % GRID == 0 for edge in (top, bottom, left, right))
    assert top <= 300 - WINDOW_MARGIN and bottom >= 610 + WINDOW_MARGIN
    assert left <= 200 - WINDOW_MARGIN and right >= 500 + WINDOW_MARGIN


def dark_frame(page: np.ndarray) -> None:
    page[:20] = page[-20:] = 40
    page[:, :20] = page[:, -20:] = 40


@pytest.mark.parametrize(
    "paint",
    [
        lambda page: None,  # a blank page: nothing to cut to
        lambda page: dark_frame(page),  # a scan with dark edges round the paper
        lambda page: page.__setitem__((slice(50, 900), slice(40, 700)), 0),  # ink nearly all over
    ],
)
def test_the_whole_page_when_a_window_would_not_save_enough(paint) -> None:  # type: ignore[no-untyped-def]
    page = blank()
    paint(page)
    assert ink_window(page) == (0, 960, 0, 736)


def test_an_image_off_the_detector_grid_is_seen_whole() -> None:
    page = blank(970, 736)
    page[300:340, 200:500] = 0
    assert ink_window(page) == (0, 970, 0, 736)


def test_upright_boxes_are_sliced_and_turned_ones_warped() -> None:
    upright = np.array([[10, 20], [110, 20], [110, 50], [10, 50]], dtype=np.int16)
    assert _upright_box(upright) == (20, 50, 10, 110)
    # corners in another order: the minimum-area rectangle says it is upright all the same
    assert _upright_box(upright[[1, 2, 3, 0]]) == (20, 50, 10, 110)
    turned = np.array([[10, 20], [110, 25], [108, 55], [8, 50]], dtype=np.int16)
    assert _upright_box(turned) is None


@pytest.mark.parametrize(
    "corners",
    [
        [[10, 20], [110, 20], [110, 50], [10, 50]],
        [[27, 502], [124, 502], [124, 525], [27, 525]],  # a receipt's line
        [[143, 43], [1245, 43], [1245, 90], [143, 90]],  # a manual page's line
        [[156, 565], [399, 565], [399, 587], [156, 587]],
        [[20, 10], [50, 10], [50, 110], [20, 110]],  # taller than wide: turned a quarter
    ],
)
def test_a_box_is_sliced_only_where_paddlex_crop_is_those_very_pixels(corners) -> None:  # type: ignore[no-untyped-def]
    """PaddleX truncates the crop's size from the minimum-area rectangle's float corners,
    so some upright boxes come out a pixel narrower, squeezed: those are warped like it."""
    from ocr_server.engines.lines import DirectPipeline

    crop_by_polys = pytest.importorskip(
        "paddlex.inference.pipelines.components.common.crop_image_regions"
    ).CropByPolys("quad")
    page = np.random.default_rng(5).integers(0, 256, (700, 1400, 3), dtype=np.uint8)
    polygon = np.array(corners, dtype=np.int16)
    pipeline = DirectPipeline.__new__(DirectPipeline)  # only its crop, no models
    pipeline._rotated_crop = crop_by_polys.get_minarea_rect_crop
    theirs = crop_by_polys.get_minarea_rect_crop(page, polygon)
    assert np.array_equal(pipeline._crop(page, polygon), theirs)
    box = _upright_box(polygon)
    if box is not None:
        top, bottom, left, right = box
        assert theirs.shape[:2] in ((bottom - top, right - left), (right - left, bottom - top))


def test_direct_calls_read_the_lines_paddlex_pipeline_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An upright block over the same block turned 2.5 degrees: with the detector on the
    whole page, exactly the boxes, texts and confidences of PaddleX's pipeline; on the
    page's inked window, its boxes within the few pixels the window moves an edge by, and
    the same text."""
    pages.require_text_and_font()
    from ocr_server.config import default_model_dir
    from ocr_server.engines.paddle import PaddleOcrEngine
    from ocr_server.engines.profiles import BUILTIN_PROFILES

    if not BUILTIN_PROFILES["fast"].is_installed(default_model_dir()):
        pytest.skip("the fast profile's models are not installed (scripts/setup)")
    block = pages.text_page(pages.gpl_lines(3, 6)).image.crop((0, 100, 1700, 560))
    image = Image.new("RGB", (1700, 1000), "white")
    image.paste(block, (0, 0))
    image.paste(block.rotate(2.5, fillcolor="white"), (0, 480))
    rgb = np.asarray(image)

    engine = PaddleOcrEngine(BUILTIN_PROFILES["fast"], default_model_dir())
    assert engine._direct is not None  # the built-in profiles take the direct path
    direct = engine.recognize(rgb, "en")
    with monkeypatch.context() as patch:
        patch.setattr(lines, "WINDOW_MIN_SAVING", 2.0)  # no window saves that much
        whole = engine.recognize(rgb, "en")
    engine._direct = None  # PaddleX's pipeline itself
    pipeline = engine.recognize(rgb, "en")

    assert [(x.polygon, x.text, x.confidence, x.words) for x in whole] == [
        (x.polygon, x.text, x.confidence, x.words) for x in pipeline
    ]

    assert len(direct) == len(pipeline) == 12
    for ours, theirs in zip(direct, pipeline, strict=True):
        assert np.abs(np.subtract(ours.polygon, theirs.polygon)).max() <= 4
    text = "\n".join(line.text for line in direct)
    reference = "\n".join(line.text for line in pipeline)
    assert difflib.SequenceMatcher(None, text, reference).ratio() >= 0.995, (text, reference)
