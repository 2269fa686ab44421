"""The searchable PDF: the document's own pages with an invisible text layer grafted on.

For a PDF, the original file is opened with pikepdf (qpdf) and every page is kept as it is:
vector text, images, page boxes, rotation, annotations, outlines. Only a form XObject holding
the recognised words is added to each recognised page, drawn first (under the page's own
content), as OCRmyPDF grafts its text layer; a page that already shows text (born-digital, or
OCRed before) keeps its own and gets none (existing.py). For an image, the pages are made by
img2pdf (images.py). Pages that `settings.pages` left out are kept, without text.

Recognised coordinates are pixels of the page image as the worker saw it: for a PDF, the
page's MediaBox as poppler rasterises it, turned by /Rotate; for an image, the whole image,
upright. PageTransform maps them onto each page whatever its box, rotation or resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pikepdf

from ocr.v1 import ocr_pb2
from ocr_server.documents import RASTERISE_CROPBOX
from ocr_server.outputs.layout import words_of
from ocr_server.outputs.pdf.existing import has_text
from ocr_server.outputs.pdf.font import add_font
from ocr_server.outputs.pdf.images import Resolution, image_pdf
from ocr_server.outputs.pdf.textlayer import FONT_RESOURCE, PageTransform, text_layer
from ocr_server.outputs.source import Source

MEDIA_TYPE = "application/pdf"


def render(
    result: ocr_pb2.OcrResult,
    source: Source,
    output: Path,
    unrecognised: Callable[[int], tuple[float, float]],
) -> None:
    """Write the searchable PDF of `source.document` to `output`. An image page is sized by
    its resolution: a recognised page's own (x_dpi, y_dpi), `unrecognised(n)` for the pages
    that `settings.pages` left out. PDFs keep their own page sizes."""
    if source.document is None:
        raise ValueError("the searchable PDF needs the original document")
    if source.document_type == "pdf":
        pdf = pikepdf.open(source.document)
    else:
        shown = {page.page_number: (page.width, page.height) for page in result.pages}
        pdf = image_pdf(source.document, _resolution(result, unrecognised), shown)
    with pdf:
        font = add_font(pdf)
        for page in result.pages:
            if 1 <= page.page_number <= len(pdf.pages):
                target = pdf.pages[page.page_number - 1]
                if source.document_type != "pdf" or not has_text(target):
                    _graft(pdf, target, page, font)
        pdf.docinfo[pikepdf.Name.Producer] = f"{source.engine} with pikepdf"
        pdf.save(
            output, compress_streams=True, object_stream_mode=pikepdf.ObjectStreamMode.generate
        )


def _resolution(
    result: ocr_pb2.OcrResult, unrecognised: Callable[[int], tuple[float, float]]
) -> Resolution:
    pages = {page.page_number: page for page in result.pages}

    def resolution(number: int, width_px: int, height_px: int) -> tuple[float, float]:
        page = pages.get(number)
        if page is None or not page.x_dpi or not page.y_dpi:
            return unrecognised(number)
        if (width_px, height_px) == (page.height, page.width) != (page.width, page.height):
            return page.y_dpi, page.x_dpi  # img2pdf sees the image before its EXIF turn
        return page.x_dpi, page.y_dpi

    return resolution


def _graft(
    pdf: pikepdf.Pdf, target: pikepdf.Page, page: ocr_pb2.Page, font: pikepdf.Object
) -> None:
    if not page.lines or not page.width or not page.height:
        return
    rotate = int(target.obj.get(pikepdf.Name.Rotate, 0))
    box = [float(v) for v in (target.cropbox if RASTERISE_CROPBOX else target.mediabox)]
    transform = PageTransform.for_page(box, rotate, page.width, page.height)
    content = text_layer((words_of(line) for line in page.lines), transform)
    layer = pdf.make_stream(content)
    layer.Type = pikepdf.Name.XObject
    layer.Subtype = pikepdf.Name.Form
    layer.BBox = box
    layer.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary({str(FONT_RESOURCE): font}))
    name = target.add_resource(layer, pikepdf.Name.XObject, prefix="OCR")
    target.contents_add(pdf.make_stream(b"q " + name.unparse() + b" Do Q"), prepend=True)
