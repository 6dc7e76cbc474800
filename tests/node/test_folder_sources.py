"""Where a folder loan's small files come from: FetchFiles (many files in one call, each
checked against the caller's folder loans) and a batch spread over every holder, which
goes on from the others when one goes away mid-pull."""

from __future__ import annotations

import os
from pathlib import Path

import xxhash

from mesh.core.transfer import FetchFilesRequest
from mesh.node.local import now_ms
from mesh.node.ratelimit import RateLimit
from tests.node.conftest import mesh_of, wait_for
from tests.node.test_folder_loans import Make, staged, tree, two, until, write
from tests.node.test_gossip import running, share_and_scan
from tests.node.test_lending import lend, loans, start, until_phase


async def test_fetch_files_serves_only_the_files_a_folder_loan_lends_the_caller(
    nodes: Make, tmp_path: Path
) -> None:
    tower, laptop = await two(nodes, tmp_path, borrow_ask_first=True)
    photos = tmp_path / "photos"
    files = {"Album/a.jpg": os.urandom(5000), "Album/b.jpg": os.urandom(7000)}
    write(photos, {**files, "Private/c.jpg": os.urandom(6000)})
    await share_and_scan(tower, photos, "Photos")
    line = await lend(tower, str(photos / "Album"), "laptop")
    await until_phase(laptop, line.id, "awaiting acceptance")
    t, lap = running(tower), running(laptop)
    hashes = [xxhash.xxh3_128_digest(files["Album/b.jpg"])]
    hashes.append(xxhash.xxh3_128_digest((photos / "Private/c.jpg").read_bytes()))  # not lent
    hashes.append(xxhash.xxh3_128_digest(files["Album/a.jpg"]))
    channel = tower.dial(lap.identity)
    try:
        request = FetchFilesRequest(lender=t.node_id, hashes=tuple(hashes))
        got = [item async for items in channel.fetch_files(request) for item in items]
        # Another lender's name on the request lends nothing.
        other = FetchFilesRequest(lender=lap.node_id, hashes=tuple(hashes))
        none = [item async for items in channel.fetch_files(other) for item in items]
    finally:
        await channel.close()
    assert got == [(0, files["Album/b.jpg"]), (2, files["Album/a.jpg"])]
    assert none == []


async def test_a_folder_is_pulled_from_two_holders_and_goes_on_when_one_goes_away(
    nodes: Make, tmp_path: Path
) -> None:
    """The desk holds the album (a folder loan of its own from the tower); the laptop's
    batch is spread over the tower and the desk, and when the desk stops mid-pull the
    files it had not sent come from the tower."""
    tower, desk, laptop = nodes("tower"), nodes("desk"), nodes("laptop")
    mesh_of(tower, desk, laptop)
    await start(tower, tmp_path)
    await start(desk, tmp_path, static_peers=(tower.address,))
    await start(laptop, tmp_path, static_peers=(tower.address, desk.address), borrow_ask_first=True)
    album = tmp_path / "photos"
    files = {f"Album/{i:03}.jpg": os.urandom(5000 + 17 * i) for i in range(60)}
    write(album, files)
    await share_and_scan(tower, album, "Photos")
    to_desk = await lend(tower, str(album / "Album"), "desk")
    await until_phase(desk, to_desk.id, "held")
    await until_phase(laptop, to_desk.id, "held")  # the laptop knows the desk holds it
    to_laptop = await lend(tower, str(album / "Album"), "laptop")
    await until_phase(laptop, to_laptop.id, "awaiting acceptance")
    t, d, lap = running(tower), running(desk), running(laptop)
    some = xxhash.xxh3_128_digest(files["Album/000.jpg"])

    async def desk_may_serve_it() -> bool:
        # The desk has the laptop's binding and its signed manifest.
        def lends() -> bool:
            return d.lending.folder_lending_to(lap.node_id, t.node_id, now_ms())(some) is not None

        return await d.store(lends)

    await until(desk_may_serve_it, "the desk to know the laptop's loan")
    # Slow enough that the desk is still sending its share when it stops.
    for node in (t, d):
        node.limits.serve = RateLimit(100_000, burst=16_000)
    await lap.store(lambda: lap.lending.answer_loan("Album/", True, now_ms()))
    await wait_for(lambda: d.serving.files_served > 0, what="the desk to serve some files")
    await desk.halt()
    served_by_desk = d.serving.files_served
    await until_phase(laptop, to_laptop.id, "held", within=20)
    assert 0 < served_by_desk < 30  # its share was about half, and it stopped part-way
    assert t.serving.files_served > 30  # its own half and the rest of the desk's
    copy = tmp_path / "laptop-borrowed" / "tower" / "Photos" / "Album"
    assert {f"Album/{p}": v for p, v in tree(copy).items()} == files
    assert staged(tmp_path) == []
    line = (await loans(laptop))[to_laptop.id]
    assert line.files_done == 60
