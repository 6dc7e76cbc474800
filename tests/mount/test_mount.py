"""`mesh mount`: every member's files as a read-only folder, read while they arrive."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mesh.core.status import LoanLine
from mesh.node.control import ControlHandlers
from mesh.node.daemon import Daemon
from mesh.node.local import now_ms
from mesh.node.mount import mounted_at
from mesh.node.ratelimit import Limits
from tests.mount.conftest import Pair, needs_fuse, needs_tool, run
from tests.node.conftest import NodeHandle, mesh_of, wait_for

Make = Callable[[str], NodeHandle]

MiB = 1 << 20


async def listed(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


async def until_listed(path: Path, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not await listed(path):
        assert time.monotonic() < deadline, f"{path} did not appear within {within} s"
        await asyncio.sleep(0.05)


async def test_the_mesh_as_a_folder_reads_verified_bytes(pair: Pair) -> None:
    needs_fuse()
    data = random.Random(1).randbytes(5 * MiB + 321)
    await pair.share({"film.bin": data, "sub/notes.txt": b"hello"})
    folder = await pair.lp.mounting.mount(str(pair.mnt))
    assert mounted_at(folder)
    film = pair.mnt / "tower" / "Movies" / "film.bin"
    await until_listed(film)
    st = await asyncio.to_thread(film.stat)
    assert st.st_size == len(data)
    assert (await asyncio.to_thread(os.listdir, pair.mnt / "tower" / "Movies")) == [
        "film.bin",
        "sub",
    ]
    # The laptop holds none of it: opening borrows it; reads wait for verified chunks.
    got = await asyncio.to_thread(film.read_bytes)
    assert got == data
    # Random reads in another process, compared with the lender's bytes.
    rng = random.Random(2)
    for _ in range(8):
        offset = rng.randrange(len(data))
        size = rng.randrange(1, 300_000)
        code, out, _ = await run(
            "dd",
            f"if={film}",
            "bs=1",
            "iflag=skip_bytes,count_bytes",
            f"skip={offset}",
            f"count={size}",
            "status=none",
        )
        assert code == 0
        assert out == data[offset : offset + size]
    # Own files read too; writes are refused.
    own = pair.mnt / "laptop"
    assert not await listed(own)  # the laptop shares nothing
    with pytest.raises(OSError) as refused:
        await asyncio.to_thread((pair.mnt / "tower" / "Movies" / "new.txt").write_bytes, b"x")
    assert refused.value.errno in (errno.EROFS, errno.EACCES)


async def test_new_shares_appear_and_unmount(pair: Pair) -> None:
    needs_fuse()
    await pair.share({"a.txt": b"a"})
    await pair.lp.mounting.mount(str(pair.mnt))
    await until_listed(pair.mnt / "tower" / "Movies" / "a.txt")
    began = time.monotonic()
    (pair.shared / "b.txt").write_bytes(b"bee")
    await pair.t.scan_quietly({})  # the watcher would too; this is quicker to wait for
    async for _ in pair.t.scan(["Movies"]):
        pass
    await until_listed(pair.mnt / "tower" / "Movies" / "b.txt", within=3)
    took = time.monotonic() - began
    assert took < 3, took
    await pair.lp.mounting.unmount()
    assert not mounted_at(str(pair.mnt))


async def test_ffprobe_and_dd_through_the_mount(pair: Pair, tmp_path: Path) -> None:
    needs_fuse()
    ffmpeg, ffprobe = needs_tool("ffmpeg"), needs_tool("ffprobe")
    video = tmp_path / "clip.mkv"
    code, _, err = await run(
        ffmpeg,
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-t",
        "4",
        "-c:v",
        "mpeg4",
        "-q:v",
        "2",
        str(video),
    )
    assert code == 0, err
    data = video.read_bytes()
    await pair.share({"clip.mkv": data})
    await pair.lp.mounting.mount(str(pair.mnt))
    clip = pair.mnt / "tower" / "Movies" / "clip.mkv"
    await until_listed(clip)
    code, out, err = await run(
        ffprobe,
        "-v",
        "error",
        "-show_entries",
        "stream=codec_name,width,height",
        "-of",
        "csv=p=0",
        str(clip),
    )
    assert code == 0, err
    assert out.decode().strip() == "mpeg4,320,240"
    code, out, _ = await run("dd", f"if={clip}", "bs=4096", "skip=3", "count=5", "status=none")
    assert code == 0 and out == data[3 * 4096 : 8 * 4096]


async def test_a_refused_borrow_is_the_open_error(pair: Pair) -> None:
    needs_fuse()
    await pair.share({"secret.txt": b"no"})
    d = pair.t
    # The library asks its owner first; the owner says no: that is the open's error.
    await d.store(
        d.local.share, str(pair.shared), "Movies", open_to_mesh=None, borrowers=None, ask=True
    )
    await pair.lp.mounting.mount(str(pair.mnt))
    target = pair.mnt / "tower" / "Movies" / "secret.txt"
    await until_listed(target)
    reading = asyncio.ensure_future(asyncio.to_thread(target.read_bytes))
    requests = await wait_for_async(lambda: d.store(d.lending.requests))
    await d.store(d.lending.answer_request, requests[0].id, False, "not this one", now_ms())
    with pytest.raises(PermissionError):
        await reading


async def wait_for_async(check, within: float = 10):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not (found := await check()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    return found


async def test_a_lender_gone_mid_read_fails_with_eio_never_wrong_bytes(pair: Pair) -> None:
    needs_fuse()
    data = random.Random(3).randbytes(24 * MiB)
    await pair.share({"big.bin": data})
    pair.t.limits = Limits(8_000_000)  # slow enough that the lender goes mid-read
    await pair.lp.mounting.mount(str(pair.mnt))
    big = pair.mnt / "tower" / "Movies" / "big.bin"
    await until_listed(big)

    def read_all() -> tuple[bytes, int]:
        got = bytearray()
        try:
            with open(big, "rb", buffering=0) as f:
                while chunk := f.read(MiB):
                    got += chunk
                    if len(got) == 2 * MiB:
                        stop_lender.set()
                        time.sleep(0.2)
        except OSError as exc:
            return bytes(got), exc.errno or 0
        return bytes(got), 0

    stop_lender = asyncio.Event()
    loop = asyncio.get_running_loop()
    real_set = stop_lender.set
    stop_lender.set = lambda: loop.call_soon_threadsafe(real_set)  # type: ignore[method-assign]
    reading = asyncio.ensure_future(asyncio.to_thread(read_all))
    await stop_lender.wait()
    await pair.tower.halt()
    halted = time.monotonic()
    got, code = await reading
    waited = time.monotonic() - halted
    assert got == data[: len(got)]  # what was read is the lender's
    assert len(got) < len(data)
    assert code == errno.EIO
    # The read waited for another source for read_timeout_s (3 s here), then failed.
    assert 2.5 < waited < 10, waited


async def test_pin_and_cache(pair: Pair) -> None:
    needs_fuse()
    await pair.share({"a.bin": b"A" * 1000, "b.bin": b"B" * 2000})
    lp = pair.lp
    await lp.mounting.mount(str(pair.mnt))
    a = pair.mnt / "tower" / "Movies" / "a.bin"
    await until_listed(a)
    assert await asyncio.to_thread(a.read_bytes) == b"A" * 1000
    message = await lp.opened.pin(await lp.mounting.listed("tower:Movies/b.bin"), pin=True)
    assert "pinned" in message
    copies = tmp = pair.tmp / "laptop-borrowed" / "tower" / "Movies"
    await wait_for(lambda: (copies / "b.bin").exists() and (copies / "a.bin").exists())
    lines = {line.path: line.kept for line in await l_loans(pair)}
    assert lines == {"a.bin": "cached", "b.bin": "pinned"}
    # Over the cache's size: the cached copy goes back, the pinned one stays.
    lp.settings = dataclasses.replace(lp.settings, cache=10)
    await lp.cache.trim()
    await wait_for(lambda: not (tmp / "a.bin").exists(), what="the cached copy to be returned")
    assert (tmp / "b.bin").exists()
    assert now_ms()


async def l_loans(pair: Pair) -> list[LoanLine]:
    return await laptop_loans(pair.lp)


async def laptop_loans(d: Daemon) -> list[LoanLine]:
    return await ControlHandlers(d).loans(mine=True)


_STALE = """
import asyncio, sys
from mesh.core.mount_tree import Tree
from mesh.node import mount_fs

