"""Recognition end to end: real server on loopback, real PaddleOCR, real scanned receipts
(SROIE, ../shared/eval) in every input format, text checked against the ground truth."""

from __future__ import annotations

import pytest

from ocr.v1 import ocr_pb2
from tests.documents import RECEIPTS, cer, receipt_jpeg, receipt_truth, receipts_document
from tests.harness import ServerProcess

# Measured per page on these three receipts (case-insensitive, row order vs the ground truth's
# box order): fast 6-13%, accurate 2-12%, paddle 12-16%. A wrong page, a garbled image or a
# broken pipeline scores near 100%.
MAX_RECEIPT_CER = {"fast": 0.20, "accurate": 0.20, "paddle": 0.25}


def watch_to_end(client, task_id: str) -> list[ocr_pb2.Task]:  # type: ignore[no-untyped-def]
    return list(client.watch(task_id, timeout=300))


@pytest.mark.parametrize(
    ("fmt", "expected_type", "pages"),
    [
        ("PNG", "png", 1),
        ("JPEG", "jpeg", 1),
        ("BMP", "bmp", 1),
        ("GIF", "gif", 1),
        ("WEBP", "webp", 1),
        ("TIFF", "tiff", 3),
        ("PDF", "pdf", 3),
    ],
)
def test_submit_watch_result(
    real_server: ServerProcess, fmt: str, expected_type: str, pages: int
) -> None:
    content = receipt_jpeg() if fmt == "JPEG" else receipts_document(fmt)
    with real_server.client() as client:
        task = client.submit(content, filename=f"receipts.{fmt.lower()}")
        assert task.state == ocr_pb2.TASK_STATE_PENDING
        assert task.document_type == expected_type
        assert task.pages_total == pages
        updates = watch_to_end(client, task.task_id)
        assert updates[-1].state == ocr_pb2.TASK_STATE_COMPLETED, updates[-1]
        assert updates[-1].pages_done == pages
        # progress is reported per page, in order
        done = [u.pages_done for u in updates]
        assert done == sorted(done)
        response = client.result(task.task_id)
    result = response.result
    assert [p.page_number for p in result.pages] == list(range(1, pages + 1))
    for page, name in zip(result.pages, RECEIPTS, strict=False):
        assert page.width > 0 and page.height > 0
        assert cer(receipt_truth(name), page.text) < MAX_RECEIPT_CER["fast"], page.text
        for line in page.lines:
            assert 0.0 <= line.confidence <= 1.0
            assert len(line.polygon) >= 4
            assert all(0 <= p.x <= page.width and 0 <= p.y <= page.height for p in line.polygon)
    assert result.text == "\n\f".join(p.text for p in result.pages)


@pytest.mark.parametrize("profile", ["accurate", "paddle"])
def test_other_profiles(real_server: ServerProcess, profile: str) -> None:
    """Both inference engines: PP-OCRv6 small (onnxruntime) and PP-OCRv4 (paddlepaddle)."""
    with real_server.client() as client:
        result = client.recognize(receipt_jpeg(), profile=profile, timeout=600)
    assert cer(receipt_truth(RECEIPTS[0]), result.text) < MAX_RECEIPT_CER[profile], result.text


def test_pdf_page_selection_and_dpi(real_server: ServerProcess) -> None:
    with real_server.client() as client:
        task = client.submit(receipts_document("PDF"), pages="2-3", dpi=150)
        assert task.pages_total == 2
        assert task.settings.dpi == 150
        result = client.recognize(receipts_document("PDF"), pages="3", timeout=300)
    assert [p.page_number for p in result.pages] == [3]
    assert cer(receipt_truth(RECEIPTS[2]), result.text) < MAX_RECEIPT_CER["fast"]
