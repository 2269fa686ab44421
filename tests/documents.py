"""Test documents made from the shared evaluation data (never copied into the project)."""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

# OCR_EVAL_DIR overrides the place (e.g. for a git worktree that is not beside ../shared).
EVAL_DIR = Path(
    os.environ.get("OCR_EVAL_DIR")
    or Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
)
SROIE = EVAL_DIR / "realset" / "sroie"
RECEIPTS = ("000", "012", "024")


def require_eval() -> None:
    if not SROIE.is_dir():
        pytest.skip(
            f"evaluation data not found at {EVAL_DIR} (needs ../shared/eval beside the repo)"
        )


def scorer() -> ModuleType:
    """The reference scorer, ../shared/eval/cer.py."""
    require_eval()
    spec = importlib.util.spec_from_file_location("eval_cer", EVAL_DIR / "cer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def receipt(name: str) -> Image.Image:
    require_eval()
    return Image.open(SROIE / "img" / f"{name}.jpg").convert("RGB")


def receipt_truth(name: str) -> str:
    return (SROIE / "gt" / f"{name}.txt").read_text(encoding="utf-8")


def receipt_jpeg(name: str = RECEIPTS[0]) -> bytes:
    require_eval()
    return (SROIE / "img" / f"{name}.jpg").read_bytes()


def encode(images: list[Image.Image], fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    first, *rest = images
    if rest:
        options["save_all"] = True
        options["append_images"] = rest
    first.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def receipts_document(fmt: str) -> bytes:
    """The three receipts as one multi-page TIFF or image-only PDF (200 dpi), or the first
    alone in a single-image format (PNG, BMP, GIF, WEBP)."""
    images = [receipt(name) for name in RECEIPTS]
    if fmt == "TIFF":
        return encode(images, "TIFF", compression="tiff_lzw")
    if fmt == "PDF":
        return encode(images, "PDF", resolution=200.0)
    return encode(images[:1], fmt, **({"lossless": True} if fmt == "WEBP" else {}))


def cer(truth: str, text: str) -> float:
    scores = scorer().score(truth, text, ignore_case=True)
    return float(scores["char_edits"]) / max(1, scores["ref_chars"])


def blank_png(width: int = 300, height: int = 200) -> bytes:
    """A white page: the fake engine's rules pick a behaviour by its width."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, "PNG")
    return buffer.getvalue()


def blank_tiff(path: Path, pages: int, width: int = 300) -> Path:
    """A multi-page TIFF of white pages (for the fake engine)."""
    images = [Image.new("L", (width, 200), 255) for _ in range(pages)]
    images[0].save(path, "TIFF", save_all=True, append_images=images[1:])
    return path
