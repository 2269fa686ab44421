"""Big documents and big results through clients with gRPC's default limits, against the real
server (fake engine: recognition is not the point here; tests/test_recognition.py proves it):
a 200 MB upload and the server's peak memory, a result over 4 MiB, request_id reuse, and the
pages a cancelled task keeps."""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import pytest

from ocr.v1 import ocr_pb2, ocr_pb2_grpc
from ocr_client import AlreadyExistsError, ResourceExhaustedError
from tests.documents import blank_png, blank_tiff
from tests.harness import TOKENS

MIB = 1024 * 1024
METADATA = (("authorization", f"Bearer {TOKENS['alice']}"),)


def large_pdf(path: Path, size: int, pages: int) -> None:
    """A valid PDF of `pages` blank pages carrying `size` bytes of incompressible data in an
    unreferenced stream: what poppler must count, without rasterising anything heavy."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + n} 0 R" for n in range(pages))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    objects.append(None)  # 3: the filler stream, written in pieces below
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>"] * pages
    filler = size  # the file is a few KiB larger than `size`
    offsets = []
    with path.open("wb") as out:
        out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        for number, body in enumerate(objects, start=1):
            offsets.append(out.tell())
            out.write(f"{number} 0 obj\n".encode())
            if body is None:
                out.write(f"<< /Length {filler} >>\nstream\n".encode())
                block = os.urandom(MIB)
                for start in range(0, filler, MIB):
                    out.write(block[: min(MIB, filler - start)])
                out.write(b"\nendstream")
            else:
                out.write(body)
            out.write(b"\nendobj\n")
        xref = out.tell()
        out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
        for offset in offsets:
            out.write(f"{offset:010d} 00000 n \n".encode())
        out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode())
        out.write(f"startxref\n{xref}\n%%EOF\n".encode())


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_200_mb_document_streams_in_with_default_limits(make_fake_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The SDK (no limit raised anywhere: the server keeps --max-message-mb 64) streams it in
    1 MiB chunks; the server writes them to disk as they come. Its peak resident memory
    (VmHWM) grows by far less than the document: it never holds it, let alone twice."""
    server = make_fake_server("--workers", "1", rules="default=echo")
    document = tmp_path / "scan.pdf"
    large_pdf(document, 200 * MIB, pages=60)
    assert document.stat().st_size >= 200 * MIB
    assert server.process is not None
    pid = server.process.pid
    with server.client() as client:
        client.capabilities()  # the server is warm: its baseline includes gRPC's buffers
        before = memory_kib(pid, "VmRSS")
        task = client.submit(document, pages="1-2")
        peak = memory_kib(pid, "VmHWM")
        assert task.pages_total == 2
        final = client.wait(task.task_id, timeout=120)
    assert final.state == ocr_pb2.TASK_STATE_COMPLETED, final.error.message
    growth_mib = (peak - before) / 1024
    print(
        f"server VmRSS before {before / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB: "
        f"+{growth_mib:.0f} MiB for a {document.stat().st_size / MIB:.0f} MiB upload"
    )
    assert growth_mib < 64, f"the server's peak memory grew by {growth_mib:.0f} MiB"
    # Written once, whole, and kept until the task expires (every upload sets keep_document:
    # a searchable PDF is rendered over it on request); expiry removes it
    # (tests/test_faults.py::test_store_returns_to_baseline_after_expiry).
    stored = list((server.data_dir / "store" / "documents").iterdir())
    assert [p.stat().st_size for p in stored] == [document.stat().st_size]


