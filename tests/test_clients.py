"""The clients against the real server: ListTasks paging and tenant isolation, the CLI's Ctrl-C
(cancel, --detach), its messages, the asyncio client and the Node.js example (both on real
PaddleOCR), Prometheus metrics scraped over HTTP and JSON logs parsed after real tasks."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from ocr.v1 import ocr_pb2
from ocr_client import AsyncOcrClient, InvalidArgumentError, NotFoundError
from tests.documents import (
    RECEIPTS,
    SROIE,
    blank_png,
    blank_tiff,
    cer,
    receipt_jpeg,
    receipt_truth,
    require_eval,
)
from tests.harness import ROOT, TOKENS, ServerProcess, free_port, run_cli

NODE_EXAMPLE = ROOT / "examples" / "node"


def test_list_tasks_pages_newest_first_and_per_tenant(make_fake_server) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server("--workers", "1", rules="default=echo")
    with server.client() as alice, server.client("bob") as bob:
        mine = [alice.submit(blank_png(), filename=f"a{n}.png").task_id for n in range(7)]
        theirs = bob.submit(blank_png()).task_id
        for task_id in mine:
            alice.wait(task_id, timeout=60)
        latest = alice.submit(blank_png(300, 201)).task_id  # queued, processing or done
        pages, token = [], ""
        while True:
            response = alice.list_tasks(page_size=3, page_token=token)
            assert len(response.tasks) <= 3
            pages.append([t.task_id for t in response.tasks])
            token = response.next_page_token
            if not token:
                break
        listed = [task_id for page in pages for task_id in page]
        assert listed == [latest, *reversed(mine)]  # newest first, each once, none of bob's
        assert len(pages) == 3
        assert [t.task_id for t in bob.iter_tasks()] == [theirs]
        completed = list(
            alice.iter_tasks('state = COMPLETED AND create_time >= "2000-01-01T00:00:00Z"')
        )
        assert {t.task_id for t in completed} >= set(mine)
        assert all(t.state == ocr_pb2.TASK_STATE_COMPLETED for t in completed)
        assert completed[-1].filename == "a0.png" and completed[-1].settings.profile
        with pytest.raises(InvalidArgumentError, match="filter"):
            alice.list_tasks("state = DONE")
        with pytest.raises(InvalidArgumentError, match="other filters"):
            token = alice.list_tasks(page_size=1).next_page_token
            alice.list_tasks("state = FAILED", page_token=token)
    # the listing carries no result, only the tasks
    assert "result" not in ocr_pb2.ListTasksResponse.DESCRIPTOR.fields_by_name


def start_cli(server: ServerProcess, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OCR_TARGET": server.target, "OCR_TOKEN": TOKENS["alice"]}
    return subprocess.Popen(
        [sys.executable, "-m", "ocr_client.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_task_id(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if "submitted" in line:
            return line.split("task ")[1].split()[0]
    raise AssertionError("the CLI never printed the task id")


def test_ctrl_c_cancels_and_detach_leaves_the_task(make_fake_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server("--workers", "1", rules="default=slow:0.5")
    document = blank_tiff(tmp_path / "doc.tiff", 30)
    cli = start_cli(server, "recognize", "-q", str(document))
    task_id = wait_for_task_id(cli)  # printed on stderr even with -q
    time.sleep(1.5)
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 130, err
    assert "Traceback" not in err and f"task {task_id} CANCELLED" in err
    with server.client() as client:
        assert client.status(task_id).state == ocr_pb2.TASK_STATE_CANCELLED
    result = run_cli(server, "result", task_id)
    assert result.returncode == 4 and "was cancelled after" in result.stderr
    assert result.stdout.count("fake page") >= 1  # the pages finished before the cancel

    cli = start_cli(server, "recognize", "--detach", str(document))
    task_id = wait_for_task_id(cli)
    time.sleep(1)
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 130 and out.strip() == task_id and "Traceback" not in err
    with server.client() as client:
        assert client.status(task_id).state in (
            ocr_pb2.TASK_STATE_PENDING,
            ocr_pb2.TASK_STATE_PROCESSING,
        )
        client.cancel(task_id)


def test_cli_messages_list_and_token_hint(make_fake_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = make_fake_server("--workers", "1", rules="default=echo")
    image = tmp_path / "page.png"
    image.write_bytes(blank_png())
    done = run_cli(server, "recognize", "-q", str(image))
    assert done.returncode == 0 and done.stdout.startswith("fake page")
    assert "submitted" in done.stderr and "PENDING" not in done.stderr  # -q: only the id
    listed = run_cli(server, "list", "--state", "completed")
    assert listed.returncode == 0 and "COMPLETED" in listed.stdout and "page.png" in listed.stdout
    as_json = run_cli(server, "list", "--format", "json", "--limit", "1")
    assert json.loads(as_json.stdout)["state"] == "TASK_STATE_COMPLETED"
    refused = run_cli(server, "list", token="wrong")
    assert refused.returncode == 1 and "$OCR_TOKEN was refused" in refused.stderr
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    missing = run_cli(server, "list", token=None, cwd=empty)
    assert "no token was found" in missing.stderr and "data/client-token" in missing.stderr


def test_asyncio_client_on_real_paddleocr(real_server: ServerProcess) -> None:
    require_eval()

    async def scenario() -> None:
        async with AsyncOcrClient(real_server.target, TOKENS["alice"]) as client:
            capabilities = await client.capabilities()
            assert capabilities.max_document_bytes > capabilities.max_message_bytes
            result = await client.recognize(receipt_jpeg(RECEIPTS[2]), timeout=300)
            assert cer(receipt_truth(RECEIPTS[2]), result.text) < 0.2
            # several tasks at once from one event loop
            tasks = await asyncio.gather(*(client.submit(receipt_jpeg()) for _ in range(2)))
            states = [t.state async for t in client.watch(tasks[0].task_id, timeout=300)]
            assert states[-1] == ocr_pb2.TASK_STATE_COMPLETED
            listed = [t.task_id async for t in client.iter_tasks(page_size=2)]
            assert {t.task_id for t in tasks} <= set(listed)
            await client.cancel(tasks[1].task_id)
            with pytest.raises(NotFoundError):
                await client.status("f" * 40)
            with pytest.raises(InvalidArgumentError):
                await client.submit(b"not a document")
            cancelled = await client.submit(receipt_jpeg(), pages="1")
            await client.cancel(cancelled.task_id)
            final = await client.wait(cancelled.task_id, timeout=60)
            assert final.state == ocr_pb2.TASK_STATE_CANCELLED
        async with AsyncOcrClient(real_server.target, "wrong") as client:
            with pytest.raises(grpc.RpcError):  # UnauthenticatedError is a grpc.RpcError too
                await client.capabilities()

    asyncio.run(scenario())


@pytest.mark.skipif(
    shutil.which("node") is None, reason="node is not installed (scripts/setup --dev)"
)
def test_node_client_on_real_paddleocr(real_server: ServerProcess) -> None:
    require_eval()
    if not (NODE_EXAMPLE / "node_modules" / "@grpc" / "proto-loader").is_dir():
        pytest.skip("examples/node's packages are not installed (scripts/setup --dev)")
    env = {**os.environ, "OCR_TARGET": real_server.target, "OCR_TOKEN": TOKENS["bob"]}
    image = SROIE / "img" / f"{RECEIPTS[1]}.jpg"
    done = subprocess.run(
        ["node", str(NODE_EXAMPLE), str(image)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "COMPLETED" in done.stderr
    assert cer(receipt_truth(RECEIPTS[1]), done.stdout) < 0.2
    env["OCR_TOKEN"] = "wrong"
    refused = subprocess.run(
        ["node", str(NODE_EXAMPLE), str(image)], capture_output=True, text=True, env=env, timeout=60
    )
    assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_and_json_logs_after_real_tasks(make_fake_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    server = make_fake_server(
        "--workers",
        "1",
        "--metrics-listen",
        f"127.0.0.1:{port}",
        "--log-format",
        "json",
        "--max-pending-per-tenant",
        "2",
        rules="default=slow:0.1,301=error",
    )
    with server.client() as client:
        done = client.submit(blank_tiff(tmp_path / "doc.tiff", 3))
        failing = client.submit(blank_png(301, 200))
        client.wait(done.task_id, timeout=60)
        client.wait(failing.task_id, timeout=60)
        with pytest.raises(InvalidArgumentError):
            client.submit(b"junk")
        slow = [client.submit(blank_tiff(tmp_path / "slow.tiff", 30)) for _ in range(2)]
        with pytest.raises(grpc.RpcError):  # the tenant limit
            client.submit(blank_png())
        samples = scrape(port)
        for task in slow:
            client.cancel(task.task_id)
    assert samples['ocr_tasks_submitted_total{tenant="alice"}'] == 4
    assert samples['ocr_tasks_finished_total{state="completed",tenant="alice"}'] == 1
    assert samples['ocr_tasks_finished_total{state="failed",tenant="alice"}'] == 1
    assert samples["ocr_pages_recognized_total"] >= 3
    assert samples["ocr_page_duration_seconds_count"] >= 3
    assert samples['ocr_submits_refused_total{reason="invalid_document"}'] == 1
    assert samples['ocr_submits_refused_total{reason="tenant_limit"}'] == 1
    submits = {
        key: value
        for key, value in samples.items()
        if key.startswith("ocr_submit_duration_seconds_count{") and 'method="Submit"' in key
    }
    assert sum(submits.values()) == 6
    assert submits['ocr_submit_duration_seconds_count{document_type="tiff",method="Submit"}'] == 3
    assert submits['ocr_submit_duration_seconds_count{document_type="png",method="Submit"}'] == 1
    assert submits['ocr_submit_duration_seconds_count{document_type="none",method="Submit"}'] == 2
    assert sum(v for k, v in samples.items() if k.startswith("ocr_tasks{")) == 2
    assert "ocr_queue_depth" in samples and samples["ocr_store_bytes"] > 0
    assert samples['ocr_worker_restarts_total{reason="died"}'] == 0
    assert not any("task_id" in name for name in samples)  # bounded labels only
    server.stop()
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    events = [r for r in records if r.get("logger") == "ocr_server.events"]
    kinds = [(r["event"], r.get("task_id")) for r in events]
    assert ("queued", done.task_id) in kinds and ("completed", done.task_id) in kinds
    assert ("failed", failing.task_id) in kinds and ("cancelled", slow[0].task_id) in kinds
    completed = next(r for r in events if r["event"] == "completed")
    assert completed["pages"] == 3 and completed["duration_seconds"] > 0
    assert completed["tenant"] == "alice"
    refused = [r["reason"] for r in events if r["event"] == "refused"]
    assert sorted(refused) == ["invalid_document", "tenant_limit"]
    log_text = server.log_path.read_text()
    assert TOKENS["alice"] not in log_text and "fake page" not in log_text
