"""What each result file costs to render, per page, against what the page cost to recognise.

Both are CPU seconds (user + system) of this one process, measured in the same run: each
page is loaded and recognised exactly as a server worker does (`ocr_server.worker`
.recognize_page with the profile's PaddleOCR engine, one thread), then rendered in every
format from the result the service would store and the page's own document. The target: the
searchable PDF under 5% of the page's recognition time. Wall-clock time on a shared machine
is noise; CPU time of the process doing the work is not.
"""

from __future__ import annotations

import os
import resource
import tempfile
from pathlib import Path
from typing import Any

from benchlib.datasets import EvalSet, Page
from benchlib.raw_engine import model_dir, profiles
from ocr.v1 import ocr_pb2
from ocr_server import outputs
from ocr_server.convert import build_result
from ocr_server.documents import DEFAULT_DPI, DocumentLimits, page_resolution
from ocr_server.engines.cache import EngineCache
from ocr_server.outputs.source import Source
from ocr_server.reading.orientation import OrientationClassifier
from ocr_server.workers.messages import WORKER_ENVIRONMENT, PageJob
from ocr_server.workers.worker import (
    WorkerConfig,
    engine_builder,
    orientation_classifier,
    recognize_page,
)

PDF_TARGET = 0.05  # of the page's recognition CPU
FORMATS = ("text", "json", "hocr", "alto", "pdf")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(sets: list[EvalSet], profile: str, language: str) -> dict[str, Any]:
    """Per set: recognition CPU per page and each format's CPU per page and share of it."""
    os.environ.update(WORKER_ENVIRONMENT)
    config = WorkerConfig(model_dir=model_dir(), default_profile=profile, profiles=profiles())
    engines = EngineCache(engine_builder(config), profile)
    engines.get(profile)
    classifier = orientation_classifier(config)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as scratch:
        output = Path(scratch) / "out"
        for eval_set in sets:
            recognise = 0.0
            spent = dict.fromkeys(FORMATS, 0.0)
            for number, page in enumerate(eval_set.pages):
                seconds, costs = _page_costs(
                    page, (engines, classifier), profile, language, output, number == 0
                )
                recognise += seconds
                for name, cost in costs.items():
                    spent[name] += cost
            pages = max(len(eval_set.pages), 1)
            rows.append(
                {
                    "set": eval_set.name,
                    "pages": len(eval_set.pages),
                    "recognise_cpu_s": round(recognise / pages, 4),
                    "formats": {
                        name: {
                            "cpu_ms": round(1000 * spent[name] / pages, 2),
                            "share": round(spent[name] / recognise, 4) if recognise else None,
                        }
                        for name in FORMATS
                    },
                }
            )
    total_recognise = sum(float(r["recognise_cpu_s"]) * int(r["pages"]) for r in rows)
    total_pdf = sum(float(r["formats"]["pdf"]["cpu_ms"]) / 1000 * int(r["pages"]) for r in rows)
    share = total_pdf / total_recognise if total_recognise else None
    return {
        "profile": profile,
        "rows": rows,
        "pdf_share": None if share is None else round(share, 4),
        "target": f"searchable PDF < {PDF_TARGET:.0%} of recognition CPU per page ({profile})",
        "holds": None if share is None else share < PDF_TARGET,
    }


def _page_costs(
    page: Page,
    reader: tuple[EngineCache, OrientationClassifier | None],
    profile: str,
    language: str,
    output: Path,
    warm_up: bool,
) -> tuple[float, dict[str, float]]:
    """CPU seconds to recognise the page as a worker does, and to render each format."""
    engines, classifier = reader
    dpi = DEFAULT_DPI if page.document_type == "pdf" else 0
    job = PageJob(0, "0" * 40, str(page.path), page.document_type, 1, dpi, profile, language)
    limits = DocumentLimits()
    if warm_up:  # the first inference of a process is slower
        recognize_page(job, engines, limits, classifier=classifier)
    start = _cpu()
    recognised = recognize_page(job, engines, limits, classifier=classifier)
    recognise = _cpu() - start
    result = ocr_pb2.OcrResult.FromString(build_result([recognised]))
    source = Source("0" * 40, page.path.name, page.document_type, language, profile, page.path)

    def unrecognised(number: int) -> tuple[float, float]:
        return page_resolution(page.path, page.document_type, number, dpi)

    costs = {}
    for name in FORMATS:
        code = outputs.RESULT_FORMATS_BY_NAME[name]
        start = _cpu()
        if outputs.is_file_format(code):
            outputs.render_file(result, source, output, unrecognised)
        else:
            outputs.render_bytes(code, result, source)
        costs[name] = _cpu() - start
    return recognise, costs


def markdown(formats: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Result files, CPU per page in one process ({formats['profile']}), and share of "
        "the page's recognition CPU:",
        "",
        "| set | pages | recognise s | " + " | ".join(FORMATS) + " |",
        "|---|--:|--:|" + "--:|" * len(FORMATS),
    ]
    for row in formats["rows"]:
        cells = [
            f"{f['cpu_ms']:.1f} ms ({(f['share'] or 0):.1%})"
            for f in (row["formats"][name] for name in FORMATS)
        ]
        lines.append(
            f"| {row['set']} | {row['pages']} | {row['recognise_cpu_s']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    return lines
