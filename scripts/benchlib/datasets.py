"""The evaluation sets: pages with their ground truth, read from `../shared/eval`.

The pdfset is not shipped; it is built from Debian packages into `build/eval/pdfset` by the
eval data's own script (root, apt, a few minutes) when a run needs it and it is missing.
A set whose data is absent is skipped with a message that says how to get it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchlib import derived
from ocr_server.documents import detect_type

ROOT = Path(__file__).resolve().parents[2]
SET_NAMES = (
    "pdf200",
    "degraded",
    "scanpdf",
    "sroie",
    "uw3lines",
    "rotated",
    "stacked",
    "rolls",
    "heldout",
)
PDF_SETS = ("pdf200", "degraded", "scanpdf", "rotated", "stacked")
# The held-out manual pages: ../shared/eval/build_pdf_set.sh with HELDOUT_SEED (40 pages the
# team never tuned on), built into build/eval/heldout-<seed> like the pdfset.
HELDOUT_SEED = os.environ.get("OCR_HELDOUT_SEED", "11")

# Quick mode: a fixed spread of kinds (prose, code, tables, a form, both two-column sources),
# so a quick run still shows reading order and tables, and is comparable from run to run.
QUICK_PDF_IDS = (
    "r-intro-012",
    "rl-062",
    "amc-form-001",
    "why3-060",
    "camlidl-005",
    "docbook-020",
    "mom-010",
    "man-bash-1",
    "gpl3-2col-1",
    "code-textwrap-2",
)
QUICK_COUNTS = {"sroie": 12, "uw3lines": 20, "rotated": 6, "stacked": 2, "rolls": 2, "heldout": 10}
SMOKE_COUNT = 2


@dataclass(frozen=True)
class Page:
    """One page to recognise: a single-page image or one-page PDF, and what it should read."""

    page_id: str
    path: Path
    document_type: str  # as the service detects it: png, jpeg, pdf, ...
    truth: str
    gt_mode: str  # pdfset: "layout" (row order) or "raw" (two columns, column order); else ""


@dataclass(frozen=True)
class EvalSet:
    name: str
    description: str
    pages: tuple[Page, ...]
    ignore_case: bool  # SROIE's ground truth is upper case only
    tesseract_psm: int  # 7 for single text lines, 3 (automatic layout) otherwise


def eval_dir() -> Path:
    return Path(os.environ.get("OCR_EVAL_DIR", ROOT.parent / "shared" / "eval"))


def pdfset_dir() -> Path:
    return Path(os.environ.get("OCR_PDFSET_DIR", ROOT / "build" / "eval" / "pdfset"))


def heldout_dir() -> Path:
    return Path(
        os.environ.get("OCR_HELDOUT_DIR", ROOT / "build" / "eval" / f"heldout-{HELDOUT_SEED}")
    )


def pdfset_ready(path: Path) -> bool:
    """The build script writes versions.txt last, so its presence means a complete set."""
    return (path / "versions.txt").is_file() and (path / "manifest.tsv").is_file()


def build_pdfset(path: Path, env: dict[str, str] | None = None) -> str | None:
    """Build the pdfset with the eval data's script; return why not, or None on success."""
    script = eval_dir() / "build_pdf_set.sh"
    if not script.is_file():
        return f"{script} not found"
    if os.geteuid() != 0:
        return f"building it needs root (apt): run `sudo bash {script} {path}` once"
    path.parent.mkdir(parents=True, exist_ok=True)
    log_path = path.parent / "build.log"
    print(f"bench: building the pdfset into {path} (a few minutes; log {log_path})", flush=True)
    with log_path.open("ab") as log:
        code = subprocess.call(
            ["bash", str(script), str(path)],
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
        )
    if code != 0 or not pdfset_ready(path):
        return f"{script} failed (exit {code}); see {log_path}"
    return None


# What the Submit probe sends in turn, whatever the set (benchlib.submit_probe): a 200-dpi
# page as PNG (369 kB) and as a one-page scanned PDF (370 kB), and a receipt photo (JPEG), so
# that every set's saturated window measures each type on the same documents.
PROBE_PAGE = "amc-en-012"


