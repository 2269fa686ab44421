"""Hostile and broken input against the real server (real PaddleOCR): every document in the
corpus (tests/hostile_corpus.py) is refused with INVALID_ARGUMENT and a message naming the
problem, or, when it is valid but odd, completes with its text recognised; malformed ids and
oversized messages get their own status; and afterwards the server is healthy, has all its
workers, and still reads a receipt correctly. The in-process checks at the end pin the parsing
details (pdfinfo output, TIFF directories) that the corpus relies on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from ocr.v1 import ocr_pb2, ocr_pb2_grpc
from ocr_server.documents import DocumentLimits, inspect_image, inspect_pdf, load_page
from ocr_server.errors import InvalidDocumentError
from tests import hostile_corpus as corpus
from tests.documents import RECEIPTS, cer, receipt_jpeg, receipt_truth
from tests.harness import TOKENS, ServerProcess, health_status

MIB = 1024 * 1024
MAX_RECEIPT_CER = 0.20  # as tests/test_recognition.py: the fast profile scores 6-13% here
WELL_FORMED_UNKNOWN_ID = "0" * 40


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value  # type: ignore[return-value]


@pytest.fixture(scope="module")
def workers_before(real_server: ServerProcess) -> int:
    """Live workers before the corpus runs (the last test compares)."""
    count = len(real_server.worker_pids())
    assert count >= 1
    return count


@pytest.mark.parametrize("case", corpus.REFUSED, ids=lambda c: c.name)
def test_refused_with_a_message_naming_the_problem(
    real_server: ServerProcess, workers_before: int, case: corpus.Refused
) -> None:
    content = case.build()
    with real_server.client() as client:
        error = rpc_error(client.submit, content, **case.settings)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    for fragment in case.fragments:
        assert fragment.lower() in error.details().lower(), error.details()
    assert len(error.details()) < 400  # names the problem; never echoes the input


@pytest.fixture(scope="module")
def accepted_results(
    real_server: ServerProcess, workers_before: int
) -> Iterator[dict[str, tuple[ocr_pb2.Task, ocr_pb2.GetResultResponse]]]:
    """Submit every valid-but-odd document at once (the workers share them), then wait."""
    results = {}
    with real_server.client() as client:
        tasks = {
            case.name: client.submit(case.build(), **case.settings) for case in corpus.ACCEPTED
        }
        for name, task in tasks.items():
            final = client.wait(task.task_id, timeout=300)
            results[name] = (final, client.result(task.task_id))
    yield results


@pytest.mark.parametrize("case", corpus.ACCEPTED, ids=lambda c: c.name)
def test_valid_but_odd_documents_complete(
    accepted_results: dict[str, tuple[ocr_pb2.Task, ocr_pb2.GetResultResponse]],
    case: corpus.Accepted,
) -> None:
    task, response = accepted_results[case.name]
    assert task.state == ocr_pb2.TASK_STATE_COMPLETED, task.error.message
    assert task.document_type == case.document_type
    assert task.pages_total == 1  # GIF frames are animation; the PDFs select one page
    page = response.result.pages[0]
    if case.has_text:
        upright = corpus.text_image().size
        assert (page.width, page.height) == upright  # EXIF turned; dpi 0 rendered at 200
        assert cer(receipt_truth(RECEIPTS[0]), page.text) < MAX_RECEIPT_CER, page.text
    if case.name == "dpi-0-means-200":
        assert task.settings.dpi == 200


def test_blank_images_complete_with_their_size(
    accepted_results: dict[str, tuple[ocr_pb2.Task, ocr_pb2.GetResultResponse]],
) -> None:
    tiny = accepted_results["1x1"][1].result.pages[0]
    strip = accepted_results["strip-20000x20"][1].result.pages[0]
    assert (tiny.width, tiny.height, tiny.text) == (1, 1, "")
    assert (strip.width, strip.height, strip.text) == (20_000, 20, "")


def test_damage_only_decoding_shows_fails_the_task(
    real_server: ServerProcess, workers_before: int
) -> None:
    """A GIF cut short passes the header checks; its worker reports INVALID_ARGUMENT in
    Task.error (and survives: see the last test)."""
    from tests.documents import receipts_document

    with real_server.client() as client:
        task = client.submit(corpus.truncated(receipts_document("GIF")))
        final = client.wait(task.task_id, timeout=300)
    assert final.state == ocr_pb2.TASK_STATE_FAILED
    assert final.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "truncated" in final.error.message and "GIF" in final.error.message


def test_message_over_the_size_limit_is_resource_exhausted(
    real_server: ServerProcess, workers_before: int
) -> None:
    """The server runs with --max-message-mb 64; a unary Submit over it (from a client that
    allows itself more; the SDK would stream it) gets gRPC's own RESOURCE_EXHAUSTED, which
    names the limit in bytes."""
    options = [("grpc.max_send_message_length", 128 * MIB)]
    with grpc.insecure_channel(real_server.target, options=options) as channel:
        stub = ocr_pb2_grpc.OcrServiceStub(channel)
        request = ocr_pb2.SubmitRequest(content=b"\x89PNG\r\n\x1a\n" + bytes(64 * MIB))
        metadata = (("authorization", f"Bearer {TOKENS['alice']}"),)
        error = rpc_error(stub.Submit, request, metadata=metadata, timeout=60)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(64 * MIB) in error.details(), error.details()


MALFORMED_IDS = ["", "../../etc/passwd", "x" * 10_240, "A" * 40, "0" * 39, "0" * 41, "g" * 40]


@pytest.mark.parametrize("task_id", MALFORMED_IDS, ids=lambda t: f"{t[:12]!r}x{len(t)}")
def test_malformed_task_ids_are_invalid_argument(
    real_server: ServerProcess, workers_before: int, task_id: str
) -> None:
    with real_server.client() as client:
        calls = [client.status, client.result, client.cancel, lambda t: list(client.watch(t))]
        for call in calls:
            error = rpc_error(call, task_id)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "task_id must be 40 lowercase hex digits" in error.details()
            assert f"got {len(task_id)} characters" in error.details()
            assert len(error.details()) < 200


def test_well_formed_unknown_task_id_stays_not_found(
    real_server: ServerProcess, workers_before: int
) -> None:
    with real_server.client() as client:
        for call in (client.status, client.result, client.cancel):
            assert rpc_error(call, WELL_FORMED_UNKNOWN_ID).code() == grpc.StatusCode.NOT_FOUND


def test_server_is_healthy_after_the_corpus(
    real_server: ServerProcess, workers_before: int
) -> None:
    """Runs last in this module: nothing above killed, hung or leaked a worker."""
    assert health_status(real_server.target) == health_pb2.HealthCheckResponse.SERVING
    assert len(real_server.worker_pids()) == workers_before
    with real_server.client() as client:
        result = client.recognize(receipt_jpeg(RECEIPTS[1]), timeout=300)
    assert cer(receipt_truth(RECEIPTS[1]), result.text) < MAX_RECEIPT_CER


# --- in process: the parsing the corpus relies on ---------------------------------------------


def test_pdf_metadata_cannot_forge_the_page_count(tmp_path: Path) -> None:
    """pdfinfo prints the title first, raw: a title with "\\nPages: 1" must not count."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 4 0 R 5 0 R] /Count 3 >>",
        *[b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"] * 3,
        b"<< /Title (x\\nPages: 1\\nEncrypted: yes\\nPage    1 size: 9 x 9 pts) >>",
    ]
    path = tmp_path / "forged.pdf"
    path.write_bytes(corpus.assemble_pdf(objects, b"/Info 6 0 R "))
    info = inspect_pdf(path, DocumentLimits(max_pages=2000))
    assert info.page_count == 3
    assert info.page_sizes[1] == (612.0, 792.0)
    with pytest.raises(InvalidDocumentError, match="has 3 pages; this server accepts at most 2"):
        inspect_pdf(path, DocumentLimits(max_pages=2))


