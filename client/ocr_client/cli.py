"""`ocr`: the command line for the OCR service.

Target from --target or OCR_TARGET; token from --token, OCR_TOKEN, the file named by
OCR_TOKEN_FILE, or ./data/client-token (what a local `scripts/serve` generates). TLS with
--tls (system CAs) or --ca-file (OCR_CA_FILE), client certificates with --client-cert and
--client-key (OCR_CLIENT_CERT, OCR_CLIENT_KEY). Errors print the gRPC status name and message
on stderr and exit non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from ocr.v1 import ocr_pb2
from ocr_client.client import (
    BINARY_FORMATS,
    DEFAULT_TARGET,
    FINAL_STATES,
    RESULT_FORMATS,
    ExportError,
    OcrClient,
    TaskFailedError,
)

LOCAL_TOKEN_FILE = Path("data") / "client-token"


def _token(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    if os.environ.get("OCR_TOKEN"):
        return os.environ["OCR_TOKEN"]
    path = Path(os.environ.get("OCR_TOKEN_FILE", LOCAL_TOKEN_FILE))
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    return None


def _json(message: Message) -> str:
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2)


def _describe(task: ocr_pb2.Task) -> str:
    state = ocr_pb2.TaskState.Name(task.state).removeprefix("TASK_STATE_")
    if task.state == ocr_pb2.TASK_STATE_PENDING:
        return f"{state} (queue position {task.queue_position})"
    if task.state == ocr_pb2.TASK_STATE_PROCESSING:
        return f"{state} {task.pages_done}/{task.pages_total} pages"
    if task.error.message:
        return f"{state}: {task.error.message}"
    return state


class _UsageError(Exception):
    """The command cannot do what was asked (exit 2)."""


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


def _settings(args: argparse.Namespace) -> dict[str, object]:
    return {
        "language": args.language,
        "profile": args.profile,
        "pages": args.pages,
        "dpi": args.dpi,
    }


def cmd_recognize(client: OcrClient, args: argparse.Namespace) -> int:
    _check_destination(args)
    task = client.submit(args.file, **_settings(args))  # type: ignore[arg-type]
    last = ""
    for update in client.watch(task.task_id, timeout=args.wait):
        task = update
        line = _describe(task)
        if not args.quiet and line != last:
            print(f"{task.task_id}: {line}", file=sys.stderr)
            last = line
        if task.state in FINAL_STATES:
            break
    if task.state != ocr_pb2.TASK_STATE_COMPLETED:
        raise TaskFailedError(task)
    _export(client, task.task_id, args.format, args.output)
    return 0


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
    if task.state != ocr_pb2.TASK_STATE_COMPLETED:
        print(f"{args.task_id}: {_describe(task)}; no result yet", file=sys.stderr)
        return 3
    _export(client, args.task_id, args.format, args.output)
    return 0


def _check_destination(args: argparse.Namespace) -> None:
    """Refuse before any work is done: a binary format with no -o, bound for a terminal."""
    if args.format in BINARY_FORMATS and args.output is None and sys.stdout.isatty():
        raise _UsageError(f"--format {args.format} is binary: write it to a file with -o FILE")


def cmd_cancel(client: OcrClient, args: argparse.Namespace) -> int:
    print(_describe(client.cancel(args.task_id)))
    return 0


def cmd_watch(client: OcrClient, args: argparse.Namespace) -> int:
    for task in client.watch(args.task_id):
        print(_describe(task) if args.format == "text" else _json(task), flush=True)
    return 0


def cmd_capabilities(client: OcrClient, args: argparse.Namespace) -> int:
    print(_json(client.capabilities()))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocr", description="Client for the OCR service.")
    parser.add_argument("--target", default=os.environ.get("OCR_TARGET", DEFAULT_TARGET))
    parser.add_argument("--token", help="access token (default: $OCR_TOKEN or a token file)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
    parser.add_argument("--max-message-mb", type=int, default=64)
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
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(handler=handler)
        if fmt:
            choices = tuple(RESULT_FORMATS) if name in ("recognize", "result") else ("text", "json")
            sub.add_argument("--format", choices=choices, default="text")
        return sub

    for name, handler, help_text in (
        ("recognize", cmd_recognize, "submit a file, follow its progress, print the result"),
        ("submit", cmd_submit, "submit a file and print the task id"),
    ):
        sub = add(name, handler, help_text)
        sub.add_argument("file", type=Path)
        sub.add_argument("--language", default="")
        sub.add_argument("--profile", default="", help="e.g. fast, accurate")
        sub.add_argument("--pages", default="", help="e.g. 1-3,7")
        sub.add_argument("--dpi", type=int, default=0)
        if name == "recognize":
            sub.add_argument("-o", "--output", type=Path)
            sub.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
            sub.add_argument("--wait", type=float, default=None, help="give up after N seconds")
        else:
            sub.add_argument("--request-id", default=None, help="idempotency key")
    for name, handler, help_text in (
        ("status", cmd_status, "print a task's state"),
        ("result", cmd_result, "print a completed task's text (or write it in another format)"),
        ("cancel", cmd_cancel, "cancel a task"),
        ("watch", cmd_watch, "print every change of a task until it ends"),
    ):
        sub = add(name, handler, help_text, fmt=name != "cancel")
        sub.add_argument("task_id")
        if name == "result":
            sub.add_argument("-o", "--output", type=Path)
    add("capabilities", cmd_capabilities, "languages, profiles and limits", fmt=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "file", None) is not None and not args.file.is_file():
        print(f"ocr: {args.file}: no such file", file=sys.stderr)
        return 2
    try:
        with OcrClient(
            args.target,
            _token(args.token),
            timeout=args.timeout,
            max_message_mb=args.max_message_mb,
            tls=args.tls,
            ca_file=args.ca_file,
            client_cert=args.client_cert,
            client_key=args.client_key,
            tls_server_name=args.tls_server_name,
        ) as client:
            code: int = args.handler(client, args)
            return code
    except grpc.RpcError as exc:
        status = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = exc.details() if hasattr(exc, "details") else str(exc)
        print(f"ocr: {status.name}: {details}", file=sys.stderr)
        return 1
    except TaskFailedError as exc:
        print(f"ocr: {exc}", file=sys.stderr)
        return 1
    except ExportError as exc:
        print(f"ocr: {exc}", file=sys.stderr)
        return 1
    except (_UsageError, OSError, ValueError) as exc:  # TLS files, -o, binary to a terminal
        print(f"ocr: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
