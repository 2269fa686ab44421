"""Acceptance for word boxes and the searchable PDF, with real PaddleOCR on born-digital pages
whose true word boxes the source PDF gives (`pdftotext -bbox`): the pdfset's pages rasterised
at 300 dpi (a PNG with its own dpi), at 200 dpi (a PNG whose file states a wrong dpi, with the
right one in the request) and as an image-only PDF (its pages kept as they are).

Needs the pdfset (`../shared/eval/build_pdf_set.sh`, found through OCR_PDFSET_DIR or
build/eval/pdfset); skips with a message without it.
"""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pikepdf
import pytest
from PIL import Image

from ocr.v1 import ocr_pb2
from tests.documents import scorer
from tests.harness import ROOT, ServerProcess
from tests.pdftext import Word, page_size, pdftotext, pdftotext_words

PDFSET = Path(os.environ.get("OCR_PDFSET_DIR") or ROOT / "build" / "eval" / "pdfset")
PAGES = ("r-intro-012", "rl-007")
MIN_HITS = 0.90  # true words of 3+ letters found, same text, centre inside the true box
MAX_BOW = 0.04  # order-free word error of pdftotext of our PDF against the ground truth
XHTML = "http://www.w3.org/1999/xhtml"
ALTO = "http://www.loc.gov/standards/alto/ns-v4#"


@dataclass(frozen=True)
class SourcePage:
    page_id: str
    pdf: Path
    number: int

    def true_words(self) -> list[Word]:
        return pdftotext_words(self.pdf, self.number)

    def size(self) -> tuple[float, float]:
        return page_size(self.pdf, self.number)


@pytest.fixture
def source_pages() -> list[SourcePage]:
    """The pages, or a skip before the server starts."""
    manifest = PDFSET / "manifest.tsv"
    if not manifest.is_file():
        pytest.skip(
            f"the pdfset is not built at {PDFSET} (build it with ../shared/eval/build_pdf_set.sh "
            "or point OCR_PDFSET_DIR at it)"
        )
    rows = [line.split("\t") for line in manifest.read_text().splitlines()[1:]]
    by_id = {row[0]: SourcePage(row[0], PDFSET / "src" / row[2], int(row[3])) for row in rows}
    return [by_id[page_id] for page_id in PAGES]


def _inputs(page: SourcePage) -> dict[str, tuple[bytes, int]]:
    """The three ways in: (document, request dpi)."""
    wrong_dpi = io.BytesIO()
    with Image.open(PDFSET / "img" / "200" / f"{page.page_id}.png") as image:
        image.save(wrong_dpi, format="PNG", dpi=(72, 72), compress_level=1)
    return {
        "png-own-dpi": ((PDFSET / "img" / "300" / f"{page.page_id}.png").read_bytes(), 0),
        "png-request-dpi": (wrong_dpi.getvalue(), 200),
        "scanned-pdf": ((PDFSET / "scanpdf" / f"{page.page_id}.pdf").read_bytes(), 0),
    }


def _hits(truth: list[Word], ours: list[Word]) -> tuple[int, int]:
    """True words of 3+ letters that have a same-text word of ours centred inside their box."""
    wanted = [w for w in truth if sum(ch.isalpha() for ch in w[0]) >= 3]
    found = 0
    for text, x0, y0, x1, y1 in wanted:
        if any(
            o[0] == text and x0 <= (o[1] + o[3]) / 2 <= x1 and y0 <= (o[2] + o[4]) / 2 <= y1
            for o in ours
        ):
            found += 1
    return found, len(wanted)


def test_searchable_pdf_puts_words_on_the_true_words(
    source_pages: list[SourcePage], real_server: ServerProcess, tmp_path: Path
) -> None:
    pages = source_pages
    cer = scorer()
    with real_server.client() as client:
        submitted = {
            (page, way): client.submit(document, dpi=dpi, filename=f"{page.page_id}-{way}")
            for page in pages
            for way, (document, dpi) in _inputs(page).items()
        }
        failures = []
        for (page, way), task in submitted.items():
            task = client.wait(task.task_id, timeout=600)
            assert task.state == ocr_pb2.TASK_STATE_COMPLETED, task
            label = f"{page.page_id} {way}"
            output = tmp_path / f"{page.page_id}-{way}.pdf"
            client.export(task.task_id, "pdf", output)

            ours_size, true_size = page_size(output), page.size()
            if ours_size != pytest.approx(true_size, abs=0.5):
                failures.append(f"{label}: page {ours_size} pt, source {true_size} pt")
            found, wanted = _hits(page.true_words(), pdftotext_words(output))
            if found < MIN_HITS * wanted:
                failures.append(f"{label}: {found}/{wanted} true words found in place")
            truth = (PDFSET / "gt" / f"{page.page_id}.txt").read_text()
            counts = cer.score(truth, pdftotext(output))
            bow = counts["bow_miss"] / counts["ref_words"]
            if bow > MAX_BOW:
                failures.append(f"{label}: BOW {bow:.1%} over {MAX_BOW:.0%}")
            print(f"{label}: {found}/{wanted} true words in place, BOW {bow:.1%}, {ours_size} pt")

            result = client.result(task.task_id).result
            words = sum(len(line.words) for p in result.pages for line in p.lines)
            assert words > 0.5 * wanted, label  # the engine located words
            for fmt, tag in (("hocr", "span[@class='ocrx_word']"), ("alto", "String")):
                buffer = io.BytesIO()
                client.export(task.task_id, fmt, buffer)
                root = ET.fromstring(buffer.getvalue())
                ns = f"{{{XHTML if fmt == 'hocr' else ALTO}}}"
                count = len(root.findall(f".//{ns}{tag}"))
                if count != words:
                    failures.append(f"{label}: {fmt} has {count} words, the result {words}")
            if way == "scanned-pdf":  # the page is kept: its image is the same object
                with (
                    pikepdf.open(output) as ours,
                    pikepdf.open(PDFSET / "scanpdf" / f"{page.page_id}.pdf") as original,
                ):
                    (mine,) = ours.pages[0].get_images().values()
                    (theirs,) = original.pages[0].get_images().values()
                    assert mine.read_raw_bytes() == theirs.read_raw_bytes(), label
    assert not failures, "\n".join(failures)
