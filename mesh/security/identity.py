"""A node's identity: an EC P-256 key and a self-signed certificate made on first start.

The node id is the SHA-256 of the DER certificate. A certificate cannot carry its own hash,
so every node certificate carries the same SAN name (`SAN_NAME`); clients pin the peer's
exact certificate as their only root and override the target name. Each subject CN is
derived from the public key, because grpcio verifies only the first of several trust-bundle
certificates that share a subject (FIELD-NOTES.md). Ed25519 would fail the TLS handshake in
grpcio, hence P-256.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mesh.core.errors import LocalError, NotInitializedError
from mesh.core.ids import NodeId

SAN_NAME = "node.mesh.invalid"
_VALIDITY = dt.timedelta(days=365 * 100)


@dataclass(frozen=True)
class Identity:
    """This node's key and certificate."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @functools.cached_property
    def cert_der(self) -> bytes:
        # Cached (key and certificate never change): node_id is asked per file pulled.
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @functools.cached_property
    def node_id(self) -> NodeId:
        return NodeId.of_certificate(self.cert_der)

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


def generate(now: dt.datetime | None = None) -> Identity:
    """A fresh key and a self-signed certificate with a subject unique to the key."""
    key = ec.generate_private_key(ec.SECP256R1())
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mesh"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, "mesh-" + hashlib.sha256(public_der).hexdigest()[:32]
            ),
        ]
    )
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=1)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SAN_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Identity(key=key, certificate=certificate)


def save(identity: Identity, key_file: Path, cert_file: Path) -> None:
    """Write the key (mode 0600, created so, never world-readable) and the certificate."""
    for path, data, mode in (
        (key_file, identity.key_pem, 0o600),
        (cert_file, identity.cert_pem, 0o644),
    ):
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)


def load(key_file: Path, cert_file: Path) -> Identity:
    """Read this node's identity; NotInitializedError when there is none."""
    try:
        key_pem = key_file.read_bytes()
        cert_pem = cert_file.read_bytes()
    except FileNotFoundError as exc:
        raise NotInitializedError("this node has no identity yet; run `mesh init`") from exc
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise LocalError(f"{key_file} does not hold an EC key")
    certificate = x509.load_pem_x509_certificate(cert_pem)
    if certificate.public_key() != key.public_key():
        raise LocalError(f"{cert_file} does not belong to the key in {key_file}")
    return Identity(key=key, certificate=certificate)


def certificate_from_der(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def der_to_pem(der: bytes) -> bytes:
    return certificate_from_der(der).public_bytes(serialization.Encoding.PEM)


def pem_to_der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def verify(cert_der: bytes, data: bytes, signature: bytes) -> bool:
    """Whether `signature` over `data` was made by the key of `cert_der`."""
    try:
        public = certificate_from_der(cert_der).public_key()
    except ValueError:
        return False
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    try:
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
