"""Folder loans' pure parts: patterns, manifest pages, digests, progress sums."""

from __future__ import annotations

import pytest

from mesh.core import folders
from mesh.core.errors import InvalidArgumentError
from mesh.core.folders import FileProgress
from mesh.core.records import ManifestFile


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("Season 1/**", "Season 1/e01.mkv", True),
        ("Season 1/**", "Season 1/extras/a.mkv", True),
        ("Season 1/**", "Season 10/e01.mkv", False),
        ("Season 1/**", "Season 1", False),
        ("**", "a.txt", True),
        ("**", "a/b/c.txt", True),
        ("Season 1/*.mkv", "Season 1/e01.mkv", True),
        ("Season 1/*.mkv", "Season 1/extras/e01.mkv", False),
        ("*/e0?.mkv", "Season 2/e03.mkv", True),
        ("**/*.jpg", "a/b/c.jpg", True),
        ("**/*.jpg", "c.jpg", True),
        (folders.folder_pattern("[1080p] *"), "[1080p] */x", True),
        (folders.folder_pattern("[1080p] *"), "1 x/x", False),
    ],
)
def test_patterns(pattern: str, path: str, hit: bool) -> None:
    assert folders.matches(pattern, path) is hit


def test_folders_show_as_folders() -> None:
    assert folders.shown(folders.folder_pattern("Season 1")) == "Season 1/"
    assert folders.shown(folders.folder_pattern("")) == "/"
    assert folders.shown(folders.folder_pattern("[x]*")) == "[x]*/"
    assert folders.shown("Season 1/*.mkv") == "Season 1/*.mkv"


@pytest.mark.parametrize("bad", ["", "a//b", "../x", "a/./b"])
def test_bad_patterns_are_refused(bad: str) -> None:
    with pytest.raises(InvalidArgumentError):
        folders.check_pattern(bad)


def _file(i: int) -> ManifestFile:
    return ManifestFile(path=f"d/{i:06}.bin", size=i, hash=bytes(16), chunk_root=bytes(16))


def test_a_hundred_thousand_files_fit_a_few_hundred_pages() -> None:
    pages = folders.paginate(_file(i) for i in range(100_000))
    assert sum(len(p) for p in pages) == 100_000
    assert len(pages) < 300  # the binding names ~32 bytes per page: well under a record
    flat = [f.path for p in pages for f in p]
    assert flat == sorted(flat)


def test_the_digest_changes_with_any_page() -> None:
    a, b = folders.page_hash(b"one"), folders.page_hash(b"two")
    assert folders.digest([a, b]) != folders.digest([b, a])
    assert len(folders.digest([a])) == folders.DIGEST_BYTES


def test_progress_sums_up() -> None:
    sums = folders.summed(
        [
            FileProgress(path="a", size=10, state="held"),
            FileProgress(path="b", size=20, state="fetching", bytes_done=5),
            FileProgress(path="c", size=30, state="failed", reason="no source"),
        ]
    )
    assert (sums.files, sums.files_held, sums.size, sums.bytes_done) == (3, 1, 60, 15)
    assert not sums.held
    assert sums.reason() == "c: no source"
