"""The mesh as a folder tree: `<member>/<library>/<path>` from the replicated index.

Theory of operation. The mount (node/mount.py) asks this tree everything the kernel asks
(lookup, getattr, readdir); the tree is rebuilt from a listing of every member's live
entries whenever the index changes. Inode numbers stay the same for the same place across
rebuilds (the kernel keeps them in its caches, and an open file must keep its own), and a
rebuild says which places appeared, went or changed, so the mount can tell the kernel to
drop what it cached of them. Pure: no clock, no files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mesh.core.ids import NodeId

ROOT = 1  # the root's inode, as FUSE numbers it


@dataclass(frozen=True, kw_only=True, slots=True)
class Listed:
    """One live file of a member's library, as the index lists it."""

    member: str
    node_id: NodeId
    library: str
    path: str
    size: int
    mtime_ns: int
    hash: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Place:
    """A folder or file of the tree. A file names what it shows (`listed`)."""

    inode: int
    parent: int
    name: str
    size: int
    mtime_ns: int
    listed: Listed | None = None  # None: a folder

    @property
    def is_dir(self) -> bool:
        return self.listed is None


@dataclass(frozen=True, kw_only=True, slots=True)
class Changes:
    """What a rebuild changed: places gone or changed (inodes the kernel may cache), and
    names that appeared or went under a folder (entries it may cache)."""

    changed: frozenset[int] = frozenset()
    names: frozenset[tuple[int, str]] = frozenset()


@dataclass
class Tree:
    _numbers: dict[tuple[str, ...], int] = field(default_factory=dict)
    _places: dict[int, Place] = field(default_factory=dict)
    _children: dict[int, dict[str, int]] = field(default_factory=dict)
    _next: int = ROOT + 1

    def __post_init__(self) -> None:
        self._places[ROOT] = Place(inode=ROOT, parent=ROOT, name="", size=0, mtime_ns=0)
        self._children[ROOT] = {}

    def _number(self, parts: tuple[str, ...]) -> int:
        found = self._numbers.get(parts)
        if found is None:
            found = self._numbers[parts] = self._next
            self._next += 1
        return found

    def rebuild(self, listing: Iterable[Listed]) -> Changes:
        """Take a new listing; what changed since the last one."""
        places: dict[int, Place] = {
            ROOT: Place(inode=ROOT, parent=ROOT, name="", size=0, mtime_ns=0)
        }
        children: dict[int, dict[str, int]] = {ROOT: {}}
        newest: dict[int, int] = {}
        for item in listing:
            names = [item.member, item.library, *item.path.split("/")]
            if any(n in ("", ".", "..") or "\0" in n for n in names):
                continue  # not a name a folder can show
            parent = ROOT
            for depth, name in enumerate(names):
                parts = tuple(names[: depth + 1])
                last = depth == len(names) - 1
                inode = self._number((*parts, "") if last else parts)
                known = children[parent].get(name)
                if known is not None and known != inode:
                    break  # a file and a folder of one name: the first listed wins
                children[parent][name] = inode
                newest[parent] = max(newest.get(parent, 0), item.mtime_ns)
                if last:
                    places[inode] = Place(
                        inode=inode,
                        parent=parent,
                        name=name,
                        size=item.size,
                        mtime_ns=item.mtime_ns,
                        listed=item,
                    )
                else:
                    if inode not in places:
                        places[inode] = Place(
                            inode=inode, parent=parent, name=name, size=0, mtime_ns=0
                        )
                        children[inode] = {}
                    parent = inode
        for inode, mtime in newest.items():
            place = places[inode]
            places[inode] = Place(
                inode=inode, parent=place.parent, name=place.name, size=0, mtime_ns=mtime
            )
        changed = {
            inode
            for inode, old in self._places.items()
            if old.listed is not None and places.get(inode) != old
        }
        appeared_or_went = {
            (parent, name)
            for parent in set(children) | set(self._children)
            for name in set(children.get(parent, {})) ^ set(self._children.get(parent, {}))
        }
        self._places, self._children = places, children
        return Changes(changed=frozenset(changed), names=frozenset(appeared_or_went))

    def get(self, inode: int) -> Place | None:
        return self._places.get(inode)

    def lookup(self, parent: int, name: str) -> Place | None:
        inode = self._children.get(parent, {}).get(name)
        return self._places.get(inode) if inode is not None else None

    def children(self, inode: int) -> list[Place]:
        """A folder's places, in name order (readdir offsets are positions in it)."""
        found = self._children.get(inode, {})
        return [self._places[found[name]] for name in sorted(found)]

    def find(self, parts: Iterable[str]) -> Place | None:
        """The place at `member/library/path...`, if the tree shows one."""
        place = self._places.get(ROOT)
        for name in parts:
            if place is None:
                return None
            place = self.lookup(place.inode, name)
        return place


__all__ = ["ROOT", "Changes", "Listed", "Place", "Tree"]
