"""Model profiles: named PaddleOCR configurations that a request can choose.

The figures in each description were measured on this project's 2-core reference machine
(2 workers x 1 thread, 200 dpi document pages); see docs/ and DEVELOPERS.md.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocr_server.languages.catalog import canonical

ONNX_ENGINE_CONFIG: dict[str, Any] = {"intra_op_num_threads": 1, "inter_op_num_threads": 1}
# The default new IR crashes on paddlepaddle 3.3.1; MKL-DNN with the old IR works.
PADDLE_ENGINE_CONFIG: dict[str, Any] = {
    "run_mode": "mkldnn",
    "enable_new_ir": False,
    "cpu_threads": 1,
}


@dataclass(frozen=True)
class Profile:
    """A detector + recogniser pair and the settings that suit them."""

    name: str
    description: str
    engine: str
    det_model: str
    rec_model: str
    det_options: dict[str, float] = field(default_factory=dict)
    # Absolute model directories; empty means <model dir>/<model name>.
    det_dir: str = ""
    rec_dir: str = ""
    # Languages (catalog codes) a custom recogniser was trained for, e.g. ["ru", "uk"] for
    # PaddleOCR's cyrillic model: routed to this profile before Tesseract.
    languages: tuple[str, ...] = ()

    @property
    def is_tesseract(self) -> bool:
        return self.engine == TESSERACT

    def model_dirs(self, model_dir: Path) -> tuple[Path, ...]:
        """The PaddleX model directories: detector and recogniser (Tesseract: detector)."""
        det = Path(self.det_dir) if self.det_dir else model_dir / self.det_model
        if self.is_tesseract:
            return (det,)
        return (det, Path(self.rec_dir) if self.rec_dir else model_dir / self.rec_model)

    def is_installed(self, model_dir: Path) -> bool:
        """Model files present and the inference engine's Python packages importable
        (Tesseract's language data is checked per language, see languages/routing.py)."""
        runtimes = {"onnxruntime": ("onnxruntime",), TESSERACT: ("onnxruntime", "tesserocr")}
        return all(
            importlib.util.find_spec(runtime) is not None
            for runtime in runtimes.get(self.engine, ("paddle",))
        ) and all((d / "inference.yml").is_file() for d in self.model_dirs(model_dir))

    def dictionary(self, model_dir: Path) -> frozenset[str]:
        """The characters the recogniser can output (empty for Tesseract), from the
        `PostProcess.character_dict` of its inference.yml."""
        if self.is_tesseract:
            return frozenset()
        import yaml  # PaddleX's dependency; only needed once models are installed

        config = yaml.safe_load((self.model_dirs(model_dir)[1] / "inference.yml").read_text())
        return frozenset(config.get("PostProcess", {}).get("character_dict") or ())

    def engine_config(self) -> dict[str, Any]:
        paddle = self.engine == "paddle_static"
        return dict(PADDLE_ENGINE_CONFIG if paddle else ONNX_ENGINE_CONFIG)


TESSERACT = "tesseract"
ENGINES = ("onnxruntime", "paddle_static")

BUILTIN_PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="fast",
            description="PP-OCRv6 small detector + tiny recogniser (onnxruntime): "
            "1.3 dense manual pages/s on 2 cores, CER 1.0% on single-column pages",
            engine="onnxruntime",
            det_model="PP-OCRv6_small_det",
            rec_model="PP-OCRv6_tiny_rec",
            det_options={"text_det_unclip_ratio": 2.0},
        ),
        Profile(
            name="accurate",
            description="PP-OCRv6 small detector + small recogniser (onnxruntime): "
            "0.4 dense manual pages/s on 2 cores, CER 0.8%, fewest misreads",
            engine="onnxruntime",
            det_model="PP-OCRv6_small_det",
            rec_model="PP-OCRv6_small_rec",
            det_options={"text_det_unclip_ratio": 2.0},
        ),
        Profile(
            name="tiny",
            description="PP-OCRv6 tiny detector + tiny recogniser (onnxruntime): "
            "fastest, more misreads on dotted rows",
            engine="onnxruntime",
            det_model="PP-OCRv6_tiny_det",
            rec_model="PP-OCRv6_tiny_rec",
            det_options={
                "text_det_unclip_ratio": 1.5,
                "text_det_thresh": 0.2,
                "text_det_box_thresh": 0.4,
            },
        ),
        Profile(
            name="paddle",
            description="PP-OCRv4 mobile on the paddlepaddle engine: about 0.9 pages/s, "
            "CER 1.0%, 1.2-1.5 GB per worker",
            engine="paddle_static",
            det_model="PP-OCRv4_mobile_det",
            rec_model="PP-OCRv4_mobile_rec",
            det_options={"text_det_unclip_ratio": 2.0},
        ),
        Profile(
            name="tesseract",
            description="PP-OCRv6 small detector finds the lines, Tesseract reads each one "
            "(scripts PaddleOCR lacks: Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai, "
            "Korean, Vietnamese; docs/languages.md)",
            engine=TESSERACT,
            det_model="PP-OCRv6_small_det",
            rec_model="",
            det_options={"text_det_unclip_ratio": 2.0},
        ),
    )
}

DEFAULT_PROFILE = "fast"


def load_profiles(path: Path | None) -> dict[str, Profile]:
    """The built-in profiles plus those defined in a JSON file, which may override them:

    {"server": {"engine": "paddle_static", "det_model": "PP-OCRv5_server_det",
                "rec_model": "PP-OCRv5_server_rec", "det_dir": "/models/det",
                "rec_dir": "/models/rec", "description": "...",
                "det_options": {"text_det_unclip_ratio": 1.5},
                "languages": ["ru", "uk"]}}

    `languages` (optional) names the languages the recogniser was trained for: they are
    routed to this profile. Without it a custom profile serves the languages its
    dictionary covers only when a request names the profile.

    Each model directory holds a PaddleX inference model whose inference.yml names it
    (Global.model_name equal to det_model / rec_model).
    """
    profiles = dict(BUILTIN_PROFILES)
    if path is None:
        return profiles
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        for name, spec in data.items():
            if spec.get("engine") not in ENGINES:
                raise ValueError(f"profile {name!r}: engine must be one of {ENGINES}")
            profiles[name] = Profile(
                name=name,
                description=str(spec.get("description", f"custom profile from {path}")),
                engine=spec["engine"],
                det_model=spec["det_model"],
                rec_model=spec["rec_model"],
                det_options={k: float(v) for k, v in spec.get("det_options", {}).items()},
                det_dir=str(spec.get("det_dir", "")),
                rec_dir=str(spec.get("rec_dir", "")),
                languages=_declared_languages(spec.get("languages", ())),
            )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot read profiles from {path}: {exc}") from exc
    return profiles


def _declared_languages(tags: list[str]) -> tuple[str, ...]:
    codes = []
    for tag in tags:
        code = canonical(str(tag))
        if code is None:
            raise ValueError(f"unknown language {tag!r} in 'languages'")
        codes.append(code)
    return tuple(codes)
