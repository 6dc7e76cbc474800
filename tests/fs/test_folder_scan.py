"""One folder's scan, as a worker runs it: names looked up from the open folder, never
through a symlink, and its results carried back to the parent unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import xxhash

from mesh.fs.folder_scan import (
    FolderTask,
    scan_folder,
    scan_folders,
    scan_folders_packed,
    unpack_results,
)

LARGE = 1 << 20


def test_a_folder_swapped_for_a_symlink_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    # The parent listed "sub" as a folder; by the time a worker gets to it, it is a symlink.
    (root / "sub").symlink_to(outside)
    result = scan_folder(str(root), "sub", {}, LARGE)
    # Not a folder of the library any more, as the parent's next listing will say.
    assert result.missing and not result.listed
    assert not result.new and not result.subfolders


def test_new_files_are_hashed_and_special_files_skipped(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"alpha")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    result = scan_folder(str(tmp_path), "", {}, LARGE)
    rows = {row[0]: row for row in result.new}
    assert set(rows) == {"a", "empty"}
    assert result.subfolders == ["sub"]
    st = os.stat(tmp_path / "a")
    content = xxhash.xxh3_128_digest(b"alpha")
    assert rows["a"] == (
        "a",
        5,
        st.st_mtime_ns,
        st.st_ino,
        content,
        xxhash.xxh3_128_digest(content),
    )
    assert rows["empty"][4] == rows["empty"][5] == xxhash.xxh3_128_digest(b"")
    assert result.bytes_hashed == 5 and result.seen == 2


def test_a_workers_packed_results_are_what_it_found(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "new").write_bytes(b"new")
    (tmp_path / "d" / "changed").write_bytes(b"changed")
    (tmp_path / "d" / "big").write_bytes(os.urandom(3 * LARGE // 2))
    (tmp_path / "d" / "bigger").write_bytes(os.urandom(2 * LARGE))
    (tmp_path / "d" / "bad\\name").write_bytes(b"x")
    st = os.stat(tmp_path / "d" / "changed")
    known = {
        "changed": (1, st.st_mtime_ns, st.st_ino, b"\0" * 16, False),
        "gone": (1, 1, 1, b"\0" * 16, False),
    }
    task = FolderTask(root=str(tmp_path), folders=[("", {}), ("d", known)], large=2 * LARGE)
    direct = scan_folders(task)
    assert unpack_results(scan_folders_packed(task)) == direct
    d = direct[1]
    assert sorted(r[0] for r in d.new) == ["d/big", "d/new"]
    assert [r[0] for r in d.changed] == ["d/changed"]
    assert d.gone == ["d/gone"] and d.large == [("d/bigger", 2 * LARGE)]
    assert len(d.chunk_lists) == 1 and d.warnings
