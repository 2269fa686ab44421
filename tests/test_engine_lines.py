"""The detector and recogniser called directly (engines/lines.py): which boxes are sliced
rather than warped, and, through the real `fast` models, exactly the lines PaddleX's own
pipeline reads."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ocr_server.engines.lines import _upright_box
from tests import documents, pages


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


def test_direct_calls_read_exactly_what_paddlex_pipeline_reads() -> None:
    """An upright block over the same block turned 2.5 degrees (warped crops), and a real
    receipt (mostly sliced): the same boxes, texts, confidences and words as PaddleX's
    pipeline."""
    pages.require_text_and_font()
    documents.require_eval()
    from ocr_server.config import default_model_dir
    from ocr_server.engines.paddle import PaddleOcrEngine
    from ocr_server.engines.profiles import BUILTIN_PROFILES

    if not BUILTIN_PROFILES["fast"].is_installed(default_model_dir()):
        pytest.skip("the fast profile's models are not installed (scripts/setup)")
    block = pages.text_page(pages.gpl_lines(3, 6)).image.crop((0, 100, 1700, 560))
    image = Image.new("RGB", (1700, 1000), "white")
    image.paste(block, (0, 0))
    image.paste(block.rotate(2.5, fillcolor="white"), (0, 480))
    receipt = documents.receipt(documents.RECEIPTS[0]).convert("RGB")

    engine = PaddleOcrEngine(BUILTIN_PROFILES["fast"], default_model_dir())
    direct_path = engine._direct
    assert direct_path is not None  # the built-in profiles take the direct path
    sliced = 0
    for page in (np.asarray(image), np.asarray(receipt)):
        engine._direct = direct_path
        direct = engine.recognize(page, "en")
        engine._direct = None  # PaddleX's pipeline itself
        pipeline = engine.recognize(page, "en")
        assert len(direct) >= 12
        assert [(x.polygon, x.text, x.confidence, x.words) for x in direct] == [
            (x.polygon, x.text, x.confidence, x.words) for x in pipeline
        ]
        sliced += sum(_upright_box(np.array(x.polygon)) is not None for x in direct)
    assert sliced >= 12  # the slices were taken, not only warps
