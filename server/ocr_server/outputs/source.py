"""What a renderer knows about the task besides its result."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

SOFTWARE = "ocr-service"


def software_version() -> str:
    try:
        return metadata.version(SOFTWARE)
    except metadata.PackageNotFoundError:
        return "0"


@dataclass(frozen=True)
class Source:
    """The task a file is rendered for. `document` is the stored original (needed for the
    searchable PDF only)."""

    task_id: str
    filename: str
    document_type: str
    language: str
    profile: str
    document: Path | None = None

    @property
    def engine(self) -> str:
        return f"{SOFTWARE} {software_version()} (PaddleOCR, profile {self.profile})"
