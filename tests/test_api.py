"""The API contract on the real server (real PaddleOCR): status, idempotency, tenants,
tokens, limits, health, reflection and the CLI. Bad input: tests/test_hostile_input.py."""

from __future__ import annotations

import os
import re
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ocr.v1 import ocr_pb2, ocr_pb2_grpc
from ocr_client import OcrClient
from tests.documents import RECEIPTS, cer, receipt_jpeg, receipt_truth, receipts_document
from tests.harness import TOKENS, ServerProcess, health_status, run_cli

MIB = 1024 * 1024


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value  # type: ignore[return-value]


def test_status_has_progress_but_never_the_result(real_server: ServerProcess) -> None:
    with real_server.client() as client:
        task = client.submit(receipts_document("PDF"))
        early = client.result(task.task_id)
        if early.task.state != ocr_pb2.TASK_STATE_COMPLETED:
            assert not early.HasField("result")  # not an error before completion
        final = client.wait(task.task_id, timeout=300)
        assert final.state == ocr_pb2.TASK_STATE_COMPLETED
        status = client.status(task.task_id)
    assert status.pages_done == status.pages_total == 3
    assert status.create_time.seconds and status.start_time.seconds and status.end_time.seconds
    assert status.expire_time.seconds - status.create_time.seconds == 24 * 3600
    assert status.settings.language == "en" and status.settings.profile == "fast"
    assert status.settings.dpi == 200
    # the status response type has no result field at all: nothing to leak, nothing to send
    assert "result" not in ocr_pb2.GetTaskStatusResponse.DESCRIPTOR.fields_by_name
    assert len(status.SerializeToString()) < 1000


def test_task_ids_are_long_and_random(real_server: ServerProcess) -> None:
    with real_server.client() as client:
        ids = {client.submit(receipt_jpeg(), pages="").task_id for _ in range(3)}
    assert len(ids) == 3
    assert all(re.fullmatch(r"[0-9a-f]{40}", i) for i in ids)  # 160 random bits


def test_idempotent_submit(real_server: ServerProcess) -> None:
    with real_server.client() as alice, real_server.client("bob") as bob:
        first = alice.submit(receipt_jpeg(), request_id="invoice-42")
        again = alice.submit(receipt_jpeg(), request_id="invoice-42")
        other_tenant = bob.submit(receipt_jpeg(), request_id="invoice-42")
        fresh = alice.submit(receipt_jpeg(), request_id="invoice-43")
    assert again.task_id == first.task_id
    assert other_tenant.task_id != first.task_id  # keys are per tenant
    assert fresh.task_id != first.task_id


def test_wrong_or_missing_token_is_unauthenticated(real_server: ServerProcess) -> None:
    for token in ("not-a-token", None):
        with OcrClient(real_server.target, token) as client:
            for call, arg in (
                (client.submit, b"x"),
                (client.status, "a" * 32),
                (client.result, "a" * 32),
                (client.cancel, "a" * 32),
            ):
                error = rpc_error(call, arg)
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "Bearer" in error.details()
            error = rpc_error(lambda: list(client.watch("a" * 32)))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # health needs no token
    assert health_status(real_server.target) == health_pb2.HealthCheckResponse.SERVING


def test_other_tenant_sees_not_found(real_server: ServerProcess) -> None:
    with real_server.client() as alice, real_server.client("bob") as bob:
        task = alice.submit(receipt_jpeg())
        unknown = "0" * 40  # well-formed: malformed ids are INVALID_ARGUMENT
        for task_id in (task.task_id, unknown):
            for call in (bob.status, bob.result, bob.cancel):
                error = rpc_error(call, task_id)
                assert error.code() == grpc.StatusCode.NOT_FOUND
                assert "not found or expired" in error.details()
            error = rpc_error(lambda t=task_id: list(bob.watch(t)))
            assert error.code() == grpc.StatusCode.NOT_FOUND
        # bob's attempts changed nothing for alice
        assert alice.wait(task.task_id, timeout=300).state == ocr_pb2.TASK_STATE_COMPLETED