async def main():
    mount_fs.start(sys.argv[1], mount_fs.MeshFs(Tree(), None))
    print("mounted", flush=True)
    await mount_fs.serve()

asyncio.run(main())
"""


async def test_a_stale_mount_of_a_killed_daemon_is_cleaned_at_the_next_start(
    nodes: Make, tmp_path: Path
) -> None:
    needs_fuse()
    laptop = nodes("laptop")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # A process that mounted the mesh there and was killed: its mount stays, broken.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _STALE, str(mnt), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 10) == b"mounted\n"
    proc.kill()
    await proc.wait()
    assert mounted_at(str(mnt))
    with pytest.raises(OSError) as broken:
        await asyncio.to_thread(os.listdir, mnt)
    assert broken.value.errno == errno.ENOTCONN
    (laptop.home.root / "mount.dir").write_text(f"{mnt}\n")
    d = await laptop.start(borrowed_folder=str(tmp_path / "b"))
    try:
        assert d.mounting.folder == str(mnt)
        assert await asyncio.to_thread(os.listdir, mnt) == []  # mounted again, working
    finally:
        await laptop.halt()
    assert not mounted_at(str(mnt))  # a stop unmounts
    assert (laptop.home.root / "mount.dir").exists()  # and the next start mounts again


def test_mount_says_what_to_install_without_pyfuse3(monkeypatch: pytest.MonkeyPatch) -> None:
    from mesh.node.mount import MountUnavailableError, check_available

    monkeypatch.setitem(sys.modules, "pyfuse3", None)  # an import of it fails
    with pytest.raises(MountUnavailableError, match=r"pip install 'mesh\[mount\]'.*fuse3"):
        check_available()


async def test_a_lender_gone_mid_read_is_replaced_by_another_holder(
    nodes: Make, tmp_path: Path
) -> None:
    """The desk holds the same file in a library open to the mesh: when the tower goes
    away mid-read, the read goes on from the desk and returns the lender's bytes."""
    needs_fuse()
    tower, desk, laptop = nodes("tower"), nodes("desk"), nodes("laptop")
    mesh_of(tower, desk, laptop)
    data = random.Random(4).randbytes(24 * MiB)
    for h in (tower, desk):
        folder = tmp_path / f"{h.name}-films"
        folder.mkdir()
        (folder / "big.bin").write_bytes(data)
        d = await h.start(borrowed_folder=str(tmp_path / f"{h.name}-b"))
        await d.store(d.local.share, str(folder), "Movies", open_to_mesh=h is desk)
        async for _ in d.scan(["Movies"]):
            pass
        d.limits = Limits(6_000_000)  # slow enough that the tower goes mid-read
    assert tower.daemon is not None and desk.daemon is not None
    lp = await laptop.start(
        borrowed_folder=str(tmp_path / "laptop-b"),
        static_peers=(tower.address, desk.address),
        read_timeout_s=10.0,
    )
    mnt = tmp_path / "mnt"
    try:
        await lp.mounting.mount(str(mnt))
        big = mnt / "tower" / "Movies" / "big.bin"
        await until_listed(big)
        reading = asyncio.ensure_future(asyncio.to_thread(big.read_bytes))
        deadline = time.monotonic() + 20
        while not any(line.bytes_done > 2 * MiB for line in await laptop_loans(lp)):
            assert time.monotonic() < deadline, "the pull did not start"
            await asyncio.sleep(0.05)
        await tower.halt()
        assert await reading == data
    finally:
        await lp.mounting.unmount()


