"""The FUSE file system of `mesh mount` (pyfuse3 in its asyncio mode, on the daemon's loop).

A thin adapter, as a gRPC servicer is: the kernel's questions are answered from the tree
(core/mount_tree.py), opens and reads go to node/opened.py, and errors become the errno
the kernel passes on to the program that asked. Read-only: every write is EROFS.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from typing import TYPE_CHECKING

import pyfuse3
import pyfuse3.asyncio

from mesh.core.errors import MeshError, NotFoundError, PeerUnavailableError, RefusedError
from mesh.core.mount_tree import Place, Tree

if TYPE_CHECKING:
    from mesh.node.opened import OpenedFiles

log = logging.getLogger(__name__)
_TIMEOUT_S = 1.0  # the kernel keeps names and sizes this long: new shares show within it
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT

pyfuse3.asyncio.enable()  # the daemon's event loop runs the file system, not trio's


def errno_of(exc: MeshError) -> int:
    """The errno an open or read error reaches the reading program as."""
    if isinstance(exc, NotFoundError):
        return errno.ENOENT
    if isinstance(exc, RefusedError):
        return errno.EACCES
    if isinstance(exc, PeerUnavailableError):
        return errno.EIO
    return errno.EIO


class MeshFs(pyfuse3.Operations):
    def __init__(self, tree: Tree, opened: OpenedFiles) -> None:
        super().__init__()
        self._tree = tree
        self._opened = opened
        self._uid, self._gid = os.getuid(), os.getgid()

    def _attributes(self, place: Place) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = pyfuse3.InodeT(place.inode)
        attrs.st_mode = pyfuse3.ModeT(
            stat.S_IFDIR | 0o555 if place.is_dir else stat.S_IFREG | 0o444
        )
        attrs.st_nlink = 2 if place.is_dir else 1
        attrs.st_size = place.size
        attrs.st_blksize = 1 << 20
        attrs.st_blocks = (place.size + 511) // 512
        attrs.st_mtime_ns = attrs.st_ctime_ns = attrs.st_atime_ns = place.mtime_ns
        attrs.st_uid, attrs.st_gid = self._uid, self._gid
        attrs.attr_timeout = attrs.entry_timeout = _TIMEOUT_S
        return attrs

    def _place(self, inode: int) -> Place:
        place = self._tree.get(inode)
        if place is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return place

    async def getattr(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext | None = None
    ) -> pyfuse3.EntryAttributes:
        return self._attributes(self._place(inode))

    async def lookup(
        self,
        parent_inode: pyfuse3.InodeT,
        name: pyfuse3.FileNameT,
        ctx: pyfuse3.RequestContext | None = None,
    ) -> pyfuse3.EntryAttributes:
        place = self._tree.lookup(parent_inode, os.fsdecode(name))
        if place is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attributes(place)

    async def opendir(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileHandleT:
        if not self._place(inode).is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return pyfuse3.FileHandleT(inode)

    async def readdir(
        self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken
    ) -> None:
        # Offsets are positions in the sorted listing: a folder that changes between two
        # calls may show a name twice or miss one, as on any file system read while it
        # changes.
        for position, place in enumerate(self._tree.children(fh)):
            if position < start_id:
                continue
            name = pyfuse3.FileNameT(os.fsencode(place.name))
            if not pyfuse3.readdir_reply(token, name, self._attributes(place), position + 1):
                return

    async def open(
        self, inode: pyfuse3.InodeT, flags: pyfuse3.FlagT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        if flags & _WRITE_FLAGS:
            raise pyfuse3.FUSEError(errno.EROFS)
        place = self._place(inode)
        if place.listed is None:
            raise pyfuse3.FUSEError(errno.EISDIR)
        try:
            handle = await self._opened.open(place.listed)
        except MeshError as exc:
            log.warning(
                "open of %s/%s/%s: %s",
                place.listed.member,
                place.listed.library,
                place.listed.path,
                exc,
            )
            raise pyfuse3.FUSEError(errno_of(exc)) from exc
        # The kernel may keep what it read: reads only ever return verified bytes of this
        # content, and a new version of the file is a new place (its cache is dropped).
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(handle.number), keep_cache=True)

    async def read(self, fh: pyfuse3.FileHandleT, off: int, size: int) -> bytes:
        try:
            return await self._opened.read(fh, off, size)
        except MeshError as exc:
            log.warning("read of %s: %s", self._opened.get(fh).listed.path, exc)
            raise pyfuse3.FUSEError(errno_of(exc)) from exc
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from exc

    async def release(self, fh: pyfuse3.FileHandleT) -> None:
        await self._opened.close(fh)

    async def releasedir(self, fh: pyfuse3.FileHandleT) -> None:
        return None

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 1 << 20
        data.f_namemax = 255
        return data


def invalidate(changed: frozenset[int], names: frozenset[tuple[int, str]]) -> None:
    """Tell the kernel to drop what it cached of places that changed or went."""
    for inode in changed:
        with contextlib.suppress(OSError):  # the kernel does not know it: nothing to drop
            pyfuse3.invalidate_inode(pyfuse3.InodeT(inode))
    for parent, name in names:
        with contextlib.suppress(OSError):
            pyfuse3.invalidate_entry_async(
                pyfuse3.InodeT(parent), pyfuse3.FileNameT(os.fsencode(name)), ignore_enoent=True
            )


def start(mountpoint: str, fs: MeshFs) -> None:
    """Mount (RuntimeError if the kernel refuses); `serve()` then answers the kernel."""
    options = set(pyfuse3.default_options) | {"fsname=mesh", "subtype=mesh", "ro"}
    pyfuse3.init(fs, mountpoint, options)


async def serve() -> None:
    """Answer the kernel until `stop()` or a cancellation; the caller then `unmount()`s."""
    await pyfuse3.main()


def stop() -> None:
    pyfuse3.terminate()


def unmount() -> None:
    pyfuse3.close(unmount=True)


__all__ = ["MeshFs", "errno_of", "invalidate", "serve", "start", "stop", "unmount"]
