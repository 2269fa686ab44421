"""Security on the real server: TLS and client certificates, per-tenant limits, NOT_FOUND for
other tenants' tasks (same code, message and timing as an id that never existed), tokens never
written anywhere, unguessable task ids. Fault-injection engine where recognition is not the
point; one real recognition over mutual TLS."""

from __future__ import annotations

import hashlib
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from ocr.v1 import ocr_pb2, ocr_pb2_grpc
from ocr_client import OcrClient, tls_credentials
from ocr_server.api import auth
from ocr_server.api.auth import TokenRegistry, hash_token
from ocr_server.api.tls import TlsConfigError, server_credentials
from ocr_server.backends.local.store import TaskStore
from ocr_server.config import default_tenant_limit, parse_args
from ocr_server.models import Settings, TaskRecord, TaskState
from ocr_server.tasks.scheduler import Scheduler
from tests.documents import RECEIPTS, cer, encode, receipt_jpeg, receipt_truth
from tests.harness import ROOT, TOKENS, ServerProcess, health_status
from tests.tls_certs import TestCA

COMPLETED = ocr_pb2.TASK_STATE_COMPLETED
SERVING = health_pb2.HealthCheckResponse.SERVING


def blank(width: int = 400) -> bytes:
    from PIL import Image

    return encode([Image.new("L", (width, 200), 255)], "PNG")


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A CA with a server and a client certificate, and an unrelated CA with a client one."""
    directory = tmp_path_factory.mktemp("pki")
    ca, other = TestCA(directory, "trusted"), TestCA(directory, "other")
    return {
        "ca": ca,
        "server": ca.issue_server(),
        "client": ca.issue_client(),
        "other_ca": other,
        "other_client": other.issue_client("intruder"),
        "other_server": other.issue_server("other-server"),
    }


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory for fake-engine servers (stopped afterwards); extra kwargs are OCR_* env."""
    started: list[ServerProcess] = []

    def make(
        *args: str,
        rules: str = "default=echo",
        credentials: grpc.ChannelCredentials | None = None,
        **env: str,
    ) -> ServerProcess:
        server = ServerProcess(
            tmp_path / f"data{len(started)}",
            "--engine",
            "fake",
            "--fake-rules",
            rules,
            *args,
            env={"OCR_WORKERS": "1", **env},
            credentials=credentials,
        )
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


def refusals(server: ServerProcess, *client_options: dict[str, object]) -> list[str]:
    """The status of GetCapabilities for clients made with each set of options, in parallel
    (a refused connection takes ~3 s: the client retries UNAVAILABLE with back-off)."""

    def attempt(options: dict[str, object]) -> str:
        with OcrClient(server.target, TOKENS["alice"], timeout=10, **options) as client:  # type: ignore[arg-type]
            return str(rpc_error(client.capabilities).code().name)  # type: ignore[attr-defined]

    with ThreadPoolExecutor(len(client_options)) as pool:
        return list(pool.map(attempt, client_options))


def _tls_args(pki: dict[str, object], client_ca: bool = False) -> list[str]:
    server = pki["server"]
    args = ["--tls-cert", str(server.cert), "--tls-key", str(server.key)]  # type: ignore[attr-defined]
    if client_ca:
        args += ["--tls-client-ca", str(pki["ca"].cert)]  # type: ignore[attr-defined]
    return args


# --- TLS ------------------------------------------------------------------------------------


