"""The lender folders of the borrowed folder, and the names a user sees them by.

What a lender lends lands under `<root>/.mesh-lender-<its node id>/`: a folder that belongs
to that node id for good, so no other member's files can ever appear in it, whatever names
do (a name can change hands when a conflict is settled: core/membership.py). The user sees
each lender folder by its lender's name: `<root>/<name>` is a symbolic link to it, made and
kept current by mesh. Mesh never goes through those links itself (borrowed.py walks the
lender folders), and only ever replaces or removes a link that points at a lender folder:
a file or folder of the user's under a lender's name is left alone, and the link is not
made (the lender folder is still there, under its id).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from mesh.core.errors import InvalidArgumentError
from mesh.core.ids import NodeId
from mesh.core.paths import check_name, folder_owner, lender_folder

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def settle_lender_folders(
    root: Path, lenders_of_copies: Iterable[tuple[str, NodeId]], names: Mapping[NodeId, str]
) -> None:
    """At start: copies placed under their lender's name (as `lenders_of_copies` gives it)
    before lender folders existed move to them, then the names are linked as membership
    now gives them. A name two lenders' copies share (issue 18's attack) is left for the
    user to sort."""
    lenders: dict[str, set[NodeId]] = {}
    for name, lender in lenders_of_copies:
        lenders.setdefault(name, set()).add(lender)
    adopt_named_folders(
        root, {name: next(iter(ids)) for name, ids in lenders.items() if len(ids) == 1}
    )
    link_names(root, names)


def adopt_named_folders(root: Path, lenders: Mapping[str, NodeId]) -> None:
    """Move the folders copies were placed in before lender folders existed
    (`<root>/<lender's name>`, `lenders` giving each name's lender) to their lender's
    folder, so that the links can take their names. A folder is moved only when it is a
    real folder and its lender has no folder yet."""
    try:
        fd = os.open(os.fspath(root), _DIR_FLAGS)
    except OSError:
        return
    try:
        for name, lender in lenders.items():
            with contextlib.suppress(OSError):
                if not stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    continue
                folder = lender_folder(lender)
                if os.path.lexists(os.path.join(os.fspath(root), folder)):
                    continue
                os.rename(name, folder, src_dir_fd=fd, dst_dir_fd=fd)
                log.info("moved the copies lent by %s to its lender folder %s", name, folder)
    finally:
        os.close(fd)


def link_names(root: Path, names: Mapping[NodeId, str]) -> None:
    """Make `<root>/<name>` a link to the folder of each lender that has one and a name in
    `names` (unique names, as membership gives them), and drop mesh's links that point at a
    lender folder under another name. Lenders without a name here keep their link as it is
    (a removed member's files stay where the user saw them). Best effort: a problem is
    logged, not raised, since the files are in place whatever the links say."""
    try:
        fd = os.open(os.fspath(root), _DIR_FLAGS)
    except OSError:
        return  # no borrowed folder yet: nothing to show
    try:
        entries = os.listdir(fd)
        links: dict[str, str] = {}  # link name -> lender folder it points at
        for entry in entries:
            with contextlib.suppress(OSError):
                target = os.readlink(entry, dir_fd=fd)
                if folder_owner(target) is not None:
                    links[entry] = target
        wanted: dict[str, str] = {}
        for entry in entries:
            owner = folder_owner(entry)
            if owner is None or owner not in names:
                continue
            name = names[owner]
            try:
                check_name(name)
            except InvalidArgumentError:
                continue
            wanted[name] = entry
        for link, target in links.items():
            if wanted.get(link) != target and folder_owner(target) in names:
                with contextlib.suppress(OSError):
                    os.unlink(link, dir_fd=fd)
        for name, folder in wanted.items():
            if links.get(name) != folder:
                _link(fd, name, folder)
    finally:
        os.close(fd)


def _link(fd: int, name: str, folder: str) -> None:
    """Point `name` at `folder`, atomically, unless `name` is the user's."""
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
        if folder_owner(os.readlink(name, dir_fd=fd)) is None:
            raise OSError(errno.EINVAL, "not mesh's")
    except FileNotFoundError:
        pass
    except OSError:
        log.warning(
            "%s in the borrowed folder is not mesh's: lender folder %s left unnamed", name, folder
        )
        return
    temporary = f".mesh-link-{secrets.token_hex(4)}"
    try:
        os.symlink(folder, temporary, dir_fd=fd)
        os.rename(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=fd)
        log.warning("cannot name lender folder %s %s: %s", folder, name, exc)


__all__ = ["adopt_named_folders", "link_names"]
