"""Pages as they come, through the real server and real PaddleOCR: turned a quarter or half
turn, a PDF page whose /Rotate turns it, three pages scanned as one tall image, and a footnote
in small print. Each is read as well as the upright page, within one point of CER (issue 11).

The pages are GPL-3 prose drawn in DejaVu Sans at 200 dpi (tests/pages.py); every document is
submitted at once in a module fixture so that both workers share them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ocr.v1 import ocr_pb2
from tests import pages
from tests.documents import scorer
from tests.harness import ServerProcess

TURNS = (90, 180, 270)
ONE_POINT = 0.01


def cer(truth: str, text: str) -> float:
    scores = scorer().score(truth, text)
    return float(scores["char_edits"]) / max(1, scores["ref_chars"])


@pytest.fixture(scope="module")
def documents() -> dict[str, tuple[pages.Page, bytes]]:
    pages.require_text_and_font()
    scorer()  # skips without ../shared/eval
    page = pages.text_page(pages.gpl_lines(3, 30))
    stack = [pages.text_page(pages.gpl_lines(start, 24)) for start in (20, 40, 60)]
    footnote = pages.text_page(
        pages.gpl_lines(80, 26), footnote=pages.gpl_lines(100, 3, width=110), footnote_pt=6
    )
    docs = {"upright": (page, pages.png(page.image))}
    for degrees in TURNS:
        docs[f"turned-{degrees}"] = (page, pages.png(pages.turned(page, degrees)))
    docs["pdf-rotate-90"] = (page, pages.pdf_with_rotate(page.image, 90))
    tall = pages.stacked(stack)
    docs["stacked"] = (tall, pages.png(tall.image))
    for index, one in enumerate(stack):
        docs[f"stack-page-{index}"] = (one, pages.png(one.image))
    docs["footnote"] = (footnote, pages.png(footnote.image))
    return docs


@pytest.fixture(scope="module")
def results(
    real_server: ServerProcess, documents: dict[str, tuple[pages.Page, bytes]]
) -> Iterator[dict[str, ocr_pb2.Page]]:
    with real_server.client() as client:
        tasks = {name: client.submit(content) for name, (_, content) in documents.items()}
        out = {}
        for name, task in tasks.items():
            final = client.wait(task.task_id, timeout=300)
            assert final.state == ocr_pb2.TASK_STATE_COMPLETED, (name, final.error.message)
            out[name] = client.result(task.task_id).result.pages[0]
    yield out


def test_upright_page_reads_right_and_says_so(
    results: dict[str, ocr_pb2.Page], documents: dict[str, tuple[pages.Page, bytes]]
) -> None:
    page = results["upright"]
    assert page.rotation == 0
    assert not page.warnings
    assert cer(documents["upright"][0].truth, page.text) < 0.02, page.text


@pytest.mark.parametrize("degrees", TURNS)
def test_turned_page_reads_like_the_upright_one(
    results: dict[str, ocr_pb2.Page],
    documents: dict[str, tuple[pages.Page, bytes]],
    degrees: int,
) -> None:
    truth = documents["upright"][0].truth
    page = results[f"turned-{degrees}"]
    assert page.rotation == degrees
    assert cer(truth, page.text) <= cer(truth, results["upright"].text) + ONE_POINT, page.text
    _boxes_on_the_page_as_sent(page, sideways=degrees in (90, 270))


def test_pdf_page_turned_by_its_rotate_entry(
    results: dict[str, ocr_pb2.Page], documents: dict[str, tuple[pages.Page, bytes]]
) -> None:
    """Poppler shows the page turned as /Rotate says; it is read turned back, and its size and
    boxes are those of the page as shown."""
    truth = documents["upright"][0].truth
    upright, page = results["upright"], results["pdf-rotate-90"]
    assert (page.width, page.height) == (upright.height, upright.width)
    assert page.rotation == 90
    assert cer(truth, page.text) <= cer(truth, upright.text) + ONE_POINT, page.text
    _boxes_on_the_page_as_sent(page, sideways=True)


def test_tall_scan_of_stacked_pages_reads_like_the_pages_one_by_one(
    results: dict[str, ocr_pb2.Page], documents: dict[str, tuple[pages.Page, bytes]]
) -> None:
    truth = documents["stacked"][0].truth
    one_by_one = "\n".join(results[f"stack-page-{index}"].text for index in range(3))
    tall = results["stacked"]
    assert tall.height == 3 * pages.LETTER[1]
    assert cer(truth, tall.text) <= cer(truth, one_by_one) + ONE_POINT, tall.text
    # no line read twice where tiles overlap
    texts = [line.text for line in tall.lines]
    assert len(texts) == len(set(texts))


def test_footnote_in_small_print_is_kept(
    results: dict[str, ocr_pb2.Page], documents: dict[str, tuple[pages.Page, bytes]]
) -> None:
    page, expected = results["footnote"], documents["footnote"][0]
    read = "\n".join(
        line.text for line in page.lines if max(p.y for p in line.polygon) > expected.footnote_top
    )
    assert cer("\n".join(expected.footnote), read) < 0.05, read


def _boxes_on_the_page_as_sent(page: ocr_pb2.Page, sideways: bool) -> None:
    """Every box inside the page as sent; on a page turned sideways, lines run down it."""
    for line in page.lines:
        xs = [p.x for p in line.polygon]
        ys = [p.y for p in line.polygon]
        assert all(0 <= x <= page.width for x in xs) and all(0 <= y <= page.height for y in ys)
        if len(line.text) > 10:  # long enough to have a direction
            runs_down = (max(ys) - min(ys)) > (max(xs) - min(xs))
            assert runs_down == sideways, line
