"""The borrower keeps its promise and no more (issue 17): a pull that stops being wanted
leaves no staging file or checkpoint behind, staging files of no pull are swept, a held
copy the user deleted or changed is restored, and a returned loan ends."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import time
from pathlib import Path

import pytest

from mesh.core.status import LoanLine
from mesh.fs.borrowed import STAGING
from mesh.node.local import now_ms
from tests.node.conftest import NodeHandle, mesh_of, wait_for
from tests.node.test_gossip import running, share_and_scan
from tests.node.test_lending import (
    Make,
    copy_of,
    folder_with,
    lend,
    loans,
    pair,
    start,
    until_phase,
)

SIZE = 16 * 1024 * 1024
RATE = 4 << 20  # the laptop pulls at 4 MiB/s: a pull of several seconds


def staged(tmp: Path) -> list[str]:
    folder = tmp / "laptop-borrowed" / STAGING
    return sorted(os.listdir(folder)) if folder.exists() else []


async def checkpoints(h: NodeHandle) -> list[bytes]:
    d = running(h)
    return await d.store(d.lending.book.pulls)


async def pulling(h: NodeHandle, loan: str, at_least: int = 2 << 20) -> None:
    async def far_enough() -> bool:
        found = (await loans(h)).get(loan)
        return found is not None and found.phase == "fetching" and found.bytes_done >= at_least

    deadline = time.monotonic() + 20
    while not await far_enough():
        assert time.monotonic() < deadline, "the pull never got going"
        await asyncio.sleep(0.05)


async def gone_within(tmp: Path, laptop: NodeHandle, seconds: float) -> float:
    """Wait for the staging area and the checkpoints to be empty; how long it took."""
    began = time.monotonic()
    deadline = began + seconds
    while staged(tmp) or await checkpoints(laptop):
        assert time.monotonic() < deadline, f"still staged after {seconds} s: {staged(tmp)}"
        await asyncio.sleep(0.02)
    return time.monotonic() - began


@pytest.mark.parametrize("end", ["recall", "return", "expire", "decline"])
async def test_a_pull_that_stops_being_wanted_leaves_nothing_staged(
    nodes: Make, tmp_path: Path, end: str
) -> None:
    tower, laptop = await pair(nodes, tmp_path)
    ask = end == "decline"
    await start(laptop, tmp_path, static_peers=(tower.address,), limit=RATE, borrow_ask_first=ask)
    folder = await folder_with(tmp_path, "films", {"big.mkv": os.urandom(SIZE)})
    await share_and_scan(tower, folder, "Films")
    until = now_ms() + 3000 if end == "expire" else 0
    line = await lend(tower, "Films/big.mkv", "laptop", until_ms=until)
    if ask:
        lap = running(laptop)
        await until_phase(laptop, line.id, "awaiting acceptance")
        await lap.store(lambda: lap.lending.answer_loan(line.id, True, now_ms()))
    await pulling(laptop, line.id)
    assert staged(tmp_path), "nothing staged to clean up"
    t, lap = running(tower), running(laptop)
    if end == "recall":
        await t.store(lambda: t.lending.recall(line.id, now_ms()))
    elif end == "return":
        await lap.store(lambda: lap.lending.give_back(line.id, now_ms()))
    elif end == "decline":
        await lap.store(lambda: lap.lending.answer_loan(line.id, False, now_ms()))
    took = await gone_within(tmp_path, laptop, 2.0 if end != "expire" else 6.0)
    assert not copy_of(tmp_path, "Films/big.mkv").exists()
    over = "declined" if end == "decline" else "ended"
    await until_phase(laptop, line.id, over, within=5)
    await until_phase(tower, line.id, over, within=5)
    assert took < 6.0


async def test_staging_files_of_no_pull_are_swept_at_start(nodes: Make, tmp_path: Path) -> None:
    tower, laptop = await pair(nodes, tmp_path)
    staging = tmp_path / "laptop-borrowed" / STAGING
    staging.mkdir(parents=True)
    leftovers = ["ab" * 20, "cd" * 20, "cd" * 20 + ".swap"]
    for name in leftovers:
        (staging / name).write_bytes(b"x" * 4096)
    (staging / "not-a-key").write_bytes(b"the user's")  # not a name mesh gives: left alone
    await start(laptop, tmp_path, static_peers=(tower.address,))
    await wait_for(lambda: staged(tmp_path) == ["not-a-key"], within=2, what="the sweep")
    (staging / "not-a-key").unlink()


async def held(tmp: Path, h: NodeHandle, loan: str, data: bytes) -> None:
    await until_phase(h, loan, "held")
    assert copy_of(tmp, "Docs/a.bin").read_bytes() == data


@pytest.mark.parametrize("change", ["delete", "truncate", "append", "replace"])
async def test_a_held_copy_that_changes_on_disk_is_restored(
    nodes: Make, tmp_path: Path, change: str
) -> None:
    tower, laptop = await pair(nodes, tmp_path)
    # The periodic check is slow here: the watcher on the borrowed folder notices first.
    await start(laptop, tmp_path, static_peers=(tower.address,), check_interval_s=60.0)
    data = os.urandom(3 * 1024 * 1024 + 5)
    await share_and_scan(tower, await folder_with(tmp_path, "docs", {"a.bin": data}), "Docs")
    line = await lend(tower, "Docs/a.bin", "laptop")
    await held(tmp_path, laptop, line.id, data)
    copy = copy_of(tmp_path, "Docs/a.bin")
    began = time.monotonic()
    if change == "delete":
        copy.unlink()
    elif change == "replace":
        copy.unlink()
        copy.write_bytes(b"something else")
    else:
        copy.chmod(stat.S_IRUSR | stat.S_IWUSR)
        with copy.open("r+b" if change == "truncate" else "ab") as f:
            if change == "truncate":
                f.truncate(1000)
            else:
                f.write(b"more")

    def restored() -> bool:
        try:
            return copy.read_bytes() == data and not copy.stat().st_mode & stat.S_IWUSR
        except FileNotFoundError:
            return False

    await wait_for(restored, within=10, what="the copy to be restored")
    assert time.monotonic() - began < 10
    await until_phase(laptop, line.id, "held")
    await until_phase(tower, line.id, "held")
    assert staged(tmp_path) == []


async def test_the_periodic_check_restores_a_copy_without_the_watcher(
    nodes: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mesh.node import keeping

    monkeypatch.setattr(keeping.BorrowedWatch, "start", lambda self: None)
    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,), check_interval_s=1.0)
    data = os.urandom(100_000)
    await share_and_scan(tower, await folder_with(tmp_path, "docs", {"a.bin": data}), "Docs")
    line = await lend(tower, "Docs/a.bin", "laptop")
    await held(tmp_path, laptop, line.id, data)
    copy_of(tmp_path, "Docs/a.bin").unlink()
    await wait_for(lambda: copy_of(tmp_path, "Docs/a.bin").exists(), within=5, what="restore")
    await held(tmp_path, laptop, line.id, data)


async def test_the_lender_says_since_when_it_has_not_heard_from_a_stopped_borrower(
    nodes: Make, tmp_path: Path
) -> None:
    from mesh.cli.loan_cmds import _state
    from mesh.node.control import ControlHandlers

    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,), limit=RATE)
    folder = await folder_with(tmp_path, "films", {"big.mkv": os.urandom(SIZE)})
    await share_and_scan(tower, folder, "Films")
    line = await lend(tower, "Films/big.mkv", "laptop")
    await pulling(laptop, line.id)
    control = ControlHandlers(running(tower))

    async def tower_line() -> LoanLine:
        return next(x for x in await control.loans(False) if x.id == line.id)

    assert (await tower_line()).silent_since_ms == 0  # the borrower is there
    before_stop = now_ms()
    await laptop.halt()
    deadline = time.monotonic() + 10
    while not (found := await tower_line()).silent_since_ms:
        assert time.monotonic() < deadline, "the lender never noticed the borrower went"
        await asyncio.sleep(0.05)
    assert found.silent_name == "laptop"
    assert before_stop - 5000 <= found.silent_since_ms <= now_ms()
    shown = _state(found)
    assert shown.startswith("laptop unreachable since ") and shown.endswith("%"), shown
    # Back: the ledger is live again.
    await start(laptop, tmp_path, static_peers=(tower.address,))
    deadline = time.monotonic() + 10
    while (await tower_line()).silent_since_ms:
        assert time.monotonic() < deadline, "still silent after the borrower came back"
        await asyncio.sleep(0.05)
    await until_phase(tower, line.id, "held", within=30)


async def test_an_idle_link_between_the_backstop_pings_is_not_shown_unreachable(
    nodes: Make, tmp_path: Path
) -> None:
    """Between the session's backstop pings an idle link carries no frames (gRPC's
    keepalive watches it): both ledgers showed a held loan "unreachable since" though the
    other side was online, a few seconds after the loan settled. The ledger asks first."""
    from mesh.node.control import ControlHandlers

    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,))
    folder = await folder_with(tmp_path, "docs", {"a.txt": b"a"})
    await share_and_scan(tower, folder, "Docs")
    line = await lend(tower, "Docs/a.txt", "laptop")
    await until_phase(tower, line.id, "held")
    for me, other in ((tower, laptop), (laptop, tower)):
        d = running(me)
        session = d.sessions.get(running(other).node_id)
        assert session is not None
        # Quiet for longer than a keepalive and its ping timeout: an idle link.
        session.last_heard = time.monotonic() - (d.settings.keepalive_s + 2)
        found = next(x for x in await ControlHandlers(d).loans(False) if x.id == line.id)
        assert found.silent_since_ms == 0, (me.name, found)


async def test_a_pull_whose_lent_file_is_deleted_stops_and_resumes_when_it_is_back(
    nodes: Make, tmp_path: Path
) -> None:
    from mesh.node.agent import SOURCE_GONE
    from tests.node.test_gossip import scan

    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,), limit=RATE, retry_interval_s=600)
    data = os.urandom(SIZE)
    folder = await folder_with(tmp_path, "films", {"big.mkv": data})
    await share_and_scan(tower, folder, "Films")
    line = await lend(tower, "Films/big.mkv", "laptop")
    await pulling(laptop, line.id)
    (folder / "big.mkv").unlink()
    await scan(tower, "Films")
    await gone_within(tmp_path, laptop, 2.0 + 1.0)  # the deletion's record crosses first
    await until_phase(tower, line.id, "failed", within=5)
    assert (await loans(tower))[line.id].reason == SOURCE_GONE
    (folder / "big.mkv").write_bytes(data)
    await scan(tower, "Films")
    await until_phase(laptop, line.id, "held", within=15)
    assert copy_of(tmp_path, "Films/big.mkv").read_bytes() == data
    assert staged(tmp_path) == []


async def test_a_pull_from_a_lender_removed_from_the_mesh_leaves_nothing(
    nodes: Make, tmp_path: Path
) -> None:
    tower, laptop, desk = nodes("tower"), nodes("laptop"), nodes("desk")
    mesh_of(desk, tower, laptop)  # the desk is the mesh's first member: it removes others
    await start(desk, tmp_path)
    await start(tower, tmp_path, static_peers=(desk.address,))
    await start(laptop, tmp_path, static_peers=(tower.address, desk.address), limit=RATE)
    folder = await folder_with(tmp_path, "films", {"big.mkv": os.urandom(SIZE)})
    await share_and_scan(tower, folder, "Films")
    line = await lend(tower, "Films/big.mkv", "laptop")
    await pulling(laptop, line.id)
    await running(desk).remove_named("tower")
    await gone_within(tmp_path, laptop, 2.0 + 1.0)  # the removal crosses from the desk first
    assert not copy_of(tmp_path, "Films/big.mkv").exists()


async def test_copies_come_back_after_the_whole_borrowed_folder_is_deleted(
    nodes: Make, tmp_path: Path
) -> None:
    import shutil

    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,), check_interval_s=1.0)
    data = os.urandom(200_000)
    await share_and_scan(tower, await folder_with(tmp_path, "docs", {"a.bin": data}), "Docs")
    line = await lend(tower, "Docs/a.bin", "laptop")
    await held(tmp_path, laptop, line.id, data)
    shutil.rmtree(tmp_path / "laptop-borrowed")
    await wait_for(lambda: copy_of(tmp_path, "Docs/a.bin").exists(), within=5, what="restore")
    await held(tmp_path, laptop, line.id, data)
    # Watched again: a change in the new folder is noticed without the periodic check.
    d = running(laptop)
    d.settings = dataclasses.replace(d.settings, check_interval_s=60.0)
    st = (tmp_path / "laptop-borrowed").stat()
    await wait_for(lambda: d.agent.watching() == (st.st_dev, st.st_ino), what="a new watch")
    copy_of(tmp_path, "Docs/a.bin").unlink()
    await wait_for(lambda: copy_of(tmp_path, "Docs/a.bin").exists(), within=5, what="restore")
    await held(tmp_path, laptop, line.id, data)


async def test_a_copy_changed_again_while_it_is_restored_is_still_restored(
    nodes: Make, tmp_path: Path
) -> None:
    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,), limit=RATE)
    data = os.urandom(SIZE)
    await share_and_scan(tower, await folder_with(tmp_path, "docs", {"a.bin": data}), "Docs")
    line = await lend(tower, "Docs/a.bin", "laptop")
    await until_phase(laptop, line.id, "held", within=20)
    copy = copy_of(tmp_path, "Docs/a.bin")
    copy.unlink()
    copy.write_bytes(b"mine")
    await pulling(laptop, line.id, at_least=1)  # the restoring pull is on its way
    copy.unlink()
    copy.write_bytes(b"mine, again")
    await until_phase(tower, line.id, "held", within=20)
    await wait_for(lambda: copy.read_bytes() == data, within=5, what="the restored copy")
    assert staged(tmp_path) == []


async def test_a_checkpoint_whose_staging_file_is_gone_is_pulled_afresh(
    nodes: Make, tmp_path: Path
) -> None:
    """Found by hand: every chunk verified, then the staging file deleted before placing.
    Each try placed nothing and the loan stayed failed, across restarts; now the pull
    forgets the checkpoint and starts again at once."""
    from mesh.node.verified import Bitmap, staging_name
    from mesh.store.loans import LoanBook, Pull

    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,))
    data = os.urandom(3 * 1024 * 1024 + 5)
    await share_and_scan(tower, await folder_with(tmp_path, "docs", {"a.bin": data}), "Docs")
    line = await lend(tower, "Docs/a.bin", "laptop")
    await held(tmp_path, laptop, line.id, data)
    await laptop.halt()
    # As a kill between the last chunk and placing leaves it, less the staging file.
    with laptop.local() as node:
        book = LoanBook(node.db)
        copy = book.copies()[0]
        count = len(copy.chunk_hashes) // 16
        verified = Bitmap(count)
        for i in range(count):
            verified.add(i)
        book.removed(copy.binding_key)
        book.save_pull(
            Pull(
                binding_key=copy.binding_key,
                staging=staging_name(copy.binding_key),
                hash=copy.hash,
                size=copy.size,
                chunk_hashes=copy.chunk_hashes,
                verified=bytes(verified.bits),
            )
        )
    copy_of(tmp_path, "Docs/a.bin").unlink()
    await start(laptop, tmp_path, static_peers=(tower.address,))
    copy = copy_of(tmp_path, "Docs/a.bin")
    await wait_for(lambda: copy.exists() and copy.read_bytes() == data, what="the copy again")
    await held(tmp_path, laptop, line.id, data)
    await wait_for(lambda: not staged(tmp_path), within=5, what="no staging left")
