"""Node identities: P-256 keys, certificates with unique subjects, ids that are their hash."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.core.errors import LocalError, NotInitializedError
from mesh.security import identity as ident


def test_a_new_identity_is_p256_with_a_subject_of_its_own() -> None:
    a, b = ident.generate(), ident.generate()
    assert isinstance(a.key.curve, ec.SECP256R1)
    assert a.certificate.subject != b.certificate.subject
    assert a.node_id.raw == hashlib.sha256(a.cert_der).digest()
    san = a.certificate.extensions.get_extension_for_oid(
        ident.x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME
    )
    assert ident.SAN_NAME in str(san.value)


def test_save_and_load_keep_the_key_private(tmp_path: Path) -> None:
    me = ident.generate()
    ident.save(me, tmp_path / "k", tmp_path / "c")
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    again = ident.load(tmp_path / "k", tmp_path / "c")
    assert again.node_id == me.node_id


def test_a_certificate_of_another_key_is_refused(tmp_path: Path) -> None:
    a, b = ident.generate(), ident.generate()
    ident.save(a, tmp_path / "k", tmp_path / "c")
    (tmp_path / "c").write_bytes(b.cert_pem)
    with pytest.raises(LocalError, match="does not belong"):
        ident.load(tmp_path / "k", tmp_path / "c")


def test_loading_nothing_says_to_init(tmp_path: Path) -> None:
    with pytest.raises(NotInitializedError, match="mesh init"):
        ident.load(tmp_path / "k", tmp_path / "c")


def test_signatures_verify_only_with_the_right_certificate() -> None:
    a, b = ident.generate(), ident.generate()
    sig = a.sign(b"data")
    assert ident.verify(a.cert_der, b"data", sig)
    assert not ident.verify(a.cert_der, b"other", sig)
    assert not ident.verify(b.cert_der, b"data", sig)
    assert not ident.verify(b"not a certificate", b"data", sig)
    assert not ident.verify(a.cert_der, b"data", b"garbage")
