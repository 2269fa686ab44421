"""Wires the server together and runs it until SIGTERM or SIGINT.

Order matters: worker processes are spawned before any gRPC object exists (gRPC and fork do
not mix); health says NOT_SERVING until every worker has loaded its engine; at shutdown health
goes NOT_SERVING first, Submit is refused, pages in flight finish or go back to the queue.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ocr.v1 import ocr_pb2, ocr_pb2_grpc
from ocr_server.api.auth import AuthInterceptor, load_registry
from ocr_server.api.service import OcrServicer
from ocr_server.api.tls import TlsConfigError, server_credentials
from ocr_server.backends.local.backend import LocalTaskBackend
from ocr_server.backends.local.documents import LocalDocumentStore
from ocr_server.backends.redis.backend import RedisTaskBackend
from ocr_server.backends.redis.connection import RedisConfigError, connect
from ocr_server.backends.redis.documents import RedisDocumentStore
from ocr_server.backends.redis.hosts import HostRegistry
from ocr_server.backends.redis.offer import ClusterOffer
from ocr_server.backends.tasks import RoomLimits, TaskBackend
from ocr_server.capabilities import Capabilities
from ocr_server.config import ServerConfig
from ocr_server.documents import DocumentLimits
from ocr_server.engines.profiles import load_profiles
from ocr_server.engines.tesseract import find_tessdata
from ocr_server.errors import DamagedEntryError, OcrServiceError
from ocr_server.exports import Exporter, ExportStore
from ocr_server.tasks.manager import TaskManager
from ocr_server.tasks.submission import Submission, SubmissionLimits
from ocr_server.telemetry.logs import TaskEventLog
from ocr_server.telemetry.metrics import Metrics, ServerGauges
from ocr_server.telemetry.observer import Fanout, TaskObserver
from ocr_server.workers.host import WorkerHost, new_host_id
from ocr_server.workers.pool import WorkerPool, build_pool

log = logging.getLogger("ocr_server")

SERVICE_NAME = ocr_pb2.DESCRIPTOR.services_by_name["OcrService"].full_name
MIB = 1024 * 1024
ENGINE_LOAD_TIMEOUT = 600.0
HOSTS_CHECK_INTERVAL = 1.0  # how often a Redis front end looks at the live worker hosts
GIL_SWITCH_INTERVAL = 0.001  # seconds (serve(); docs/benchmarks.md, Submit latency)


class OcrServer:
    """The running service: task backend, worker pool, task manager and gRPC server. With
    the Redis backend it is a front end (its own workers, if any, form a worker host)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._tls = _tls_credentials(config)  # before anything starts: bad files fail fast
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self._stopped = threading.Event()
        self.failure: str | None = None
        limits = DocumentLimits(max_pixels=config.max_pixels, max_pages=config.max_pages)
        try:
            profiles = load_profiles(config.profiles_file)
        except ValueError as exc:
            raise SystemExit(f"ocr-server: {exc}") from exc
        self.profiles = profiles
        # What this machine reads (its own workers'); a front end without workers has no
        # models: it offers what the cluster's live worker hosts read (backends/redis/offer.py).
        self.capabilities = Capabilities.from_readers(profiles, (), config.default_profile)
        if config.workers > 0:
            self.capabilities = Capabilities.discover(
                profiles,
                config.model_dir,
                config.default_profile,
                fake_engine=config.engine == "fake",
                tessdata=find_tessdata(config.tessdata_dir),
            )
            if config.default_profile not in self.capabilities.installed_profiles:
                raise SystemExit(
                    f"ocr-server: the default profile {config.default_profile!r} is unknown or "
                    f"has no models in {config.model_dir}; run scripts/setup or set "
                    "OCR_MODEL_DIR (installed: "
                    f"{', '.join(self.capabilities.installed_profiles) or 'none'})"
                )
        elif config.default_profile not in profiles:
            raise SystemExit(
                f"ocr-server: the default profile {config.default_profile!r} is unknown "
                f"(known: {', '.join(profiles)})"
            )
        self.pool: WorkerPool | None = None
        if config.workers > 0:
            self.pool = build_pool(config, profiles)
            self.pool.start()  # before any gRPC object
        self.tokens = load_registry(config.tokens, config.tokens_file, config.data_dir)
        self.registry: HostRegistry | None = None
        self.offer: ClusterOffer | None = None
        self.backend: TaskBackend = self._open_backend()
        self.metrics: Metrics | None = None
        observers: list[TaskObserver] = [TaskEventLog()]
        if config.metrics_listen:
            self.metrics = Metrics(
                ServerGauges(
                    tasks_by_tenant_and_state=self.backend.unfinished_by_tenant,
                    queue_depth=self.backend.queue_depth,
                    store_bytes=self.backend.store_bytes,
                    worker_restarts=self._worker_restarts,
                )
            )
            observers.append(self.metrics)
        self.observer = Fanout(observers)
        self.manager = TaskManager(self.backend, observer=self.observer)
        self.host: WorkerHost | None = None
        if isinstance(self.backend, RedisTaskBackend) and self.pool is not None:
            self.host = WorkerHost(
                self.backend,
                self.manager,
                self.pool,
                self.capabilities.readers,
                config.host_heartbeat,
            )
        self.submission = Submission(
            self.backend,
            self.offered,
            SubmissionLimits(
                result_ttl=config.result_ttl,
                max_document_bytes=config.max_document_mb * MIB,
                documents=limits,
            ),
            observer=self.observer,
            keep_documents=config.keep_documents,
        )
        self.health = health.HealthServicer()
        store = config.data_dir / "store"
        self.exporter = Exporter(
            self.manager,
            self.backend.documents,
            self._exports_store(),
            scratch=store / "scratch",
            alive=self._task_alive,
        )
        self.grpc_server = self._build_grpc_server()

    def _open_backend(self) -> TaskBackend:
        config = self.config
        limits = RoomLimits(config.max_queue, config.max_pending_per_tenant)
        if config.backend == "local":
            assert self.pool is not None
            return LocalTaskBackend(
                config.data_dir / "store",
                limits,
                max_active=2 * config.workers,
                max_store_bytes=config.max_store_mb * MIB,
                on_work=self.pool.wake,
            )
        host_id = new_host_id()
        try:
            backend = RedisTaskBackend(
                connect(config.redis_url, f"ocr-server-{host_id}"),
                limits,
                max_active=2 * max(config.workers, 1),
                prefix=config.redis_prefix,
                consumer=host_id,
                reclaim_after=config.reclaim_after,
                scratch=_scratch(config.data_dir),
            )
        except (RedisConfigError, OcrServiceError) as exc:
            raise SystemExit(f"ocr-server: {exc}") from exc
        self.registry = HostRegistry(backend.client, backend.keys)
        try:
            self.offer = ClusterOffer(
                self.registry, self.profiles, config.default_profile, config.redis_prefix
            )
        except OcrServiceError as exc:
            raise SystemExit(f"ocr-server: {exc}") from exc
        return backend

    def _exports_store(self) -> ExportStore:
        """Rendered files are kept beside the documents: files under the local store (its
        capacity counts them), or in Redis with the task's expiry, where every front end
        finds a file another one rendered."""
        if isinstance(self.backend, RedisTaskBackend):
            return RedisDocumentStore(self.backend.client, self.backend.keys, kind="export")
        assert isinstance(self.backend, LocalTaskBackend)
        return LocalDocumentStore(self.config.data_dir / "store" / "exports", self.backend.capacity)

    def _worker_restarts(self) -> dict[str, int]:
        return dict(self.pool.restarts) if self.pool is not None else {}

    def offered(self) -> Capabilities:
        """What Submit accepts and GetCapabilities lists now: this server's own, or what the
        cluster's live worker hosts read."""
        if self.offer is None:
            return self.capabilities
        return self.offer.current()

    def _build_grpc_server(self) -> grpc.Server:
        config = self.config
        max_bytes = config.max_message_mb * MIB
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.rpc_threads, thread_name_prefix="rpc"),
            interceptors=[AuthInterceptor(self.tokens)],
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                ("grpc.so_reuseport", 0),
                # Keepalive (docs/deploy.md): ping each client every 2 min, so a watcher behind
                # a dead NAT entry is noticed; accept client pings every 30 s (gRPC's default
                # of 5 min would answer the SDK's 60 s pings with GOAWAY "too_many_pings").
                ("grpc.keepalive_time_ms", 120_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
            maximum_concurrent_rpcs=config.rpc_threads,
        )
        servicer = OcrServicer(
            self.manager,
            self.submission,
            self.backend.events,
            self.tokens,
            self.offered,
            info={
                "max_message_bytes": max_bytes,
                "max_pages": config.max_pages,
                "result_ttl_seconds": int(config.result_ttl),
                "max_pending_per_tenant": config.max_pending_per_tenant,
                "max_document_bytes": config.max_document_mb * MIB,
            },
            heartbeat=config.heartbeat,
            exporter=self.exporter,
            observer=self.observer,
            submit_timer=self.metrics.observe_submit if self.metrics is not None else None,
        )
        ocr_pb2_grpc.add_OcrServiceServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._tls is None:
            port = server.add_insecure_port(config.listen)
        else:
            port = server.add_secure_port(config.listen, self._tls)
        if port == 0:
            raise SystemExit(f"cannot listen on {config.listen} (in use, or not an address)")
        return server

    def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def start(self) -> None:
        if self.metrics is not None:
            try:
                self.metrics.serve(self.config.metrics_listen)
            except OSError as exc:
                raise SystemExit(
                    f"ocr-server: cannot serve metrics on {self.config.metrics_listen}: {exc}"
                ) from exc
            log.info("metrics on http://%s/metrics", self.config.metrics_listen)
        self.grpc_server.start()
        log.info(
            "listening on %s (%s); loading %d workers",
            self.config.listen,
            _transport(self.config),
            self.config.workers,
        )
        self.manager.recover()
        if self.host is not None:
            self.host.start()
        elif self.pool is not None:
            self.pool.run(self.manager)
        threading.Thread(target=self._become_ready, name="ready", daemon=True).start()
        threading.Thread(target=self._sweep_loop, name="sweeper", daemon=True).start()

    def _become_ready(self) -> None:
        try:
            if self.pool is not None:
                self.pool.wait_ready(ENGINE_LOAD_TIMEOUT)
        except Exception as exc:
            self.failure = str(exc)
            log.error("cannot serve: %s", exc)
            self.stop()
            return
        if self.registry is not None:
            self._follow_worker_hosts()
        elif not self._stopped.is_set():
            self._set_health(health_pb2.HealthCheckResponse.SERVING)
            log.info("serving: %d workers ready", self.config.workers)

    def _follow_worker_hosts(self) -> None:
        """Redis: SERVING while at least one live worker host has a ready worker (and Redis
        answers); what every live host reads is what Submit accepts (backends/redis/offer.py)."""
        assert self.registry is not None and self.offer is not None
        serving: bool | None = None
        while not self._stopped.is_set():
            try:
                hosts = self.registry.live()
                self.offer.follow(hosts)
            except OcrServiceError as exc:
                log.warning("cannot read the worker hosts: %s", exc)
                hosts = []
            workers = sum(h.workers for h in hosts)
            now_serving = workers > 0
            if now_serving != serving and not self._stopped.is_set():
                serving = now_serving
                status = health_pb2.HealthCheckResponse
                self._set_health(status.SERVING if serving else status.NOT_SERVING)
                log.info(
                    "%s: %d workers ready on %d worker hosts",
                    "serving" if serving else "NOT serving",
                    workers,
                    len(hosts),
                )
            self._stopped.wait(HOSTS_CHECK_INTERVAL)

    def _sweep_loop(self) -> None:
        while not self._stopped.wait(self.config.sweep_interval):
            try:
                self.manager.sweep()
                self.exporter.sweep()
            except Exception:
                log.exception("sweeping expired tasks failed; will try again")

    def stop(self) -> None:
        """Graceful: NOT_SERVING, refuse submissions, finish or requeue pages, exit."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("shutting down: draining for up to %.0f s", self.config.shutdown_grace)
        self.health.enter_graceful_shutdown()
        self.submission.stop_accepting()
        self.manager.stop_accepting()
        if self.host is not None:
            self.host.stop(self.config.shutdown_grace)
        elif self.pool is not None:
            self.pool.drain(self.config.shutdown_grace)
            self.pool.stop()
        self.manager.requeue_unfinished()
        self.grpc_server.stop(grace=2).wait()
        self.exporter.close()
        self.backend.close()
        log.info("stopped")

    def _task_alive(self, task_id: str) -> bool:
        try:
            return self.backend.get(task_id) is not None
        except DamagedEntryError:
            return True  # kept: the task stays visible (and damaged) until it expires

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()
        self._stopped.wait()


def _tls_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    try:
        return server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
    except TlsConfigError as exc:
        raise SystemExit(f"ocr-server: {exc}") from exc


def _scratch(data_dir: Path) -> Path:
    """Where a worker host copies a page's document while it runs (removed after)."""
    scratch = data_dir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


def _transport(config: ServerConfig) -> str:
    if config.tls_cert is None:
        return "plaintext: no --tls-cert"
    if config.tls_client_ca is None:
        return "TLS"
    return "TLS, client certificates required"


def serve(config: ServerConfig) -> None:
    # A thread that wants the GIL gets it within this of asking (Python's default: 5 ms). A
    # Submit passes the GIL between gRPC's threads and its handler several times, each time
    # behind whatever Python work another thread (the pool's, a watch stream's) is doing.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    server = OcrServer(config)
    done = threading.Event()

    def stop_and_signal_done() -> None:
        server.stop()
        done.set()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        threading.Thread(target=stop_and_signal_done, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    server.wait()
    done.wait(timeout=60)
    if server.failure:
        raise SystemExit(f"ocr-server: {server.failure}")
