"""Libraries that watch themselves, on real daemons: a file dropped into a shared folder
reaches another node within 2 s of the write, only what changed is hashed, a file still
being written is not indexed half-way, and a library that cannot be watched is polled."""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import xxhash

from mesh.core.entries import IndexedEntry
from mesh.fs import inotify
from mesh.fs.watcher import Watcher
from mesh.node.daemon import Daemon
from tests.node.conftest import NodeHandle, mesh_of, wait_for

Make = Callable[[str], NodeHandle]


class LimitedInotify(inotify.Inotify):
    """Real inotify, with a watch table as full as the kernel's can be."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def add_watch(self, path: str, mask: int) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        self.room -= 1
        return super().add_watch(path, mask)


def running(h: NodeHandle) -> Daemon:
    assert h.daemon is not None
    return h.daemon


async def share(h: NodeHandle, folder: Path, name: str = "lib") -> None:
    d = running(h)
    await d.store(d.local.share, str(folder), name)
    async for _ in d.scan([name]):
        pass
    d.watch.libraries_changed()
    await wait_for(lambda: name in d.watch.watched(), 5, f"{name} watched")


async def own(h: NodeHandle) -> dict[str, IndexedEntry]:
    """The node's index, read on its store thread."""
    d = running(h)
    return {e.entry.path: e for e in await d.store(d.local.index.entries)}


async def until(check: Callable[[dict[str, IndexedEntry]], bool], h: NodeHandle, what: str) -> None:
    """Wait (5 s at most) until `h`'s index passes `check`."""
    deadline = time.monotonic() + 5
    while not check(await own(h)):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def folder_with(tmp_path: Path, **files: bytes) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


async def test_a_dropped_file_reaches_another_node_within_2_s(nodes: Make, tmp_path: Path) -> None:
    a, b = nodes("a"), nodes("b")
    mesh_of(a, b)
    folder = folder_with(tmp_path, old=b"old")
    await a.start()
    await b.start(static_peers=(a.address,))
    await share(a, folder)
    db = running(b)

    async def b_sees(path: str) -> bool:
        found = await db.store(db.local.browse, "a", None)
        return any(e.entry.path == path for e in found)

    deadline = time.monotonic() + 10
    while not await b_sees("old"):  # connected and caught up
        assert time.monotonic() < deadline, "b never saw a's library"
        await asyncio.sleep(0.05)

    (folder / "new.txt").write_bytes(b"fresh" * 1000)
    written = time.monotonic()
    while not await b_sees("new.txt"):
        assert time.monotonic() - written < 2.0, "b did not see new.txt within 2 s"
        await asyncio.sleep(0.02)


async def test_a_changed_file_is_rehashed_and_an_unchanged_one_is_not(
    nodes: Make, tmp_path: Path
) -> None:
    a = nodes("a")
    folder = folder_with(tmp_path, same=b"same", edited=b"before")
    d = await a.start()
    await share(a, folder)
    before = await own(a)
    scans = d.watch.scans

    (folder / "edited").write_bytes(b"after, longer")
    want = xxhash.xxh3_128_digest(b"after, longer")
    await until(lambda idx: idx["edited"].entry.hash == want, a, "edited reindexed")
    # The index is committed inside the scan; the watch counts the scan once it returns.
    await wait_for(lambda: d.watch.scans > scans, 5, "the scan counted")

    assert d.watch.scans == scans + 1
    assert d.watch.last is not None
    assert (d.watch.last.files_hashed, d.watch.last.unchanged) == (1, 1)
    after = await own(a)
    assert after["same"].seq == before["same"].seq
    assert after["edited"].seq > before["edited"].seq