async def test_opening_a_file_makes_room_in_the_cache_first(pair: Pair) -> None:
    needs_fuse()
    await pair.share({"a.bin": b"A" * 1000, "c.bin": b"C" * 2000})
    lp = pair.lp
    lp.settings = dataclasses.replace(lp.settings, cache=2500)
    await lp.mounting.mount(str(pair.mnt))
    movies = pair.mnt / "tower" / "Movies"
    copies = pair.tmp / "laptop-borrowed" / "tower" / "Movies"
    await until_listed(movies / "c.bin")
    assert await asyncio.to_thread((movies / "a.bin").read_bytes) == b"A" * 1000
    await wait_for(lambda: (copies / "a.bin").exists(), what="the cached copy of a.bin")
    # 1000 + 2000 bytes would not fit in 2500: a.bin goes back before c.bin is borrowed.
    assert await asyncio.to_thread((movies / "c.bin").read_bytes) == b"C" * 2000
    await wait_for(lambda: not (copies / "a.bin").exists(), what="a.bin to be returned")
    await wait_for(lambda: (copies / "c.bin").exists(), what="the cached copy of c.bin")


async def test_opening_a_file_accepts_its_loan_where_loans_wait_for_acceptance(
    pair: Pair,
) -> None:
    """borrowing.ask_first holds loans for `mesh accept`; a file opened through the mount
    was asked for by this node's user, so its loan is taken at once."""
    needs_fuse()
    await pair.share({"a.txt": b"wanted"})
    lp = pair.lp
    lp.settings = dataclasses.replace(lp.settings, borrow_ask_first=True)
    await lp.mounting.mount(str(pair.mnt))
    target = pair.mnt / "tower" / "Movies" / "a.txt"
    await until_listed(target)
    assert await asyncio.to_thread(target.read_bytes) == b"wanted"
