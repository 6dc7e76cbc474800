"""`mesh stream`: a member's file over http on 127.0.0.1 with Range, read while it arrives;
checked with curl and ffprobe (clients nobody here wrote)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from tests.mount.conftest import Pair, needs_tool, run

MiB = 1 << 20


async def test_curl_reads_ranges_of_a_borrowed_file(pair: Pair) -> None:
    curl = needs_tool("curl")
    data = random.Random(5).randbytes(6 * MiB + 17)
    await pair.share({"film.bin": data})
    await _until_known(pair)
    url = await pair.lp.stream("tower:Movies/film.bin")
    assert url.startswith("http://127.0.0.1:") and url.endswith("/film.bin")
    # A range in the middle first: those chunks are fetched before the rest.
    code, out, err = await run(curl, "-sf", "-r", "4194300-4194400", url)
    assert code == 0, err
    assert out == data[4194300:4194401]
    code, out, err = await run(curl, "-sf", "-D", "-", "-o", "/dev/null", "-r", "-100", url)
    assert code == 0, err
    headers = out.decode().lower()
    assert "206" in headers.splitlines()[0]
    assert f"content-range: bytes {len(data) - 100}-{len(data) - 1}/{len(data)}" in headers
    code, out, _ = await run(curl, "-sf", url)
    assert code == 0 and out == data
    # Without its token, nothing.
    code, out, _ = await run(
        curl,
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url.rsplit("/", 2)[0] + "/wrongtoken/film.bin",
    )
    assert out == b"404"
    code, out, _ = await run(
        curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-r", f"{len(data) + 5}-", url
    )
    assert out == b"416"


async def test_ffprobe_reads_a_stream(pair: Pair, tmp_path: Path) -> None:
    ffmpeg, ffprobe = needs_tool("ffmpeg"), needs_tool("ffprobe")
    video = tmp_path / "clip.mp4"
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
    await pair.share({"clip.mp4": video.read_bytes()})
    await _until_known(pair)
    url = await pair.lp.stream("tower:Movies/clip.mp4")
    code, out, err = await run(
        ffprobe,
        "-v",
        "error",
        "-show_entries",
        "stream=codec_name,width,height",
        "-of",
        "csv=p=0",
        url,
    )
    assert code == 0, err
    assert out.decode().strip() == "mpeg4,320,240"


async def _until_known(pair: Pair) -> None:
    deadline = time.monotonic() + 10
    while not await pair.lp.browse("tower", None):
        assert time.monotonic() < deadline, "the laptop did not learn the tower's index"
        await asyncio.sleep(0.05)


async def test_the_cli_calls_over_the_control_socket(pair: Pair) -> None:
    """mount, stream, pin, `mesh loans` and unmount as the CLI asks for them: over the
    daemon's control socket."""
    from tests.mount.conftest import needs_fuse

    needs_fuse()
    from mesh.transport.control_client import ControlClient

    await pair.share({"a.bin": b"a" * 100})
    await _until_known(pair)
    client = ControlClient(pair.laptop.home.control_socket)
    try:
        folder, _, message = await asyncio.to_thread(client.mount, "mount", str(pair.mnt))
        assert folder == str(pair.mnt) and "mounted" in message
        _, url, _ = await asyncio.to_thread(client.mount, "stream", "tower:Movies/a.bin")
        assert url.startswith("http://127.0.0.1:")
        inside = str(pair.mnt / "tower" / "Movies" / "a.bin")
        _, _, message = await asyncio.to_thread(client.mount, "pin", inside)
        assert message.startswith("pinned tower/Movies/a.bin")
        deadline = time.monotonic() + 10
        while True:
            lines = await asyncio.to_thread(client.loans, True)
            if lines and lines[0].phase == "held":
                break
            assert time.monotonic() < deadline, lines
            await asyncio.sleep(0.1)
        assert lines[0].kept == "pinned"
        _, _, message = await asyncio.to_thread(client.mount, "unpin", "tower:Movies/a.bin")
        assert "unpinned" in message
        _, _, message = await asyncio.to_thread(client.mount, "unmount")
        assert message == f"unmounted the mesh from {pair.mnt}"
    finally:
        client.close()
