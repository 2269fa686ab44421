"""`scripts/bench`: run the raw engine, the service and Tesseract on the eval sets, one engine
at a time (never two at once: they would share the cores), then score and report."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchlib import formats, rapidocr, raw_engine, report, tesseract
from benchlib.datasets import ROOT, SET_NAMES, EvalSet, eval_dir, load_sets
from benchlib.outcome import SetRun
from benchlib.service import Service
from benchlib.summary import Row, add_ratios, check_targets, soak_summary, summarise, totals
from ocr_server.engines.profiles import DEFAULT_PROFILE

ENGINES = ("raw", "service", "tesseract", "rapidocr", "formats")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Raw PaddleOCR, the OCR service and Tesseract on the same pages: speed, "
        "accuracy, memory (see docs/benchmarks.md).",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a fixed subset of each set (< 5 min)")
    size.add_argument("--smoke", action="store_true", help="2 pages per set: the harness works")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="instead: pages/s of the Redis backend with 1 and 2 worker hosts "
        "(first argument; then --smoke, --host-workers N, --profile P)",
    )
    parser.add_argument("--workers", type=int, default=2, help="processes per engine (2)")
    parser.add_argument(
        "--profiles",
        help=f"PaddleOCR profiles, comma-separated (full: fast,accurate; else {DEFAULT_PROFILE})",
    )
    parser.add_argument(
        "--sets", default=",".join(SET_NAMES), help=f"comma-separated (all: {','.join(SET_NAMES)})"
    )
    parser.add_argument(
        "--engines", default=",".join(ENGINES), help=f"comma-separated (all: {','.join(ENGINES)})"
    )
    parser.add_argument("--language", default="en", help="settings.language sent (en)")
    parser.add_argument(
        "--soak",
        type=int,
        help="service pages for the memory-steadiness run (full: 300, else 0)",
    )
    parser.add_argument("--no-build", action="store_true", help="never build a missing pdfset")
    parser.add_argument("--out", type=Path, help="output directory (bench-results/<time>/)")
    return parser


def _split(text: str, allowed: tuple[str, ...] | None, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if allowed is not None and t not in allowed]
    if bad or not items:
        sys.exit(f"bench: unknown {what} {bad or text!r}; choose from {', '.join(allowed or ())}")
    return items


def _soak_set(sets: list[EvalSet], pages: int) -> EvalSet:
    """`pages` pages cycling through every set's pages (ids made unique)."""
    pool = [p for s in sets for p in s.pages]
    cycled = tuple(
        replace(pool[i % len(pool)], page_id=f"{i}:{pool[i % len(pool)].page_id}")
        for i in range(pages)
    )
    return EvalSet("soak", f"{pages} pages cycling all sets", cycled, False, 3)


def _say(message: str) -> None:
    print(f"bench: {message}", flush=True)


def _progress(run: SetRun) -> None:
    errors = sum(1 for o in run.pages if o.error)
    _say(
        f"  {run.label:16s} {run.set_name:9s} {len(run.pages):4d} pages in "
        f"{run.wall_seconds:7.1f} s = {len(run.pages) / run.wall_seconds:5.2f} pages/s"
        + (f"  ({errors} failed)" if errors else "")
    )