def test_upload_limits_are_checked_as_the_chunks_arrive(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server("--workers", "1", "--max-document-mb", "5", rules="default=echo")
    sent = 0

    def requests():  # type: ignore[no-untyped-def]
        nonlocal sent
        yield ocr_pb2.SubmitStreamRequest(header=ocr_pb2.SubmitStreamHeader())
        yield ocr_pb2.SubmitStreamRequest(chunk=b"%PDF-1.4\n")
        for _ in range(100):
            sent += 1
            yield ocr_pb2.SubmitStreamRequest(chunk=bytes(MIB))

    with grpc.insecure_channel(server.target) as channel:
        stub = ocr_pb2_grpc.OcrServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitStream(requests(), metadata=METADATA, timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit of 5 MiB" in info.value.details()
        assert sent < 50  # refused at the limit, not after the whole upload
        header = ocr_pb2.SubmitStreamHeader(size_bytes=6 * MIB)
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitStream(
                iter([ocr_pb2.SubmitStreamRequest(header=header)]), metadata=METADATA, timeout=60
            )
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitStream(iter([ocr_pb2.SubmitStreamRequest(chunk=b"x")]), metadata=METADATA)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        page = blank_png()
        for header, reason in (
            (ocr_pb2.SubmitStreamHeader(size_bytes=len(page) + 1), "cut short"),
            (ocr_pb2.SubmitStreamHeader(sha256="0" * 64), "do not match"),
        ):
            messages = [
                ocr_pb2.SubmitStreamRequest(header=header),
                ocr_pb2.SubmitStreamRequest(chunk=page),
            ]
            with pytest.raises(grpc.RpcError) as info:
                stub.SubmitStream(iter(messages), metadata=METADATA, timeout=60)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert reason in info.value.details()
    assert not list((server.data_dir / "store" / "documents").iterdir())


def test_result_over_4_mib_with_default_limits(make_fake_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """12 pages of 3,000 lines: about 6 MiB of result. A plain stub with default limits gets
    it in parts; asking for it whole is an actionable RESOURCE_EXHAUSTED, not a transport
    error; the SDK joins the parts into the same result."""
    server = make_fake_server("--workers", "2", rules="default=lines:3000")
    document = blank_tiff(tmp_path / "doc.tiff", 12)
    with server.client() as client:
        task = client.submit(document)
        assert client.wait(task.task_id, timeout=120).state == ocr_pb2.TASK_STATE_COMPLETED
        whole = client.result(task.task_id)
    assert whole.result.ByteSize() > 5 * MIB
    with grpc.insecure_channel(server.target) as channel:  # gRPC's default limits
        stub = ocr_pb2_grpc.OcrServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetResult(ocr_pb2.GetResultRequest(task_id=task.task_id), metadata=METADATA)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "page_size" in info.value.details()
        pages, token, parts = [], "", 0
        while True:
            request = ocr_pb2.GetResultRequest(
                task_id=task.task_id, page_size=100, page_token=token
            )
            response = stub.GetResult(request, metadata=METADATA)
            pages += response.result.pages
            parts += 1
            token = response.next_page_token
            if not token:
                break
    assert parts >= 2
    assert [p.page_number for p in pages] == list(range(1, 13))
    assert [len(p.lines) for p in pages] == [3000] * 12
    assert whole.result.text.count("\n\f") == 11 and whole.result.text.count("fake line") == 36000


def test_request_id_reuse_with_another_document_is_already_exists(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server("--workers", "1")
    encoded = [blank_png(300, 200), blank_png(300, 201)]
    big = encoded[0] + bytes(4 * MIB)  # a PNG with trailing bytes: streamed by the SDK
    with server.client() as client:
        task = client.submit(encoded[0], request_id="invoice-1")
        assert client.submit(encoded[0], request_id="invoice-1").task_id == task.task_id
        with pytest.raises(AlreadyExistsError, match="invoice-1"):
            client.submit(encoded[1], request_id="invoice-1")
        with pytest.raises(AlreadyExistsError):
            client.submit(encoded[0], request_id="invoice-1", dpi=300)  # other settings
        streamed = client.submit(big, request_id="invoice-2")
        assert client.submit(big, request_id="invoice-2").task_id == streamed.task_id
        with pytest.raises(AlreadyExistsError):
            client.submit(big + b"\0", request_id="invoice-2")


def test_cancelled_task_keeps_its_finished_pages(make_fake_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server("--workers", "1", rules="default=slow:0.4")
    document = blank_tiff(tmp_path / "doc.tiff", 20)
    with server.client() as client:
        task = client.submit(document)
        for update in client.watch(task.task_id, timeout=60):
            if update.pages_done >= 2:
                break
        cancelled = client.cancel(task.task_id)
        assert cancelled.state == ocr_pb2.TASK_STATE_CANCELLED
        time.sleep(0.5)  # the page in flight finishes and is dropped
        response = client.result(task.task_id)
    done = [p.page_number for p in response.result.pages]
    assert len(done) == cancelled.pages_done >= 2
    assert done == list(range(1, len(done) + 1))
    assert response.task.state == ocr_pb2.TASK_STATE_CANCELLED


def test_sdk_without_a_result_limit_of_its_own_follows_the_server(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    """A server with a 1 MiB message limit: the SDK streams a 2 MiB document instead of
    sending it whole (which the server would refuse)."""
    server = make_fake_server("--workers", "1", "--max-message-mb", "1", rules="default=echo")
    page = blank_png()
    with server.client() as client:
        task = client.submit(page + bytes(2 * MIB))
        assert client.wait(task.task_id, timeout=60).state == ocr_pb2.TASK_STATE_COMPLETED
    with grpc.insecure_channel(server.target) as channel:
        stub = ocr_pb2_grpc.OcrServiceStub(channel)
        request = ocr_pb2.SubmitRequest(content=page + bytes(2 * MIB))
        with pytest.raises(grpc.RpcError) as info:
            stub.Submit(request, metadata=METADATA, timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ResourceExhaustedError  # the SDK's class for the same status
