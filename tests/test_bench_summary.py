"""The benchmark's own logic (scripts/benchlib): the figures it derives and the targets it
judges, on hand-made runs, so a wrong verdict in the report cannot go unnoticed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from benchlib import metrics
from benchlib.datasets import EvalSet, Page, eval_dir
from benchlib.outcome import PageOutcome, SetRun
from benchlib.scoring import cjk_count
from benchlib.summary import MIB, add_ratios, check_targets, soak_summary, summarise, totals


def require_eval() -> None:
    if not (eval_dir() / "cer.py").is_file():
        pytest.skip(f"the reference scorer {eval_dir()}/cer.py is absent (needs ../shared/eval)")


def _set(name: str, truths: dict[str, str], modes: dict[str, str] | None = None) -> EvalSet:
    pages = tuple(
        Page(i, Path(f"{i}.png"), "png", t, (modes or {}).get(i, "")) for i, t in truths.items()
    )
    return EvalSet(name, name, pages, ignore_case=name == "sroie", tesseract_psm=3)


def _run(engine: str, name: str, texts: dict[str, str], wall: float, **extra: Any) -> SetRun:
    pages = [PageOutcome(i, t, 0.5) for i, t in texts.items()]
    profile = "" if engine == "tesseract" else "fast"
    return SetRun(engine, profile, name, wall, pages, {1: 400 * MIB}, [90.0, 95.0], **extra)


def test_cjk_count_finds_ideographs_and_kana_not_latin() -> None:
    assert cjk_count("Total 12.50 caf\u00e9 \u2013 na\u00efve") == 0
    assert cjk_count("TOTAL 合计 12.50 カ") == 3


def test_rates_are_micro_averaged_and_layout_cer_leaves_out_two_column_pages() -> None:
    require_eval()  # the scorer is ../shared/eval/cer.py
    eval_set = _set("pdf200", {"a": "abcdefghij", "b": "xy"}, {"a": "layout", "b": "raw"})
    row = summarise(_run("raw", "pdf200", {"a": "abcdefghiX", "b": "yx"}, 2.0), eval_set)
    assert row["cer"] == (1 + 2) / 12  # total edits over total reference characters
    assert row["cer_layout"] == 1 / 10
    assert row["pages_per_s"] == 1.0 and row["peak_rss_mb"] == 400


def test_targets_report_misses_with_their_figures() -> None:
    require_eval()
    truth = {"a": "the quick brown fox"}
    eval_set = _set("sroie", truth)
    runs = [
        _run("raw", "sroie", truth, 1.0),
        _run(
            "service",
            "sroie",
            {"a": "the quick brown f0x 合"},
            1.25,
            # images all fast; two slow PDFs among 50, so the PDFs' p99 falls on them
            submit_seconds=[0.002, 0.003] * 48 + [0.002, 0.05] * 2,
            submit_types=["png", "pdf"] * 50,
            server_submits={"png": SERVER_PNG, "pdf": {0.001: 0, 0.01: 50, math.inf: 50}},
            watch_delays=[0.01] * 10,
        ),
        _run("tesseract", "sroie", {"a": "the quick brown fox"}, 4.0),
    ]
    rows = [summarise(r, eval_set) for r in runs]
    add_ratios(rows)
    overall = totals(runs)
    verdicts = {c["target"]: c for c in check_targets(rows, overall, "fast", None)}
    ratio = verdicts["service throughput >= 0.95 x raw engine (fast)"]
    assert ratio["holds"] is False and ratio["measured"] == "0.800"
    images = verdicts["Submit p99 < 10 ms, workers saturated, images (fast)"]
    assert images["holds"] is True and images["measured"] == "2.0 ms (n=50)"
    pdfs = verdicts["Submit p99 < 10 ms, workers saturated, PDFs (fast)"]
    assert pdfs["holds"] is False and pdfs["measured"].endswith("(n=50)")
    by_type = overall[1]["submit_by_type"]
    assert by_type["png"]["server_n"] == 100
    assert by_type["png"]["server_p50_ms"] == 2.0 and by_type["png"]["server_p99_ms"] == 2.98
    assert verdicts["watch message delay p95 < 50 ms (fast)"]["holds"] is True
    assert verdicts["CER <= 0.5 x Tesseract's on sroie (fast)"]["holds"] is False
    assert verdicts["no CJK character with language=en on sroie (fast)"]["holds"] is False


# the server's histogram: 50 Submits up to 2 ms, 50 more up to 3 ms (read as linear within)
SERVER_PNG = {0.001: 0.0, 0.002: 50.0, 0.003: 100.0, math.inf: 100.0}


def test_server_histogram_is_read_per_document_type_between_scrapes() -> None:
    name = "ocr_submit_duration_seconds_bucket"
    before = "\n".join(
        [
            "# TYPE ocr_submit_duration_seconds histogram",
            f'{name}{{document_type="png",le="0.002",method="Submit"}} 5.0',
            f'{name}{{document_type="png",le="+Inf",method="Submit"}} 5.0',
            f'{name}{{document_type="png",le="+Inf",method="SubmitStream"}} 9',
        ]
    )
    after = before.replace("} 5.0", "} 7.0")
    window = metrics.difference(metrics.parse(after), metrics.parse(before))
    assert window == {"png": {0.002: 2.0, math.inf: 2.0}}  # unary Submit only
    assert metrics.quantile(SERVER_PNG, 0.5) == pytest.approx(0.002)
    assert metrics.quantile(SERVER_PNG, 0.99) == pytest.approx(0.00298)
    assert metrics.quantile({0.001: 0.0, math.inf: 4.0}, 0.99) == 0.001  # past the last bound
    assert metrics.quantile({}, 0.5) is None


def test_soak_growth_is_measured_after_the_first_quarter() -> None:
    timeline = [(float(t), {7: (500 + m) * MIB}) for t, m in enumerate([0, 100, 100, 100, 110])]
    run = SetRun("service", "fast", "soak", 10.0, [PageOutcome("p", "", 0.1)] * 20, {7: 700 * MIB})
    run.rss_timeline = timeline
    soak = soak_summary(run)
    assert soak["rss_settled_mb"] == [600] and soak["rss_last_mb"] == [610]
    assert soak["rss_growth_mb"] == 10 and soak["peak_rss_mb"] == 700
