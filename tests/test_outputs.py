"""The result files without a server: word location, the page transform, hOCR, ALTO and the
searchable PDF's text layer, images and page sizes (checked with poppler, as users' tools
read them)."""

from __future__ import annotations

import math
import os
import pty
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pikepdf
import pytest
from PIL import Image

from ocr.v1 import ocr_pb2
from ocr_server.engines.words import DecodedText, locate_words
from ocr_server.outputs import alto, hocr, pdf
from ocr_server.outputs.source import Source
from tests.pdftext import pdftotext_words

ROOT = Path(__file__).resolve().parent.parent


def _quad(x0: float, y0: float, x1: float, y1: float) -> list[ocr_pb2.Point]:
    return [ocr_pb2.Point(x=x, y=y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]


def _page(number: int, width: int, height: int, dpi: float, words: list[tuple]) -> ocr_pb2.Page:
    """A page with one line per row of words given as (text, x0, y0, x1, y1) pixels."""
    page = ocr_pb2.Page(page_number=number, width=width, height=height, x_dpi=dpi, y_dpi=dpi)
    rows: dict[float, list[tuple]] = {}
    for word in words:
        rows.setdefault(word[2], []).append(word)
    for row in rows.values():
        line = page.lines.add(
            text=" ".join(w[0] for w in row),
            confidence=0.9,
            polygon=_quad(row[0][1], row[0][2], row[-1][3], row[-1][4]),
        )
        for text, x0, y0, x1, y1 in row:
            line.words.add(text=text, confidence=0.8, polygon=_quad(x0, y0, x1, y1))
    page.text = "\n".join(line.text for line in page.lines)
    return page


WORDS = [
    ("Invisible", 100, 100, 330, 140),
    ("text", 350, 100, 450, 140),
    ("<&\"layer'>", 480, 100, 700, 140),
    ("second", 100, 300, 260, 340),
    ("line", 280, 300, 370, 340),
]


def _source(document: Path | None, kind: str) -> Source:
    return Source("0" * 40, "scan.png", kind, "en", "fast", document)


def test_words_follow_a_slanted_line() -> None:
    # A line rising 5 degrees, 200 px long and 20 px high; four characters read at frames
    # 2, 4 ("ab") and 10, 12 ("cd") of 20.
    angle = math.radians(-5)
    ux, uy, vx, vy = math.cos(angle), math.sin(angle), -math.sin(angle), math.cos(angle)
    origin = (50.0, 100.0)
    corners = [(0, 0), (200, 0), (200, 20), (0, 20)]
    polygon = tuple((origin[0] + x * ux + y * vx, origin[1] + x * uy + y * vy) for x, y in corners)
    text = DecodedText("ab cd", [2, 4, 6, 10, 12], 20.0, [0.9, 0.7, 0.99, 0.8, 0.8])
    words = locate_words(text, polygon, 0.8)
    assert [w.text for w in words] == ["ab", "cd"]
    assert words[0].confidence == pytest.approx(0.8)
    for word, (start, end) in zip(words, ((2, 4), (10, 12)), strict=True):
        centre_x = sum(p[0] for p in word.polygon) / 4 - origin[0]
        centre_y = sum(p[1] for p in word.polygon) / 4 - origin[1]
        along = centre_x * ux + centre_y * uy  # position along the line, in line pixels
        across = -centre_x * uy + centre_y * ux
        assert start * 10 <= along <= (end + 1) * 10
        assert across == pytest.approx(10, abs=0.01)  # the middle of the line's height
    assert words[0].polygon[1][0] < words[1].polygon[0][0]  # a gap between the words
    assert locate_words("ab cd", polygon, 0.8) == ()  # plain text: no positions, no words


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_text_layer_lands_on_its_words_on_any_page(tmp_path: Path, rotate: int) -> None:
    """A PDF page with an offset MediaBox and /Rotate: each word comes out of pdftotext at the
    place (in points of the page as shown) where the page image had it."""
    document = tmp_path / "in.pdf"
    with pikepdf.new() as blank:
        blank.add_blank_page(page_size=(612, 792))
        page = blank.pages[0]
        page.obj.MediaBox = [30, 40, 642, 832]
        page.obj.Rotate = rotate
        blank.save(document)
    shown_w, shown_h = (612, 792) if rotate in (0, 180) else (792, 612)
    dpi = 100
    width, height = round(shown_w * dpi / 72), round(shown_h * dpi / 72)
    result = ocr_pb2.OcrResult(pages=[_page(1, width, height, dpi, WORDS)])
    output = tmp_path / "out.pdf"
    pdf.render(result, _source(document, "pdf"), output, lambda n: (200.0, 200.0))
    found = pdftotext_words(output)
    assert [w[0] for w in found] == [w[0] for w in WORDS]
    scale = 72 / dpi
    for (text, x0, y0, x1, y1), (_, fx0, fy0, fx1, fy1) in zip(WORDS, found, strict=True):
        assert (fx0 + fx1) / 2 == pytest.approx((x0 + x1) / 2 * scale, abs=1.5), text
        assert (fy0 + fy1) / 2 == pytest.approx((y0 + y1) / 2 * scale, abs=1.5), text
        assert fx1 - fx0 == pytest.approx((x1 - x0) * scale, rel=0.2), text
    with pikepdf.open(output) as out:  # the page itself is kept as it was
        assert int(out.pages[0].obj.Rotate) == rotate
        assert [float(v) for v in out.pages[0].mediabox] == [30, 40, 642, 832]


def test_hocr_and_alto_parse_and_carry_every_word() -> None:
    result = ocr_pb2.OcrResult(
        pages=[_page(1, 800, 600, 300, WORDS), _page(3, 800, 600, 300, WORDS[:2])]
    )
    count = sum(len(line.words) for page in result.pages for line in page.lines)
    source = _source(None, "tiff")
    html = ET.fromstring(hocr.render(result, source))
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    words = html.findall(".//h:span[@class='ocrx_word']", ns)
    assert [w.text for w in words] == [
        w.text for p in result.pages for ln in p.lines for w in ln.words
    ]
    assert len(words) == count
    assert words[0].get("title") == "bbox 100 100 330 140; x_wconf 80"
    pages = html.findall(".//h:div[@class='ocr_page']", ns)
    assert [p.get("id") for p in pages] == ["page_1", "page_3"]
    assert "scan_res 300 300" in (pages[0].get("title") or "")
    assert html.find(".//h:meta[@name='ocr-system']", ns) is not None

    xml = ET.fromstring(alto.render(result, source))
    a = {"a": alto.ALTO}
    strings = xml.findall(".//a:String", a)
    assert len(strings) == count
    assert strings[2].get("CONTENT") == "<&\"layer'>"
    assert [strings[0].get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT", "WC")] == [
        "100",
        "100",
        "230",
        "40",
        "0.800",
    ]
    assert xml.find(".//a:MeasurementUnit", a).text == "pixel"  # type: ignore[union-attr]
    assert [p.get("PHYSICAL_IMG_NR") for p in xml.findall(".//a:Page", a)] == ["1", "3"]


def test_image_pages_keep_their_bytes_and_size(tmp_path: Path) -> None:
    """A JPEG is embedded as it is; a PNG's page size follows its resolution; pages left out
    of the recognition are kept, without text."""
    jpeg = tmp_path / "scan.jpg"
    Image.new("RGB", (850, 1100), "white").save(jpeg, quality=80, dpi=(100, 100))
    result = ocr_pb2.OcrResult(pages=[_page(1, 850, 1100, 100, WORDS)])
    output = tmp_path / "jpeg.pdf"
    pdf.render(result, _source(jpeg, "jpeg"), output, lambda n: (100.0, 100.0))
    with pikepdf.open(output) as out:
        page = out.pages[0]
        assert [float(v) for v in page.mediabox] == [0, 0, 612, 792]
        (image,) = page.get_images().values()
        assert image.Filter == pikepdf.Name.DCTDecode
        assert image.read_raw_bytes() == jpeg.read_bytes()
    assert [w[0] for w in pdftotext_words(output)] == [w[0] for w in WORDS]

    tiff = tmp_path / "pages.tiff"
    frames = [Image.new("L", (600, 300), 255) for _ in range(3)]
    frames[0].save(tiff, save_all=True, append_images=frames[1:], dpi=(300, 300))
    result = ocr_pb2.OcrResult(pages=[_page(2, 600, 300, 300, WORDS[:2])])
    output = tmp_path / "tiff.pdf"
    pdf.render(result, _source(tiff, "tiff"), output, lambda n: (300.0, 300.0))
    with pikepdf.open(output) as out:
        assert len(out.pages) == 3
        assert [float(v) for v in out.pages[1].mediabox] == [0, 0, 144, 72]
    assert pdftotext_words(output, 1) == []
    assert [w[0] for w in pdftotext_words(output, 2)] == ["Invisible", "text"]

    # A GIF with a transparent palette entry: img2pdf refuses it, the page is flattened.
    gif = tmp_path / "palette.gif"
    Image.new("P", (800, 200), 0).save(gif, transparency=0)
    result = ocr_pb2.OcrResult(pages=[_page(1, 800, 200, 200, WORDS[:2])])
    output = tmp_path / "gif.pdf"
    pdf.render(result, _source(gif, "gif"), output, lambda n: (200.0, 200.0))
    with pikepdf.open(output) as out:
        assert [float(v) for v in out.pages[0].mediabox] == [0, 0, 288, 72]
    assert [w[0] for w in pdftotext_words(output)] == ["Invisible", "text"]


def test_cli_keeps_a_pdf_off_the_terminal(tmp_path: Path) -> None:
    document = tmp_path / "scan.png"
    Image.new("L", (100, 100), 255).save(document)
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "ocr_client.cli",
                "--target",
                "127.0.0.1:9",
                "recognize",
                str(document),
                "--format",
                "pdf",
            ],
            stdout=terminal,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "OCR_TOKEN": "t"},
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert done.returncode == 2
    assert "binary" in done.stderr and "-o" in done.stderr


