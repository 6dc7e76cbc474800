"""Issue item 7: a daemon killed in the middle of a scan's commit, and one killed in the
middle of applying a gossip batch (the test build's hooks stop the process inside the
transaction, its rows written and not committed, as a SIGKILL there would): its store is
consistent afterwards (SQLite's own check passes, no half-applied batch, no sequence
number used twice or claimed without its record), and after the restart the peers catch up
to exactly the same records."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from mesh.core.entries import IndexedEntry
from mesh.core.errors import MeshError
from mesh.node.local import LocalNode
from tests.faults.harness import FaultNode, dump_logs, fault_mesh, tmpfs, until
from tests.lan.netns import MakeLan

pytestmark = pytest.mark.netns
# The scanner commits a folder at a time once it has COMMIT_EVERY files: the kill is in
# the second commit. Gossip batches of 64 KiB hold a few hundred of these entries.
FILES = 6_000
PER_FOLDER = 100
COMMIT_EVERY = "2000"
BATCH = str(64 << 10)

Row = tuple[str, str, bytes, int]


def rows_of(entries: list[IndexedEntry]) -> list[Row]:
    return sorted((e.entry.library, e.entry.path, e.entry.hash, e.seq) for e in entries)


def rows(node: FaultNode, of: str | None = None) -> list[Row]:
    """Entries (library, path, hash, seq) as the daemon shows them: its own, or `of`'s."""
    with node.control() as control:
        return rows_of(control.entries() if of is None else control.browse(node=of))


def check_store(node: FaultNode) -> None:
    with sqlite3.connect(node.home.database) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_daemon_killed_during_a_scan_or_a_gossip_batch_keeps_a_consistent_store(
    make_lan: MakeLan, tmp_path: Path
) -> None:
    # Every node sends small gossip batches (the laptop relays the tower's records too).
    tower, laptop, desk = nodes = fault_mesh(
        make_lan(3), tmp_path, ["tower", "laptop", "desk"], hooks=["--gossip-batch-bytes", BATCH]
    )
    try:
        desk.stop()
        with tmpfs(tmp_path / "photos", "64m") as photos:
            for n in range(FILES):
                folder = photos / f"{n // PER_FOLDER:03d}"
                if n % PER_FOLDER == 0:
                    folder.mkdir()
                (folder / f"{n}.jpg").write_bytes(n.to_bytes(4, "big"))
            catch_up(tower, laptop, desk, photos)
    finally:
        dump_logs(nodes)


def catch_up(tower: FaultNode, laptop: FaultNode, desk: FaultNode, photos: Path) -> None:
    # -- killed during a scan --
    tower.stop()
    tower.start("--die-in-scan-commit", "2", "--scan-commit-every", COMMIT_EVERY)
    until("the tower to run", tower.running, 20)
    with tower.control() as control:
        control.share(str(photos), "Photos")
        with pytest.raises(MeshError):
            control.scan(["Photos"])
    tower.died()
    check_store(tower)
    node = LocalNode.open(tower.home)
    try:
        own = node.records.vector()[node.node_id]
        entries = node.entries()
        seqs = [e.seq for e in entries]
    finally:
        node.close()
    # The first commit is there, whole, and nothing of the second.
    assert 0 < len(seqs) < FILES
    per_folder = Counter(e.entry.path.split("/")[0] for e in entries)
    assert set(per_folder.values()) == {PER_FOLDER}
    assert len(set(seqs)) == len(seqs)
    assert max(seqs) <= own.seq
    tower.up()
    with tower.control() as control:
        control.scan(["Photos"])
    tower_rows = rows(tower)
    assert len(tower_rows) == FILES
    assert len({row[3] for row in tower_rows}) == FILES
    until("the laptop to catch up", lambda: rows(laptop, "tower") == tower_rows, 60, every=0.5)

    # -- killed while applying a gossip batch of the catch-up --
    desk.start("--die-in-gossip-batch", "3")
    desk.died()
    check_store(desk)
    node = LocalNode.open(desk.home)
    try:
        clock = node.records.vector()[node.member_named("tower")]
        held = rows_of(node.browse(node="tower"))
    finally:
        node.close()
    assert 0 < len(held) < FILES
    # Exactly the tower's records up to what the desk's vector says it holds: a batch is
    # applied whole or not at all, and none is skipped.
    assert held == [row for row in tower_rows if row[3] <= clock.seq]
    desk.up()
    until("the desk to catch up", lambda: rows(desk, "tower") == tower_rows, 60, every=0.5)
