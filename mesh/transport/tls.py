"""Mutual TLS between members: pinned node certificates both ways (FIELD-NOTES.md).

The server trusts exactly the current members' certificates. Its trust follows membership
without a restart: gRPC calls `TrustStore.fetch` (on its own threads) before each new
handshake, and it hands back a new configuration only when the member set changed. The
event loop replaces the snapshot whole, so the fetcher only ever reads one reference.

A client pins the one certificate it expects from that peer as its only root and checks
the shared SAN name; a peer whose certificate is unknown is first read with a plain TLS
handshake (`probe_certificate`), hashed and checked against the members, and only then
reached over a pinned channel.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterable

import grpc

from mesh.core.errors import PeerUnavailableError
from mesh.security.identity import Identity, der_to_pem


class TrustStore:
    """The member certificates the server accepts, as an atomically replaced snapshot."""

    def __init__(self, identity: Identity, members: Iterable[bytes] = ()) -> None:
        self._identity = identity
        self._lock = threading.Lock()
        self._version = 0
        self._served = -1
        self._bundle = self._make_bundle(members)

    def _make_bundle(self, members: Iterable[bytes]) -> bytes:
        ders = {self._identity.cert_der, *members}
        return b"".join(der_to_pem(d) for d in sorted(ders))

    def update(self, members: Iterable[bytes]) -> None:
        """Trust these members' certificates (DER) from the next handshake on."""
        bundle = self._make_bundle(members)
        with self._lock:
            if bundle != self._bundle:
                self._bundle = bundle
                self._version += 1

    def _configuration(self, bundle: bytes) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self._identity.key_pem, self._identity.cert_pem)], root_certificates=bundle
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's fetcher: a new configuration if membership changed, else None."""
        with self._lock:
            if self._served == self._version:
                return None
            self._served = self._version
            bundle = self._bundle
        return self._configuration(bundle)

    def server_credentials(self) -> grpc.ServerCredentials:
        with self._lock:
            self._served = self._version
            bundle = self._bundle
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(bundle), self.fetch, require_client_authentication=True
        )


def client_credentials(identity: Identity, peer_cert_der: bytes) -> grpc.ChannelCredentials:
    """Credentials that accept only `peer_cert_der` and present our own certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=der_to_pem(peer_cert_der),
        private_key=identity.key_pem,
        certificate_chain=identity.cert_pem,
    )


def _probe_blocking(host: str, port: int, timeout: float) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # We learn the certificate here, and decide by its hash whether to trust it. TLS 1.3
    # sends the server's certificate before asking for ours, so no key is needed to read it.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise PeerUnavailableError(f"{host}:{port} presented no certificate")
    return der


async def probe_certificate(host: str, port: int, limit_s: float) -> bytes:
    """The DER certificate a TLS server at host:port presents (not yet trusted)."""
    try:
        return await asyncio.to_thread(_probe_blocking, host, port, limit_s)
    except (OSError, ssl.SSLError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise PeerUnavailableError(f"cannot reach {host}:{port}: {reason}") from exc
