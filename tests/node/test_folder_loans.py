"""Folder loans between real daemons over mutual TLS on 127.0.0.1: one binding for a
folder or a pattern, followed while it lasts, removed as a whole when it ends."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from mesh.core.records import ManifestFile, ManifestPage
from mesh.node.folder_plan import WAITING_FOR_MANIFEST
from mesh.node.local import now_ms
from tests.node.conftest import NodeHandle, mesh_of, wait_for
from tests.node.test_gossip import running, scan, share_and_scan
from tests.node.test_lending import lend, loans, phase, start, until_phase

Make = Callable[[str], NodeHandle]
T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T]], what: str, within: float = 15) -> T:
    """Await `check` until it gives something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not (value := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` by its relative path (mesh's own folders left out)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".mesh")]
        for name in filenames:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


def staged(tmp: Path) -> list[str]:
    staging = tmp / "laptop-borrowed" / ".mesh-staging"
    return sorted(os.listdir(staging)) if staging.exists() else []


def write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


async def two(nodes: Make, tmp: Path, **laptop: object) -> tuple[NodeHandle, NodeHandle]:
    tower, lap = nodes("tower"), nodes("laptop")
    mesh_of(tower, lap)
    await start(tower, tmp)
    await start(lap, tmp, static_peers=(tower.address,), **laptop)
    return tower, lap


SEASON = {
    "Season 1/e01.mkv": os.urandom(1_500_000),
    "Season 1/e02.mkv": os.urandom(70_000),
    "Season 1/extras/making-of.mkv": os.urandom(2_100_000),
    "Season 1/extras/notes.txt": b"notes",
    "Season 2/e01.mkv": b"not lent",
}


async def test_a_folder_is_one_loan_followed_while_it_lasts(nodes: Make, tmp_path: Path) -> None:
    tower, laptop = await two(nodes, tmp_path)
    movies = tmp_path / "movies"
    write(movies, SEASON)
    await share_and_scan(tower, movies, "Movies")
    line = await lend(tower, str(movies / "Season 1"), "laptop")
    assert line.folder and line.files == 4 and line.path == "Season 1/"
    await until_phase(laptop, line.id, "held")
    copy = tmp_path / "laptop-borrowed" / "tower" / "Movies"
    assert tree(copy) == {k: v for k, v in SEASON.items() if k.startswith("Season 1/")}
    assert len(await loans(tower)) == 1
    held = (await loans(laptop))[line.id]
    assert (held.files_done, held.bytes_done) == (4, held.size)

    # Add, change and delete while lent: the borrower follows.
    write(movies, {"Season 1/e03.mkv": os.urandom(300_000), "Season 1/e02.mkv": b"changed"})
    (movies / "Season 1/extras/notes.txt").unlink()
    await scan(tower, "Movies")
    want = tree(movies / "Season 1")

    def follows() -> bool:
        return tree(copy / "Season 1") == want

    await wait_for(follows, within=15, what="the copy to follow the folder")
    await until_phase(tower, line.id, "held")
    assert staged(tmp_path) == []

    # A file of the user's own in the borrowed folder stays when the loan ends.
    d = running(tower)
    await d.store(lambda: d.lending.recall(line.id, now_ms()))
    await wait_for(lambda: not (copy / "Season 1/e01.mkv").exists(), what="the copy to go")
    await until_phase(tower, line.id, "ended")
    assert not (copy / "Season 1").exists()
    assert staged(tmp_path) == []


async def test_a_pattern_is_one_loan(nodes: Make, tmp_path: Path) -> None:
    tower, laptop = await two(nodes, tmp_path)
    movies = tmp_path / "movies"
    write(movies, SEASON)
    await share_and_scan(tower, movies, "Movies")
    line = await lend(tower, "Movies/Season 1/*.mkv", "laptop")
    assert line.files == 2
    await until_phase(laptop, line.id, "held")
    copy = tmp_path / "laptop-borrowed" / "tower" / "Movies"
    assert sorted(tree(copy)) == ["Season 1/e01.mkv", "Season 1/e02.mkv"]
    # A new file that matches joins the loan.
    write(movies, {"Season 1/e04.mkv": b"four"})
    await scan(tower, "Movies")
    await wait_for(lambda: (copy / "Season 1/e04.mkv").exists(), what="the new match")


async def test_a_borrow_request_for_a_folder(nodes: Make, tmp_path: Path) -> None:
    tower, laptop = await two(nodes, tmp_path)
    movies = tmp_path / "movies"
    write(movies, SEASON)
    await share_and_scan(tower, movies, "Movies")
    d = running(laptop)

    async def tower_known() -> bool:
        return len(await d.store(d.local.browse, "tower", None)) == len(SEASON)

    await until(tower_known, "tower's index")
    asked = await d.store(
        lambda: d.lending.request_line(d.lending.borrow("tower", "Movies/Season 1/", 0, now_ms()))
    )
    # The folder as typed, in the answer and in `mesh requests`, as the ledger shows its loan
    # (the request carried "Season 1/**" and both said so).
    assert asked.path == "Season 1/"
    listed = await d.store(lambda: [d.lending.request_line(r) for r in d.lending.requests()])
    assert [r.path for r in listed] == ["Season 1/"]

    async def one_loan() -> str:
        lines = await loans(laptop)
        return next(iter(lines)) if lines else ""

    loan_id = await until(one_loan, "the loan")
    await until_phase(laptop, loan_id, "held")
    assert (await loans(laptop))[loan_id].path == "Season 1/"
    copy = tmp_path / "laptop-borrowed" / "tower" / "Movies"
    assert tree(copy) == {k: v for k, v in SEASON.items() if k.startswith("Season 1/")}


async def test_a_folder_over_the_quota_is_refused_as_a_whole(nodes: Make, tmp_path: Path) -> None:
    tower, laptop = await two(nodes, tmp_path, quota=2_000_000)
    movies = tmp_path / "movies"
    write(movies, SEASON)
    await share_and_scan(tower, movies, "Movies")
    line = await lend(tower, "Movies/Season 1/", "laptop")
    await until_phase(laptop, line.id, "refused")
    reason = (await loans(laptop))[line.id].reason
    assert "as a whole" in reason and "quota" in reason
    assert tree(tmp_path / "laptop-borrowed") == {}
    assert staged(tmp_path) == []
    await until_phase(tower, line.id, "refused")  # one status, seen by the lender too


async def test_a_page_the_binding_does_not_name_brings_nothing(nodes: Make, tmp_path: Path) -> None:
    """A manifest page whose hash is not the one the lender signed in the binding (as one
    a relaying member made up would be) is not used: nothing it names is pulled."""
    tower, laptop = nodes("tower"), nodes("laptop")
    mesh_of(tower, laptop)
    await start(tower, tmp_path)
    movies = tmp_path / "movies"
    write(movies, {"Season 1/e01.mkv": b"one"})
    await share_and_scan(tower, movies, "Movies")
    line = await lend(tower, "Movies/Season 1/", "laptop")
    d = running(tower)

    def forge() -> None:
        (lent,) = d.lending.bindings()
        b = lent.binding
        evil = ManifestFile(path="Season 1/evil.exe", size=3, hash=bytes(16), chunk_root=bytes(16))
        page = ManifestPage(
            borrower=b.borrower, library=b.library, path=b.path, index=0, files=(evil,)
        )
        d.local.replica.write(page)  # the page changes; the signed binding does not

    await d.store(forge)
    await start(laptop, tmp_path, static_peers=(tower.address,))

    async def stuck() -> bool:
        found = (await loans(laptop)).get(line.id)
        return found is not None and WAITING_FOR_MANIFEST in found.reason

    await until(stuck, "the borrower to wait for a page it can check")
    copy = tmp_path / "laptop-borrowed/tower/Movies/Season 1"
    assert not copy.exists()
    # The lender's next manifest writes the page it signed for again: the loan goes on.
    write(movies, {"Season 1/e02.mkv": b"two"})
    await scan(tower, "Movies")
    await until_phase(laptop, line.id, "held")
    assert tree(copy) == {"e01.mkv": b"one", "e02.mkv": b"two"}


async def test_a_folder_loan_waits_for_acceptance_then_returns_whole(
    nodes: Make, tmp_path: Path
) -> None:
    tower, laptop = await two(nodes, tmp_path, borrow_ask_first=True)
    movies = tmp_path / "movies"
    write(movies, SEASON)
    await share_and_scan(tower, movies, "Movies")
    line = await lend(tower, "Movies/Season 1/", "laptop")
    await until_phase(laptop, line.id, "awaiting acceptance")
    d = running(laptop)
    await d.store(lambda: d.lending.answer_loan("Season 1/", True, now_ms()))
    await until_phase(laptop, line.id, "held")
    copy = tmp_path / "laptop-borrowed" / "tower" / "Movies"
    assert len(tree(copy)) == 4
    await d.store(lambda: d.lending.give_back(line.id, now_ms()))
    await until_phase(tower, line.id, "ended")
    assert tree(copy) == {} and staged(tmp_path) == []


async def test_small_files_come_in_batches_and_bad_bytes_are_refused(
    nodes: Make, tmp_path: Path
) -> None:
    """A folder's one-chunk files are pulled in batches (node/folder_batch.py), each checked
    against the lender's signed manifest: a file whose bytes changed behind the index's back
    (same size, same mtime) is refused and not placed, while the rest of its batch is."""
    tower, laptop = await two(nodes, tmp_path)
    album = tmp_path / "photos"
    files = {f"Album/{i:03}.jpg": os.urandom(1000 + 37 * i) for i in range(40)}
    write(album, files)
    await share_and_scan(tower, album, "Photos")
    bad = album / "Album/007.jpg"
    st = bad.stat()
    bad.write_bytes(b"x" * st.st_size)  # what the lender serves now is not what it signed
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns))
    line = await lend(tower, str(album / "Album"), "laptop")
    copy = tmp_path / "laptop-borrowed" / "tower" / "Photos" / "Album"

    async def all_but_the_bad_one() -> bool:
        found = (await loans(laptop)).get(line.id)
        return found is not None and found.files_done == 39

    await until(all_but_the_bad_one, "the good files to be held")
    d = running(laptop)
    assert d.agent.batches_run > 0  # they came in batches, not one pull each
    assert not (copy / "007.jpg").exists()
    assert {f"Album/{p}": v for p, v in tree(copy).items()} == {
        k: v for k, v in files.items() if k != "Album/007.jpg"
    }

    async def says_why() -> bool:
        found = (await loans(laptop)).get(line.id)
        return found is not None and "007.jpg" in found.reason

    await until(says_why, "the folder's status to name the refused file")
    assert (await phase(laptop, line.id)) != "held"

    # The lender's file is right again: it is pulled, and nothing is left staged.
    bad.write_bytes(files["Album/007.jpg"])
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns))
    await until_phase(laptop, line.id, "held", within=20)
    assert {f"Album/{p}": v for p, v in tree(copy).items()} == files
    await wait_for(lambda: staged(tmp_path) == [], what="no staging left")
