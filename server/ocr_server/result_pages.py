"""GetResult in parts: a stored result sliced into responses that stay under gRPC's default
4 MiB limit, with page tokens to continue. Pure logic over the serialised result.

A whole-result request (no page_size) for a result too large for one response is refused
with RESOURCE_EXHAUSTED naming the size and the way out, rather than truncated: an old client
that does not know next_page_token must not take part of a result for all of it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from ocr.v1 import ocr_pb2
from ocr_server.convert import join_pages
from ocr_server.errors import InvalidSettingsError, ResultTooLargeError

# Room for the Task and the message framing beside the pages, under gRPC's default 4 MiB.
RESPONSE_BUDGET = 4 * 1024 * 1024 - 256 * 1024
MAX_PAGE_SIZE = 10_000


@dataclass(frozen=True)
class ResultPart:
    result: ocr_pb2.OcrResult
    next_page_token: str


def result_part(task_id: str, serialized: bytes, page_size: int, page_token: str) -> ResultPart:
    """The pages of this response and the token for the next ones."""
    if page_size < 0:
        raise InvalidSettingsError(f"page_size must not be negative (got {page_size})")
    start = _decode_token(page_token, task_id)
    if page_size == 0 and start == 0:
        if len(serialized) > RESPONSE_BUDGET:
            raise ResultTooLargeError(
                f"the result is {len(serialized) / 2**20:.1f} MiB, more than one response "
                f"holds within gRPC's default 4 MiB limit; fetch it in parts with page_size "
                f"and page_token (the Python SDK and `ocr result` do this for you)"
            )
        whole = ocr_pb2.OcrResult()
        whole.ParseFromString(serialized)
        return ResultPart(whole, "")
    whole = ocr_pb2.OcrResult()
    whole.ParseFromString(serialized)
    if start > len(whole.pages):
        raise InvalidSettingsError("page_token points past the result's last page")
    wanted = min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    part = ocr_pb2.OcrResult()
    size = 0
    end = start
    while end < len(whole.pages) and end - start < wanted:
        page = whole.pages[end]
        page_bytes = page.ByteSize() + len(page.text.encode()) + 16  # the page and its text
        if end > start and size + page_bytes > RESPONSE_BUDGET:
            break
        if page_bytes > RESPONSE_BUDGET:
            raise ResultTooLargeError(
                f"page {page.page_number} alone is {page_bytes / 2**20:.1f} MiB of text and "
                "boxes, more than one response holds within gRPC's default 4 MiB limit; raise "
                "the client's grpc.max_receive_message_length to fetch it"
            )
        part.pages.append(page)
        size += page_bytes
        end += 1
    part.text = join_pages(page.text for page in part.pages)
    token = _encode_token(task_id, end) if end < len(whole.pages) else ""
    return ResultPart(part, token)


def _encode_token(task_id: str, index: int) -> str:
    raw = json.dumps({"t": task_id, "i": index}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, task_id: str) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        owner, index = str(data["t"]), int(data["i"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidSettingsError("page_token is not one this server issued") from exc
    if owner != task_id or index < 0:
        raise InvalidSettingsError("page_token belongs to another task")
    return index
