"""Paging this node's own records: its entries (from the local index) and its other records
(from the records table) come out as one ascending run, however they interleave."""

from __future__ import annotations

from pathlib import Path

from mesh.core.records import Kind, LibraryRecord
from mesh.home import Home
from mesh.node.local import LocalNode
from mesh.store.index import ScanBatch


def test_own_records_among_entries_page_in_seq_order(tmp_path: Path) -> None:
    node, _ = LocalNode.init(Home.resolve(tmp_path / "n"), "n")
    try:
        folder = tmp_path / "lib"
        folder.mkdir()
        node.share(str(folder), "lib")
        rows = [(f"f{i}", i, i, i, bytes(16), bytes(16)) for i in range(10)]
        node.index.apply("lib", ScanBatch(new=rows[:5]))
        node.replica.write(LibraryRecord(name="lib", open=True))  # between the entries
        node.index.apply("lib", ScanBatch(new=rows[5:]))
        clock = node.replica.clock(node.node_id)
        assert clock is not None
        epoch, last = clock.epoch, clock.seq
        everything = node.records.envelopes(
            node.node_id, epoch, 0, last, max_count=100, max_bytes=1 << 20
        )
        # Seq 1 was the first library record, superseded by the one at seq 7.
        assert [e.seq for e in everything] == list(range(2, last + 1))
        assert [e.seq for e in everything if e.kind is not Kind.ENTRY] == [7]
        # Pages of 4 (the library record is among them), then a byte-bounded page.
        pages, after = [], 0
        while after < last:
            page = node.records.envelopes(
                node.node_id, epoch, after, last, max_count=4, max_bytes=1 << 20
            )
            pages.append([e.seq for e in page])
            after = page[-1].seq
        assert pages == [[2, 3, 4, 5], [6, 7, 8, 9], [10, 11, 12]]
        one = node.records.envelopes(node.node_id, epoch, 5, last, max_count=100, max_bytes=0)
        assert [e.seq for e in one] == [6]
    finally:
        node.close()
