"""`scripts/bench --smoke` runs end to end (raw engine, real server, Tesseract, RapidOCR, result
files) on two real pages per set and writes sane figures, so the benchmark harness cannot rot
unnoticed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.documents import EVAL_DIR

ROOT = Path(__file__).resolve().parent.parent
SETS = ("sroie", "uw3lines")


def test_bench_smoke_measures_every_engine(tmp_path: Path) -> None:
    eval_dir = Path(os.environ.get("OCR_EVAL_DIR", EVAL_DIR))
    if not all((eval_dir / "realset" / name / "img").is_dir() for name in SETS):
        pytest.skip(f"evaluation data not found at {eval_dir} (needs ../shared/eval)")
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract not installed (scripts/setup --dev installs it)")
    out = tmp_path / "bench"
    # One worker, so the second Submit meets a busy worker and is measured.
    command = [str(ROOT / "scripts" / "bench"), "--smoke", "--workers", "1"]
    done = subprocess.run(
        [*command, "--sets", ",".join(SETS), "--out", str(out)],
        env={**os.environ, "OCR_EVAL_DIR": str(eval_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    rows = {(r["label"], r["set"]): r for r in results["rows"]}
    engines = ("raw:fast", "service:fast", "tesseract", "rapidocr")
    assert set(rows) == {(e, s) for e in engines for s in SETS}
    for (label, name), row in rows.items():
        assert row["pages"] == 2 and row["errors"] == 0, (label, name, row["error_samples"])
        assert row["pages_per_s"] > 0 and row["latency_p50_s"] > 0, (label, name)
        assert 0 <= row["cer"] <= 1 and 0 <= row["bow"] <= 1, (label, name)
        assert row["peak_rss_mb"] > 0 and len(row["cpu_per_core"]) == os.cpu_count()
        if label != "tesseract":  # a PaddleOCR or RapidOCR worker holds its models
            assert row["peak_rss_mb"] > 100, (label, name)
    for name in SETS:
        raw, service = rows[("raw:fast", name)], rows[("service:fast", name)]
        # the raw engine is the service's own configuration: the same text, page for page
        assert {k: v["cer"] for k, v in raw["per_page"].items()} == {
            k: v["cer"] for k, v in service["per_page"].items()
        }
        assert service["ratio_to_raw"] > 0
        assert service["watch_n"] >= 2 and service["watch_delay_p95_ms"] >= 0
        assert service["submit_n"] >= 1 and service["submit_p99_ms"] > 0

    assert (out / "chart.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "| set | engine | pages | pages/s |" in (out / "results.md").read_text()
    assert results["targets"], "the targets are checked and reported"
    formats = {row["set"]: row for row in results["formats"]["rows"]}
    assert set(formats) == set(SETS)
    for row in formats.values():  # every format rendered from a real recognition
        assert row["recognise_cpu_s"] > 0
        assert set(row["formats"]) == {"text", "json", "hocr", "alto", "pdf"}
        assert row["formats"]["pdf"]["cpu_ms"] > 0
