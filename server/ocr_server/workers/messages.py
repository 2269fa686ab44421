"""What crosses the pipe between the pool and a worker process: plain, picklable dataclasses.

The pool (and `scripts/benchlib`, which drives the same worker function without a server)
sends `RunPage` and `Stop`; a worker answers `Ready` or `Fatal` once, then `PageDone` or
`PageFailed` for every `RunPage`. Read them with `match`, never by position.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocr_server.errors import TaskError
from ocr_server.models import PageResult

# One thread per worker: 2 workers x 1 thread beat 1 x 2 and 2 x 2 on this class of machine.
WORKER_ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "FLAGS_cpu_deterministic": "true",
    "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True",
}
"""Set (unless already set) in the parent before workers are spawned; they inherit it."""


@dataclass(frozen=True)
class PageJob:
    """One page to recognise: everything a worker needs. `document_path` is a local file on
    the worker's host (the document store materialises it); `job_id` is the pool's own."""

    job_id: int
    task_id: str
    document_path: str
    document_type: str
    page_number: int
    dpi: int
    profile: str
    language: str


# --- to a worker --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPage:
    job: PageJob


@dataclass(frozen=True)
class Stop:
    """Finish nothing more and exit (sent only to an idle worker)."""


ToWorker = RunPage | Stop

# --- from a worker ------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """The default profile's engine is loaded."""

    pid: int


@dataclass(frozen=True)
class Fatal:
    """The engine could not be loaded; the worker exits."""

    message: str


@dataclass(frozen=True)
class PageDone:
    job_id: int
    page: PageResult


@dataclass(frozen=True)
class PageFailed:
    """The page cannot be recognised; the task fails with `failure` (the worker lives on)."""

    job_id: int
    failure: TaskError


FromWorker = Ready | Fatal | PageDone | PageFailed
