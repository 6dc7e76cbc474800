"""This node's entries are its replicated records: served from the local index, numbered from
the same clock as its other records, relayed byte for byte by the peers that receive them."""

from __future__ import annotations

from pathlib import Path

from mesh.core.entries import LibraryEntry
from mesh.core.records import Kind, LibraryRecord
from mesh.core.replica import Outcome
from mesh.core.vector import VersionVector
from mesh.home import Home
from mesh.node.local import LocalNode
from mesh.wire import records as wire_records


def make(tmp_path: Path, name: str) -> LocalNode:
    node, _ = LocalNode.init(Home.resolve(tmp_path / name), name)
    return node


def test_entries_and_other_records_share_one_numbering_and_reach_a_peer(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(5):
        (lib / f"f{i}").write_bytes(bytes([i]) * (i + 1))
    tower, laptop = make(tmp_path, "tower"), make(tmp_path, "laptop")
    try:
        tower.admit(laptop.identity.cert_der, "laptop")
        laptop.join_mesh(tower.node_id, tower.records.membership())
        tower.share(str(lib))  # a library record, then five entries
        tower.scan()
        (lib / "f0").unlink()
        tower.scan()
        batches = list(tower.replica.missing(laptop.replica.vector()))
        mine = [e for b in batches for e in b.envelopes if e.origin == tower.node_id]
        seqs = [e.seq for e in mine]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        kinds = [e.kind for e in mine]
        assert kinds.count(Kind.ENTRY) == 5 and Kind.LIBRARY in kinds  # f0: its tombstone
        decoded = [wire_records.decode(e.kind, e.body) for e in mine if e.kind is Kind.ENTRY]
        assert any(isinstance(d, LibraryEntry) and d.deleted and d.path == "f0" for d in decoded)
        for batch in batches:
            result = laptop.replica.apply(batch, tower.node_id)
            assert result.outcome is not Outcome.REFUSED, result.reason
        assert laptop.replica.vector().get(tower.node_id) == tower.replica.vector()[tower.node_id]
        # Relayed byte for byte: what laptop would send on equals what tower sent.
        relayed = [
            e
            for b in laptop.replica.missing(VersionVector())
            for e in b.envelopes
            if e.origin == tower.node_id and e.kind is not Kind.ADMISSION
        ]
        assert {(e.seq, e.body) for e in relayed} == {
            (e.seq, e.body) for e in mine if e.kind is not Kind.ADMISSION
        }
        assert any(isinstance(wire_records.decode(e.kind, e.body), LibraryRecord) for e in relayed)
    finally:
        tower.close()
        laptop.close()


def test_a_purged_own_tombstone_leaves_the_local_index(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "gone").write_bytes(b"x")
    tower = make(tmp_path, "tower")
    try:
        tower.found_mesh()
        tower.share(str(lib))
        tower.scan()
        (lib / "gone").unlink()
        tower.scan()
        assert [e.entry.path for e in tower.entries(include_deleted=True)] == ["gone"]
        assert tower.replica.publish_vector() is not None
        purged = tower.replica.purge()
        assert len(purged) == 1
        assert tower.entries(include_deleted=True) == []
    finally:
        tower.close()
