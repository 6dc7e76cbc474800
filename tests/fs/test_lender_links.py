"""Lender folders are named by node id; the names a user sees are links mesh keeps current."""

from __future__ import annotations

import os
from pathlib import Path

from mesh.core.ids import NodeId
from mesh.core.paths import folder_owner, lender_folder
from mesh.fs.lender_links import adopt_named_folders, link_names

TOWER = NodeId.of_certificate(b"tower")
MALLORY = NodeId.of_certificate(b"mallory")


def folders(root: Path, *owners: NodeId) -> None:
    for owner in owners:
        (root / lender_folder(owner) / "Docs").mkdir(parents=True)
        (root / lender_folder(owner) / "Docs" / "f").write_text(owner.short())


def links(root: Path) -> dict[str, str]:
    return {p.name: os.readlink(p) for p in root.iterdir() if p.is_symlink()}


def test_a_lender_folder_is_its_node_ids() -> None:
    assert folder_owner(lender_folder(TOWER)) == TOWER
    assert folder_owner("tower") is None
    assert folder_owner(".mesh-lender-not-an-id") is None


def test_names_follow_membership_and_a_name_that_changes_hands_moves(tmp_path: Path) -> None:
    folders(tmp_path, TOWER, MALLORY)
    link_names(tmp_path, {MALLORY: "tower"})  # mallory's claim, before tower's is known
    assert links(tmp_path) == {"tower": lender_folder(MALLORY)}
    taken_back = {TOWER: "tower", MALLORY: f"tower~{MALLORY.short()}"}
    link_names(tmp_path, taken_back)
    assert links(tmp_path) == {
        "tower": lender_folder(TOWER),
        f"tower~{MALLORY.short()}": lender_folder(MALLORY),
    }
    assert (tmp_path / "tower" / "Docs" / "f").read_text() == TOWER.short()
    link_names(tmp_path, taken_back)  # idempotent
    assert len(links(tmp_path)) == 2


def test_a_users_file_or_folder_under_a_lenders_name_is_left_alone(tmp_path: Path) -> None:
    folders(tmp_path, TOWER)
    (tmp_path / "tower").mkdir()
    (tmp_path / "tower" / "mine.txt").write_text("mine")
    link_names(tmp_path, {TOWER: "tower"})
    assert not (tmp_path / "tower").is_symlink()
    assert (tmp_path / "tower" / "mine.txt").read_text() == "mine"
    # A link the user made elsewhere is theirs too.
    os.symlink("/tmp", tmp_path / "laptop")
    link_names(tmp_path, {TOWER: "laptop"})
    assert os.readlink(tmp_path / "laptop") == "/tmp"


def test_a_removed_lenders_link_stays_and_unsafe_names_get_none(tmp_path: Path) -> None:
    folders(tmp_path, TOWER, MALLORY)
    link_names(tmp_path, {TOWER: "tower", MALLORY: "m"})
    link_names(tmp_path, {TOWER: "tower"})  # mallory is no member any more
    assert links(tmp_path)["m"] == lender_folder(MALLORY)
    link_names(tmp_path, {TOWER: "..", MALLORY: "a/b"})
    assert not (tmp_path / "..").is_symlink()
    assert set(links(tmp_path)) <= {"tower", "m"}


def test_folders_named_before_lender_folders_existed_are_adopted(tmp_path: Path) -> None:
    (tmp_path / "tower" / "Docs").mkdir(parents=True)
    (tmp_path / "tower" / "Docs" / "f").write_text("old")
    adopt_named_folders(tmp_path, {"tower": TOWER, "gone": MALLORY})
    assert (tmp_path / lender_folder(TOWER) / "Docs" / "f").read_text() == "old"
    link_names(tmp_path, {TOWER: "tower"})
    assert (tmp_path / "tower" / "Docs" / "f").read_text() == "old"
