"""Server start-up: health before and after the engines load, custom model profiles,
generated tokens (never open by default) and a clear failure when models are missing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from tests.documents import RECEIPTS, cer, receipt_jpeg, receipt_truth
from tests.harness import ROOT, ServerProcess, health_status

INSTALLED_MODELS = Path(sys.prefix) / "share" / "ocr-models"


def test_custom_profile_from_other_model_dirs(tmp_path: Path) -> None:
    """OCR_MODEL_DIR and a profiles file point the server at model directories elsewhere;
    health stays NOT_SERVING until the workers have loaded them."""
    profiles = tmp_path / "profiles.json"
    profiles.write_text(
        '{"mine": {"engine": "onnxruntime", '
        f'"det_model": "PP-OCRv6_small_det", "det_dir": "{INSTALLED_MODELS}/PP-OCRv6_small_det", '
        f'"rec_model": "PP-OCRv6_small_rec", "rec_dir": "{INSTALLED_MODELS}/PP-OCRv6_small_rec"'
        "}}"
    )
    empty_model_dir = tmp_path / "models"
    empty_model_dir.mkdir()
    server = ServerProcess(
        tmp_path / "data",
        "--profiles-file",
        str(profiles),
        "--default-profile",
        "mine",
        env={"OCR_MODEL_DIR": str(empty_model_dir)},
    ).start(wait_serving=False)
    try:
        first = None
        while first is None:
            assert server.process is not None and server.process.poll() is None, server.log()
            first = health_status(server.target)
            time.sleep(0.05)
        assert first == health_pb2.HealthCheckResponse.NOT_SERVING
        server.wait_serving()
        with server.client() as client:
            capabilities = client.capabilities()
            installed = [p.name for p in capabilities.profiles if p.available]
            assert installed == ["mine"]
            result = client.recognize(receipt_jpeg(), timeout=300)
            with pytest.raises(grpc.RpcError) as info:
                client.submit(receipt_jpeg(), profile="fast")
            assert "not installed" in info.value.details()
        assert cer(receipt_truth(RECEIPTS[0]), result.text) < 0.2
    finally:
        server.stop()


def test_generated_token_when_none_configured(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--engine", "fake", env={"OCR_TOKENS": ""})
    server.start()
    try:
        token_file = tmp_path / "data" / "client-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert str(token_file) in server.log()
        assert token_file.read_text().strip() not in server.log()  # tokens are never logged
        env = {k: v for k, v in os.environ.items() if k not in ("OCR_TOKEN", "OCR_TOKEN_FILE")}
        env["OCR_TARGET"] = server.target
        image = tmp_path / "blank.png"
        from PIL import Image

        Image.new("L", (300, 100), 255).save(image)
        cli = [sys.executable, "-m", "ocr_client.cli"]
        # from the directory holding data/, the CLI finds the generated token by itself
        done = subprocess.run(
            [*cli, "recognize", "-q", str(image)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "fake page 300x100" in done.stdout
        elsewhere = subprocess.run(
            [*cli, "capabilities"],
            cwd=ROOT / "tests",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert elsewhere.returncode != 0 and "UNAUTHENTICATED" in elsewhere.stderr
    finally:
        server.stop()


def test_missing_models_fail_fast_with_advice(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ocr_server",
            "--data-dir",
            str(tmp_path / "data"),
            "--model-dir",
            str(tmp_path / "nowhere"),
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OCR_TOKENS": "a=b"},
    )
    assert done.returncode != 0
    assert "scripts/setup" in done.stderr and "OCR_MODEL_DIR" in done.stderr
