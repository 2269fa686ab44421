"""The server's own view of Submit latency: its Prometheus histogram (`--metrics-listen`).

The bench scrapes `ocr_submit_duration_seconds` before and after a set's saturated window and
keeps the difference per document type, so the report can put the server's handling time
beside the probe's round trip: what the client sees on top is gRPC, the network stack and the
client itself. Quantiles are read from the buckets as Prometheus's `histogram_quantile` does
(linear within a bucket), so they are as fine as the buckets (1 ms steps below 6 ms).
"""

from __future__ import annotations

import math
import re
import urllib.request

METRIC = "ocr_submit_duration_seconds_bucket"
_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')

Buckets = dict[float, float]
"""Upper bound (seconds, `inf` last) -> cumulative count."""


def scrape(address: str, timeout: float = 10.0) -> dict[str, Buckets]:
    """Unary Submit's cumulative buckets per document type (`none`: refused)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as response:
        return parse(response.read().decode())


def parse(text: str) -> dict[str, Buckets]:
    out: dict[str, Buckets] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != METRIC:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("method") != "Submit":
            continue
        bound = math.inf if labels["le"] == "+Inf" else float(labels["le"])
        out.setdefault(labels["document_type"], {})[bound] = float(match["value"])
    return out


def difference(after: dict[str, Buckets], before: dict[str, Buckets]) -> dict[str, Buckets]:
    """What was observed between two scrapes, per document type (types with none left out)."""
    out: dict[str, Buckets] = {}
    for kind, buckets in after.items():
        earlier = before.get(kind, {})
        delta = {bound: count - earlier.get(bound, 0.0) for bound, count in buckets.items()}
        if delta.get(math.inf, 0.0) > 0:
            out[kind] = delta
    return out


def add(total: dict[str, Buckets], more: dict[str, Buckets]) -> dict[str, Buckets]:
    out = {kind: dict(buckets) for kind, buckets in total.items()}
    for kind, buckets in more.items():
        into = out.setdefault(kind, {})
        for bound, count in buckets.items():
            into[bound] = into.get(bound, 0.0) + count
    return out


def count(buckets: Buckets) -> int:
    return round(buckets.get(math.inf, 0.0))


def quantile(buckets: Buckets, q: float) -> float | None:
    """The q-quantile (0..1) in seconds, interpolated within its bucket; None when empty.
    One past the last finite bound reads as that bound (there is nothing to interpolate)."""
    bounds = sorted(buckets)
    total = buckets.get(math.inf, 0.0)
    if not bounds or total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        cumulative = buckets[bound]
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            share = (rank - below) / inside if inside else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, cumulative
    return lower
