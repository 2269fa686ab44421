"""Pure parts of the API, without a server: the ListTasks filter and paging, GetResult parts,
the text of joined pages, the SDK's error classes, result merging and export checks, the event
log format."""

from __future__ import annotations

import hashlib
import json
import logging
import sys

import grpc
import pytest

from ocr.v1 import ocr_pb2
from ocr_client import calls, cli
from ocr_client.errors import (
    AlreadyExistsError,
    ExportError,
    FailedPreconditionError,
    NotFoundError,
    OcrError,
    RpcFailedError,
    TaskCancelledError,
    from_rpc_error,
    task_failed,
)
from ocr_server import listing
from ocr_server.convert import join_pages
from ocr_server.errors import InvalidSettingsError, ResultTooLargeError
from ocr_server.models import Settings, TaskRecord, TaskState
from ocr_server.result_pages import RESPONSE_BUDGET, result_part
from ocr_server.telemetry.logs import JsonFormatter, TaskEventLog


def record(n: int, state: TaskState = TaskState.COMPLETED, created: float = 0) -> TaskRecord:
    return TaskRecord(
        task_id=f"{n:040x}",
        tenant="alice",
        state=state,
        settings=Settings("en", "fast", "", 200),
        document_type="png",
        page_numbers=[1],
        created=created or 1_700_000_000.0 + n,
        expires=1_800_000_000.0,
    )


def test_filter_states_times_and_errors() -> None:
    query = listing.parse_filter(
        '(state = COMPLETED OR state = TASK_STATE_FAILED) AND create_time >= "2023-11-14T22:13:25Z"'
    )
    assert query.states == {TaskState.COMPLETED, TaskState.FAILED}
    assert query.matches(record(5)) and not query.matches(record(4))  # >= is inclusive
    assert not query.matches(record(9, TaskState.PENDING))
    before = listing.parse_filter('create_time < "2023-11-14T22:13:25Z"')
    assert before.matches(record(4)) and not before.matches(record(5))
    assert listing.parse_filter("").matches(record(1, TaskState.PENDING))
    nothing = listing.parse_filter("state = pending AND state = failed")
    assert not nothing.matches(record(1, TaskState.PENDING))
    for bad in (
        "state = DONE",
        "state > PENDING",
        "priority = 1",
        'create_time = "2023-11-14T22:13:25Z"',
        'create_time > "yesterday"',
        'create_time > "2023-11-14T22:13:25"',  # no time zone
        "state = PENDING AND",
        "state = PENDING OR state = FAILED",  # OR only inside parentheses
        "(state = PENDING",
    ):
        with pytest.raises(InvalidSettingsError, match="filter"):
            listing.parse_filter(bad)


def big_result(pages: int, lines: int) -> bytes:
    result = ocr_pb2.OcrResult()
    for number in range(1, pages + 1):
        page = result.pages.add(page_number=number, width=100, height=100)
        for n in range(lines):
            page.lines.add(text=f"line {n:05d} " + "x" * 100, confidence=1.0)
        page.text = "\n".join(line.text for line in page.lines)
    result.text = join_pages(page.text for page in result.pages)
    return result.SerializeToString()


def test_result_parts_stay_under_4_mib_and_join_to_the_whole() -> None:
    serialized = big_result(pages=12, lines=3000)
    assert len(serialized) > 8 * 1024 * 1024
    task_id = "a" * 40
    with pytest.raises(ResultTooLargeError, match="page_size"):
        result_part(task_id, serialized, 0, "")
    whole = ocr_pb2.OcrResult.FromString(serialized)
    pages: list[ocr_pb2.Page] = []
    merger = calls.ResultMerger()
    token = ""
    while True:
        part = result_part(task_id, serialized, 1000, token)
        response = ocr_pb2.GetResultResponse(
            result=part.result, next_page_token=part.next_page_token
        )
        assert response.ByteSize() < 4 * 1024 * 1024
        merger.add(response)
        pages += part.result.pages
        token = part.next_page_token
        if not token:
            break
    assert [p.page_number for p in pages] == list(range(1, 13))
    assert merger.merged().result.text == whole.text
    with pytest.raises(InvalidSettingsError, match="another task"):
        result_part(
            "b" * 40, serialized, 1, result_part(task_id, serialized, 1, "").next_page_token
        )
    small = big_result(pages=2, lines=3)
    assert result_part(task_id, small, 0, "").result == ocr_pb2.OcrResult.FromString(small)
    assert RESPONSE_BUDGET < 4 * 1024 * 1024


def test_pages_keep_a_newline_before_the_form_feed() -> None:
    assert join_pages(["a\nb", "c", "", "d"]) == "a\nb\n\fc\n\f\n\fd"
    assert join_pages(["only"]) == "only"