def test_messages_over_4_mib_are_accepted(real_server: ServerProcess) -> None:
    """grpcio refuses > 4 MiB by default; server and client raise the limit to match."""
    from PIL import Image

    noise = Image.frombytes("L", (3000, 3000), os.urandom(9_000_000))
    import io

    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 6 * MIB
    with real_server.client() as client:
        task = client.submit(buffer.getvalue())
        assert task.state == ocr_pb2.TASK_STATE_PENDING
        client.cancel(task.task_id)


def test_capabilities_and_reflection(real_server: ServerProcess) -> None:
    with real_server.client() as client:
        capabilities = client.capabilities()
    assert capabilities.default_profile == "fast"
    assert {p.name for p in capabilities.profiles if p.available} >= {"fast", "accurate"}
    assert capabilities.max_message_bytes == 64 * MIB
    with grpc.insecure_channel(real_server.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        metadata = (("authorization", f"Bearer {TOKENS['alice']}"),)
        response = next(iter(stub.ServerReflectionInfo(iter([request]), metadata=metadata)))
    names = {s.name for s in response.list_services_response.service}
    assert "ocr.v1.OcrService" in names and "grpc.health.v1.Health" in names


def test_raw_stub_without_the_sdk(real_server: ServerProcess) -> None:
    """What a client generated in any language does: plain stub plus bearer metadata."""
    with grpc.insecure_channel(real_server.target) as channel:
        stub = ocr_pb2_grpc.OcrServiceStub(channel)
        metadata = (("authorization", f"Bearer {TOKENS['bob']}"),)
        response = stub.Submit(ocr_pb2.SubmitRequest(content=receipt_jpeg()), metadata=metadata)
        assert response.task.state == ocr_pb2.TASK_STATE_PENDING


def test_cli_recognize_and_errors(real_server: ServerProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.documents import SROIE, require_eval

    require_eval()
    image = SROIE / "img" / f"{RECEIPTS[1]}.jpg"
    done = run_cli(real_server, "recognize", str(image))
    assert done.returncode == 0, done.stderr
    assert "COMPLETED" in done.stderr  # progress from the watch stream
    assert cer(receipt_truth(RECEIPTS[1]), done.stdout) < 0.2
    out = tmp_path / "out.json"
    done = run_cli(real_server, "recognize", "-q", "--format", "json", "-o", str(out), str(image))
    assert done.returncode == 0 and '"lines"' in out.read_text()
    submitted = run_cli(real_server, "submit", str(image))
    task_id = submitted.stdout.strip()
    assert run_cli(real_server, "watch", task_id).stdout.strip().endswith("COMPLETED")
    assert run_cli(real_server, "status", task_id).stdout.strip() == "COMPLETED"
    assert run_cli(real_server, "result", task_id).stdout.strip()
    denied = run_cli(real_server, "status", task_id, token="wrong")
    assert denied.returncode != 0
    assert denied.stderr.startswith("ocr: UNAUTHENTICATED:")
    missing = run_cli(real_server, "status", "b" * 40)
    assert missing.returncode != 0 and "NOT_FOUND" in missing.stderr


def test_third_party_tool_through_reflection(real_server: ServerProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """buf curl (installed by scripts/setup --dev) calls the service without our protos."""
    from tests.harness import ROOT

    buf = ROOT / "build" / "tools" / "node_modules" / ".bin" / "buf"
    if not buf.exists():
        pytest.skip("buf is not installed (scripts/setup --dev installs it)")
    header = f"authorization: Bearer {TOKENS['alice']}"
    done = subprocess.run(
        [
            str(buf),
            "curl",
            "--protocol",
            "grpc",
            "--http2-prior-knowledge",
            "-H",
            header,
            "--reflect-header",
            header,
            "-d",
            "{}",
            f"http://{real_server.target}/ocr.v1.OcrService/GetCapabilities",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert '"defaultProfile": "fast"' in done.stdout
