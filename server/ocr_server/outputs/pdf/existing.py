"""Whether a PDF page already carries text, so that the searchable PDF does not add a second
copy of it (born-digital pages, or pages a scanner already OCRed: OCRmyPDF's `--skip-text`).

A page has text when its content, or a form XObject it draws (nested up to MAX_DEPTH), shows a
non-empty string (`Tj`, `TJ`, `'`, `"`), visible or not. Only text-showing operators are parsed
out of the streams, so a page of vector art costs one pass over its bytes.
"""

from __future__ import annotations

import pikepdf

# Form XObjects inside form XObjects deeper than this are not looked into (PDFs can nest them
# without end, or in a cycle).
MAX_DEPTH = 4

_SHOW_TEXT = "Tj TJ ' \""


def has_text(page: pikepdf.Page) -> bool:
    """True when the page shows any string of text."""
    try:
        return _shows_text(page, page.obj, depth=0, seen=set())
    except (pikepdf.PdfError, ValueError, TypeError):
        return False  # content that cannot be parsed: the page gets our layer like any other


def _shows_text(
    content: pikepdf.Page | pikepdf.Object,
    owner: pikepdf.Object,
    depth: int,
    seen: set[tuple[int, int]],
) -> bool:
    """Whether `content` (a page, or a form XObject's stream) shows text, itself or in the
    form XObjects of `owner`'s resources."""
    for instruction in pikepdf.parse_content_stream(content, _SHOW_TEXT):
        if any(_non_empty(operand) for operand in instruction.operands):
            return True
    if depth >= MAX_DEPTH:
        return False
    for xobject in _forms(owner):
        if xobject.objgen not in seen:
            seen.add(xobject.objgen)
            if _shows_text(xobject, xobject, depth + 1, seen):
                return True
    return False


def _forms(owner: pikepdf.Object) -> list[pikepdf.Stream]:
    """The form XObjects in `owner`'s /Resources."""
    resources = owner.get(pikepdf.Name.Resources)
    if not isinstance(resources, pikepdf.Dictionary):
        return []
    xobjects = resources.get(pikepdf.Name.XObject)
    if not isinstance(xobjects, pikepdf.Dictionary):
        return []
    return [
        xobject
        for xobject in xobjects.values()
        if isinstance(xobject, pikepdf.Stream)
        and xobject.get(pikepdf.Name.Subtype) == pikepdf.Name.Form
    ]


def _non_empty(operand: object) -> bool:
    if isinstance(operand, pikepdf.String):
        return bool(bytes(operand).strip())
    if isinstance(operand, pikepdf.Array):
        return any(_non_empty(item) for item in operand)
    return False