def test_hocr_and_alto_of_a_page_without_text_are_valid() -> None:
    result = ocr_pb2.OcrResult(pages=[ocr_pb2.Page(page_number=1, width=10, height=10)])
    page = ET.fromstring(hocr.render(result, _source(None, "png"))).find(
        ".//{http://www.w3.org/1999/xhtml}div"
    )
    assert page is not None and page.get("class") == "ocr_page"
    assert (
        ET.fromstring(alto.render(result, _source(None, "png"))).find(
            f".//{{{alto.ALTO}}}PrintSpace"
        )
        is not None
    )


def _text_page(pdf: pikepdf.Pdf, content: bytes, *, in_form: bool = False) -> None:
    """A US Letter page showing `content` with Helvetica, directly or from a form XObject."""
    pdf.add_blank_page(page_size=(612, 792))
    page = pdf.pages[-1]
    font = pikepdf.Dictionary(
        Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
    )
    fonts = pikepdf.Dictionary(F1=font)
    if not in_form:
        page.obj.Resources = pikepdf.Dictionary(Font=fonts)
        page.obj.Contents = pdf.make_stream(content)
        return
    form = pdf.make_stream(content)
    form.Type, form.Subtype = pikepdf.Name.XObject, pikepdf.Name.Form
    form.BBox, form.Resources = [0, 0, 612, 792], pikepdf.Dictionary(Font=fonts)
    page.obj.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Fm1=form))
    page.obj.Contents = pdf.make_stream(b"q /Fm1 Do Q")


