"""Folder loans between real `mesh up` processes on a simulated LAN (mDNS on, one node per
namespace): a folder with subfolders lent as one loan and followed while it lasts, a
pattern loan, a borrow request for a folder, the lender editing the folder while the
borrower is off, the borrower killed mid-pull, a recall mid-pull. After each step the
borrower's copy equals the lender's folder (or is gone) and nothing is left staged.

The tower serves at most 20 MB/s (`mesh up --limit`), so a 40 MB file takes two seconds
to pull: long enough to kill or recall in the middle, short enough for CI.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh.home import Home
from tests.lan.meshnodes import LanPeer, dump_logs, init_all, until, up_all
from tests.lan.netns import MakeLan
from tests.node.conftest import assert_no_stale_staging

pytestmark = pytest.mark.netns
MB = 1000 * 1000


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` by its relative path (mesh's own folders left out)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".mesh")]
        for name in filenames:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


def write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def staged(borrowed: Path) -> list[str]:
    staging = borrowed / ".mesh-staging"
    return sorted(os.listdir(staging)) if staging.exists() else []


class Pair:
    def __init__(self, tower: LanPeer, laptop: LanPeer, tmp: Path) -> None:
        self.tower, self.laptop = tower, laptop
        self.movies = tmp / "movies"
        self.borrowed = tmp / "laptop-borrowed"
        self.copy = self.borrowed / "tower" / "Movies"

    def loan(self, peer: LanPeer, loan_id: str) -> dict[str, Any]:
        found = [x for x in peer.json("loans") if x["id"] == loan_id]
        return found[0] if found else {}

    def state(self, peer: LanPeer, loan_id: str) -> str:
        with peer.control() as control:
            found = [x for x in control.loans() if x.id == loan_id]
        return found[0].phase if found else ""

    def pulling(self, loan_id: str, path: str) -> bool:
        """Whether the borrower's pull of that file of the loan is under way, some of it
        verified."""
        with self.laptop.control() as control:
            found = [x for x in control.loans(files=True) if x.id == loan_id]
        files = {f.path: f for f in found[0].file_list} if found else {}
        return path in files and files[path].state == "fetching" and files[path].bytes_done > 0

    def follows(self, sub: str) -> bool:
        return tree(self.copy / sub) == tree(self.movies / sub) and not staged(self.borrowed)

    def scan(self) -> None:
        self.tower.cli("scan", "Movies")


@pytest.fixture
def pair(make_lan: MakeLan, tmp_path: Path) -> Iterator[Pair]:
    lan = make_lan(2)
    tower = LanPeer(lan.nodes[0], tmp_path, "tower", "--limit", "20MB")
    laptop = LanPeer(lan.nodes[1], tmp_path, "laptop")
    init_all([tower, laptop])
    laptop.configure("borrowing.folder", str(tmp_path / "laptop-borrowed"))
    laptop.configure("borrowing.reserve", "0")
    up_all([tower, laptop])
    code = tower.invite()
    laptop.cli("join", code)
    yield Pair(tower, laptop, tmp_path)
    dump_logs([tower, laptop])
    assert_no_stale_staging("laptop", Home.resolve(laptop.home), tmp_path / "laptop-borrowed")


def loan_id(out: str) -> str:
    found = re.search(r"loan (\w+)", out)
    assert found, out
    return found.group(1)


def test_a_folder_loan_follows_its_folder_through_edits_kills_and_recalls(pair: Pair) -> None:
    tower, laptop, movies = pair.tower, pair.laptop, pair.movies
    write(
        movies,
        {
            "Season 1/e01.mkv": os.urandom(3 * MB),
            "Season 1/e02.mkv": os.urandom(200_000),
            "Season 1/extras/making-of.mkv": os.urandom(1 * MB),
            "Season 1/extras/deep/notes.txt": b"notes",
            "Season 2/e01.mkv": b"two",
            "Season 2/e02.mkv": b"two again",
            "Season 2/cover.jpg": b"jpg",
        },
    )
    tower.cli("share", str(movies), "--as", "Movies")

    # A folder with subfolders, one loan, `--wait` until held.
    out = tower.cli("lend", str(movies / "Season 1"), "--to", "laptop", "--wait", timeout=120)
    assert "4 files" in out.stdout and "holds a verified copy" in out.stdout
    season = loan_id(out.stdout)
    assert pair.follows("Season 1")
    line = pair.loan(laptop, season)
    assert (line["folder"], line["files"], line["files_done"], line["state"]) == (
        True,
        4,
        4,
        "held",
    )
    assert len(tower.json("loans")) == 1  # one line in the ledger, not four
    files = {f["path"]: f["state"] for f in laptop.json("loans", "--files")[0]["file_list"]}
    assert files == dict.fromkeys(files, "held") and len(files) == 4

    # Added, changed and removed while lent: the borrower follows.
    write(movies, {"Season 1/e03.mkv": os.urandom(500_000), "Season 1/e02.mkv": b"new cut"})
    (movies / "Season 1/extras/deep/notes.txt").unlink()
    pair.scan()
    until("the copy to follow the edits", lambda: pair.follows("Season 1"), 60)

    # Edited while the borrower is off: it catches up when back.
    laptop.stop()
    write(movies, {"Season 1/e04.mkv": b"four"})
    (movies / "Season 1/e03.mkv").unlink()
    pair.scan()
    laptop.start()
    until("laptop to run", laptop.running, 30)
    until("the copy to catch up", lambda: pair.follows("Season 1"), 60)

    # Killed mid-pull: it resumes and ends with the folder, nothing staged.
    write(movies, {"Season 1/big.mkv": os.urandom(40 * MB)})
    pair.scan()
    until("the pull to be under way", lambda: pair.pulling(season, "Season 1/big.mkv"), 30)
    laptop.stop(signal.SIGKILL)
    laptop.start()
    until("laptop to run", laptop.running, 30)
    until("the copy to be whole after the kill", lambda: pair.follows("Season 1"), 60)
    until("tower to see it held", lambda: pair.state(tower, season) == "held", 30)

    # A pattern, one loan: only what it matches.
    out = tower.cli("lend", "Movies/Season 2/*.mkv", "--to", "laptop", "--wait", timeout=60)
    assert "2 files" in out.stdout
    assert tree(pair.copy / "Season 2") == {"e01.mkv": b"two", "e02.mkv": b"two again"}

    # Recalled mid-pull: the whole copy goes, with what was staged; a file of the user's
    # own there stays.
    own = pair.copy / "Season 1" / "mine.txt"
    own.write_bytes(b"the user's")
    write(movies, {"Season 1/big.mkv": os.urandom(40 * MB)})
    pair.scan()
    until("the new version's pull", lambda: pair.pulling(season, "Season 1/big.mkv"), 30)
    tower.cli("recall", season)
    until(
        "the copy to go",
        lambda: (
            tree(pair.copy / "Season 1") == {"mine.txt": b"the user's"}
            and not staged(pair.borrowed)
        ),
        30,
    )
    until("tower to see it ended", lambda: pair.state(tower, season) == "ended", 30)


def test_a_borrow_request_for_a_folder(pair: Pair) -> None:
    tower, laptop, movies = pair.tower, pair.laptop, pair.movies
    write(movies, {"Album/a/1.jpg": b"1", "Album/a/2.jpg": b"22", "Album/b/3.jpg": b"333"})
    tower.cli("share", str(movies), "--as", "Movies")

    def known() -> bool:
        return len(laptop.json("ls", "--node", "tower")) == 3

    until("laptop to see tower's files", known, 30)
    laptop.cli("borrow", "tower:Movies/Album/")
    until("the folder to be held", lambda: pair.follows("Album") and tree(pair.copy), 30)
    (line,) = laptop.json("loans")
    assert (line["path"], line["files"], line["state"]) == ("Album/", 3, "held")
