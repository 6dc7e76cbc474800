"""`mesh mount`: the daemon holds the mesh as a read-only folder (issue 21).

Theory of operation. The daemon mounts a FUSE file system (node/mount_fs.py) whose tree is
every member's live entries from the replicated index (core/mount_tree.py), rebuilt when
the records change (at most every `_REBUILD_S`, less often for a large index), so a file
shared anywhere shows within a second or two, its member online or not. The folder it
mounts on is remembered in the home: a daemon stop unmounts it and the next start mounts
it again; a mount left by a daemon that was killed (its folder then answers "Transport
endpoint is not connected") is lazily unmounted first. `mesh unmount` forgets it.

FUSE and pyfuse3 are optional (`pip install 'mesh[mount]'`); without them `mesh mount`
says what to install.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mesh.core.entries import IndexedEntry
from mesh.core.errors import InvalidArgumentError, LocalError, MeshError, NotFoundError
from mesh.core.mount_tree import Listed, Tree

if TYPE_CHECKING:
    from mesh.node.daemon import Daemon

log = logging.getLogger(__name__)
_REBUILD_S = 0.3  # the tree is rebuilt at most this often while records keep changing
_FSNAME = "mesh"


class MountUnavailableError(LocalError):
    """FUSE or its Python binding is missing here: the message says what to install."""


def listing(entries: list[IndexedEntry]) -> list[Listed]:
    return [
        Listed(
            member=item.node,
            node_id=item.node_id,
            library=item.entry.library,
            path=item.entry.path,
            size=item.entry.size,
            mtime_ns=item.entry.mtime_ns,
            hash=item.entry.hash,
        )
        for item in entries
        if not item.entry.deleted and item.node_id is not None
    ]


def mounted_at(folder: str) -> bool:
    """Whether a mesh FUSE file system is mounted at `folder` (/proc/self/mounts)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) >= 3 and _unescape(fields[1]) == folder and fields[0] == _FSNAME:
                    return True
    except OSError:
        return False
    return False


def _absolute(folder: str) -> str:
    # Only names: expanding ~ reads no disk, and neither does abspath.
    return os.path.normpath(os.path.join(os.getcwd(), os.path.expanduser(folder)))