def probe_documents(current: EvalSet) -> list[Path]:
    """The probe's documents that are here; the set's first page when none is."""
    pdfset = pdfset_dir()
    receipts = eval_dir() / "realset" / "sroie" / "img"
    candidates = [pdfset / "img" / "200" / f"{PROBE_PAGE}.png"]
    candidates.append(pdfset / "scanpdf" / f"{PROBE_PAGE}.pdf")
    if receipts.is_dir():
        candidates += sorted(p for p in receipts.iterdir() if p.suffix == ".jpg")[:1]
    found = [p for p in candidates if p.is_file()]
    return found or [current.pages[0].path]


def load_sets(names: list[str], mode: str, build: bool) -> tuple[list[EvalSet], list[str]]:
    """The sets asked for that have data, and a message for each one skipped."""
    sets: list[EvalSet] = []
    skipped: list[str] = []
    wanted_pdf = [n for n in names if n in PDF_SETS]
    pdf_dir = pdfset_dir()
    pdf_problem: str | None = None
    if wanted_pdf and not pdfset_ready(pdf_dir):
        if build and mode != "smoke":
            pdf_problem = build_pdfset(pdf_dir)
        else:
            pdf_problem = (
                f"no built pdfset at {pdf_dir} (a run without --smoke or --no-build builds it, "
                f"or `bash {eval_dir() / 'build_pdf_set.sh'} {pdf_dir}`)"
            )
    for name in names:
        if name == "heldout":
            held = heldout_dir()
            problem = None
            if not pdfset_ready(held):
                if build and mode != "smoke":
                    problem = build_pdfset(
                        held,
                        {
                            "HELDOUT_SEED": HELDOUT_SEED,
                            "DPIS": "200",
                            "DEGRADE": "0",
                            "SCANPDF": "0",
                        },
                    )
                else:
                    problem = f"no held-out pdfset at {held} (a full or quick run builds it)"
            if problem:
                skipped.append(f"{name}: skipped: {problem}")
                continue
            sets.append(_pdf_set(name, held, mode))
        elif name in PDF_SETS:
            if pdf_problem:
                skipped.append(f"{name}: skipped: {pdf_problem}")
                continue
            sets.append(_pdf_set(name, pdf_dir, mode))
        elif name == "rolls":
            root = eval_dir() / "realset" / "sroie"
            if not (root / "img").is_dir():
                skipped.append(f"{name}: skipped: no {root}/img (see ../shared/eval)")
                continue
            sets.append(_rolls_set(root, mode))
        else:
            root = eval_dir() / "realset" / name
            if not (root / "img").is_dir() or not (root / "gt").is_dir():
                skipped.append(f"{name}: skipped: no {root}/img and gt (see ../shared/eval)")
                continue
            sets.append(_real_set(name, root, mode))
    return sets, skipped


def _pdf_set(name: str, root: Path, mode: str) -> EvalSet:
    manifest = [
        line.split("\t")
        for line in (root / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]
        if line.strip()
    ]
    modes = {row[0]: row[5] for row in manifest}
    ids = [row[0] for row in manifest]
    if name in ("rotated", "stacked", "heldout"):
        return _derived_pdf_set(name, root, ids, modes, mode)
    if mode == "quick":
        ids = [i for i in QUICK_PDF_IDS if i in modes]
    elif mode == "smoke":
        ids = [
            next(i for i in ids if modes[i] == "layout"),
            next(i for i in ids if modes[i] == "raw"),
        ]
    folder, description = {
        "pdf200": (root / "img" / "200", "pdfset pages at 200 dpi (PNG)"),
        "degraded": (root / "img" / "degraded", "pdfset pages, scan-like degraded (JPEG)"),
        "scanpdf": (root / "scanpdf", "pdfset pages as image-only one-page PDFs (200 dpi)"),
    }[name]
    pages = []
    for page_id in ids:
        path = _find(folder, page_id)
        truth = (root / "gt" / f"{page_id}.txt").read_text(encoding="utf-8", errors="replace")
        pages.append(Page(page_id, path, _type_of(path), truth, modes[page_id]))
    return EvalSet(name, description, tuple(pages), ignore_case=False, tesseract_psm=3)


