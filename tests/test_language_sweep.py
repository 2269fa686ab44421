"""The language sweep behind docs/languages.md (slow: `pytest -m slow -k language_sweep`).

For every language with sentences (tests/language_texts.py): pages at four type sizes and
several seeds, read in this process by the worker's own engines (`worker.EngineCache`, the
same code the server runs) through the language's route, and where they can read it by the
tiny and small recognisers too; Tesseract alone (`--psm 3`, its own layout) on the same
images. CPU seconds per page are this process's (or the `tesseract` child's) user+sys time.
For the Tesseract languages it also compares the in-process engine with the same pipeline
run through a `tesseract` process per page (its line crops as a list file, `--psm 7`). And
one dense page per language (30 lines, as full as a letter) for the CPU cost of a real page.

Writes build/language-sweep/results.json and table.md, and checks the acceptance (each
language at most 5% CER and no worse than Tesseract + 1 point) on every page set.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocr_server.capabilities import Capabilities
from ocr_server.config import default_model_dir
from ocr_server.engines.base import OcrEngine
from ocr_server.engines.cache import EngineCache
from ocr_server.engines.profiles import BUILTIN_PROFILES
from ocr_server.engines.tesseract import (
    _ATTEMPTS,
    _line_crop,
    bgr_for_detection,
    find_tessdata,
    tesseract_languages,
)
from ocr_server.languages.catalog import BY_CODE
from ocr_server.layout import order_lines, page_text
from ocr_server.workers.worker import WorkerConfig, engine_builder
from tests.documents import require_eval, scorer
from tests.language_pages import LanguagePage, render_page
from tests.language_texts import SENTENCES

OUT = Path(__file__).resolve().parent.parent / "build" / "language-sweep"
SEEDS = range(int(os.environ.get("OCR_SWEEP_SEEDS", "3")))
SIZES = (26, 30, 34, 40)  # pixels: 9.5 to 14.5 pt type scanned at 200 dpi
LINES = 5
DENSE_LINES, DENSE_SIZE = 30, 30  # a full page of a letter, for the CPU cost per page


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Tally:
    """Edits and reference characters over a language's pages, and CPU seconds spent."""

    edits: int = 0
    chars: int = 0
    cpu: float = 0.0
    pages: int = 0

    def add(self, truth: str, text: str, cpu: float) -> None:
        counts = scorer().score(truth, text)
        self.edits += counts["char_edits"]
        self.chars += counts["ref_chars"]
        self.cpu += cpu
        self.pages += 1

    @property
    def cer(self) -> float:
        return self.edits / max(1, self.chars)


def rgb(page: LanguagePage) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(page.png)).convert("RGB"))


def measured(read: Callable[..., str], *args: object) -> tuple[str, float]:
    """What `read(*args)` returns and the CPU seconds it took (its child processes too)."""
    start = cpu_seconds() + cpu_seconds(resource.RUSAGE_CHILDREN)
    text = read(*args)
    return text, cpu_seconds() + cpu_seconds(resource.RUSAGE_CHILDREN) - start