def test_tiff_page_count_stops_past_the_limit_and_detects_loops() -> None:
    many = corpus.tiff_many_pages(50)
    assert inspect_image(many, "tiff", DocumentLimits(max_pages=50)).page_count == 50
    with pytest.raises(InvalidDocumentError, match="more than 49 pages"):
        inspect_image(many, "tiff", DocumentLimits(max_pages=49))
    # the last directory points back at the first: a loop, not endless pages
    entries_end = len(many) - 1 - 4  # before the pixel byte, the last "next IFD" offset
    looped = many[:entries_end] + (8).to_bytes(4, "little") + many[entries_end + 4 :]
    with pytest.raises(InvalidDocumentError, match="loops back"):
        inspect_image(looped, "tiff", DocumentLimits())


def test_tiff_bomb_on_a_later_page_is_caught_by_the_worker_too(tmp_path: Path) -> None:
    """Submission refuses it (corpus case tiff-bomb-on-page-3); should a document get past,
    the worker checks the size of the frame it is about to decode, not the first frame's."""
    path = tmp_path / "bomb.tiff"
    path.write_bytes(corpus.tiff_patched(3, 3, 256, 200_000_000))
    assert load_page(path, "tiff", 1, 200, DocumentLimits()).shape == (1, 1, 3)
    with pytest.raises(InvalidDocumentError, match="page 3 is 200000000x1"):
        load_page(path, "tiff", 3, 200, DocumentLimits())