def _derived_pdf_set(
    name: str, root: Path, ids: list[str], modes: dict[str, str], mode: str
) -> EvalSet:
    """The turned pages, the stacked pages (row-order pages only), or the held-out pages."""
    sources = [
        derived.Source(
            i,
            _find(root / "img" / "200", i),
            (root / "gt" / f"{i}.txt").read_text(encoding="utf-8", errors="replace"),
        )
        for i in ids
        if name != "stacked" or modes[i] == "layout"
    ]
    folder = ROOT / "build" / "eval" / "derived" / name
    if name == "rotated":
        items = derived.rotated(folder, sources)
        description, psm = "pdfset 200-dpi pages turned 90/180/270 degrees in turn", 1
    elif name == "stacked":
        items = derived.stacked(folder, sources)
        description, psm = "pdfset row-order pages, three stacked in one tall image", 3
    else:
        items = [(s.page_id, s.path, s.truth) for s in sources]
        description, psm = f"held-out manual pages at 200 dpi (HELDOUT_SEED={HELDOUT_SEED})", 3
    items = _subset(items, mode, name)
    pages = tuple(
        Page(
            i,
            path,
            "png",
            truth,
            "raw" if any(modes.get(p) == "raw" for p in i.split("+")) else "layout",
        )
        for i, path, truth in items
    )
    return EvalSet(name, description, pages, ignore_case=False, tesseract_psm=psm)


def _rolls_set(root: Path, mode: str) -> EvalSet:
    sources = [
        derived.Source(
            p.stem, p, (root / "gt" / f"{p.stem}.txt").read_text(encoding="utf-8", errors="replace")
        )
        for p in sorted(q for q in (root / "img").iterdir() if q.is_file())
        if (root / "gt" / f"{p.stem}.txt").is_file()
    ]
    items = _subset(
        derived.rolls(ROOT / "build" / "eval" / "derived" / "rolls", sources), mode, "rolls"
    )
    pages = tuple(Page(i, path, "png", truth, "") for i, path, truth in items)
    return EvalSet(
        "rolls", "SROIE receipts, five to a roll, 600 px wide (case-insensitive)", pages, True, 3
    )


def _subset(
    items: list[tuple[str, Path, str]], mode: str, name: str
) -> list[tuple[str, Path, str]]:
    if mode == "quick":
        return items[: QUICK_COUNTS[name]]
    if mode == "smoke":
        return items[:SMOKE_COUNT]
    return items


def _real_set(name: str, root: Path, mode: str) -> EvalSet:
    images = sorted(p for p in (root / "img").iterdir() if p.is_file())
    if mode == "quick":
        images = images[: QUICK_COUNTS[name]]
    elif mode == "smoke":
        images = images[:SMOKE_COUNT]
    pages = []
    for path in images:
        gt = root / "gt" / f"{path.stem}.txt"
        if gt.is_file():
            truth = gt.read_text(encoding="utf-8", errors="replace")
            pages.append(Page(path.stem, path, _type_of(path), truth, ""))
    if name == "sroie":
        return EvalSet(name, "SROIE scanned receipts (case-insensitive)", tuple(pages), True, 3)
    return EvalSet(name, "UW-III scanned single text lines", tuple(pages), False, 7)


def _find(folder: Path, page_id: str) -> Path:
    """The page's file whatever its extension (degraded pages are JPEG, others PNG/PDF)."""
    matches = sorted(folder.glob(f"{page_id}.*"))
    if not matches:
        sys.exit(f"bench: {folder} has no file for page {page_id}; rebuild the pdfset")
    return matches[0]


def _type_of(path: Path) -> str:
    with path.open("rb") as handle:
        return detect_type(handle.read(1024))