def _unescape(field: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def release_stale(folder: str) -> bool:
    """Lazily unmount a mesh mount at `folder` that no process serves; whether one was."""
    if not mounted_at(folder):
        return False
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    command = [tool, "-u", "-z", folder] if tool else ["umount", "-l", folder]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log.warning("could not unmount the stale mount at %s: %s", folder, done.stderr.strip())
        return False
    log.info("unmounted the stale mesh mount at %s (left by a daemon that was killed)", folder)
    return True


def _read_ahead(folder: str) -> None:
    """Let the kernel read ahead 4 MiB instead of FUSE's 128 KiB: a sequential reader is
    then asked for in large requests, and each costs this process one round trip, not
    thirty-two. Best effort: only root may write it."""
    try:
        dev = os.stat(folder).st_dev
        knob = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
        with open(knob, "w", encoding="ascii") as f:
            f.write("4096")
    except OSError as exc:
        log.debug("read-ahead of the mount left as it is: %s", exc)


def check_available() -> None:
    """MountUnavailableError saying what to install, unless FUSE can be used here."""
    try:
        import pyfuse3  # noqa: F401
    except ImportError as exc:
        raise MountUnavailableError(
            "mounting needs pyfuse3: `pip install 'mesh[mount]'` (it builds against "
            "libfuse3: `apt install fuse3 libfuse3-dev pkg-config` first)"
        ) from exc
    if not os.path.exists("/dev/fuse"):
        raise MountUnavailableError(
            "this system has no /dev/fuse: install fuse3 (`apt install fuse3`), or load the "
            "fuse module (`modprobe fuse`)"
        )
    if not (shutil.which("fusermount3") or shutil.which("fusermount")) and os.getuid() != 0:
        raise MountUnavailableError("fusermount3 is missing: `apt install fuse3`")


class Mounting:
    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon
        self._tree = Tree()
        self._folder: str | None = None
        self._serving: asyncio.Task[None] | None = None
        self._following: asyncio.Task[None] | None = None
        self.remembered = daemon.home.root / "mount.dir"

    @property
    def folder(self) -> str | None:
        return self._folder

    def find(self, parts: list[str]) -> Listed | None:
        place = self._tree.find(parts)
        return place.listed if place is not None else None

    async def listing_now(self) -> Tree:
        """A tree of the mesh as the index shows it now (for `mesh stream` and `mesh pin`
        without a mount)."""
        if self._folder is not None:
            return self._tree
        tree = Tree()
        tree.rebuild(listing(await self._d.store(self._d.local.browse)))
        return tree

    async def start(self) -> None:
        """At the daemon's start: clean a stale mount, and mount again where it was."""
        try:
            folder = self.remembered.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return
        await asyncio.to_thread(release_stale, folder)
        try:
            await self.mount(folder)
        except MeshError as exc:
            log.warning("could not mount the mesh at %s again: %s", folder, exc)

    async def mount(self, folder: str) -> str:
        folder = _absolute(folder)
        if self._folder == folder:
            return folder
        check_available()
        from mesh.node import mount_fs

        if self._folder is not None:
            raise InvalidArgumentError(
                f"the mesh is mounted at {self._folder} already; `mesh unmount` first"
            )
        await asyncio.to_thread(release_stale, folder)
        path = Path(folder)
        await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        if any(await asyncio.to_thread(lambda: list(path.iterdir())[:1])):
            raise InvalidArgumentError(f"{folder} is not empty: mount on an empty folder")
        await self._rebuild()
        fs = mount_fs.MeshFs(self._tree, self._d.opened)
        try:
            mount_fs.start(folder, fs)
        except RuntimeError as exc:
            raise MountUnavailableError(f"could not mount {folder}: {exc}") from exc
        self._folder = folder
        self._serving = asyncio.create_task(mount_fs.serve(), name="mount")
        # After serving starts: the stat in it is the file system's first request.
        await asyncio.to_thread(_read_ahead, folder)
        self._following = asyncio.create_task(self._follow(), name="mount index")
        await asyncio.to_thread(self.remembered.write_text, folder + "\n", encoding="utf-8")
        log.info("the mesh is mounted at %s", folder)
        return folder

    async def unmount(self, *, forget: bool = True) -> str | None:
        """Unmount (a daemon stop keeps the folder remembered: the next start mounts it)."""
        if forget:
            self.remembered.unlink(missing_ok=True)
        folder, self._folder = self._folder, None
        if folder is None:
            return None
        from mesh.node import mount_fs

        following, serving = self._following, self._serving
        self._following = self._serving = None
        if following is not None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        if serving is not None:
            mount_fs.stop()  # pyfuse3's main loop ends after the request it is answering
            try:
                async with asyncio.timeout(2.0):
                    await asyncio.shield(serving)
            except (TimeoutError, Exception):
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)
        await self._d.opened.close_all()
        try:
            mount_fs.unmount()
        except Exception as exc:  # a busy or already gone mount: lazily, then
            log.info("unmounting %s: %s; detaching it lazily", folder, exc)
            await asyncio.to_thread(release_stale, folder)
        log.info("the mesh is unmounted from %s", folder)
        return folder

    async def _rebuild(self) -> None:
        entries = await self._d.store(self._d.local.browse)
        # In a thread: 100k entries take a second or more, and the loop answers the kernel
        # meanwhile (lookups read the tree's maps, which a rebuild swaps in whole).
        tree = self._tree
        changes = await asyncio.to_thread(lambda: tree.rebuild(listing(entries)))
        if self._folder is not None and (changes.changed or changes.names):
            from mesh.node import mount_fs

            mount_fs.invalidate(changes.changed, changes.names)

    async def _follow(self) -> None:
        changes = self._d.changes
        while True:
            version = changes.version
            began = time.monotonic()
            try:
                await self._rebuild()
            except MeshError as exc:
                log.warning("the mount's tree could not be rebuilt: %s", exc)
            took = time.monotonic() - began
            await changes.wait(version)
            # A large index (a rebuild reads every entry on the store thread) is rebuilt
            # less often: the store thread spends at most a quarter of its time on it.
            await asyncio.sleep(max(0.0, max(_REBUILD_S, 3 * took) - took))

    def resolve(self, spec: str) -> list[str]:
        """`NODE:LIBRARY/PATH`, or a path inside the mount, as [member, library, path...]."""
        node, sep, _ = spec.partition(":")
        if sep and node and "/" not in node:
            node, _, rest = spec.partition(":")
            parts = [node, *rest.strip("/").split("/")]
        else:
            absolute = _absolute(spec)
            if self._folder is None or not absolute.startswith(self._folder + os.sep):
                raise InvalidArgumentError(
                    f"{spec!r} is neither NODE:LIBRARY/PATH nor a file in the mounted mesh"
                )
            parts = absolute[len(self._folder) + 1 :].split(os.sep)
        if len(parts) < 3 or not all(parts):
            raise InvalidArgumentError(f"{spec!r} does not name a file: write NODE:LIBRARY/PATH")
        return parts

    async def listed(self, spec: str) -> Listed:
        parts = self.resolve(spec)
        tree = await self.listing_now()
        place = tree.find(parts)
        if place is None or place.listed is None:
            raise NotFoundError(
                f"{parts[0]} shares no {'/'.join(parts[1:])!r} as far as this node knows; "
                f"`mesh ls --node {parts[0]}`"
            )
        return place.listed


__all__ = ["MountUnavailableError", "Mounting", "check_available", "release_stale"]