def _version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--cluster"]:  # the Redis backend with 1 and 2 worker hosts
        from benchlib import cluster

        return cluster.main(argv[1:])
    args = _parser().parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    profiles = _split(
        args.profiles or ("fast,accurate" if mode == "full" else DEFAULT_PROFILE), None, "profile"
    )
    engines = _split(args.engines, ENGINES, "engine")
    set_names = _split(args.sets, SET_NAMES, "set")
    known = raw_engine.profiles()
    for name in profiles:
        if name not in known or not known[name].is_installed(raw_engine.model_dir()):
            installed = [n for n, p in known.items() if p.is_installed(raw_engine.model_dir())]
            sys.exit(f"bench: profile {name!r} is not installed; installed: {', '.join(installed)}")
    if not (eval_dir() / "cer.py").is_file():
        _say(f"no evaluation data at {eval_dir()} (needs ../shared/eval, or set OCR_EVAL_DIR)")
        return 2
    if importlib.util.find_spec("matplotlib") is None:
        _say("matplotlib is missing: run scripts/setup --dev (it installs the bench extra)")
        return 2
    if importlib.util.find_spec("rapidfuzz") is None:
        _say("rapidfuzz is missing (scripts/setup --dev): scoring falls back to slow pure Python")
    soak_pages = args.soak if args.soak is not None else (300 if mode == "full" else 0)
    started_at = dt.datetime.now(dt.UTC)
    out = args.out or ROOT / "bench-results" / started_at.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    load_at_start = " ".join(f"{v:.2f}" for v in os.getloadavg())
    clock = time.perf_counter()

    sets, skipped = load_sets(set_names, mode, not args.no_build)
    for note in skipped:
        _say(note)
    if not sets:
        _say("no evaluation data found: nothing to measure")
        return 2
    tesseract_problem = tesseract.available() if "tesseract" in engines else None
    if tesseract_problem:
        skipped.append(f"tesseract: skipped: {tesseract_problem}")
        _say(skipped[-1])
    rapidocr_problem = rapidocr.available() if "rapidocr" in engines else None
    if rapidocr_problem:
        skipped.append(f"rapidocr: skipped: {rapidocr_problem}")
        _say(skipped[-1])
    _say(
        f"{mode} run: sets {', '.join(f'{s.name} ({len(s.pages)})' for s in sets)}; "
        f"engines {', '.join(engines)}; profiles {', '.join(profiles)}; "
        f"{args.workers} workers; output {out}"
    )

    runs: list[SetRun] = []
    soak_run: SetRun | None = None
    loads: dict[str, float] = {}
    for profile in profiles:
        # Raw engine and service are both up, and measured set by set in turn: the machine's
        # speed drifts by several per cent over minutes (a shared host), which would otherwise
        # land in the service/raw ratio.
        with contextlib.ExitStack() as stack:
            raw: raw_engine.RawEngine | None = None
            service: Service | None = None
            if "raw" in engines:
                raw = stack.enter_context(
                    raw_engine.RawEngine(args.workers, profile, args.language)
                )
                loads[f"raw:{profile}"] = round(raw.load_seconds, 1)
                _say(
                    f"raw engine {profile}: {args.workers} workers warm in {raw.load_seconds:.1f} s"
                )
            if "service" in engines:
                service = stack.enter_context(Service(args.workers, profile, out, args.language))
                loads[f"service:{profile}"] = round(service.load_seconds, 1)
                _say(f"service {profile}: SERVING in {service.load_seconds:.1f} s")
            for eval_set in sets:
                for engine_under_test in (raw, service):
                    if engine_under_test is not None:
                        runs.append(engine_under_test.run(eval_set))
                        _progress(runs[-1])
            if service is not None and soak_pages and profile == profiles[0]:
                soak_run = service.run(_soak_set(sets, soak_pages))
                _progress(soak_run)
    if "tesseract" in engines and not tesseract_problem:
        engine = tesseract.Tesseract(args.workers)
        for eval_set in sets:
            runs.append(engine.run(eval_set))
            _progress(runs[-1])
    if "rapidocr" in engines and not rapidocr_problem:
        with rapidocr.RapidOcr(args.workers) as peer:
            for eval_set in sets:
                runs.append(peer.run(eval_set))
                _progress(runs[-1])

    format_costs = None
    if "formats" in engines:
        _say("result files: recognising and rendering each page in one process")
        format_costs = formats.measure(sets, profiles[0], args.language)

    by_name = {s.name: s for s in sets}
    rows: list[Row] = [summarise(run, by_name[run.set_name]) for run in runs]
    add_ratios(rows)
    overall = totals(runs)
    soak = soak_summary(soak_run) if soak_run is not None else None
    default_profile = DEFAULT_PROFILE if DEFAULT_PROFILE in profiles else profiles[0]
    results: dict[str, Any] = {
        "meta": {
            "started": started_at.isoformat(timespec="seconds"),
            "command": " ".join(["scripts/bench", *argv]),
            "mode": mode,
            "workers": args.workers,
            "profiles": profiles,
            "language": args.language,
            "cpus": os.cpu_count(),
            "load_at_start": load_at_start,
            "duration_s": round(time.perf_counter() - clock, 1),
            "engine_start_s": loads,
            "git": _version(["git", "rev-parse", "--short", "HEAD"]),
            "tesseract": _version(["tesseract", "--version"]),
            "rapidocr": f"rapidocr_onnxruntime {rapidocr.VERSION}" if not rapidocr_problem else "",
        },
        "skipped": skipped,
        "sets": {s.name: {"description": s.description, "pages": len(s.pages)} for s in sets},
        "rows": rows,
        "totals": overall,
        "soak": soak,
        "targets": check_targets(rows, overall, default_profile, soak),
        "formats": format_costs,
    }
    if format_costs is not None:
        results["targets"].append(
            {
                "target": format_costs["target"],
                "holds": format_costs["holds"],
                "measured": f"{(format_costs['pdf_share'] or 0):.2%}",
            }
        )
    report.write(results, out)
    print(report.markdown(results))
    _say(f"wrote {out}/results.json, results.md, chart.png in {results['meta']['duration_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
