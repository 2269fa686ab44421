"""ALTO v4 XML in pixel units: Page / PrintSpace / TextBlock / TextLine / String (+ SP between
words) with HPOS, VPOS, WIDTH, HEIGHT and WC, as digitisation tools (Goobi, Transkribus,
eScriptorium, library search indexers) read it. Built with ElementTree, so every value is
escaped by the library."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET

from ocr.v1 import ocr_pb2
from ocr_server.outputs.layout import Box, blocks, box_of, polygon, union, words_of
from ocr_server.outputs.source import SOFTWARE, Source, software_version

MEDIA_TYPE = "application/xml"
ALTO = "http://www.loc.gov/standards/alto/ns-v4#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA = f"{ALTO} http://www.loc.gov/alto/v4/alto-4-2.xsd"


def render(result: ocr_pb2.OcrResult, source: Source) -> bytes:
    ET.register_namespace("", ALTO)
    ET.register_namespace("xsi", XSI)
    alto = ET.Element(f"{{{ALTO}}}alto", {f"{{{XSI}}}schemaLocation": SCHEMA})
    _description(alto, source)
    layout = _add(alto, "Layout")
    for page in result.pages:
        _page(layout, page)
    ET.indent(alto, space=" ")
    return bytes(ET.tostring(alto, encoding="utf-8", xml_declaration=True)) + b"\n"


def _add(parent: ET.Element, tag: str, attributes: dict[str, str] | None = None) -> ET.Element:
    return ET.SubElement(parent, f"{{{ALTO}}}{tag}", attributes or {})


def _description(alto: ET.Element, source: Source) -> None:
    description = _add(alto, "Description")
    _add(description, "MeasurementUnit").text = "pixel"
    image = _add(description, "sourceImageInformation")
    _add(image, "fileName").text = source.filename or source.task_id
    processing = _add(description, "Processing", {"ID": "OCR_0"})
    _add(processing, "processingCategory").text = "contentGeneration"
    _add(processing, "processingDateTime").text = (
        datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    )
    _add(
        processing, "processingStepSettings"
    ).text = f"language={source.language}; profile={source.profile}"
    software = _add(processing, "processingSoftware")
    _add(software, "softwareName").text = SOFTWARE
    _add(software, "softwareVersion").text = software_version()
    _add(software, "applicationDescription").text = source.engine


def _page(layout: ET.Element, page: ocr_pb2.Page) -> None:
    n = page.page_number
    element = _add(
        layout,
        "Page",
        {
            "ID": f"page_{n}",
            "PHYSICAL_IMG_NR": str(n),
            "WIDTH": str(page.width),
            "HEIGHT": str(page.height),
        },
    )
    line_boxes = [box_of(polygon(line)) for line in page.lines]
    space = union(line_boxes) if line_boxes else Box(0, 0, page.width, page.height)
    print_space = _add(element, "PrintSpace", _position(space))
    line_number = word_number = 0
    for block_number, block in enumerate(blocks(page.lines), start=1):
        box = union([box_of(polygon(line)) for line in block])
        text_block = _add(
            print_space, "TextBlock", {"ID": f"block_{n}_{block_number}", **_position(box)}
        )
        for line in block:
            line_number += 1
            text_line = _add(
                text_block,
                "TextLine",
                {"ID": f"line_{n}_{line_number}", **_position(box_of(polygon(line)))},
            )
            previous: Box | None = None
            for word in words_of(line):
                word_number += 1
                word_box = box_of(word.quad)
                if previous is not None and word_box.left > previous.right:
                    _add(
                        text_line,
                        "SP",
                        {
                            "WIDTH": str(word_box.left - previous.right),
                            "HPOS": str(previous.right),
                            "VPOS": str(previous.top),
                        },
                    )
                _add(
                    text_line,
                    "String",
                    {
                        "ID": f"string_{n}_{word_number}",
                        "CONTENT": word.text,
                        **_position(word_box),
                        "WC": f"{max(0.0, min(1.0, word.confidence)):.3f}",
                    },
                )
                previous = word_box


def _position(box: Box) -> dict[str, str]:
    return {
        "HPOS": str(box.left),
        "VPOS": str(box.top),
        "WIDTH": str(max(box.width, 0)),
        "HEIGHT": str(max(box.height, 0)),
    }
