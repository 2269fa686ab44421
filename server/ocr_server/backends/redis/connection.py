"""Connecting to Redis: one URL (redis://, rediss:// for TLS, user and password for ACL),
retries that ride out a restart, and the check that Redis will never evict our keys."""

from __future__ import annotations

import logging

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

# Ride out a Redis restart (a few seconds on its AOF): about 30 s of retries, then the
# caller sees UNAVAILABLE. Scripts are safe to repeat where it matters: a page handed out
# twice is reclaimed, a page stored twice is counted once, an admission has its request key.
RETRIES = 12


class RedisConfigError(RuntimeError):
    """Redis cannot be used: unreachable, refused the credentials, or set up so that tasks
    could be lost (eviction on)."""


def connect(url: str, client_name: str) -> redis.Redis:
    """A client for `url`, e.g. redis://user:password@host:6379/0 or
    rediss://host:6380/0?ssl_ca_certs=/etc/ocr/redis-ca.pem (TLS). Tried once at once, so
    that a wrong password, a plaintext client on a TLS port or a wrong address stops the
    start with a message (RedisConfigError) instead of retrying for ever."""
    probe = redis.Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=5, retry=Retry(NoBackoff(), 0)
    )
    try:
        probe.ping()
    except redis.AuthenticationError as exc:
        raise RedisConfigError(f"Redis refused the credentials in the Redis URL: {exc}") from exc
    except redis.RedisError as exc:
        raise RedisConfigError(
            f"cannot use Redis at {_where(url)}: {exc} (check the address, and rediss:// "
            "with ssl_ca_certs for a TLS port)"
        ) from exc
    finally:
        probe.close()
    return redis.Redis.from_url(
        url,
        client_name=client_name,
        socket_connect_timeout=5,
        socket_timeout=30,
        socket_keepalive=True,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=4.0, base=0.1), RETRIES),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def check_no_eviction(client: redis.Redis) -> None:
    """Refuse a Redis that may evict keys: an evicted task would vanish without a trace.
    Managed services that forbid CONFIG are trusted with a warning."""
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError as exc:
        log.warning("cannot read Redis's maxmemory-policy (%s); it must be noeviction", exc)
        return
    if policy not in (None, "noeviction"):
        raise RedisConfigError(
            f"Redis's maxmemory-policy is {policy!r}: it would evict tasks when full. "
            "Set maxmemory-policy noeviction (Submit then says RESOURCE_EXHAUSTED instead)"
        )


def _where(url: str) -> str:
    """The URL without its credentials (for messages and logs)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"
