"""`ocr`: the command line for the OCR service.

Target from --target or OCR_TARGET; token from --token, OCR_TOKEN, the file named by
OCR_TOKEN_FILE, or ./data/client-token (what a local `scripts/serve` generates). TLS with
--tls (system CAs) or --ca-file (OCR_CA_FILE), client certificates with --client-cert and
--client-key (OCR_CLIENT_CERT, OCR_CLIENT_KEY). Errors print the gRPC status name and message
on stderr and exit non-zero. `recognize` and `result` write the text or JSON (GetResult, page
by page), or a result file, hOCR, ALTO or a searchable PDF (ExportResult, streamed); a binary
format goes to a file (-o) or a pipe, never to a terminal.

Exit codes: 0 done; 1 an error (the server's, or the task failed); 2 bad usage or local files;
3 `result` of a task not finished yet; 4 the task was cancelled (`result` still writes the
pages finished before the cancel); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.message import Message

from ocr.v1 import ocr_pb2
from ocr_client.calls import (
    BINARY_FORMATS,
    DEFAULT_TARGET,
    FINAL_STATES,
    PAGE_SEPARATOR,
    RESULT_FORMATS,
)
from ocr_client.client import OcrClient
from ocr_client.errors import (
    ExportError,
    OcrError,
    RpcFailedError,
    TaskFailedError,
    UnauthenticatedError,
)

LOCAL_TOKEN_FILE = Path("data") / "client-token"
EXIT_ERROR, EXIT_USAGE, EXIT_NOT_READY, EXIT_CANCELLED, EXIT_INTERRUPTED = 1, 2, 3, 4, 130


@dataclass(frozen=True)
class Token:
    value: str | None
    source: str  # where it came from, for the message when the server refuses it


def find_token(explicit: str | None) -> Token:
    if explicit:
        return Token(explicit, "--token")
    if os.environ.get("OCR_TOKEN"):
        return Token(os.environ["OCR_TOKEN"], "$OCR_TOKEN")
    named = os.environ.get("OCR_TOKEN_FILE")
    path = Path(named) if named else LOCAL_TOKEN_FILE
    if path.is_file():
        return Token(path.read_text(encoding="utf-8").strip(), f"the file {path}")
    return Token(None, "nowhere")


def _token_hint(token: Token) -> str:
    found = (
        "no token was found"
        if token.value is None
        else f"the token from {token.source} was refused"
    )
    return (
        f"ocr: {found}. A token comes from --token, $OCR_TOKEN, the file named by "
        f"$OCR_TOKEN_FILE, or {LOCAL_TOKEN_FILE} in the current directory (a local "
        "scripts/serve with no tokens configured writes one there); ask the server's operator "
        "for yours."
    )


def _json(message: Message) -> str:
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2)


def _state_name(state: int) -> str:
    return ocr_pb2.TaskState.Name(state).removeprefix("TASK_STATE_")  # type: ignore[arg-type]


def _describe(task: ocr_pb2.Task) -> str:
    state = _state_name(task.state)
    if task.state == ocr_pb2.TASK_STATE_PENDING:
        return f"{state} (queue position {task.queue_position})"
    if task.state == ocr_pb2.TASK_STATE_PROCESSING:
        return f"{state} {task.pages_done}/{task.pages_total} pages"
    if task.state == ocr_pb2.TASK_STATE_CANCELLED:
        return f"{state} after {task.pages_done} of {task.pages_total} pages"
    if task.error.message:
        return f"{state}: {task.error.message}"
    return state


def _write(texts: Iterable[str], output: Path | None) -> None:
    """Write the pieces as they come (a large result is never joined in memory)."""
    handle = sys.stdout if output is None else output.open("w", encoding="utf-8")
    try:
        last = ""
        for text in texts:
            handle.write(text)
            last = text or last
        if output is None and last and not last.endswith("\n"):
            handle.write("\n")
    finally:
        if output is not None:
            handle.close()


def _warn_about_pages(result: ocr_pb2.OcrResult) -> None:
    """Page warnings on stderr, e.g. a page that is not in the requested language."""
    for page in result.pages:
        for warning in page.warnings:
            print(f"page {page.page_number}: {warning.code}: {warning.message}", file=sys.stderr)


def _result_texts(client: OcrClient, task_id: str, fmt: str) -> Iterable[str]:
    if fmt == "json":
        result = client.result(task_id).result
        _warn_about_pages(result)
        yield _json(result)
        return
    first = True
    for part in client.result_parts(task_id):
        if not part.HasField("result"):
            continue
        _warn_about_pages(part.result)
        if not first:
            yield PAGE_SEPARATOR
        yield part.result.text
        first = False


class _UsageError(Exception):
    """The command cannot do what was asked (exit 2)."""


def _write_result(client: OcrClient, task_id: str, fmt: str, output: Path | None) -> None:
    """Text and JSON from GetResult in parts; the other formats as files from ExportResult."""
    if fmt in ("text", "json"):
        _write(_result_texts(client, task_id, fmt), output)
    else:
        _export(client, task_id, fmt, output)


def _export(client: OcrClient, task_id: str, fmt: str, output: Path | None) -> None:
    """Stream the result in `fmt` to OUT, or to stdout unless that is a terminal and the
    format is binary (a PDF would garble it)."""
    if output is not None:
        client.export(task_id, fmt, output)
        return
    if fmt in BINARY_FORMATS and sys.stdout.isatty():
        raise _UsageError(f"--format {fmt} is binary: write it to a file with -o FILE")
    sys.stdout.flush()
    client.export(task_id, fmt, sys.stdout.buffer)
    sys.stdout.buffer.flush()


def _check_destination(args: argparse.Namespace) -> None:
    """Refuse before any work is done: a binary format with no -o, bound for a terminal."""
    if args.format in BINARY_FORMATS and args.output is None and sys.stdout.isatty():
        raise _UsageError(f"--format {args.format} is binary: write it to a file with -o FILE")


def _settings(args: argparse.Namespace) -> dict[str, object]:
    return {
        "language": args.language,
        "profile": args.profile,
        "pages": args.pages,
        "dpi": args.dpi,
    }


def cmd_recognize(client: OcrClient, args: argparse.Namespace) -> int:
    _check_destination(args)
    if args.format == "pdf" and not client.capabilities().searchable_pdf:
        print(
            "ocr: this server makes no searchable PDFs (it deletes documents as tasks end: "
            "--keep-documents off); nothing was submitted; use --format hocr, alto, json or "
            "text, or another server",
            file=sys.stderr,
        )
        return EXIT_ERROR
    task = client.submit(args.file, request_id=args.request_id, **_settings(args))  # type: ignore[arg-type]
    print(f"ocr: task {task.task_id} submitted", file=sys.stderr, flush=True)
    try:
        task = _follow(client, task, args)
    except KeyboardInterrupt:
        return _interrupted(client, task.task_id, args.detach)
    if task.state == ocr_pb2.TASK_STATE_CANCELLED:
        print(f"ocr: task {task.task_id} {_describe(task)}", file=sys.stderr)
        return EXIT_CANCELLED
    if task.state != ocr_pb2.TASK_STATE_COMPLETED:
        raise TaskFailedError(task)
    _write_result(client, task.task_id, args.format, args.output)
    return 0


def _follow(client: OcrClient, task: ocr_pb2.Task, args: argparse.Namespace) -> ocr_pb2.Task:
    last = ""
    for update in client.watch(task.task_id, timeout=args.wait):
        task = update
        line = _describe(task)
        if not args.quiet and line != last:
            print(f"{task.task_id}: {line}", file=sys.stderr, flush=True)
            last = line
        if task.state in FINAL_STATES:
            break
    return task


def _interrupted(client: OcrClient, task_id: str, detach: bool) -> int:
    """Ctrl-C while waiting: cancel the task (it would run on for nobody), or with --detach
    leave it running and print its id for `ocr result` later."""
    if detach:
        print(task_id)
        print(
            f"ocr: left task {task_id} running; fetch it with: ocr result {task_id}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    try:
        task = client.cancel(task_id)
    except (OcrError, KeyboardInterrupt) as exc:
        print(f"ocr: interrupted; could not cancel task {task_id}: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"ocr: interrupted: task {task_id} {_describe(task)}", file=sys.stderr)
    return EXIT_INTERRUPTED


def cmd_submit(client: OcrClient, args: argparse.Namespace) -> int:
    task = client.submit(args.file, request_id=args.request_id, **_settings(args))  # type: ignore[arg-type]
    print(task.task_id if args.format == "text" else _json(task))
    return 0


def cmd_status(client: OcrClient, args: argparse.Namespace) -> int:
    task = client.status(args.task_id)
    print(_describe(task) if args.format == "text" else _json(task))
    return 0


def cmd_result(client: OcrClient, args: argparse.Namespace) -> int:
    _check_destination(args)
    task = client.status(args.task_id)
    if task.state == ocr_pb2.TASK_STATE_CANCELLED:
        if task.pages_done:
            print(
                f"ocr: task {args.task_id} was cancelled after {task.pages_done} of "
                f"{task.pages_total} pages; writing those pages",
                file=sys.stderr,
            )
            _write_result(client, args.task_id, args.format, args.output)
        else:
            print(
                f"ocr: task {args.task_id} was cancelled before any page was read; no result",
                file=sys.stderr,
            )
        return EXIT_CANCELLED
    if task.state == ocr_pb2.TASK_STATE_FAILED:
        raise TaskFailedError(task)
    if task.state != ocr_pb2.TASK_STATE_COMPLETED:
        print(f"ocr: task {args.task_id}: {_describe(task)}; no result yet", file=sys.stderr)
        return EXIT_NOT_READY
    _write_result(client, args.task_id, args.format, args.output)
    return 0


def cmd_cancel(client: OcrClient, args: argparse.Namespace) -> int:
    print(_describe(client.cancel(args.task_id)))
    return 0


def cmd_watch(client: OcrClient, args: argparse.Namespace) -> int:
    for task in client.watch(args.task_id):
        print(_describe(task) if args.format == "text" else _json(task), flush=True)
    return 0


def cmd_list(client: OcrClient, args: argparse.Namespace) -> int:
    terms = []
    if args.state:
        terms.append("(" + " OR ".join(f"state = {s.upper()}" for s in args.state) + ")")
    if args.since:
        terms.append(f'create_time >= "{args.since}"')
    if args.filter:
        terms.append(args.filter)
    tasks = client.iter_tasks(" AND ".join(terms), page_size=min(args.limit, 1000))
    for _, task in zip(range(args.limit), tasks, strict=False):
        if args.format == "json":
            print(json_format.MessageToJson(task, preserving_proto_field_name=True, indent=None))
        else:
            created = datetime.fromtimestamp(task.create_time.seconds, UTC)
            print(
                f"{task.task_id}  {created:%Y-%m-%d %H:%M:%S}Z  {_describe(task)}"
                + (f"  {task.filename}" if task.filename else "")
            )
    return 0


def cmd_capabilities(client: OcrClient, args: argparse.Namespace) -> int:
    print(_json(client.capabilities()))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocr",
        description="Client for the OCR service. Ctrl-C while `recognize` waits cancels the "
        "task (with --detach: leaves it running and prints its id).",
        epilog="Exit codes: 0 done, 1 error or task failed, 2 usage or local file, 3 result not "
        "ready, 4 task cancelled, 130 interrupted.",
    )
    parser.add_argument(
        "--target",
        default=os.environ.get("OCR_TARGET", DEFAULT_TARGET),
        help=f"server host:port [OCR_TARGET, default {DEFAULT_TARGET}]",
    )
    parser.add_argument(
        "--token",
        help="access token [OCR_TOKEN; or the file named by OCR_TOKEN_FILE; or "
        "./data/client-token]",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
    parser.add_argument("--max-message-mb", type=int, help=argparse.SUPPRESS)  # obsolete
    parser.add_argument(
        "--tls",
        action="store_true",
        default=os.environ.get("OCR_TLS", "") not in ("", "0"),
        help="connect with TLS, trusting the system's CAs [OCR_TLS=1]",
    )
    for flag, env, help_text in (
        ("--ca-file", "OCR_CA_FILE", "PEM CA bundle to trust (implies --tls)"),
        ("--client-cert", "OCR_CLIENT_CERT", "PEM client certificate (implies --tls)"),
        ("--client-key", "OCR_CLIENT_KEY", "PEM key of --client-cert"),
    ):
        parser.add_argument(
            flag, type=Path, default=os.environ.get(env) or None, help=f"{help_text} [{env}]"
        )
    parser.add_argument(
        "--tls-server-name",
        default=os.environ.get("OCR_TLS_SERVER_NAME") or None,
        help="name in the server's certificate, if not the target's host [OCR_TLS_SERVER_NAME]",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str,
        handler: Callable[[OcrClient, argparse.Namespace], int],
        help_text: str,
        fmt: bool = True,
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        if fmt:
            files = name in ("recognize", "result")  # the result in any ExportResult format
            sub.add_argument(
                "--format",
                choices=tuple(RESULT_FORMATS) if files else ("text", "json"),
                default="text",
                help="hocr, alto and pdf are files: pdf needs -o or a pipe" if files else None,
            )
        return sub

    for name, handler, help_text in (
        ("recognize", cmd_recognize, "submit a file, follow its progress, print the result"),
        ("submit", cmd_submit, "submit a file and print the task id"),
    ):
        sub = add(name, handler, help_text)
        sub.add_argument("file", type=Path)
        sub.add_argument("--language", default="", help="e.g. en (default), zh")
        sub.add_argument("--profile", default="", help="e.g. fast, accurate")
        sub.add_argument("--pages", default="", help="e.g. 1-3,7")
        sub.add_argument("--dpi", type=int, default=0, help="for PDFs, 72-600 (default 200)")
        sub.add_argument("--request-id", default=None, help="idempotency key (default: random)")
        if name == "recognize":
            sub.add_argument("-o", "--output", type=Path, help="write the result here")
            sub.add_argument(
                "-q",
                "--quiet",
                action="store_true",
                help="no progress on stderr (the task id is still printed there)",
            )
            sub.add_argument("--wait", type=float, default=None, help="give up after N seconds")
            sub.add_argument(
                "--detach",
                action="store_true",
                help="on Ctrl-C leave the task running and print its id (default: cancel it)",
            )
    for name, handler, help_text in (
        ("status", cmd_status, "print a task's state"),
        (
            "result",
            cmd_result,
            "print a task's text (or write it in another format); a cancelled task's "
            "finished pages",
        ),
        ("cancel", cmd_cancel, "cancel a task"),
        ("watch", cmd_watch, "print every change of a task until it ends"),
    ):
        sub = add(name, handler, help_text, fmt=name != "cancel")
        sub.add_argument("task_id")
        if name == "result":
            sub.add_argument("-o", "--output", type=Path, help="write the result here")
    sub = add("list", cmd_list, "list your tasks, newest first")
    sub.add_argument(
        "--state",
        action="append",
        choices=("pending", "processing", "completed", "failed", "cancelled"),
        help="only tasks in this state (repeatable)",
    )
    sub.add_argument(
        "--since",
        help="only tasks created at or after this RFC 3339 time, e.g. 2025-01-31T00:00:00Z",
    )
    sub.add_argument("--filter", help="a ListTasks filter (see the proto), ANDed with the above")
    sub.add_argument("--limit", type=int, default=100, help="most tasks to print (default 100)")
    add("capabilities", cmd_capabilities, "languages, profiles and limits", fmt=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "file", None) is not None and not args.file.is_file():
        print(f"ocr: {args.file}: no such file", file=sys.stderr)
        return EXIT_USAGE
    token = find_token(args.token)
    try:
        with OcrClient(
            args.target,
            token.value,
            timeout=args.timeout,
            tls=args.tls,
            ca_file=args.ca_file,
            client_cert=args.client_cert,
            client_key=args.client_key,
            tls_server_name=args.tls_server_name,
        ) as client:
            code: int = args.handler(client, args)
            return code
    except UnauthenticatedError as exc:
        print(f"ocr: {exc}", file=sys.stderr)
        print(_token_hint(token), file=sys.stderr)
        return EXIT_ERROR
    except RpcFailedError as exc:
        print(f"ocr: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (TaskFailedError, ExportError) as exc:
        print(f"ocr: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # before a task existed (e.g. during the upload): nothing queued
        print("ocr: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `ocr result ID | head`
        return 0
    except (_UsageError, OSError, ValueError) as exc:  # TLS files, -o, binary to a terminal
        print(f"ocr: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
