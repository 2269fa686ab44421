"""The invisible text layer's font: one blank glyph, half an em wide, for every character.

A searchable PDF's text is never drawn (render mode 3), so its font needs no shapes, only
metrics: with every glyph 500/1000 em wide, a word of n characters at size s is n * s / 2
wide before horizontal scaling stretches it onto its box. It is a Type 0 font (two-byte
codes, Identity-H): a code is the character's UTF-16 code unit, every code draws glyph 1
(CIDToGIDMap), and the ToUnicode map gives each code back as itself, which is what text
extraction, search and copy read. This is Tesseract's and OCRmyPDF's GlyphLessFont design;
the TrueType program is built here with fontTools rather than shipped as a binary.
"""

from __future__ import annotations

import functools
import io
import zlib

import pikepdf
from fontTools.fontBuilder import FontBuilder
from fontTools.ttLib.tables._g_l_y_f import Glyph

FONT_NAME = "GlyphLessFont"
UNITS_PER_EM = 1000
ADVANCE = 500  # every glyph's width, in 1/1000 em
ASCENT, DESCENT = 800, -200  # the glyph box: 0.2 em below the baseline, 0.8 above
REPLACEMENT = 0xFFFD  # characters beyond the two-byte codes (outside the BMP)


@functools.cache
def font_program() -> bytes:
    """A TrueType font with .notdef and one blank glyph, both ADVANCE wide."""
    builder = FontBuilder(UNITS_PER_EM, isTTF=True)
    names = [".notdef", "blank"]
    builder.setupGlyphOrder(names)
    builder.setupCharacterMap({0x20: "blank"})
    empty = Glyph()
    empty.numberOfContours = 0
    builder.setupGlyf({name: empty for name in names})
    builder.setupHorizontalMetrics({name: (ADVANCE, 0) for name in names})
    builder.setupHorizontalHeader(ascent=ASCENT, descent=DESCENT)
    builder.setupNameTable({"familyName": FONT_NAME, "styleName": "Regular"})
    builder.setupOS2(
        sTypoAscender=ASCENT, sTypoDescender=DESCENT, usWinAscent=ASCENT, usWinDescent=-DESCENT
    )
    builder.setupPost()
    out = io.BytesIO()
    builder.save(out)
    return out.getvalue()


@functools.cache
def _to_unicode_cmap() -> bytes:
    """Every two-byte code maps to the same UTF-16 code unit (surrogates excluded). The
    ranges stay within one high byte each, as the PDF specification requires; at most 100
    entries per block."""
    ranges = [
        f"<{high:02X}00> <{high:02X}FF> <{high:02X}00>"
        for high in range(0x100)
        if not 0xD8 <= high <= 0xDF
    ]
    blocks = []
    for start in range(0, len(ranges), 100):
        chunk = ranges[start : start + 100]
        blocks.append(f"{len(chunk)} beginbfrange\n" + "\n".join(chunk) + "\nendbfrange")
    return (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
        + "\n".join(blocks)
        + "\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    ).encode("ascii")


@functools.cache
def _compressed() -> tuple[bytes, bytes, bytes]:
    """The font program, CIDToGIDMap and ToUnicode streams, deflated once per process."""
    return (
        zlib.compress(font_program()),
        zlib.compress(b"\x00\x01" * 0x10000),  # every two-byte code draws glyph 1
        zlib.compress(_to_unicode_cmap()),
    )


def add_font(pdf: pikepdf.Pdf) -> pikepdf.Dictionary:
    """The font's objects, added to `pdf` (once per document: every page shares them)."""
    program_data, cid_to_gid_data, to_unicode_data = _compressed()
    program = pdf.make_stream(program_data)
    program.Filter = pikepdf.Name.FlateDecode
    program.Length1 = len(font_program())
    cid_to_gid = pdf.make_stream(cid_to_gid_data)
    cid_to_gid.Filter = pikepdf.Name.FlateDecode
    to_unicode = pdf.make_stream(to_unicode_data)
    to_unicode.Filter = pikepdf.Name.FlateDecode
    descriptor = pikepdf.Dictionary(
        Type=pikepdf.Name.FontDescriptor,
        FontName=pikepdf.Name("/" + FONT_NAME),
        Flags=5,  # fixed pitch, symbolic
        FontBBox=[0, DESCENT, ADVANCE, ASCENT],
        ItalicAngle=0,
        Ascent=ASCENT,
        Descent=DESCENT,
        CapHeight=ASCENT,
        StemV=80,
        FontFile2=program,
    )
    cid_font = pikepdf.Dictionary(
        Type=pikepdf.Name.Font,
        Subtype=pikepdf.Name.CIDFontType2,
        BaseFont=pikepdf.Name("/" + FONT_NAME),
        CIDSystemInfo=pikepdf.Dictionary(
            Registry=pikepdf.String("Adobe"), Ordering=pikepdf.String("Identity"), Supplement=0
        ),
        FontDescriptor=pdf.make_indirect(descriptor),
        DW=ADVANCE,
        CIDToGIDMap=cid_to_gid,
    )
    font = pikepdf.Dictionary(
        Type=pikepdf.Name.Font,
        Subtype=pikepdf.Name.Type0,
        BaseFont=pikepdf.Name("/" + FONT_NAME),
        Encoding=pikepdf.Name("/Identity-H"),
        DescendantFonts=[pdf.make_indirect(cid_font)],
        ToUnicode=to_unicode,
    )
    return pdf.make_indirect(font)


def encode(text: str) -> bytes:
    """The two-byte codes of `text` (characters outside the BMP become U+FFFD)."""
    return b"".join(
        (
            ord(ch) if ord(ch) <= 0xFFFF and not 0xD800 <= ord(ch) <= 0xDFFF else REPLACEMENT
        ).to_bytes(2, "big")
        for ch in text
    )