def test_pages_with_their_own_text_get_no_second_layer(tmp_path: Path) -> None:
    """Born-digital pages (text shown directly or from a form XObject) keep their own text
    alone; a page of graphics and an empty string get the recognised words; our own output,
    submitted again, is not layered twice."""
    document = tmp_path / "in.pdf"
    with pikepdf.new() as source:
        _text_page(source, b"BT /F1 24 Tf 72 700 Td (Original words) Tj ET")
        _text_page(source, b"BT /F1 24 Tf 72 700 Td [(Form) -250 (words)] TJ ET", in_form=True)
        _text_page(source, b"0 0 m 100 100 l S BT /F1 24 Tf ( ) Tj ET")
        source.save(document)
    dpi = 100
    width, height = round(612 * dpi / 72), round(792 * dpi / 72)
    result = ocr_pb2.OcrResult(pages=[_page(n, width, height, dpi, WORDS) for n in (1, 2, 3)])
    output = tmp_path / "out.pdf"
    pdf.render(result, _source(document, "pdf"), output, lambda n: (200.0, 200.0))
    texts = [[w[0] for w in pdftotext_words(output, page=n)] for n in (1, 2, 3)]
    assert texts[0] == ["Original", "words"]
    assert texts[1] == ["Form", "words"]
    assert texts[2] == [w[0] for w in WORDS]
    again = tmp_path / "again.pdf"
    pdf.render(result, _source(output, "pdf"), again, lambda n: (200.0, 200.0))
    assert [w[0] for w in pdftotext_words(again, page=3)] == [w[0] for w in WORDS]
