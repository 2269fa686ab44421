"""The PaddleOCR adapter: builds the `paddleocr` pipeline from local model directories only.

Every optional sub-model (document orientation, unwarping, text-line orientation) is switched
off: PaddleX would download any sub-model that has no local directory, and this service never
touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ocr_server.engines.base import Image, RecognizedLine
from ocr_server.engines.profiles import Profile

# Stops PaddleX from probing model hosts at import time.
os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")


class ModelsMissingError(RuntimeError):
    """A profile's model directories are not installed."""


class PaddleOcrEngine:
    """One PaddleOCR pipeline for one profile. Not thread-safe: one per worker process."""

    def __init__(self, profile: Profile, model_dir: Path) -> None:
        det_dir, rec_dir = profile.model_dirs(model_dir)
        if not profile.is_installed(model_dir):
            raise ModelsMissingError(
                f"profile {profile.name!r} needs {det_dir} and {rec_dir}; "
                "install them with scripts/setup (or point OCR_MODEL_DIR at them)"
            )
        from paddleocr import PaddleOCR  # heavy import: only in worker processes

        options: dict[str, Any] = {
            "text_detection_model_name": profile.det_model,
            "text_detection_model_dir": str(det_dir),
            "text_recognition_model_name": profile.rec_model,
            "text_recognition_model_dir": str(rec_dir),
            "use_doc_orientation_classify": False,
            "use_doc_unwarping": False,
            "use_textline_orientation": False,
            "text_det_limit_side_len": 960,
            "text_det_limit_type": "max",
            "text_recognition_batch_size": 1,
            "engine": profile.engine,
            "engine_config": profile.engine_config(),
            "device": "cpu",
            **profile.det_options,
        }
        self._pipeline = PaddleOCR(**options)

    def recognize(self, image: Image) -> list[RecognizedLine]:
        # PaddleOCR expects BGR like OpenCV; our pages are RGB.
        bgr = image[:, :, ::-1]
        results = self._pipeline.predict(bgr)
        lines: list[RecognizedLine] = []
        for result in results:
            for text, score, poly in zip(
                result["rec_texts"], result["rec_scores"], result["rec_polys"], strict=True
            ):
                if not text.strip():
                    continue
                polygon = tuple((float(x), float(y)) for x, y in poly)
                lines.append(RecognizedLine(text=text, confidence=float(score), polygon=polygon))
        return lines
