"""Writing the results: results.json (everything), results.md (tables) and chart.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchlib.summary import Row


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"# Benchmark {meta['started']}",
        "",
        f"`{meta['command']}` - {meta['mode']} mode, {meta['workers']} workers, "
        f"{meta['cpus']} CPUs, load average at start {meta['load_at_start']}, "
        f"took {meta['duration_s']:.0f} s.",
        "",
    ]
    for note in results["skipped"]:
        lines.append(f"- {note}")
    if results["skipped"]:
        lines.append("")
    lines += [
        "| set | engine | pages | pages/s | p50 s | p95 s | CER | CER layout | WER | BOW "
        "| CJK | peak RSS MB/worker | CPU s/page | CPU % per core |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results["rows"]:
        errors = f" ({r['errors']} failed)" if r["errors"] else ""
        lines.append(
            f"| {r['set']} | {r['label']} | {r['pages']}{errors} | {r['pages_per_s']:.2f} "
            f"| {_num(r['latency_p50_s'])} | {_num(r['latency_p95_s'])} | {_pct(r['cer'])} "
            f"| {_pct(r['cer_layout'])} | {_pct(r['wer'])} | {_pct(r['bow'])} | {r['cjk_chars']} "
            f"| {'/'.join(str(m) for m in r['peak_rss_mb_per_worker']) or '-'} "
            f"| {_num(r.get('engine_cpu_s_per_page'))} "
            f"| {'/'.join(f'{c:.0f}' for c in r['cpu_per_core'])} |"
        )
    service = [r for r in results["rows"] if r["engine"] == "service"]
    if service:
        lines += [
            "",
            "Service against the raw engine (same profile, set and run):",
            "",
            "| set | profile | throughput / raw | Submit p50 / p99 ms (n) "
            "| watch delay p50 / p95 ms (n) |",
            "|---|---|--:|--:|--:|",
        ]
        for r in service + [t for t in results["totals"] if t["engine"] == "service"]:
            lines.append(
                f"| {r.get('set', 'all sets')} | {r['profile']} "
                f"| {_num(r.get('ratio_to_raw'), 3)} "
                f"| {_num(r['submit_p50_ms'], 1)} / {_num(r['submit_p99_ms'], 1)} "
                f"({r['submit_n']}) "
                f"| {_num(r['watch_delay_p50_ms'], 1)} / {_num(r['watch_delay_p95_ms'], 1)} "
                f"({r['watch_n']}) |"
            )
        lines += _submit_table([t for t in results["totals"] if t["engine"] == "service"])
    lines += ["", "All sets together:", "", "| engine | pages | pages/s | peak RSS MB |"]
    lines.append("|---|--:|--:|--:|")
    for t in results["totals"]:
        lines.append(
            f"| {t['label']} | {t['pages']} | {t['pages_per_s']:.2f} | {t['peak_rss_mb']} |"
        )
    if results.get("soak"):
        s = results["soak"]
        lines += [
            "",
            f"Memory over {s['pages']} service pages ({s['profile']}, {s['pages_per_s']:.2f} "
            f"pages/s): RSS per worker a quarter of the way in {s['rss_settled_mb']} MB, "
            f"at the end {s['rss_last_mb']} MB, peak {s['peak_rss_mb']} MB "
            f"({s['workers_seen']} worker processes seen).",
        ]
    if results.get("formats"):
        from benchlib.formats import markdown as formats_markdown

        lines += formats_markdown(results["formats"])
    if results["targets"]:
        lines += ["", "Targets:", "", "| target | measured | holds |", "|---|---|---|"]
        for c in results["targets"]:
            holds = {True: "yes", False: "**no**", None: "n/a"}[c["holds"]]
            lines.append(f"| {c['target']} | {c['measured']} | {holds} |")
    return "\n".join(lines) + "\n"


def _submit_table(totals: list[Row]) -> list[str]:
    """Submit latency by document type over all sets: the probe's round trip and the
    server's own handling time (its histogram; all Submits in the same windows)."""
    lines = [
        "",
        "Submit with the workers saturated, by document type (all sets): the probe's round "
        "trip, and the server's handling time from its `ocr_submit_duration_seconds` "
        "histogram over the same windows (every Submit, the bench's own too; `none`: refused):",
        "",
        "| profile | document | client p50 / p99 ms (n) | server p50 / p99 ms (n) |",
        "|---|---|--:|--:|",
    ]
    for total in totals:
        groups = total.get("submit_by_group", {})
        figures = [(g, groups[g]) for g in ("images", "PDFs") if g in groups]
        figures += [(f"- {t}", f) for t, f in total.get("submit_by_type", {}).items()]
        for name, f in figures:
            lines.append(
                f"| {total['profile']} | {name} "
                f"| {_num(f['p50_ms'], 1)} / {_num(f['p99_ms'], 1)} ({f['n']}) "
                f"| {_num(f['server_p50_ms'], 1)} / {_num(f['server_p99_ms'], 1)} "
                f"({f['server_n']}) |"
            )
    return lines


def chart(rows: list[Row], path: Path) -> None:
    """Pages/s and CER per engine and set, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r["set"] for r in rows))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    by_key = {(r["set"], r["label"]): r for r in rows}
    width = 0.8 / max(1, len(labels))
    figure, (speed, cer) = plt.subplots(1, 2, figsize=(13, 4.8))
    for index, label in enumerate(labels):
        xs = [i + (index - (len(labels) - 1) / 2) * width for i in range(len(sets))]
        present = [
            (x, by_key[(s, label)]) for x, s in zip(xs, sets, strict=True) if (s, label) in by_key
        ]
        speeds = speed.bar(
            [x for x, _ in present], [r["pages_per_s"] for _, r in present], width, label=label
        )
        speed.bar_label(speeds, fmt="%.2g", fontsize="x-small")
        cers = cer.bar(
            [x for x, _ in present], [100 * (r["cer"] or 0) for _, r in present], width, label=label
        )
        cer.bar_label(cers, fmt="%.2g", fontsize="x-small")
    # Single text lines run ten times faster than pages: a log scale keeps every set readable.
    speed.set_yscale("log")
    for axis, title in (
        (speed, "pages/s (log scale; higher is better)"),
        (cer, "CER % (lower is better)"),
    ):
        axis.set_xticks(range(len(sets)), sets)
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    speed.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(results), encoding="utf-8")
    chart(results["rows"], out / "chart.png")
