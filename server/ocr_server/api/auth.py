"""Access tokens: `authorization: Bearer <token>` metadata maps to a tenant.

Only SHA-256 hashes of tokens are kept in memory and in the tokens file; tokens are never
logged (not even wrong ones: a wrong token is often a real one with a typo). Health checking is
the one service that needs no token (load balancers probe it).

Constant time: the presented token is hashed first, so what is compared is always two 32-byte
digests, whatever the token's length; `hmac.compare_digest` compares them without stopping at
the first differing byte, and the look-up compares against every entry without stopping at a
match, so the time depends neither on how much of a token is right nor on which tenant's it is.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

log = logging.getLogger(__name__)

PUBLIC_SERVICE_PREFIXES = ("/grpc.health.v1.Health/",)
DEFAULT_TENANT = "default"
GENERATED_TOKEN_FILE = "client-token"  # noqa: S105 (a file name)


if TYPE_CHECKING:  # grpc-stubs types it as generic; at run time it is not subscriptable
    _Handler = grpc.RpcMethodHandler[Any, Any]
else:
    _Handler = grpc.RpcMethodHandler


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenRegistry:
    """Tenant look-up by token hash."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        """entries: (tenant, sha256 hex digest of the token)."""
        self._entries = [(tenant, bytes.fromhex(digest)) for tenant, digest in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def tenant_for(self, token: str) -> str | None:
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found: str | None = None
        for tenant, expected in self._entries:  # no early exit: time does not depend on which
            if hmac.compare_digest(digest, expected):
                found = tenant
        return found

    def tenant_from_metadata(self, metadata: Iterable[tuple[str, Any]] | None) -> str | None:
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    return self.tenant_for(token.strip())
        return None


def parse_token_spec(spec: str) -> list[tuple[str, str]]:
    """`tenantA=tokenA,tenantB=tokenB` (plain tokens, hashed at once)."""
    entries = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        tenant, sep, token = item.partition("=")
        if not sep or not tenant.strip() or not token.strip():
            raise ValueError("OCR_TOKENS must look like 'tenantA=tokenA,tenantB=tokenB'")
        entries.append((tenant.strip(), hash_token(token.strip())))
    return entries


def read_tokens_file(path: Path) -> list[tuple[str, str]]:
    """Lines `tenant:sha256-hex` (blank lines and # comments ignored). Hashes only."""
    entries = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tenant, sep, digest = line.partition(":")
        digest = digest.strip().lower().removeprefix("sha256:")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{path}:{number}: expected 'tenant:<sha256 hex of the token>'")
        entries.append((tenant.strip(), digest))
    return entries


def load_registry(spec: str, tokens_file: Path | None, data_dir: Path) -> TokenRegistry:
    """Tokens from OCR_TOKENS and the tokens file; with neither, a generated one (never open)."""
    entries = parse_token_spec(spec)
    if tokens_file is not None:
        entries += read_tokens_file(tokens_file)
    if not entries:
        entries = [(DEFAULT_TENANT, hash_token(_generated_token(data_dir)))]
    return TokenRegistry(entries)


def _generated_token(data_dir: Path) -> str:
    """Reuse or create the token in <data-dir>/client-token (mode 0600) and say where it is."""
    path = data_dir / GENERATED_TOKEN_FILE
    if path.is_file():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            log.warning(
                "no tokens configured: using the token in %s (tenant %r)", path, DEFAULT_TENANT
            )
            return token
    token = secrets.token_urlsafe(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    log.warning(
        "no tokens configured (OCR_TOKENS / --tokens-file): generated one for tenant %r in %s",
        DEFAULT_TENANT,
        path,
    )
    return token


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses any call without a valid token before it reaches a handler."""

    def __init__(self, registry: TokenRegistry) -> None:
        self._registry = registry

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], _Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_SERVICE_PREFIXES):
            return handler
        metadata = handler_call_details.invocation_metadata
        tenant = self._registry.tenant_from_metadata(metadata)
        if tenant is not None:
            log.debug("%s for tenant %r", method, tenant)  # the tenant, never the token
            return handler
        return _refusal(handler, method)


def _refusal(handler: _Handler, method: str) -> _Handler:
    message = "missing or invalid access token: send metadata 'authorization: Bearer <token>'"

    def refuse(_request: Any, context: grpc.ServicerContext) -> Any:
        log.debug("refused %s from %s: missing or invalid token", method, context.peer())
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)
