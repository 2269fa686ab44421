"""`ocr-worker`: a worker host. Loads its engines, registers with the cluster's Redis, takes
pages until SIGTERM or SIGINT, then gives its pages in flight back and exits 0.

    ocr-worker --redis-url redis://redis.internal:6379/0 --workers 2
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from ocr_server.backends.redis.backend import RedisTaskBackend
from ocr_server.backends.redis.connection import RedisConfigError, connect
from ocr_server.backends.tasks import RoomLimits
from ocr_server.capabilities import Capabilities
from ocr_server.config import WorkerHostConfig, parse_worker_args
from ocr_server.engines.profiles import load_profiles
from ocr_server.engines.tesseract import find_tessdata
from ocr_server.errors import OcrServiceError
from ocr_server.tasks.manager import TaskManager
from ocr_server.telemetry.logs import configure as configure_logging
from ocr_server.workers.host import WorkerHost, new_host_id
from ocr_server.workers.pool import build_pool

log = logging.getLogger("ocr_worker")
ENGINE_LOAD_TIMEOUT = 600.0


def run(config: WorkerHostConfig) -> None:
    try:
        profiles = load_profiles(config.profiles_file)
    except ValueError as exc:
        raise SystemExit(f"ocr-worker: {exc}") from exc
    capabilities = Capabilities.discover(  # registered: the front ends offer what hosts read
        profiles,
        config.model_dir,
        config.default_profile,
        fake_engine=config.engine == "fake",
        tessdata=find_tessdata(config.tessdata_dir),
    )
    if config.default_profile not in capabilities.installed_profiles:
        raise SystemExit(
            f"ocr-worker: the default profile {config.default_profile!r} has no models in "
            f"{config.model_dir}; run scripts/setup or set OCR_MODEL_DIR"
        )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    scratch = config.data_dir / "scratch"
    scratch.mkdir(exist_ok=True)
    pool = build_pool(config, profiles)
    pool.start()  # spawned before any connection or thread exists
    host_id = new_host_id()
    try:
        backend = RedisTaskBackend(
            connect(config.redis_url, f"ocr-worker-{host_id}"),
            RoomLimits(max_queue=1),  # a worker host admits nothing
            max_active=2 * config.workers,
            prefix=config.redis_prefix,
            consumer=host_id,
            reclaim_after=config.reclaim_after,
            scratch=scratch,
        )
    except (RedisConfigError, OcrServiceError) as exc:
        pool.stop()
        raise SystemExit(f"ocr-worker: {exc}") from exc
    host = WorkerHost(
        backend, TaskManager(backend), pool, capabilities.readers, config.host_heartbeat
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host.start()
    try:
        pool.wait_ready(ENGINE_LOAD_TIMEOUT)
    except Exception as exc:
        host.stop(0)
        raise SystemExit(f"ocr-worker: {exc}") from exc
    log.info(
        "worker host %s: %d workers ready; profiles %s; languages %s",
        host_id,
        config.workers,
        ", ".join(capabilities.installed_profiles),
        ", ".join(capabilities.languages),
    )
    stop.wait()
    log.info("shutting down: giving back pages in flight (grace %.0f s)", config.shutdown_grace)
    host.stop(config.shutdown_grace)
    backend.close()
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    config = parse_worker_args(argv)
    configure_logging(config.log_level, config.log_format)
    run(config)


if __name__ == "__main__":
    main()