def test_tls_with_a_ca_bundle_end_to_end(pki, servers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca_file = pki["ca"].cert
    server = servers(*_tls_args(pki), credentials=tls_credentials(ca_file))
    assert "(TLS)" in server.log()
    # health over TLS needs no token
    assert health_status(server.target, credentials=tls_credentials(ca_file)) == SERVING
    with OcrClient(server.target, TOKENS["alice"], ca_file=ca_file) as client:
        result = client.recognize(blank(321), timeout=60)
        assert result.text == "fake page 321x200"
    with OcrClient(f"localhost:{server.port}", TOKENS["alice"], ca_file=ca_file) as client:
        assert client.capabilities().default_profile  # the certificate's DNS name works too
    with OcrClient(
        server.target, TOKENS["alice"], ca_file=ca_file, tls_server_name="localhost"
    ) as client:
        assert client.capabilities().default_profile  # a name in the certificate, by IP
    # a plaintext client, and clients that do not trust the server's CA, get nowhere
    assert (
        refusals(
            server,
            {},
            {"ca_file": pki["other_ca"].cert},
            {"tls": True},  # the system's CAs only
            {"ca_file": ca_file, "tls_server_name": "elsewhere.test"},  # not in the certificate
        )
        == ["UNAVAILABLE"] * 4
    )
    # the token is still required over TLS
    with OcrClient(server.target, "wrong-token", ca_file=ca_file) as client:
        assert rpc_error(client.capabilities).code() == grpc.StatusCode.UNAUTHENTICATED
    # the CLI: --ca-file, or OCR_CA_FILE
    env = {**os.environ, "OCR_TARGET": server.target, "OCR_TOKEN": TOKENS["alice"]}
    env.pop("OCR_CA_FILE", None)
    image = tmp_path / "page.png"
    image.write_bytes(blank(333))
    cli = [sys.executable, "-m", "ocr_client.cli"]
    done = subprocess.run(
        [*cli, "--ca-file", str(ca_file), "recognize", "-q", str(image)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fake page 333x200"
    done = subprocess.run(
        [*cli, "capabilities"],
        env={**env, "OCR_CA_FILE": str(ca_file)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '"max_pending_per_tenant"' in done.stdout


def test_real_recognition_over_mutual_tls(pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The real engine behind TLS with client certificates (one worker: ~5 s)."""
    document, truth = receipt_jpeg(), receipt_truth(RECEIPTS[0])
    ca_file, client = pki["ca"].cert, pki["client"]
    with_cert = {"ca_file": ca_file, "client_cert": client.cert, "client_key": client.key}
    server = ServerProcess(
        tmp_path / "data",
        *_tls_args(pki, client_ca=True),
        env={"OCR_WORKERS": "1"},
        credentials=tls_credentials(**with_cert),
    ).start()
    try:
        with OcrClient(server.target, TOKENS["alice"], **with_cert) as ocr:
            result = ocr.recognize(document, timeout=120)
    finally:
        server.stop()
    assert cer(truth, result.text) < 0.2, result.text


def test_client_certificates_required_with_tls_client_ca(pki, servers) -> None:  # type: ignore[no-untyped-def]
    ca_file, client = pki["ca"].cert, pki["client"]
    with_cert = {"ca_file": ca_file, "client_cert": client.cert, "client_key": client.key}
    server = servers(*_tls_args(pki, client_ca=True), credentials=tls_credentials(**with_cert))
    assert "client certificates required" in server.log()
    with OcrClient(server.target, TOKENS["alice"], **with_cert) as accepted:
        task = accepted.submit(blank(444))
        assert accepted.wait(task.task_id, timeout=60).state == COMPLETED
    intruder = pki["other_client"]
    assert (
        refusals(
            server,
            {"ca_file": ca_file},  # no certificate
            # a certificate signed by a CA the server does not trust
            {"ca_file": ca_file, "client_cert": intruder.cert, "client_key": intruder.key},
            {},  # plaintext
        )
        == ["UNAVAILABLE"] * 3
    )
    # health: no token, but the TLS layer still wants the certificate
    assert health_status(server.target, credentials=tls_credentials(ca_file)) is None
    assert health_status(server.target, credentials=tls_credentials(**with_cert)) == SERVING


def _start_failure(tmp_path: Path, *args: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ocr_server",
            "--engine",
            "fake",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path / "data"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "OCR_TOKENS": "a=b"},
    )
    assert done.returncode != 0
    return done.stderr


def test_bad_tls_files_fail_fast_with_a_clear_message(pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, other = pki["server"], pki["other_server"]
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    cases = [
        (["--tls-cert", str(server.cert)], "--tls-cert and --tls-key go together"),
        (["--tls-client-ca", str(pki["ca"].cert)], "--tls-client-ca needs --tls-cert"),
        (["--tls-cert", str(server.cert), "--tls-key", str(tmp_path / "nope.key")], "cannot read"),
        (["--tls-cert", str(not_pem), "--tls-key", str(server.key)], "not a PEM file"),
        (
            ["--tls-cert", str(server.cert), "--tls-key", str(other.key)],
            "is not the private key of --tls-cert",
        ),
        (
            [*_tls_args(pki), "--tls-client-ca", str(server.key)],
            "--tls-client-ca",
        ),
    ]
    for args, fragment in cases:
        started = time.monotonic()
        stderr = _start_failure(tmp_path, *args)
        assert fragment in stderr, (args, stderr)
        assert time.monotonic() - started < 30  # before any worker loads an engine
    assert not (tmp_path / "data").exists()  # refused before touching the data dir


def test_tls_file_checks_unit(pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server, other = pki["server"], pki["other_server"]
    assert server_credentials(server.cert, server.key, pki["ca"].cert) is not None
    with pytest.raises(TlsConfigError, match="not the private key"):
        server_credentials(server.cert, other.key, None)
    empty_bundle = tmp_path / "empty.pem"
    empty_bundle.write_text("-----BEGIN NOTHING-----\n-----END NOTHING-----\n")
    with pytest.raises(TlsConfigError, match="--tls-client-ca"):
        server_credentials(server.cert, server.key, empty_bundle)
    with pytest.raises(ValueError, match="needs its key"):
        tls_credentials(pki["ca"].cert, client_cert=pki["client"].cert)


# --- per-tenant limit -----------------------------------------------------------------------


def test_per_tenant_limit_refuses_one_tenant_and_serves_the_others(servers) -> None:  # type: ignore[no-untyped-def]
    # alice's pages (width 400) take 3 s on the 2 workers: the first 8 calls fall well within
    server = servers(
        "--max-pending-per-tenant",
        "3",
        "--shutdown-grace",
        "1s",
        rules="default=echo,400=slow:3",
        OCR_WORKERS="2",
    )
    with server.client() as alice, server.client("bob") as bob:
        assert alice.capabilities().max_pending_per_tenant == 3
        first = [alice.submit(blank(), request_id=f"doc-{n}") for n in range(3)]
        error = rpc_error(lambda: alice.submit(blank(), request_id="doc-3"))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "per-tenant limit" in error.details() and "3 tasks" in error.details()
        # a retry of a task already queued is not a new task: answered, not refused
        assert alice.submit(blank(), request_id="doc-1").task_id == first[1].task_id
        # other tenants are still served while alice is at her limit
        bob_task = bob.submit(blank(555))
        # a cancelled task frees its place at once
        alice.cancel(first[2].task_id)
        extra = alice.submit(blank(), request_id="doc-3")
        assert rpc_error(lambda: alice.submit(blank())).code() == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert [alice.status(t.task_id).state for t in first[:2]] == [
            ocr_pb2.TASK_STATE_PROCESSING
        ] * 2  # still within the first pages: the refusals above were at the limit
        assert bob.wait(bob_task.task_id, timeout=60).state == COMPLETED
        # once her tasks have finished, alice can submit again
        for task in (first[0], first[1], extra):
            assert alice.wait(task.task_id, timeout=60).state == COMPLETED
        again = [alice.submit(blank(), request_id=f"again-{n}") for n in range(3)]
        assert len({t.task_id for t in again}) == 3


def test_per_tenant_limit_default_and_scheduler_counts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in list(os.environ):
        if name.startswith("OCR_"):
            monkeypatch.delenv(name)
    config = parse_args(["--max-queue", "1000", "--workers", "2"])
    assert config.max_pending_per_tenant == default_tenant_limit(1000, 2) == 504
    assert parse_args(["--max-pending-per-tenant", "7"]).max_pending_per_tenant == 7
    scheduler = Scheduler(max_active=1)
    scheduler.enqueue("a1", [1, 2], owner="alice")
    scheduler.enqueue("a2", [1], owner="alice")
    scheduler.enqueue("b1", [1], owner="bob")
    assert scheduler.unfinished_count("alice") == 2
    assert scheduler.next_page() == ("a1", 1)
    assert scheduler.next_page() == ("a1", 2)
    assert scheduler.unfinished_count("alice") == 2  # started still counts
    assert not scheduler.page_finished("a1", 1)
    assert scheduler.page_finished("a1", 2)
    assert scheduler.unfinished_count("alice") == 1
    scheduler.requeue_page("a2", 1)
    scheduler.enqueue("a2", [1], owner="alice")  # queued again (recovery): counted once
    assert scheduler.unfinished_count("alice") == 1
    scheduler.remove("a2")
    scheduler.remove("a2")
    assert scheduler.unfinished_count("alice") == 0
    assert scheduler.unfinished_count("bob") == 1


# --- other tenants' tasks -------------------------------------------------------------------

RPCS: dict[str, Callable[[OcrClient, str], object]] = {
    "GetTaskStatus": lambda client, task_id: client.status(task_id),
    "GetResult": lambda client, task_id: client.result(task_id),
    "Cancel": lambda client, task_id: client.cancel(task_id),
    "WatchTask": lambda client, task_id: list(client.watch(task_id, timeout=10)),
}
TIMING_ROUNDS = 200


def _timed_not_found(client: OcrClient, rpc: str, task_id: str) -> tuple[float, str, str]:
    started = time.perf_counter()
    try:
        RPCS[rpc](client, task_id)
    except grpc.RpcError as error:
        elapsed = time.perf_counter() - started
        code = error.code().name  # type: ignore[attr-defined]
        message = error.details().replace(task_id, "<id>")  # type: ignore[attr-defined]
        return elapsed, code, message
    raise AssertionError(f"{rpc} for {task_id} succeeded")


def test_other_tenants_task_is_indistinguishable_from_none(servers) -> None:  # type: ignore[no-untyped-def]
    """Same code, same message, same time: bob cannot tell alice's task id from a random one."""
    server = servers("--shutdown-grace", "1s", rules="default=slow:30")
    with server.client() as alice, server.client("bob") as bob:
        processing = alice.submit(blank()).task_id  # both exist, in different states
        waiting = alice.submit(blank()).task_id
        timings: dict[tuple[str, str], list[float]] = {}
        for rpc in RPCS:
            for _ in range(20):  # warm-up (connections, caches), not measured
                _timed_not_found(bob, rpc, processing)
                _timed_not_found(bob, rpc, secrets.token_hex(20))
        for round_number in range(TIMING_ROUNDS):
            for rpc in RPCS:
                foreign = processing if round_number % 2 else waiting
                kinds = [("foreign", foreign), ("unknown", secrets.token_hex(20))]
                if round_number % 4 >= 2:
                    kinds.reverse()  # neither kind always goes first
                answers = set()
                for kind, task_id in kinds:
                    elapsed, code, message = _timed_not_found(bob, rpc, task_id)
                    timings.setdefault((rpc, kind), []).append(elapsed)
                    answers.add((code, message))
                assert answers == {("NOT_FOUND", "task '<id>' not found or expired")}, answers
        report = []
        for rpc in RPCS:
            foreign_ms = statistics.median(timings[rpc, "foreign"]) * 1000
            unknown_ms = statistics.median(timings[rpc, "unknown"]) * 1000
            report.append(f"{rpc}: foreign {foreign_ms:.3f} ms, unknown {unknown_ms:.3f} ms")
            bound = max(0.5, 0.2 * min(foreign_ms, unknown_ms))
            assert abs(foreign_ms - unknown_ms) <= bound, report
        print("\nNOT_FOUND medians over", TIMING_ROUNDS, "calls each:\n" + "\n".join(report))
        # bob's attempts changed nothing for alice
        assert alice.status(processing).state == ocr_pb2.TASK_STATE_PROCESSING
        assert alice.status(waiting).state == ocr_pb2.TASK_STATE_PENDING


def test_store_lookup_does_the_same_work_for_unknown_ids(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """What keeps the timing equal, checked without a clock: an unknown id parses a record
    (the stand-in) just as another tenant's id does before it is refused."""
    store = TaskStore(tmp_path / "store")
    record = TaskRecord(
        task_id=secrets.token_hex(20),
        tenant="alice",
        state=TaskState.PENDING,
        settings=Settings(language="en", profile="fast", pages="", dpi=200),
        document_type="png",
        page_numbers=[1],
        created=time.time(),
        expires=time.time() + 60,
    )
    store.put_task(record)
    parsed: list[int] = []
    real = TaskRecord.from_json.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        TaskRecord,
        "from_json",
        classmethod(lambda cls, text: parsed.append(len(text)) or real(cls, text)),
    )
    assert store.get_task_evenly(record.task_id) == record
    assert store.get_task_evenly(secrets.token_hex(20)) is None
    assert len(parsed) == 2 and abs(parsed[0] - parsed[1]) < 100  # records of similar size
    store.close()


# --- tokens -----------------------------------------------------------------------------------

WRONG_TOKEN = "wrong-token-" + "7" * 20


def _calls_with_every_kind_of_header(server: ServerProcess, good: str) -> None:
    """Right, wrong, near-miss and malformed authorization metadata, on several RPCs."""
    headers = [
        f"Bearer {good}",
        f"bearer   {good}  ",
        f"Bearer {WRONG_TOKEN}",
        f"Bearer {good}x",  # one character too many
        f"Bearer {good[:-1]}",  # one too few
        f"Basic {good}",
        good,  # no scheme
        "Bearer",
        "Bearer ",
    ]
    with grpc.insecure_channel(server.target) as channel:
        stub = ocr_pb2_grpc.OcrServiceStub(channel)
        for value in headers:
            for metadata in ((("authorization", value),), (("x-api-key", value),)):
                for call in (
                    lambda m: stub.GetCapabilities(ocr_pb2.GetCapabilitiesRequest(), metadata=m),
                    lambda m: stub.GetTaskStatus(
                        ocr_pb2.GetTaskStatusRequest(task_id=secrets.token_hex(20)), metadata=m
                    ),
                    lambda m: stub.Submit(ocr_pb2.SubmitRequest(content=blank()), metadata=m),
                ):
                    try:
                        call(metadata)
                    except grpc.RpcError as error:
                        assert error.code() in (  # type: ignore[attr-defined]
                            grpc.StatusCode.UNAUTHENTICATED,
                            grpc.StatusCode.NOT_FOUND,
                        )
                        assert good not in error.details()  # type: ignore[attr-defined]


def _files_containing(directory: Path, secrets_: list[str], skip: set[Path]) -> list[str]:
    found = []
    for path in directory.rglob("*"):
        if path.is_file() and path not in skip:
            data = path.read_bytes()
            found += [f"{path}: {s[:6]}..." for s in secrets_ if s.encode() in data]
    return found


def test_tokens_are_never_logged_or_stored(tmp_path: Path) -> None:
    carol = "carol-token-" + secrets.token_hex(8)
    tokens_file = tmp_path / "tokens.txt"
    tokens_file.write_text(f"# hashes only\ncarol:{hash_token(carol)}\n")
    server = ServerProcess(
        tmp_path / "data",
        "--engine",
        "fake",
        "--fake-rules",
        "default=echo",
        "--log-level",
        "DEBUG",
        "--tokens-file",
        str(tokens_file),
        env={"OCR_WORKERS": "1"},
    ).start()
    try:
        for good in (*TOKENS.values(), carol):
            _calls_with_every_kind_of_header(server, good)
        with OcrClient(server.target, carol) as client:  # a token known only by its hash works
            task = client.submit(blank(123))
            assert client.wait(task.task_id, timeout=60).state == COMPLETED
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "for tenant 'carol'" in log and "refused /ocr.v1.OcrService/" in log  # DEBUG was on
    everything = [*TOKENS.values(), carol, WRONG_TOKEN]
    assert not [t for t in everything if t in log]
    assert not _files_containing(tmp_path, everything, skip=set())
    assert carol not in tokens_file.read_text()  # the tokens file: hashes only


def test_generated_token_is_only_in_its_file(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "data",
        "--engine",
        "fake",
        "--log-level",
        "DEBUG",
        env={"OCR_TOKENS": "", "OCR_WORKERS": "1"},
    ).start()
    token_file = tmp_path / "data" / "client-token"
    try:
        token = token_file.read_text().strip()
        assert len(token) >= 40  # secrets.token_urlsafe(32): 256 bits
        _calls_with_every_kind_of_header(server, token)
    finally:
        server.stop()
    assert token not in server.log_path.read_text()
    assert not _files_containing(tmp_path, [token], skip={token_file})


def test_token_lookup_compares_every_entry_in_constant_time(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Not a timing measurement (too noisy to fail reliably) but the property that makes the
    time constant: every look-up compares two 32-byte digests with hmac.compare_digest, against
    every entry, whether the token matches the first entry, the last, or none."""
    tokens = [f"token-{n}" for n in range(5)]
    registry = TokenRegistry([(f"tenant{n}", hash_token(t)) for n, t in enumerate(tokens)])
    compared: list[tuple[int, int]] = []
    real = auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    for token, expected in [(tokens[0], "tenant0"), (tokens[4], "tenant4"), ("x" * 500, None)]:
        compared.clear()
        assert registry.tenant_for(token) == expected
        assert compared == [(32, 32)] * 5
    assert hashlib.sha256(tokens[0].encode()).hexdigest() == hash_token(tokens[0])


# --- task ids -------------------------------------------------------------------------------


def test_task_ids_are_unique_and_unpredictable(servers) -> None:  # type: ignore[no-untyped-def]
    server = servers("--max-pending-per-tenant", "1000")
    document = blank()
    with server.client() as client:
        ids = [client.submit(document).task_id for _ in range(200)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 40 and int(i, 16) >= 0 and i == i.lower() for i in ids)
    # 160 bits each: over 32,000 bits, a counter, a clock or a short random part would skew
    # the share of one-bits or repeat prefixes; a fair source gives 0.5 +- 0.01 (3.5 sigma)
    bits = "".join(bin(int(i, 16))[2:].zfill(160) for i in ids)
    assert abs(bits.count("1") / len(bits) - 0.5) < 0.01
    assert len({i[:8] for i in ids}) == len(ids)
