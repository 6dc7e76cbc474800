"""Identity at the TLS handshake: only a member's valid certificate, pinned, gets through.

(An unknown certificate is refused at the handshake in tests/node/test_daemon_tls.py.)
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from mesh.core.errors import PeerUnavailableError
from mesh.core.gossip import Ping
from mesh.security import identity as ident
from tests.security.conftest import Serve, first_frame


def expired(days_left: int = -1) -> ident.Identity:
    """A node identity like any other, except that its certificate ran out yesterday (or
    runs out in `days_left` days)."""
    fresh = ident.generate()
    cert = fresh.certificate
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(fresh.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now + dt.timedelta(days=days_left))
    )
    for ext in cert.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return ident.Identity(key=fresh.key, certificate=builder.sign(fresh.key, hashes.SHA256()))


def _refused_at_handshake(outcome: object) -> bool:
    return isinstance(outcome, PeerUnavailableError) and "unavailable" in str(outcome)


async def test_a_member_with_a_valid_certificate_is_served(serve: Serve) -> None:
    # Made like the expired ones below but valid one more day: only the date differs.
    server_id, member = expired(days_left=1), expired(days_left=1)
    server, handlers = await serve(server_id, [member])
    assert await first_frame(member, server_id, server.port) == Ping(nonce=7)
    assert handlers.calls == [member.node_id]


async def test_an_expired_member_certificate_is_refused_at_the_handshake(serve: Serve) -> None:
    server_id, old = ident.generate(), expired()
    assert old.certificate.not_valid_after_utc < dt.datetime.now(dt.UTC)
    server, handlers = await serve(server_id, [old])  # even though it is a member
    assert _refused_at_handshake(await first_frame(old, server_id, server.port))
    assert handlers.calls == []


async def test_an_expired_server_certificate_is_refused_by_the_client(serve: Serve) -> None:
    old, member = expired(), ident.generate()
    server, handlers = await serve(old, [member])
    assert _refused_at_handshake(await first_frame(member, old, server.port))
    assert handlers.calls == []


async def test_a_server_presenting_another_certificate_than_the_pinned_one_is_refused(
    serve: Serve,
) -> None:
    # The client expects `expected` at this address; an impostor member answers there.
    impostor, expected, client = ident.generate(), ident.generate(), ident.generate()
    server, handlers = await serve(impostor, [client, expected])
    assert _refused_at_handshake(await first_frame(client, expected, server.port))
    assert handlers.calls == []


async def test_a_client_certificate_of_another_key_than_the_members_is_refused(
    serve: Serve,
) -> None:
    # Same subject and SAN as a member's certificate, but made for another key: the pin is
    # the whole certificate, so a look-alike gets nowhere.
    server_id, member = ident.generate(), ident.generate()
    server, handlers = await serve(server_id, [member])
    look_alike = ident.generate()
    assert _refused_at_handshake(await first_frame(look_alike, server_id, server.port))
    assert handlers.calls == []
