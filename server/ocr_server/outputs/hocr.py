"""hOCR 1.2: XHTML with ocr_page / ocr_carea / ocr_par / ocr_line / ocrx_word elements whose
`title` carries bbox, baseline, x_wconf and scan_res, as hOCR tools (hocr-tools, OCRmyPDF's
hocrtransform, search indexers) read them. Built with ElementTree, so every text and
attribute is escaped by the library."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ocr.v1 import ocr_pb2
from ocr_server.outputs.layout import Box, baseline, blocks, box_of, polygon, union, words_of
from ocr_server.outputs.source import Source

MEDIA_TYPE = "application/xhtml+xml"
XHTML = "http://www.w3.org/1999/xhtml"
_DOCTYPE = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
)
CAPABILITIES = "ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrp_wconf ocrp_lang"


def render(result: ocr_pb2.OcrResult, source: Source) -> bytes:
    html = ET.Element(
        "html", {"xmlns": XHTML, "xml:lang": source.language, "lang": source.language}
    )
    head = ET.SubElement(html, "head")
    ET.SubElement(head, "title").text = source.filename or source.task_id
    for name, content in (
        ("ocr-system", source.engine),
        ("ocr-capabilities", CAPABILITIES),
        ("ocr-number-of-pages", str(len(result.pages))),
        ("ocr-langs", source.language),
    ):
        ET.SubElement(head, "meta", {"name": name, "content": content})
    body = ET.SubElement(html, "body")
    for page in result.pages:
        _page(body, page, source)
    ET.indent(html, space=" ")
    xml = ET.tostring(html, encoding="unicode", xml_declaration=False)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + _DOCTYPE + xml + "\n").encode("utf-8")


def _page(body: ET.Element, page: ocr_pb2.Page, source: Source) -> None:
    n = page.page_number
    title = [
        f'image "{source.filename or source.task_id}"',
        _bbox(Box(0, 0, page.width, page.height)),
        f"ppageno {n - 1}",
    ]
    if page.x_dpi and page.y_dpi:
        title.append(f"scan_res {round(page.x_dpi)} {round(page.y_dpi)}")
    element = ET.SubElement(
        body, "div", {"class": "ocr_page", "id": f"page_{n}", "title": "; ".join(title)}
    )
    line_number = word_number = 0
    for block_number, block in enumerate(blocks(page.lines), start=1):
        box = _bbox(union([box_of(polygon(line)) for line in block]))
        area = ET.SubElement(
            element, "div", {"class": "ocr_carea", "id": f"block_{n}_{block_number}", "title": box}
        )
        paragraph = ET.SubElement(
            area,
            "p",
            {
                "class": "ocr_par",
                "id": f"par_{n}_{block_number}",
                "lang": source.language,
                "title": box,
            },
        )
        for line in block:
            line_number += 1
            line_box = box_of(polygon(line))
            slope, offset = baseline(line)
            span = ET.SubElement(
                paragraph,
                "span",
                {
                    "class": "ocr_line",
                    "id": f"line_{n}_{line_number}",
                    "title": f"{_bbox(line_box)}; baseline {slope:.3f} {offset:.0f}; "
                    f"x_size {line_box.height}; x_wconf {_wconf(line.confidence)}",
                },
            )
            for word in words_of(line):
                word_number += 1
                ET.SubElement(
                    span,
                    "span",
                    {
                        "class": "ocrx_word",
                        "id": f"word_{n}_{word_number}",
                        "title": f"{_bbox(box_of(word.quad))}; x_wconf {_wconf(word.confidence)}",
                    },
                ).text = word.text


def _bbox(box: Box) -> str:
    return f"bbox {box.left} {box.top} {box.right} {box.bottom}"


def _wconf(confidence: float) -> int:
    return max(0, min(100, round(confidence * 100)))
