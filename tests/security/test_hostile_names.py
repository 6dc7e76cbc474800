"""Hostile names in records, requests and borrowed paths.

Every name a peer sends is checked where it is decoded (a record with an unsafe path is
refused whole, and the session logs why), checked again name by name before the borrowed
folder uses it, and escaped wherever it is shown: the CLI and the daemon's log. Transfer
requests (Manifest, Fetch) carry no path at all: a source serves by content hash from its
own index. The borrowed folder's own battery of hostile names and planted links is in
tests/fs/test_borrowed.py (test_every_hostile_name_is_refused,
test_every_accepted_placement_lands_under_the_root).
"""

from __future__ import annotations

import json
import logging
import ntpath
import os
import posixpath
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.core.errors import InvalidArgumentError, InvalidPathError, ProtocolError
from mesh.core.ids import NodeId
from mesh.core.paths import check_portable_name, check_relative
from mesh.core.records import Binding, Content, LoanState, LoanStatus
from mesh.core.replica import Outcome
from mesh.core.text import shown
from mesh.core.vector import VersionVector
from mesh.fs.borrowed import BorrowedFolder
from mesh.node.logs import EscapingFormatter
from mesh.v1 import records_pb2 as pb
from mesh.wire import records
from tests.cli.conftest import Mesh
from tests.fs.test_borrowed import put
from tests.node.conftest import NodeHandle, mesh_of

Make = Callable[[str], NodeHandle]
# Refused everywhere: they cannot name a file under a root.
REFUSED = {
    "parent": "../secret",
    "parent inside": "a/../../secret",
    "absolute": "/etc/passwd",
    "drive": "C:\\Windows\\win.ini",
    "backslash": "a\\..\\b",
    "NUL": "a\x00b",
    "empty": "",
    "empty name": "a//b",
    "dot": "./a",
    "trailing slash": "a/",
    "300 bytes": "x" * 300,
    "300 bytes of UTF-8": "é" * 150,
}
# Ordinary names on POSIX: accepted, and shown escaped; refused where Windows would misread
# them, except the override, which is only a display hazard.
ODD = {
    "device": "CON",
    "device with extension": "nul.txt",
    "serial port": "COM1",
    "trailing dot": "notes.",
    "colon": "a:b",
    "escape sequence": "\x1b[31mred\x1b[0m",
    "title escape": "\x1b]0;owned\x07",
    "newline": "two\nlines",
    "right-to-left override": "txt.\u202eexe",
}
WINDOWS_TAKES = {"right-to-left override"}
NFC, NFD = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")


def _bodies(path: str) -> dict[str, pb.Message]:
    content = pb.Content(hash=b"h" * 16, size=1, chunk_root=b"r" * 16)
    return {
        "entry": pb.LibraryEntry(library="lib", path=path, hash=b"h" * 16, chunk_root=b"r" * 16),
        "binding": pb.Binding(borrower=b"B" * 32, library="lib", path=path, content=content),
        "borrow request": pb.BorrowRequest(lender=b"L" * 32, library="lib", path=path),
        "loan status": pb.LoanStatus(lender=b"L" * 32, library="lib", path=path, hash=b"h" * 16),
        "denial": pb.Denial(borrower=b"B" * 32, library="lib", path=path, request_seq=1),
        "library name": pb.LibraryEntry(
            library=path, path="a", hash=b"h" * 16, chunk_root=b"r" * 16
        ),
    }


KINDS = {
    "entry": 1,
    "binding": 3,
    "borrow request": 5,
    "loan status": 4,
    "denial": 6,
    "library name": 1,
}


@pytest.mark.parametrize("what", sorted(REFUSED))
def test_hostile_paths_in_records_and_requests_are_refused_with_the_reason(what: str) -> None:
    for kind, msg in _bodies(REFUSED[what]).items():
        with pytest.raises(ProtocolError) as caught:
            records.decode(records.Kind(KINDS[kind]), msg.SerializeToString())
        reason = str(caught.value)
        assert "unsafe path" in reason or "bad library name" in reason, (kind, reason)
        assert "\x00" not in reason  # the reason quotes the name, escaped


@pytest.mark.parametrize("what", sorted(ODD))
def test_names_odd_only_on_windows_are_ordinary_on_posix_and_refused_for_windows(
    what: str, tmp_path: Path
) -> None:
    name = ODD[what]
    binding = Binding(
        borrower=NodeId(b"B" * 32),
        library="lib",
        path=f"folder/{name}",
        content=Content(hash=b"h" * 16, size=1, chunk_root=b"r" * 16),
    )
    assert records.decode(*records.encode(binding)) == binding
    posix = BorrowedFolder(tmp_path / "posix", portable=False)
    put(posix, "ab", ["tower", "lib", name], b"data")
    assert (tmp_path / "posix" / "tower" / "lib" / name).read_bytes() == b"data"
    if what in WINDOWS_TAKES:
        assert check_portable_name(name) == name
        return
    windows = BorrowedFolder(tmp_path / "windows", portable=True)
    with pytest.raises(InvalidPathError, match="Windows"):
        put(windows, "ab", ["tower", "lib", name], b"data")
    assert sorted(os.listdir(tmp_path / "windows")) == [".mesh-staging"]


