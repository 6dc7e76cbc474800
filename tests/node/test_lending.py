"""Lending between real daemons over mutual TLS on 127.0.0.1: the agents deliver a
verified copy while the binding holds and remove it when it ends."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import xxhash

from mesh.core.errors import MeshError
from mesh.core.status import LoanLine
from mesh.node.daemon import Daemon
from mesh.node.local import now_ms
from tests.node.conftest import NodeHandle, mesh_of, wait_for
from tests.node.test_gossip import running, share_and_scan

Make = Callable[[str], NodeHandle]


async def start(h: NodeHandle, tmp: Path, **overrides: object) -> Daemon:
    return await h.start(borrowed_folder=str(tmp / f"{h.name}-borrowed"), **overrides)


async def lend(h: NodeHandle, path: str, to: str, until_ms: int = 0) -> LoanLine:
    d = running(h)
    return await d.store(lambda: d.lending.line(d.lending.lend(path, to, until_ms, now_ms())))


async def loans(h: NodeHandle) -> dict[str, LoanLine]:
    d = running(h)
    return {
        line.id: line
        for line in await d.store(
            lambda: [d.lending.line(loan) for loan in d.lending.ledger(now_ms())]
        )
    }


async def phase(h: NodeHandle, loan: str) -> str:
    found = (await loans(h)).get(loan)
    return found.phase if found is not None else "unknown"


async def until_phase(h: NodeHandle, loan: str, want: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while (now := await phase(h, loan)) != want:
        assert time.monotonic() < deadline, f"{h.name}: loan {loan} is {now}, not {want}"
        await asyncio.sleep(0.05)


async def test_lend_deliver_recall(nodes: Make, tmp_path: Path) -> None:
    tower, laptop = nodes("tower"), nodes("laptop")
    mesh_of(tower, laptop)
    await start(tower, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,))
    movies = tmp_path / "movies"
    movies.mkdir()
    data = os.urandom(3 * 1024 * 1024 + 123)
    (movies / "heat.mkv").write_bytes(data)
    await share_and_scan(tower, movies, "Movies")
    line = await lend(tower, "Movies/heat.mkv", "laptop")
    await until_phase(laptop, line.id, "held")
    copy = tmp_path / "laptop-borrowed" / "tower" / "Movies" / "heat.mkv"
    assert xxhash.xxh3_128_digest(copy.read_bytes()) == xxhash.xxh3_128_digest(data)
    assert not copy.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    await until_phase(tower, line.id, "held")
    d = running(tower)
    await d.store(lambda: d.lending.recall(line.id, now_ms()))
    await wait_for(lambda: not copy.exists(), what="the copy to go")
    await until_phase(tower, line.id, "ended")
    with pytest.raises(MeshError, match="has already ended"):
        await d.store(lambda: d.lending.recall(line.id, now_ms()))


async def folder_with(tmp: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = tmp / name
    folder.mkdir()
    for rel, data in files.items():
        (folder / rel).write_bytes(data)
    return folder


async def pair(nodes: Make, tmp: Path) -> tuple[NodeHandle, NodeHandle]:
    tower, laptop = nodes("tower"), nodes("laptop")
    mesh_of(tower, laptop)
    await start(tower, tmp)
    return tower, laptop


def copy_of(tmp: Path, path: str) -> Path:
    return tmp / "laptop-borrowed" / "tower" / path


async def test_a_loan_made_while_the_borrower_is_down_arrives_when_it_is_up(
    nodes: Make, tmp_path: Path
) -> None:
    tower, laptop = await pair(nodes, tmp_path)
    await share_and_scan(tower, await folder_with(tmp_path, "docs", {"a.txt": b"hello"}), "Docs")
    line = await lend(tower, "Docs/a.txt", "laptop")
    assert await phase(tower, line.id) == "waiting for the borrower"
    await start(laptop, tmp_path, static_peers=(tower.address,))
    await until_phase(tower, line.id, "held")
    assert copy_of(tmp_path, "Docs/a.txt").read_bytes() == b"hello"


async def test_a_timed_loan_removes_itself(nodes: Make, tmp_path: Path) -> None:
    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,))
    await share_and_scan(tower, await folder_with(tmp_path, "docs", {"a.txt": b"brief"}), "Docs")
    line = await lend(tower, "Docs/a.txt", "laptop", until_ms=now_ms() + 1500)
    await until_phase(laptop, line.id, "held")
    await wait_for(lambda: not copy_of(tmp_path, "Docs/a.txt").exists(), what="expiry")
    await until_phase(tower, line.id, "ended")


async def test_an_edited_file_reaches_the_borrower(nodes: Make, tmp_path: Path) -> None:
    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,))
    docs = await folder_with(tmp_path, "docs", {"a.txt": b"first version"})
    await share_and_scan(tower, docs, "Docs")
    line = await lend(tower, "Docs/a.txt", "laptop")
    await until_phase(laptop, line.id, "held")
    (docs / "a.txt").write_bytes(b"second version, longer")
    async for _ in running(tower).scan(["Docs"]):
        pass
    copy = copy_of(tmp_path, "Docs/a.txt")
    await wait_for(lambda: copy.read_bytes() == b"second version, longer", what="new version")
    await until_phase(tower, line.id, "held")


async def test_return_and_decline_by_the_borrower(nodes: Make, tmp_path: Path) -> None:
    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,), borrow_ask_first=True)
    docs = await folder_with(tmp_path, "docs", {"a.txt": b"a", "b.txt": b"b"})
    await share_and_scan(tower, docs, "Docs")
    first = await lend(tower, "Docs/a.txt", "laptop")
    second = await lend(tower, "Docs/b.txt", "laptop")
    await until_phase(tower, first.id, "awaiting acceptance")
    d = running(laptop)
    await d.store(lambda: d.lending.answer_loan("a.txt", True, now_ms()))
    await d.store(lambda: d.lending.answer_loan(second.id, False, now_ms()))
    await until_phase(tower, first.id, "held")
    await until_phase(tower, second.id, "declined")
    assert not copy_of(tmp_path, "Docs/b.txt").exists()
    # Each side asked for the other side's command is told which one fits.
    with pytest.raises(MeshError, match=f"borrowed from tower.*`mesh return {first.id}`"):
        await d.store(lambda: d.lending.recall(first.id, now_ms()))
    t = running(tower)
    with pytest.raises(MeshError, match=f"lent to laptop.*`mesh recall {first.id}`"):
        await t.store(lambda: t.lending.give_back("a.txt", now_ms()))
    await d.store(lambda: d.lending.give_back(first.id, now_ms()))
    await wait_for(lambda: not copy_of(tmp_path, "Docs/a.txt").exists(), what="the return")
    # Returned, and once the copy is gone, ended, as a recalled loan does; both sides.
    await until_phase(tower, first.id, "ended")
    await until_phase(laptop, first.id, "ended")
    assert (await loans(tower))[first.id].reason == "returned by the borrower"
    with pytest.raises(MeshError, match="already returned"):
        await d.store(lambda: d.lending.give_back(first.id, now_ms()))


async def test_over_the_quota_is_refused_and_nothing_is_fetched(
    nodes: Make, tmp_path: Path
) -> None:
    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,), quota=1000)
    await share_and_scan(tower, await folder_with(tmp_path, "big", {"x": b"x" * 5000}), "Big")
    line = await lend(tower, "Big/x", "laptop")
    await until_phase(tower, line.id, "refused")
    found = (await loans(tower))[line.id]
    assert "quota" in found.reason
    assert not (tmp_path / "laptop-borrowed" / "tower").exists()


async def test_a_borrow_request_is_granted_and_fetched(nodes: Make, tmp_path: Path) -> None:
    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,))
    await share_and_scan(tower, await folder_with(tmp_path, "docs", {"a.txt": b"ask"}), "Docs")
    d = running(laptop)
    # The laptop can ask once gossip told it what the tower shares.
    await wait_for(lambda: d.session(running(tower).node_id), what="a session")
    deadline = time.monotonic() + 10
    while not [i for i in await d.store(d.lending.local.browse, "tower") if i.node == "tower"]:
        assert time.monotonic() < deadline, "the tower's index never arrived"
        await asyncio.sleep(0.05)
    await d.store(lambda: d.lending.borrow("tower", "Docs/a.txt", 0, now_ms()))
    await wait_for(lambda: copy_of(tmp_path, "Docs/a.txt").exists(), what="the borrowed copy")
    requests = await d.store(d.lending.requests)
    assert [r.answer for r in requests] == ["granted"]


async def test_fetch_of_content_not_lent_to_the_caller_is_refused(
    nodes: Make, tmp_path: Path
) -> None:
    from mesh.core.errors import RefusedError
    from mesh.core.records import Binding, Content
    from mesh.core.transfer import FetchRequest, ManifestRequest

    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,))
    await share_and_scan(tower, await folder_with(tmp_path, "docs", {"s.txt": b"secret"}), "Docs")
    content_hash = xxhash.xxh3_128_digest(b"secret")
    t, lap = running(tower), running(laptop)
    await wait_for(lambda: lap.session(t.node_id) is not None, what="a session")
    channel = await lap.channels.get(t.node_id)
    assert channel is not None
    # Nobody lent it: refused.
    try:
        await channel.manifest(ManifestRequest(hash=content_hash, lender=t.node_id), 5)
        raise AssertionError("served content nobody lent")
    except RefusedError:
        pass
    # The laptop writes a binding of its own (lending the tower's content to the tower):
    # it grants nothing, the laptop is no lender of it.
    forged = Binding(
        borrower=t.node_id,
        library="Docs",
        path="s.txt",
        content=Content(hash=content_hash, size=6, chunk_root=b"\0" * 16),
        created_ms=now_ms(),
    )
    env = await lap.store(lap.local.replica.write, forged)
    for lender in (lap.node_id, t.node_id):
        try:
            chunks = channel.fetch(
                FetchRequest(hash=content_hash, lender=lender, first_chunk=0, count=1, binding=env)
            )
            async for _ in chunks:
                raise AssertionError("served a chunk")
            raise AssertionError("no refusal")
        except RefusedError:
            pass


async def test_a_loan_that_ended_while_the_borrower_was_down_is_removed_when_it_is_back(
    nodes: Make, tmp_path: Path
) -> None:
    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,))
    await share_and_scan(tower, await folder_with(tmp_path, "docs", {"a.txt": b"x"}), "Docs")
    line = await lend(tower, "Docs/a.txt", "laptop")
    await until_phase(laptop, line.id, "held")
    await laptop.halt()
    d = running(tower)
    await d.store(lambda: d.lending.recall(line.id, now_ms()))
    assert copy_of(tmp_path, "Docs/a.txt").exists()
    await start(laptop, tmp_path, static_peers=(tower.address,))
    await wait_for(lambda: not copy_of(tmp_path, "Docs/a.txt").exists(), what="the removal")
    await until_phase(tower, line.id, "ended")


async def test_a_borrower_that_holds_the_content_serves_another_borrower(
    nodes: Make, tmp_path: Path
) -> None:
    tower, laptop, desk = nodes("tower"), nodes("laptop"), nodes("desk")
    mesh_of(tower, laptop, desk)
    await start(tower, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,))
    data = os.urandom(2 * 1024 * 1024 + 5)
    await share_and_scan(tower, await folder_with(tmp_path, "m", {"f.bin": data}), "M")
    first = await lend(tower, "M/f.bin", "laptop")
    await until_phase(laptop, first.id, "held")
    second = await lend(tower, "M/f.bin", "desk")
    await until_phase(laptop, second.id, "waiting for the borrower")  # laptop knows of it
    await tower.halt()  # only the laptop can serve now
    await start(desk, tmp_path, static_peers=(laptop.address,))
    await until_phase(desk, second.id, "held")
    placed = tmp_path / "desk-borrowed" / "tower" / "M" / "f.bin"
    assert placed.read_bytes() == data


async def test_a_holder_of_an_open_library_serves_a_loan_of_the_same_content(
    nodes: Make, tmp_path: Path
) -> None:
    tower, laptop, nas = nodes("tower"), nodes("laptop"), nodes("nas")
    mesh_of(tower, laptop, nas)
    await start(tower, tmp_path)
    await start(nas, tmp_path, static_peers=(tower.address,))
    data = os.urandom(100_000)
    await share_and_scan(tower, await folder_with(tmp_path, "t", {"f.bin": data}), "T")
    d = running(nas)
    folder = await folder_with(tmp_path, "n", {"same.bin": data})
    await d.store(d.local.share, str(folder), "Public", open_to_mesh=True)
    async for _ in d.scan(["Public"]):
        pass
    line = await lend(tower, "T/f.bin", "laptop")
    await wait_for(lambda: running(nas).session(running(tower).node_id), what="nas online")
    await until_phase(nas, line.id, "waiting for the borrower")
    await tower.halt()
    await start(laptop, tmp_path, static_peers=(nas.address,))
    await until_phase(laptop, line.id, "held")


async def test_a_pull_whose_staging_file_went_missing_starts_afresh(
    nodes: Make, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What a pull verified lives in its staging file: with the file gone, its saved verified
    # set and hash describe nothing, and trusting them would place a file of zeros.
    tower, laptop = await pair(nodes, tmp_path)
    await start(laptop, tmp_path, static_peers=(tower.address,), limit=8 << 20)
    data = os.urandom(24 * 1024 * 1024)
    folder = await folder_with(tmp_path, "films", {"big.mkv": data})
    await share_and_scan(tower, folder, "Films")
    line = await lend(tower, "Films/big.mkv", "laptop")

    async def some_done() -> bool:
        found = (await loans(laptop)).get(line.id)
        return found is not None and found.bytes_done >= 4 << 20

    deadline = time.monotonic() + 20
    while not await some_done():
        assert time.monotonic() < deadline, "the pull never got going"
        await asyncio.sleep(0.05)
    await laptop.halt()  # a graceful stop saves what was verified
    staging = tmp_path / "laptop-borrowed" / ".mesh-staging"
    removed = [p for p in staging.iterdir() if p.is_file()]
    assert removed, "no staging file to lose"
    for path in removed:
        path.unlink()
    with caplog.at_level(logging.WARNING, logger="mesh.node.puller"):
        await start(laptop, tmp_path, static_peers=(tower.address,))
        await until_phase(laptop, line.id, "held", within=30)
    assert copy_of(tmp_path, "Films/big.mkv").read_bytes() == data
    assert "gone or cut short: pulling it afresh" in caplog.text


async def test_what_cannot_be_lent_says_why(nodes: Make, tmp_path: Path) -> None:
    tower, _laptop = await pair(nodes, tmp_path)
    movies = await folder_with(tmp_path, "My Movies", {"heat.mkv": b"h"})
    (movies / "sub dir").mkdir()
    await share_and_scan(tower, movies, "My Movies")
    (movies / "later.mkv").write_bytes(b"not scanned yet")
    cases = {
        str(movies / "gone.mkv"): f"{movies / 'gone.mkv'}: no such file",
        # An empty folder: folders are lent whole (tests/node/test_folder_loans.py).
        str(movies / "sub dir"): "sub dir/ holds no indexed file",
        str(tmp_path / "lend.py"): "is not in a shared folder",
        str(movies / "later.mkv"): "run `mesh scan 'My Movies'`",
    }
    (tmp_path / "lend.py").write_bytes(b"outside")
    for path, why in cases.items():
        with pytest.raises(MeshError, match=re.escape(why)):
            await lend(tower, path, "laptop")


async def test_a_loan_to_a_removed_member_ends(nodes: Make, tmp_path: Path) -> None:
    tower, _laptop = await pair(nodes, tmp_path)  # the laptop never comes up
    await share_and_scan(tower, await folder_with(tmp_path, "docs", {"a.txt": b"a"}), "Docs")
    line = await lend(tower, "Docs/a.txt", "laptop")
    assert (await loans(tower))[line.id].phase == "waiting for the borrower"
    d = running(tower)
    await d.remove_named("laptop")
    # Removed, it will neither pull the file nor say it let a copy go: the loan is over.
    ended = (await loans(tower))[line.id]
    assert ended.phase == "ended"
    assert ended.reason == "the borrower was removed from the mesh"