def tesseract_cli(page: LanguagePage, names: str, tmp: Path) -> str:
    image = tmp / "page.png"
    image.write_bytes(page.png)
    return subprocess.run(
        ["tesseract", str(image), "stdout", "-l", names, "--psm", "3"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
    ).stdout


def tesseract_subprocess_pipeline(
    engines: EngineCache, page: LanguagePage, names: str, tmp: Path
) -> str:
    """The Tesseract engine's pipeline with one `tesseract` process per page instead of the
    library: the same detector and line crops, the crops read from a list file."""
    engine = engines.get("tesseract")
    image = rgb(page)
    bgr, pad = bgr_for_detection(image)
    found = next(iter(engine._detector.predict(bgr)))
    listing = []
    _psm, height, margin = _ATTEMPTS[0]
    for number, quad in enumerate(sorted(found["dt_polys"], key=lambda q: q[0][1])):
        crop, _ = _line_crop(image, np.asarray(quad, dtype=np.float32) - pad, height, margin)
        path = tmp / f"line{number}.png"
        Image.fromarray(crop).save(path)
        listing.append(str(path))
    (tmp / "lines.txt").write_text("\n".join(listing) + "\n")
    return subprocess.run(
        ["tesseract", str(tmp / "lines.txt"), "stdout", "-l", names, "--psm", "7"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
    ).stdout


def read_text(engine: OcrEngine, image: np.ndarray, language: str) -> str:
    return page_text(order_lines(engine.recognize(image, language)))


@pytest.mark.slow
def test_language_sweep() -> None:
    require_eval()
    model_dir = default_model_dir()
    tessdata = find_tessdata()
    capabilities = Capabilities.discover(
        dict(BUILTIN_PROFILES), model_dir, "fast", fake_engine=False, tessdata=tessdata
    )
    config = WorkerConfig(model_dir=model_dir, default_profile="fast", tessdata=tessdata)
    engines = EngineCache(engine_builder(config), "fast", max_engines=len(config.profiles))
    results: dict[str, dict[str, object]] = {}
    failures = []
    for language in SENTENCES:
        route = capabilities.resolve(language, "", "", 0)
        names = tesseract_languages(route.language)
        alternatives = [
            p
            for p in ("fast", "accurate")
            if p != route.profile and _reads(capabilities, language, p)
        ]
        keys = ("route", "tesseract_cli", "subprocess", "dense_route", "dense_tesseract_cli")
        tallies = {key: Tally() for key in (*keys, *alternatives)}
        dense = render_page(language, 1000, DENSE_LINES, DENSE_SIZE)
        text, cpu = measured(read_text, engines.get(route.profile), rgb(dense), route.language)
        tallies["dense_route"].add(dense.truth, text, cpu)
        with tempfile.TemporaryDirectory() as tmp:
            text, cpu = measured(tesseract_cli, dense, names, Path(tmp))
            tallies["dense_tesseract_cli"].add(dense.truth, text, cpu)
        for seed in SEEDS:
            for size in SIZES:
                page = render_page(language, seed * len(SIZES) + size, LINES, size)
                image = rgb(page)
                for key, profile in (("route", route.profile), *((p, p) for p in alternatives)):
                    engine = engines.get(profile)
                    if tallies[key].pages == 0:  # warm up: the first call builds caches
                        engine.recognize(image, route.language)
                    text, cpu = measured(read_text, engine, image, route.language)
                    tallies[key].add(page.truth, text, cpu)
                with tempfile.TemporaryDirectory() as tmp:
                    text, cpu = measured(tesseract_cli, page, names, Path(tmp))
                    tallies["tesseract_cli"].add(page.truth, text, cpu)
                    if route.profile == "tesseract":
                        text, cpu = measured(
                            tesseract_subprocess_pipeline, engines, page, names, Path(tmp)
                        )
                        tallies["subprocess"].add(page.truth, text, cpu)
        results[language] = {
            "name": BY_CODE[language].name,
            "profile": route.profile,
            **{key: asdict(t) | {"cer": t.cer} for key, t in tallies.items() if t.pages},
        }
        ours, theirs = tallies["route"].cer, tallies["tesseract_cli"].cer
        if ours > 0.05 or ours > theirs + 0.01:
            failures.append(f"{language}: CER {ours:.2%}, Tesseract {theirs:.2%}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    (OUT / "table.md").write_text(_table(results))
    assert not failures, failures


def _reads(capabilities: Capabilities, language: str, profile: str) -> bool:
    try:
        capabilities.resolve(language, profile, "", 0)
    except Exception:
        return False
    return True


def _table(results: dict[str, dict[str, object]]) -> str:
    def cell(entry: object) -> str:
        if not isinstance(entry, dict):
            return ""
        return f"{entry['cer']:.2%} ({entry['cpu'] / entry['pages']:.2f} s)"

    rows = [
        "| language | route | CER route (CPU s/page) | fast | accurate | Tesseract --psm 3 | "
        "Tesseract pipeline as a subprocess | characters | dense page: route | "
        "dense page: Tesseract --psm 3 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for code, entry in results.items():
        route = entry["route"]
        assert isinstance(route, dict)
        rows.append(
            f"| {code} {entry['name']} | {entry['profile']} | {cell(route)} | "
            f"{cell(entry.get('fast'))} | {cell(entry.get('accurate'))} | "
            f"{cell(entry.get('tesseract_cli'))} | {cell(entry.get('subprocess'))} | "
            f"{route['chars']} | {cell(entry.get('dense_route'))} | "
            f"{cell(entry.get('dense_tesseract_cli'))} |"
        )
    return "\n".join(rows) + "\n"
