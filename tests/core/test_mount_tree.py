"""The mesh as a folder tree (core/mount_tree.py): places, stable inodes, what changed."""

from __future__ import annotations

from mesh.core.ids import NodeId
from mesh.core.mount_tree import ROOT, Listed, Tree

TOWER = NodeId(bytes([1]) * 32)


def item(path: str, size: int = 1, mtime: int = 10, member: str = "tower") -> Listed:
    library, _, rel = path.partition("/")
    return Listed(
        member=member,
        node_id=TOWER,
        library=library,
        path=rel,
        size=size,
        mtime_ns=mtime,
        hash=bytes(16),
    )


def names(tree: Tree, *parts: str) -> list[str]:
    place = tree.find(parts)
    assert place is not None
    return [p.name for p in tree.children(place.inode)]


def test_members_libraries_and_paths_are_folders() -> None:
    tree = Tree()
    tree.rebuild(
        [item("Movies/b/heat.mkv", 5, 30), item("Movies/a.txt"), item("Docs/x", member="nas")]
    )
    assert names(tree) == ["nas", "tower"]
    assert names(tree, "tower", "Movies") == ["a.txt", "b"]
    film = tree.find(["tower", "Movies", "b", "heat.mkv"])
    assert film is not None and film.listed is not None and film.size == 5
    folder = tree.find(["tower", "Movies"])
    assert folder is not None and folder.is_dir and folder.mtime_ns == 30  # the newest inside
    assert tree.get(ROOT) is not None


def test_inodes_stay_and_changes_are_reported() -> None:
    tree = Tree()
    tree.rebuild([item("M/a"), item("M/b")])
    a = tree.find(["tower", "M", "a"])
    assert a is not None
    changes = tree.rebuild([item("M/a", size=2), item("M/c")])
    again = tree.find(["tower", "M", "a"])
    assert again is not None and again.inode == a.inode and again.size == 2
    assert a.inode in changes.changed
    parent = tree.find(["tower", "M"])
    assert parent is not None
    assert {(parent.inode, "b"), (parent.inode, "c")} <= changes.names
    assert tree.find(["tower", "M", "b"]) is None


def test_names_no_folder_can_show_are_left_out() -> None:
    tree = Tree()
    tree.rebuild([item("M/../x"), item("M/ok"), item("M/a\0b")])
    assert names(tree, "tower", "M") == ["ok"]


def test_a_file_and_a_folder_of_one_name_keep_the_first() -> None:
    tree = Tree()
    tree.rebuild([item("M/x"), item("M/x/y")])
    x = tree.find(["tower", "M", "x"])
    assert x is not None and not x.is_dir
