"""ExportResult through the real server (fault-injection engine, so it runs in seconds): every
format with its size and SHA-256, a file larger than a gRPC message through the SDK (sync and
asyncio) and the CLI, of a document uploaded with SubmitStream, the same NOT_FOUND rules as
GetResult, and a cancelled task's finished pages."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from ocr.v1 import ocr_pb2
from ocr_client import (
    AsyncOcrClient,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OcrClient,
)
from ocr_client.calls import STREAM_THRESHOLD
from tests.harness import ROOT, TOKENS, ServerProcess
from tests.pdftext import page_size, pdftotext

MakeServer = Callable[..., ServerProcess]
FOUR_MIB = 4 * 1024 * 1024


def _completed(client: OcrClient, task_id: str) -> ocr_pb2.Task:
    task = client.wait(task_id, timeout=120)
    assert task.state == ocr_pb2.TASK_STATE_COMPLETED, task
    return task


def _noise_png(path: Path, side: int, dpi: int) -> None:
    """An image that no compressor shrinks: its PDF is as large as its pixels."""
    pixels = np.random.default_rng(9).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, dpi=(dpi, dpi), compress_level=1)


def _cli(
    server: ServerProcess, *args: str, stdout: int | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ocr_client.cli", "--target", server.target, *args],
        capture_output=stdout is None,
        stdout=stdout,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "OCR_TOKEN": TOKENS["alice"]},
        check=False,
    )


def test_every_format_and_a_file_larger_than_a_message(
    make_fake_server: MakeServer, tmp_path: Path
) -> None:
    server = make_fake_server(rules="default=echo")
    document = tmp_path / "noise.png"
    _noise_png(document, 1400, 300)
    # Above the SDK's threshold: uploaded with SubmitStream, which must keep the document
    # until expiry as Submit does (the PDF below is rendered over it).
    assert document.stat().st_size > STREAM_THRESHOLD
    with server.client() as client:
        task = client.submit(document)
        _completed(client, task.task_id)

        for name, media in (
            ("text", "text/plain; charset=utf-8"),
            ("json", "application/json"),
            ("hocr", "application/xhtml+xml"),
            ("alto", "application/xml"),
        ):
            buffer = io.BytesIO()
            header = client.export(task.task_id, name, buffer)
            data = buffer.getvalue()
            assert header.media_type == media
            assert header.size_bytes == len(data)
            assert header.sha256 == hashlib.sha256(data).hexdigest()
            assert header.filename.startswith("noise.")
            assert b"fake page 1400x1400" in data or name in ("hocr", "alto")
            if name in ("hocr", "alto"):
                ET.fromstring(data)  # parses as XML
                word = b'class="ocrx_word"' if name == "hocr" else b"<String "
                assert data.count(word) == 3

        # The searchable PDF of an incompressible 5.6 MiB image: larger than the 4 MiB
        # default message limit that other languages' clients keep.
        sdk_copy = tmp_path / "sdk.pdf"
        header = client.export(task.task_id, "pdf", sdk_copy)
        assert header.size_bytes > FOUR_MIB
        assert sdk_copy.stat().st_size == header.size_bytes
        assert "fake page 1400x1400" in pdftotext(sdk_copy)
        assert page_size(sdk_copy) == pytest.approx((1400 * 72 / 300, 1400 * 72 / 300), abs=0.01)

    cli_copy = tmp_path / "cli.pdf"
    done = _cli(server, "result", task.task_id, "--format", "pdf", "-o", str(cli_copy))
    assert done.returncode == 0, done.stderr
    assert cli_copy.read_bytes() == sdk_copy.read_bytes()  # kept after the first render
    with (tmp_path / "piped.pdf").open("wb") as piped:
        done = _cli(server, "result", task.task_id, "--format", "pdf", stdout=piped.fileno())
    assert done.returncode == 0
    assert (tmp_path / "piped.pdf").read_bytes() == sdk_copy.read_bytes()

    async def export_async() -> tuple[bytes, bytes]:
        async with AsyncOcrClient(server.target, TOKENS["alice"]) as client:
            await client.export(task.task_id, "pdf", tmp_path / "async.pdf")
            buffer = io.BytesIO()
            header = await client.export(task.task_id, ocr_pb2.RESULT_FORMAT_ALTO, buffer)
            assert header.size_bytes == len(buffer.getvalue()) and header.media_type
            return (tmp_path / "async.pdf").read_bytes(), buffer.getvalue()

    async_pdf, async_alto = asyncio.run(export_async())
    assert async_pdf == sdk_copy.read_bytes()
    assert async_alto.count(b"<String ") == 3

    hocr_file = tmp_path / "scan.hocr"
    done = _cli(server, "recognize", str(document), "--format", "hocr", "-o", str(hocr_file))
    assert done.returncode == 0, done.stderr
    assert b"ocrx_word" in hocr_file.read_bytes()


def test_export_follows_get_results_rules(make_fake_server: MakeServer, tmp_path: Path) -> None:
    server = make_fake_server(
        "--result-ttl", "6s", "--shutdown-grace", "1s", rules="default=echo,640=slow:30"
    )
    done_image, slow_image = io.BytesIO(), io.BytesIO()
    Image.new("L", (320, 100), 255).save(done_image, format="PNG")
    Image.new("L", (640, 100), 255).save(slow_image, format="PNG")
    with server.client() as alice, server.client("bob") as bob:
        task = alice.submit(done_image.getvalue())
        _completed(alice, task.task_id)
        slow = alice.submit(slow_image.getvalue())

        def code_of(client: OcrClient, task_id: str, fmt: str | int = "pdf") -> grpc.StatusCode:
            with pytest.raises(grpc.RpcError) as raised:  # the SDK's classes are RpcErrors
                client.export(task_id, fmt, io.BytesIO())
            return raised.value.code()  # type: ignore[no-any-return]

        assert code_of(bob, task.task_id) == grpc.StatusCode.NOT_FOUND  # another tenant's
        assert code_of(alice, "f" * 40) == grpc.StatusCode.NOT_FOUND  # unknown
        assert code_of(alice, slow.task_id) == grpc.StatusCode.FAILED_PRECONDITION
        assert code_of(alice, task.task_id, ocr_pb2.RESULT_FORMAT_UNSPECIFIED) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        with pytest.raises(NotFoundError):  # the SDK's one error hierarchy
            bob.export(task.task_id, "text", io.BytesIO())
        with pytest.raises(FailedPreconditionError):
            alice.export(slow.task_id, "hocr", io.BytesIO())
        with pytest.raises(InvalidArgumentError):
            alice.export(task.task_id, ocr_pb2.RESULT_FORMAT_UNSPECIFIED, io.BytesIO())
        with pytest.raises(ValueError, match="unknown result format"):
            alice.export(task.task_id, "docx", io.BytesIO())
        alice.export(task.task_id, "pdf", io.BytesIO())  # rendered and kept
        alice.cancel(slow.task_id)
        with pytest.raises(FailedPreconditionError):  # cancelled before any page was read
            alice.export(slow.task_id, "text", io.BytesIO())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the result expires 6 s after submission
            try:
                alice.export(task.task_id, "text", io.BytesIO())
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
                break
            time.sleep(0.5)
        else:
            pytest.fail("the task never expired")
        assert code_of(alice, task.task_id) == grpc.StatusCode.NOT_FOUND  # the kept PDF too
        assert code_of(alice, task.task_id, "json") == grpc.StatusCode.NOT_FOUND


def test_without_kept_documents_every_format_but_the_pdf_exports(
    make_fake_server: MakeServer, tmp_path: Path
) -> None:
    """--keep-documents off: the document is deleted when its task ends (as before searchable
    PDFs existed), GetCapabilities says there are no searchable PDFs, a PDF export is
    FAILED_PRECONDITION saying why and what to do, and hOCR (from the result) still works;
    the CLI refuses `recognize --format pdf` before submitting."""
    server = make_fake_server("--keep-documents", "off", rules="default=echo")
    documents = server.data_dir / "store" / "documents"
    with server.client() as client:
        assert not client.capabilities().searchable_pdf
        image = io.BytesIO()
        Image.new("L", (320, 100), 255).save(image, format="PNG")
        task = client.submit(image.getvalue())
        _completed(client, task.task_id)
        assert list(documents.iterdir()) == []
        with pytest.raises(FailedPreconditionError) as refused:
            client.export(task.task_id, "pdf", io.BytesIO())
        assert "--keep-documents off" in str(refused.value)
        assert "hocr" in str(refused.value)  # what still works
        hocr = io.BytesIO()
        client.export(task.task_id, "hocr", hocr)
        assert hocr.getvalue().count(b'class="ocrx_word"') == 3
        (tmp_path / "page.png").write_bytes(image.getvalue())
        done = _cli(server, "recognize", str(tmp_path / "page.png"), "--format", "pdf", "-o",
                    str(tmp_path / "page.pdf"))  # fmt: skip
        assert done.returncode == 1 and b"nothing was submitted" in done.stderr
        assert len(client.list_tasks().tasks) == 1  # refused before submitting


def test_a_cancelled_tasks_finished_pages_export(
    make_fake_server: MakeServer, tmp_path: Path
) -> None:
    """GetResult returns a cancelled task's finished pages; ExportResult the same pages, and
    the searchable PDF keeps the page the cancel stopped, without text."""
    server = make_fake_server("--shutdown-grace", "1s", rules="default=echo,640=slow:30")
    document = tmp_path / "two.tiff"
    first, second = Image.new("L", (320, 100), 255), Image.new("L", (640, 100), 255)
    first.save(document, save_all=True, append_images=[second], dpi=(200, 200))
    with server.client() as client:
        task = client.submit(document)
        for update in client.watch(task.task_id, timeout=60):
            if update.pages_done == 1:
                break
        client.cancel(task.task_id)
        assert client.status(task.task_id).state == ocr_pb2.TASK_STATE_CANCELLED
        text = io.BytesIO()
        client.export(task.task_id, "text", text)
        assert text.getvalue() == b"fake page 320x100\n"
        pdf = tmp_path / "two.pdf"
        client.export(task.task_id, "pdf", pdf)
    assert pdftotext(pdf, 1).split() == ["fake", "page", "320x100"]
    assert pdftotext(pdf, 2).split() == []
    assert page_size(pdf, 2) == pytest.approx((640 * 72 / 200, 100 * 72 / 200), abs=0.01)

    done = _cli(server, "result", task.task_id, "--format", "hocr", "-o", str(tmp_path / "t.hocr"))
    assert done.returncode == 4, done.stderr  # cancelled: the finished pages are written
    assert (tmp_path / "t.hocr").read_bytes().count(b'class="ocrx_word"') == 3