def test_a_name_that_is_not_valid_unicode_is_refused() -> None:
    with pytest.raises(InvalidPathError, match="UTF-8"):
        check_relative("a/\udc80b")


def test_names_that_differ_only_by_unicode_normalization_are_two_files(tmp_path: Path) -> None:
    # Two different names to the lender (and to Linux), so two entries and two copies; a
    # file system that folds them (macOS) finds the first in the way of the second, and
    # mesh never overwrites what is in the way: it refuses the second with that reason.
    assert NFC != NFD and check_relative(NFC) and check_relative(NFD)
    folder = BorrowedFolder(tmp_path / "b")
    put(folder, "a1", ["tower", "lib", NFC], b"composed")
    put(folder, "a2", ["tower", "lib", NFD], b"decomposed")
    lib = tmp_path / "b" / "tower" / "lib"
    assert (lib / NFC).read_bytes() == b"composed"
    assert (lib / NFD).read_bytes() == b"decomposed"
    assert sorted(os.listdir(lib)) == sorted([NFC, NFD])


_path_text = st.one_of(
    st.text(max_size=60),
    st.lists(
        st.sampled_from(["a", "..", ".", "", "C:", "\\", "b\\..", "/", "x" * 256, NFD, "\x1b"]),
        max_size=6,
    ).map("/".join),
)


@given(_path_text)
def test_every_accepted_path_stays_under_its_root(path: str) -> None:
    try:
        check_relative(path)
    except InvalidPathError:
        return
    # Joined to a root by POSIX rules, it stays below that root; so by Windows rules, when
    # every name is also portable (what a borrower on Windows checks): "0:" is not.
    assert posixpath.normpath(posixpath.join("/root", path)).startswith("/root/")
    try:
        for name in path.split("/"):
            check_portable_name(name)
    except InvalidPathError:
        return
    assert ntpath.normpath(ntpath.join("C:\\root", path)).startswith("C:\\root\\")


def test_daemon_logs_show_hostile_names_escaped() -> None:
    formatter = EscapingFormatter("%(levelname)s %(message)s")
    for name in [*ODD.values(), NFD]:
        record = logging.LogRecord("mesh", logging.WARNING, "", 0, "cannot place %s", (name,), None)
        line = formatter.format(record)
        assert line == f"WARNING cannot place {shown(name)}"
        assert "\x1b" not in line and "\n" not in line and "\u202e" not in line


def test_the_cli_shows_hostile_names_escaped(mesh: Mesh, tmp_path: Path) -> None:
    lib = tmp_path / "Shared"
    lib.mkdir()
    for name in ODD.values():
        (lib / name).write_bytes(b"x")
    mesh.run("init", "--name", "tower")
    mesh.run("share", str(lib))
    out = mesh.run("ls").stdout
    for name in ODD.values():
        assert f"Shared/{shown(name)}" in out
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert len(out.splitlines()) == len(ODD)  # "two\nlines" did not start a line of its own
    # Scripts get the exact names from --json, as JSON escapes them.
    assert {e["path"] for e in json.loads(mesh.run("ls", "--json").stdout)} == set(ODD.values())


def test_a_long_name_in_a_failure_reason_does_not_make_the_borrowers_records_unacceptable(
    nodes: Make,
) -> None:
    """A lender's deep path ends up in the borrower's loan status when placing fails (the
    reason names the file). Peers refuse reasons over 1024 characters, and a refused record
    would hold back every later record of the borrower everywhere; so the borrower clips
    what it writes instead."""
    lender, borrower = nodes("lender"), nodes("borrower")
    mesh_of(lender, borrower)
    deep = "/".join(["d" * 200] * 20)
    with lender.local() as node:
        lender_id = node.node_id
    with borrower.local() as node:
        node.replica.write(
            LoanStatus(
                lender=lender_id,
                library="lib",
                path="a",
                hash=b"h" * 16,
                state=LoanState.FAILED,
                reason=f"cannot place /home/me/Borrowed/lender/lib/{deep}: no space left",
            )
        )
        batches = list(node.replica.missing(VersionVector()))
    with lender.local() as node:
        results = [node.replica.apply(b, b.origin) for b in batches]
    assert [r.reason for r in results if r.outcome is Outcome.REFUSED] == []


def test_a_node_never_writes_a_record_its_peers_would_refuse(nodes: Make) -> None:
    lender, borrower = nodes("lender"), nodes("borrower")
    mesh_of(lender, borrower)
    with lender.local() as node:
        lender_id = node.node_id
    with borrower.local() as node:
        before = node.replica.vector()
        bad = LoanStatus(
            lender=lender_id, library="lib", path="../x", hash=b"h" * 16, state=LoanState.HELD
        )
        with pytest.raises(InvalidArgumentError, match="peers would refuse"):
            node.replica.write(bad)
        assert node.replica.vector() == before
