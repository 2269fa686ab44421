"""Wires the server together and runs it until SIGTERM or SIGINT.

Order matters: worker processes are spawned before any gRPC object exists (gRPC and fork do
not mix); health says NOT_SERVING until every worker has loaded its engine; at shutdown health
goes NOT_SERVING first, Submit is refused, pages in flight finish or go back to the queue.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
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
from ocr_server.backends.tasks import RoomLimits
from ocr_server.capabilities import Capabilities
from ocr_server.config import ServerConfig
from ocr_server.documents import DocumentLimits
from ocr_server.engines.profiles import load_profiles
from ocr_server.engines.tesseract import find_tessdata
from ocr_server.errors import DamagedEntryError
from ocr_server.exports import Exporter
from ocr_server.tasks.manager import TaskManager
from ocr_server.tasks.submission import Submission, SubmissionLimits
from ocr_server.telemetry.logs import TaskEventLog
from ocr_server.telemetry.metrics import Metrics, ServerGauges
from ocr_server.telemetry.observer import Fanout, TaskObserver
from ocr_server.workers.pool import WorkerPool
from ocr_server.workers.worker import WorkerConfig

log = logging.getLogger("ocr_server")

SERVICE_NAME = ocr_pb2.DESCRIPTOR.services_by_name["OcrService"].full_name
MIB = 1024 * 1024
ENGINE_LOAD_TIMEOUT = 600.0


class OcrServer:
    """The running service: task backend, worker pool, task manager and gRPC server."""

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
        tessdata = find_tessdata(config.tessdata_dir)
        self.capabilities = Capabilities.discover(
            profiles,
            config.model_dir,
            config.default_profile,
            fake_engine=config.engine == "fake",
            tessdata=tessdata,
        )
        if config.default_profile not in self.capabilities.installed_profiles:
            raise SystemExit(
                f"ocr-server: the default profile {config.default_profile!r} is unknown or has no "
                f"models in {config.model_dir}; run scripts/setup or set OCR_MODEL_DIR "
                f"(installed: {', '.join(self.capabilities.installed_profiles) or 'none'})"
            )
        self.pool = WorkerPool(
            size=config.workers,
            config=WorkerConfig(
                model_dir=config.model_dir,
                default_profile=config.default_profile,
                profiles=profiles,
                engine=config.engine,
                fake_rules=config.fake_rules,
                state_dir=config.data_dir,
                limits=limits,
                log_format=config.log_format,
                tessdata=tessdata,
                max_engines=config.engines_per_worker,
            ),
            page_timeout=config.page_timeout,
            recycle_after=config.recycle_after,
        )
        self.pool.start()  # before any gRPC object
        self.tokens = load_registry(config.tokens, config.tokens_file, config.data_dir)
        self.backend = LocalTaskBackend(
            config.data_dir / "store",
            RoomLimits(config.max_queue, config.max_pending_per_tenant),
            max_active=2 * config.workers,
            max_store_bytes=config.max_store_mb * MIB,
            on_work=self.pool.wake,
        )
        self.metrics: Metrics | None = None
        observers: list[TaskObserver] = [TaskEventLog()]
        if config.metrics_listen:
            self.metrics = Metrics(
                ServerGauges(
                    tasks_by_tenant_and_state=self.backend.unfinished_by_tenant,
                    queue_depth=self.backend.queue_depth,
                    store_bytes=self.backend.store_bytes,
                    worker_restarts=lambda: self.pool.restarts,
                )
            )
            observers.append(self.metrics)
        self.observer = Fanout(observers)
        self.manager = TaskManager(self.backend, observer=self.observer)
        self.submission = Submission(
            self.backend,
            self.capabilities,
            SubmissionLimits(
                result_ttl=config.result_ttl,
                max_document_bytes=config.max_document_mb * MIB,
                documents=limits,
            ),
            observer=self.observer,
        )
        self.health = health.HealthServicer()
        store = config.data_dir / "store"
        self.exporter = Exporter(
            self.manager,
            self.backend.documents,
            LocalDocumentStore(store / "exports", self.backend.capacity),
            scratch=store / "scratch",
            alive=self._task_alive,
        )
        self.grpc_server = self._build_grpc_server()

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
            self.capabilities,
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
        self.pool.run(self.manager)
        threading.Thread(target=self._become_ready, name="ready", daemon=True).start()
        threading.Thread(target=self._sweep_loop, name="sweeper", daemon=True).start()

    def _become_ready(self) -> None:
        try:
            self.pool.wait_ready(ENGINE_LOAD_TIMEOUT)
        except Exception as exc:
            self.failure = str(exc)
            log.error("cannot serve: %s", exc)
            self.stop()
            return
        if not self._stopped.is_set():
            self._set_health(health_pb2.HealthCheckResponse.SERVING)
            log.info("serving: %d workers ready", self.config.workers)

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


def _transport(config: ServerConfig) -> str:
    if config.tls_cert is None:
        return "plaintext: no --tls-cert"
    if config.tls_client_ca is None:
        return "TLS"
    return "TLS, client certificates required"


def serve(config: ServerConfig) -> None:
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
