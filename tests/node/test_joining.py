"""Adopting a mesh's membership records: forged ones are refused and change nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.core.errors import ProtocolError
from mesh.home import Home
from mesh.node.local import LocalNode


@pytest.fixture
def make(tmp_path: Path) -> Iterator[object]:
    opened: list[LocalNode] = []

    def make_node(name: str) -> LocalNode:
        node, _ = LocalNode.init(Home.resolve(tmp_path / name), name)
        opened.append(node)
        return node

    yield make_node
    for node in opened:
        node.close()


def test_a_genuine_admission_makes_the_joiner_a_member(make: object) -> None:
    tower, laptop = make("tower"), make("laptop")  # type: ignore[operator]
    tower.admit(laptop.identity.cert_der, "laptop")
    root, records, _ = tower.pairing_answer()
    laptop.join_mesh(root, records)
    assert set(laptop.membership.members) == {tower.node_id, laptop.node_id}
    assert laptop.membership.root == tower.node_id


def test_an_admission_with_a_bad_signature_is_refused(make: object) -> None:
    tower, laptop = make("tower"), make("laptop")  # type: ignore[operator]
    tower.admit(laptop.identity.cert_der, "laptop")
    root, records, _ = tower.pairing_answer()
    forged = [
        dataclasses.replace(e, signature=e.signature[:-1] + bytes([e.signature[-1] ^ 1]))
        if e.origin == tower.node_id and e.seq == max(r.seq for r in records)
        else e
        for e in records
    ]
    with pytest.raises(ProtocolError, match="bad"):
        laptop.join_mesh(root, forged)
    assert laptop.membership.members == {}
    assert laptop.state.root() is None


def test_an_admission_signed_by_a_non_member_does_not_count(make: object) -> None:
    tower, laptop, stranger = make("tower"), make("laptop"), make("stranger")  # type: ignore[operator]
    tower.found_mesh()
    stranger.admit(laptop.identity.cert_der, "laptop")  # stranger's own mesh, not tower's
    root, tower_records, _ = tower.pairing_answer()
    _, stranger_records, _ = stranger.pairing_answer()
    with pytest.raises(ProtocolError):
        laptop.join_mesh(root, [*tower_records, *stranger_records])
    assert laptop.membership.members == {}
    assert laptop.state.root() is None
    # Nothing of the attempt stayed behind: a genuine join still works.
    tower.admit(laptop.identity.cert_der, "laptop")
    root, records, _ = tower.pairing_answer()
    laptop.join_mesh(root, records)
    assert laptop.membership.is_member(laptop.node_id)
