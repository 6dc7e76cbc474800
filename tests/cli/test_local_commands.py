"""The local commands end to end, as a new user meets them (README's quick start)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import xxhash

from mesh.core.ids import NodeId
from tests.cli.conftest import Mesh

COMMANDS = [
    *("init", "id", "share", "unshare", "scan", "ls", "find", "up", "status", "invite"),
    *("join", "members", "remove", "peers", "lend", "recall", "loans", "borrow", "return"),
    *("accept", "decline", "requests", "approve", "deny", "doctor"),
    *("peer add", "peer remove", "config show", "config set"),
]


def listing(mesh: Mesh, *args: str) -> dict[str, dict[str, object]]:
    out = json.loads(mesh.run("ls", "--json", *args).stdout)
    return {f"{e['library']}/{e['path']}": e for e in out}


def test_init_makes_an_identity_with_private_modes(mesh: Mesh) -> None:
    out = mesh.run("init", "--name", "tower").stdout
    assert "created node 'tower'" in out
    node_id = NodeId.parse(mesh.run("id").stdout.strip())
    assert str(node_id) in out
    assert stat.S_IMODE((mesh.home / "node.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(mesh.home.stat().st_mode) == 0o700
    again = mesh.run("init").stdout
    assert "already exists" in again and str(node_id) in again
    renamed = mesh.run("init", "--name", "tower2").stdout
    assert "renamed" in renamed and str(node_id) in renamed


def test_share_scan_list_edit_rescan(mesh: Mesh, tmp_path: Path) -> None:
    lib = tmp_path / "Movies"
    (lib / "sub dir").mkdir(parents=True)
    files = {
        "heat.mkv": os.urandom(3 * 1024 * 1024 + 3),
        "sub dir/naïve café.txt": b"unicode",
        "-leading-dash": b"dash",
        "empty": b"",
    }
    for rel, data in files.items():
        (lib / rel).write_bytes(data)
    mesh.run("init", "--name", "tower")
    out = mesh.run("share", str(lib)).stdout
    assert "4 added" in out
    first = listing(mesh)
    assert set(first) == {f"Movies/{p}" for p in files}
    for rel, data in files.items():
        entry = first[f"Movies/{rel}"]
        assert entry["hash"] == xxhash.xxh3_128_hexdigest(data)
        assert entry["size"] == len(data) and entry["deleted"] is False
        assert set(entry) == {"library", "path", "size", "mtime_ns", "hash", "seq", "deleted"}
    if shutil.which("xxh128sum"):
        out = subprocess.run(
            ["xxh128sum", str(lib / "heat.mkv")], capture_output=True, text=True, check=True
        )
        assert first["Movies/heat.mkv"]["hash"] == out.stdout.split()[0]

    (lib / "heat.mkv").write_bytes(b"recut")
    (lib / "-leading-dash").unlink()
    (lib / "new one").write_bytes(b"new")
    out = mesh.run("scan").stdout
    assert "1 added, 1 changed, 1 removed, 2 unchanged" in out
    second = listing(mesh, "--deleted")
    top = max(int(e["seq"]) for e in first.values())  # type: ignore[call-overload]
    changed = {k for k, e in second.items() if e != first.get(k)}
    assert changed == {"Movies/heat.mkv", "Movies/-leading-dash", "Movies/new one"}
    assert sorted(int(second[k]["seq"]) for k in changed) == [top + 1, top + 2, top + 3]  # type: ignore[call-overload]
    assert second["Movies/-leading-dash"]["deleted"] is True
    assert "Movies/-leading-dash" not in listing(mesh)


def test_a_folder_whose_name_starts_with_a_dash(mesh: Mesh, tmp_path: Path) -> None:
    odd = tmp_path / "-odd"
    odd.mkdir()
    (odd / "f").write_bytes(b"f")
    mesh.run("init", "--name", "tower")
    proc = subprocess.run(
        [*_mesh_cmd(), "share", "--", "-odd"],
        cwd=tmp_path,
        env=_env(mesh),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "-odd/f" in listing(mesh)


def _mesh_cmd() -> list[str]:
    import sys

    return [sys.executable, "-m", "mesh"]


def _env(mesh: Mesh) -> dict[str, str]:
    return {**os.environ, "MESH_HOME": str(mesh.home)}


def test_unshare_marks_entries_deleted(mesh: Mesh, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a").write_bytes(b"a")
    mesh.run("init")
    mesh.run("share", str(lib), "--as", "stuff")
    out = mesh.run("unshare", "stuff").stdout
    assert "1 entry now deleted" in out
    assert listing(mesh) == {}
    assert listing(mesh, "--deleted")["stuff/a"]["deleted"] is True


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["ls", "nope"], 1, "no library named 'nope'"),
        (["share", "/definitely/not/here"], 1, "does not exist"),
        (["init", "--name", "bad name!"], 2, "node name 'bad name!' is not allowed"),
        (["unshare", "ghost"], 1, "no library named 'ghost'"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    mesh: Mesh, args: list[str], code: int, message: str
) -> None:
    mesh.run("init", "--name", "tower")
    proc = mesh.run(*args, check=False)
    assert proc.returncode == code
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(["ls", "--bogus"], "No such option: --bogus"), (["share"], "Missing argument")],
)
def test_usage_errors_say_what_is_wrong_and_how_to_get_help(
    mesh: Mesh, args: list[str], message: str
) -> None:
    proc = mesh.run(*args, check=False)  # Mesh.run fails the test on a traceback
    assert proc.returncode == 2
    assert message in proc.stderr and "-h' for help" in proc.stderr


def test_commands_before_init_say_what_to_do(mesh: Mesh) -> None:
    proc = mesh.run("ls", check=False)
    assert proc.returncode == 1 and "mesh init" in proc.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(mesh: Mesh, command: str) -> None:
    out = mesh.run(*command.split(), "--help").stdout
    assert "Examples:" in out and f"mesh {command}" in out


def test_a_piped_scan_prints_no_progress(mesh: Mesh, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(50):
        (lib / str(i)).write_bytes(b"x" * i)
    mesh.run("init")
    proc = mesh.run("share", str(lib))
    assert proc.stderr == ""
    assert proc.stdout.count("\n") == 2


def test_an_unreadable_file_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    user = None
    base = tmp_path
    if os.geteuid() == 0:
        # Root reads everything; run the node as an unprivileged user, in a folder it can reach.
        user = "65534"
        base = Path(tempfile.mkdtemp(prefix="mesh-test-"))
        base.chmod(0o755)
        os.chown(base, 65534, 65534)
    try:
        mesh = Mesh(home=base / "home", user=user)
        mesh.run("init")
        lib = base / "lib"
        mesh.run("--version")
        lib.mkdir()
        (lib / "fine").write_bytes(b"ok")
        (lib / "secret").write_bytes(b"no")
        (lib / "secret").chmod(0)
        (lib / "sub").mkdir()
        (lib / "sub" / "inner").write_bytes(b"in")
        if user:
            for p in (lib, lib / "fine", lib / "sub", lib / "sub" / "inner"):
                os.chown(p, 65534, 65534)
        proc = mesh.run("share", str(lib))
        assert "warning: cannot read" in proc.stderr and "secret" in proc.stderr
        assert "2 added" in proc.stdout
        # A folder that cannot be listed is not a folder whose files were deleted.
        (lib / "sub").chmod(0)
        proc = mesh.run("scan")
        assert "cannot list" in proc.stderr and "0 removed" in proc.stdout
        (lib / "sub").chmod(0o755)
    finally:
        if base is not tmp_path:
            shutil.rmtree(base)
