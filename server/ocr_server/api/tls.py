"""TLS for the gRPC port: server certificate and key, optionally client certificates (mTLS).

gRPC only reads the PEM files when the first client connects, and then reports a bad key as a
failed handshake in its own log. So the files are checked at start-up with the standard
library's `ssl` (readable, PEM, key matches certificate, CA bundle holds certificates) and the
server refuses to start with a message that names the file and the flag.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc


class TlsConfigError(ValueError):
    """A TLS file is missing, unreadable, not PEM, or the key does not match the certificate."""


def server_credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    """Credentials for `add_secure_port`; with `client_ca`, clients must present a certificate
    signed by one of its CAs."""
    cert_pem = _read(cert, "--tls-cert")
    key_pem = _read(key, "--tls-key")
    _check_pair(cert, key)
    ca_pem = None
    if client_ca is not None:
        ca_pem = _read(client_ca, "--tls-client-ca")
        _check_ca_bundle(client_ca)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)],
        root_certificates=ca_pem,
        require_client_auth=client_ca is not None,
    )


def _read(path: Path, flag: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{flag} {path}: cannot read ({exc.strerror or exc})") from exc
    if b"-----BEGIN " not in data:
        raise TlsConfigError(f"{flag} {path}: not a PEM file (expected '-----BEGIN ...')")
    return data


def _check_pair(cert: Path, key: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise TlsConfigError(
                f"--tls-key {key} is not the private key of --tls-cert {cert}"
            ) from exc
        raise TlsConfigError(
            f"--tls-cert {cert} / --tls-key {key}: not a usable PEM certificate and "
            f"unencrypted private key ({exc.reason or exc})"
        ) from exc


def _check_ca_bundle(client_ca: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=client_ca)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"--tls-client-ca {client_ca}: no usable PEM CA certificate ({exc.reason or exc})"
        ) from exc
    if not context.cert_store_stats()["x509"]:
        raise TlsConfigError(f"--tls-client-ca {client_ca}: holds no CA certificate")