async def test_a_file_still_being_written_is_not_indexed_half_way(
    nodes: Make, tmp_path: Path
) -> None:
    a = nodes("a")
    folder = folder_with(tmp_path)
    await a.start()  # settle_s is 0.3 in the test settings
    await share(a, folder)
    part = os.urandom(64 << 10)
    seen: list[bytes] = []

    async def write_slowly() -> None:
        # Small writes from the loop itself, so the daemon runs between them.
        with open(folder / "growing.bin", "wb") as f:  # noqa: ASYNC230
            for i in range(12):
                f.write(part)
                f.flush()
                if i == 2:
                    (folder / "beside.txt").write_bytes(b"settles at once")
                await asyncio.sleep(0.12)

    writer = asyncio.create_task(write_slowly())
    while not writer.done():
        entry = (await own(a)).get("growing.bin")
        if entry is not None:
            seen.append(entry.entry.hash)
        await asyncio.sleep(0.01)
    beside_during_write = "beside.txt" in (await own(a))
    await writer
    final = xxhash.xxh3_128_digest(part * 12)
    await until(lambda idx: "growing.bin" in idx, a, "growing.bin indexed")
    assert seen == []
    assert beside_during_write, "a settled neighbour waited for the growing file"
    assert (await own(a))["growing.bin"].entry.hash == final


async def test_new_folders_removed_folders_and_unshared_libraries(
    nodes: Make, tmp_path: Path
) -> None:
    a = nodes("a")
    folder = folder_with(tmp_path, top=b"top")
    d = await a.start()
    await share(a, folder)

    (folder / "new" / "deeper").mkdir(parents=True)
    (folder / "new" / "deeper" / "x").write_bytes(b"x")
    (folder / "new" / "y").write_bytes(b"y")
    await until(lambda idx: {"new/y", "new/deeper/x"} <= set(idx), a, "new folder indexed")

    (folder / "new" / "deeper").rename(tmp_path / "moved-out")
    await until(lambda idx: "new/deeper/x" not in idx, a, "moved-out folder gone")
    assert "new/y" in (await own(a))

    other = tmp_path / "other"
    other.mkdir()
    await share(a, other, "other")
    (other / "o").write_bytes(b"o")
    await until(lambda idx: "o" in idx, a, "second library watched")

    await d.store(d.local.unshare, "other")
    d.watch.libraries_changed()
    await wait_for(lambda: "other" not in d.watch.watched(), 5, "unshared library let go")


async def test_a_library_that_cannot_be_watched_is_polled_with_one_warning(
    nodes: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        "mesh.node.watching.Watcher",
        functools.partial(Watcher, make=functools.partial(LimitedInotify, 1)),
    )
    a = nodes("a")
    folder = folder_with(tmp_path, top=b"top")
    (folder / "sub").mkdir()  # the second folder finds the table full
    d = await a.start()
    with caplog.at_level(logging.WARNING, logger="mesh.node.watching"):
        await share(a, folder)
        assert d.watch.polled == {"lib"}
        (folder / "sub" / "late").write_bytes(b"late")
        await until(lambda idx: "sub/late" in idx, a, "polled change indexed")
        (folder / "sub" / "later").write_bytes(b"later")
        await until(lambda idx: "sub/later" in idx, a, "polled change indexed")
    warnings = [r for r in caplog.records if "limit of watched folders" in r.getMessage()]
    assert len(warnings) == 1


def test_the_borrowed_folder_is_not_a_library(nodes: Make, tmp_path: Path) -> None:
    from mesh import config
    from mesh.core.errors import InvalidArgumentError

    a = nodes("a")
    outer = tmp_path / "outer"
    (outer / "Borrowed").mkdir(parents=True)
    settings = config.with_value(
        config.load(a.home.config_file), "borrowing.folder", str(outer / "Borrowed")
    )
    config.save(settings, a.home.config_file)
    with a.local() as node:
        for folder in (outer, outer / "Borrowed"):
            with pytest.raises(InvalidArgumentError, match="overlaps the borrowed folder"):
                node.share(str(folder))


async def test_a_missing_library_folder_is_polled_until_it_comes_back(
    nodes: Make, tmp_path: Path
) -> None:
    a = nodes("a")
    folder = folder_with(tmp_path, kept=b"kept")
    with a.local() as node:
        node.share(str(folder), "lib")
        node.scan()
    (folder / "kept").rename(tmp_path / "kept")
    folder.rmdir()  # an unplugged disk
    d = await a.start()
    await wait_for(lambda: d.watch.polled == {"lib"}, 5, "lib polled")
    assert "kept" in (await own(a))  # nothing is taken as deleted while the folder is away

    folder.mkdir()
    (tmp_path / "kept").rename(folder / "kept")
    (folder / "back").write_bytes(b"back")
    await until(lambda idx: "back" in idx, a, "the folder's files indexed again")
    assert "kept" in (await own(a))
