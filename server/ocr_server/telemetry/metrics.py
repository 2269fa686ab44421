"""Prometheus metrics on their own port (`--metrics-listen`, off by default).

Names in base units with their suffix (`_seconds`, `_bytes`, `_total`); labels of bounded
cardinality only: `tenant` (one per configured token, so as many as the operator made), `state`,
`reason`, `method`. Never a task id. Counters and histograms are fed by the task observer
calls; the gauges (tasks by state, queue depth, store size, worker restarts) are read from the
server's parts at scrape time, so they cannot drift from the truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ocr_server.models import TaskRecord

PAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
# Millisecond steps below the 10 ms Submit target, so its percentiles can be read off (an
# upload's SubmitStream lands in the top buckets).
SUBMIT_BUCKETS = (
    0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1,
    0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
)  # fmt: skip
TASK_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


class ServerGauges:
    """Where the scrape-time figures come from (callables, so nothing is cached)."""

    def __init__(
        self,
        tasks_by_tenant_and_state: Callable[[], Mapping[tuple[str, str], int]],
        queue_depth: Callable[[], int],
        store_bytes: Callable[[], int],
        worker_restarts: Callable[[], Mapping[str, int]],
    ) -> None:
        self.tasks_by_tenant_and_state = tasks_by_tenant_and_state
        self.queue_depth = queue_depth
        self.store_bytes = store_bytes
        self.worker_restarts = worker_restarts


class _GaugeCollector(Collector):
    def __init__(self, gauges: ServerGauges) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        tasks = GaugeMetricFamily(
            "ocr_tasks",
            "Tasks pending or processing now, by tenant and state",
            labels=["tenant", "state"],
        )
        for (tenant, state), count in sorted(self._gauges.tasks_by_tenant_and_state().items()):
            tasks.add_metric([tenant, state], count)
        yield tasks
        yield GaugeMetricFamily(
            "ocr_queue_depth", "Tasks waiting for a worker", value=self._gauges.queue_depth()
        )
        yield GaugeMetricFamily(
            "ocr_store_bytes",
            "Bytes in the task store (records, pages, results, documents)",
            value=self._gauges.store_bytes(),
        )
        restarts = CounterMetricFamily(
            "ocr_worker_restarts",
            "Worker processes replaced, by reason (died, timeout, recycled)",
            labels=["reason"],
        )
        for reason in ("died", "timeout", "recycled"):
            restarts.add_metric([reason], self._gauges.worker_restarts().get(reason, 0))
        yield restarts


class Metrics:
    """The service's metrics (a TaskObserver), in a registry of their own."""

    def __init__(self, gauges: ServerGauges) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_GaugeCollector(gauges))
        self._submitted = Counter(
            "ocr_tasks_submitted",
            "Tasks accepted (retries answered with an existing task not counted)",
            ["tenant"],
            registry=self.registry,
        )
        self._finished = Counter(
            "ocr_tasks_finished",
            "Tasks that reached a final state",
            ["tenant", "state"],
            registry=self.registry,
        )
        self._pages = Counter(
            "ocr_pages_recognized",
            "Pages recognised (rate() of it is pages per second)",
            registry=self.registry,
        )
        self._page_seconds = Histogram(
            "ocr_page_duration_seconds",
            "From a page handed to a worker to its text back (rasterising included)",
            buckets=PAGE_BUCKETS,
            registry=self.registry,
        )
        self._task_seconds = Histogram(
            "ocr_task_duration_seconds",
            "From Submit to a final state, by that state",
            ["state"],
            buckets=TASK_BUCKETS,
            registry=self.registry,
        )
        self._submit_seconds = Histogram(
            "ocr_submit_duration_seconds",
            "Submit and SubmitStream handling time, by the queued document's type (none: refused)",
            ["method", "document_type"],
            buckets=SUBMIT_BUCKETS,
            registry=self.registry,
        )
        self._refused = Counter(
            "ocr_submits_refused",
            "Submits refused, by reason",
            ["reason"],
            registry=self.registry,
        )

    def serve(self, listen: str) -> None:
        """Serve /metrics over HTTP on `host:port` (a daemon thread)."""
        host, _, port = listen.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=self.registry)  # noqa: S104

    def observe_submit(self, method: str, document_type: str, started: float) -> None:
        elapsed = time.monotonic() - started
        self._submit_seconds.labels(method, document_type or "none").observe(elapsed)

    # --- TaskObserver ----------------------------------------------------------------------

    def task_queued(self, record: TaskRecord, size_bytes: int) -> None:
        self._submitted.labels(record.tenant).inc()

    def task_started(self, record: TaskRecord) -> None:
        return

    def page_done(self, record: TaskRecord, seconds: float) -> None:
        self._pages.inc()
        self._page_seconds.observe(seconds)

    def task_finished(self, record: TaskRecord) -> None:
        state = record.state.name.lower()
        self._finished.labels(record.tenant, state).inc()
        if record.ended and record.created:
            self._task_seconds.labels(state).observe(max(0.0, record.ended - record.created))

    def submit_refused(self, tenant: str, reason: str, message: str) -> None:
        self._refused.labels(reason).inc()