def test_sdk_error_classes_keep_code_and_details() -> None:
    class FakeRpcError(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

        def details(self) -> str:
            return "why"

    error = from_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND))
    assert isinstance(error, NotFoundError) and isinstance(error, OcrError)
    assert isinstance(error, grpc.RpcError)  # code written against the stub keeps working
    assert error.code() == grpc.StatusCode.NOT_FOUND and error.details() == "why"
    assert isinstance(
        from_rpc_error(FakeRpcError(grpc.StatusCode.ALREADY_EXISTS)), AlreadyExistsError
    )
    other = from_rpc_error(FakeRpcError(grpc.StatusCode.ABORTED))
    assert type(other) is RpcFailedError and other.code() == grpc.StatusCode.ABORTED
    cancelled = task_failed(ocr_pb2.Task(task_id="x", state=ocr_pb2.TASK_STATE_CANCELLED))
    assert isinstance(cancelled, TaskCancelledError)
    not_yet = from_rpc_error(FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION))  # an export
    assert isinstance(not_yet, FailedPreconditionError)


def _received(*responses: ocr_pb2.ExportResultResponse) -> tuple[bytes, ocr_pb2.ExportedFile]:
    receiver = calls.ExportReceiver()
    data = b"".join(receiver.add(r) for r in responses)
    return data, receiver.finish()


def test_sdk_export_checks_size_and_digest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    body = b"%PDF-1.7 " * 1000
    header = ocr_pb2.ExportedFile(
        size_bytes=len(body), sha256=hashlib.sha256(body).hexdigest(), filename="a.pdf"
    )
    chunks = [ocr_pb2.ExportResultResponse(chunk=body[i : i + 4096]) for i in range(0, 9000, 4096)]
    data, got = _received(ocr_pb2.ExportResultResponse(file=header), *chunks)
    assert data == body and got == header
    with pytest.raises(ExportError, match="arrived damaged"):  # a chunk lost on the way
        _received(ocr_pb2.ExportResultResponse(file=header), *chunks[:-1])
    with pytest.raises(ExportError, match="before the file's header"):
        _received(*chunks)
    with pytest.raises(ExportError, match="without a file"):
        _received()
    assert issubclass(ExportError, OcrError)
    target = tmp_path / "out.pdf"
    with pytest.raises(ExportError), calls.whole_or_nothing(target) as file:
        file.write(b"half")
        raise ExportError("damaged")
    assert list(tmp_path.iterdir()) == []  # nothing under the real name, no .part left
    with calls.whole_or_nothing(target) as file:
        file.write(body)
    assert [p.name for p in tmp_path.iterdir()] == ["out.pdf"] and target.read_bytes() == body
    assert calls.export_request("t", "hocr").format == ocr_pb2.RESULT_FORMAT_HOCR
    with pytest.raises(ValueError, match="one of: text, json, hocr, alto, pdf"):
        calls.export_request("t", "docx")


def test_sdk_streams_documents_above_the_unary_limit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert calls.unary_limit(64 * 1024 * 1024) == calls.STREAM_THRESHOLD
    assert calls.unary_limit(1024 * 1024) < 1024 * 1024  # a server with a smaller limit
    path = tmp_path / "doc.bin"
    path.write_bytes(b"%PDF-" + bytes(2_500_000))
    document = calls.Document.of(path)
    messages = list(calls.stream_requests(document, calls.settings("", "", "", 0), "rid"))
    assert messages[0].WhichOneof("part") == "header"
    assert messages[0].header.size_bytes == path.stat().st_size
    assert messages[0].header.filename == "doc.bin"
    chunks = [m.chunk for m in messages[1:]]
    assert max(len(c) for c in chunks) == calls.CHUNK_BYTES
    assert b"".join(chunks) == path.read_bytes()


def test_event_log_json_has_ids_and_no_text(caplog: pytest.LogCaptureFixture) -> None:
    task = record(7, TaskState.FAILED)
    task.ended, task.error_code, task.error_message = task.created + 2.5, 3, "page 1: bad"
    caplog.set_level(logging.INFO, logger="ocr_server.events")
    events = TaskEventLog()
    events.task_queued(task, 1234)
    events.task_finished(task)
    events.submit_refused("alice", "queue_full", "the queue is full")
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    assert [line["event"] for line in lines] == ["queued", "failed", "refused"]
    assert lines[0]["task_id"] == task.task_id and lines[0]["tenant"] == "alice"
    assert lines[0]["size_bytes"] == 1234
    assert lines[1]["duration_seconds"] == 2.5 and lines[1]["level"] == "WARNING"
    assert lines[2]["reason"] == "queue_full"


def test_cli_refuses_a_binary_format_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    # Refused before any call: nothing listens on the target.
    code = cli.main(["--target", "127.0.0.1:9", "result", "f" * 40, "--format", "pdf"])
    assert code == cli.EXIT_USAGE
    assert "--format pdf is binary: write it to a file with -o FILE" in capsys.readouterr().err
