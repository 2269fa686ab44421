"""Redis's failures, said as the service's errors (one place, as httpx converts its
transport's): out of memory is the store being full (RESOURCE_EXHAUSTED, nothing evicted);
Redis unreachable is UNAVAILABLE (a client retries, possibly through another front end)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

from ocr_server.errors import OcrServiceError, ShuttingDownError, StoreFullError


class RedisUnavailableError(ShuttingDownError):
    """Redis does not answer: UNAVAILABLE, retry (the client's channel does)."""


class RedisPermissionError(OcrServiceError):
    """The Redis user may not use a key, channel or command the service needs (ACL)."""


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    try:
        yield
    except redis.exceptions.NoPermissionError as exc:
        raise RedisPermissionError(
            f"the Redis user lacks a permission the service needs (see docs/scale-out.md, "
            f"Redis security): {exc}"
        ) from exc
    except redis.exceptions.OutOfMemoryError as exc:
        raise StoreFullError(
            "the task store (Redis) is at its memory limit; retry after results expire "
            "(nothing is evicted to make room)"
        ) from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise RedisUnavailableError(f"the task store (Redis) is unreachable: {exc}") from exc
