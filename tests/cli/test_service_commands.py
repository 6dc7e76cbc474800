"""`mesh service`: the files it writes into a temporary home, checked by systemd itself where
it is installed. Nothing here reaches a real service manager: every run has a private HOME,
XDG folders and an empty runtime folder, so `systemctl --user` finds no session to talk to."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.cli import service_units

DEPLOY = Path(__file__).parents[2] / "deploy"


class User:
    """A user account made of temporary folders."""

    def __init__(self, root: Path, home_name: str = "node home") -> None:
        self.root = root
        self.config = root / "config"
        self.runtime = root / "runtime"
        self.runtime.mkdir(mode=0o700)
        self.mesh_home = root / home_name

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
        env.update(
            HOME=str(self.root),
            XDG_CONFIG_HOME=str(self.config),
            XDG_RUNTIME_DIR=str(self.runtime),
            MESH_HOME=str(self.mesh_home),
        )
        return env

    def mesh(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "mesh", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    @property
    def unit(self) -> Path:
        return self.config / "systemd" / "user" / "mesh.service"


def exec_start(unit: str) -> str:
    return next(x for x in unit.splitlines() if x.startswith("ExecStart="))


def test_install_writes_a_user_unit_that_systemd_accepts(tmp_path: Path) -> None:
    user = User(tmp_path)
    proc = user.mesh("service", "install", "--kind", "systemd", "--no-enable")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {user.unit}" in proc.stdout
    text = user.unit.read_text()
    lines = text.splitlines()
    assert "Restart=on-failure" in lines and "WantedBy=default.target" in lines
    command = exec_start(text).removeprefix("ExecStart=").split(" ")[0]
    assert Path(command).is_absolute() and os.access(command, os.X_OK)
    # The home has a blank in its name: quoted, so systemd passes it as one argument.
    assert exec_start(text).endswith(f'--home "{user.mesh_home}" up')
    verify(user, user.unit)


def test_a_home_with_systemd_specifiers_in_its_name_means_itself(tmp_path: Path) -> None:
    user = User(tmp_path, home_name="100%$HOME")
    assert user.mesh("service", "install", "--kind", "systemd", "--no-enable").returncode == 0
    assert exec_start(user.unit.read_text()).endswith(f'--home "{tmp_path}/100%%$$HOME" up')
    verify(user, user.unit)


def verify(user: User, unit: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed; the unit's content was checked")
    proc = subprocess.run(
        [tool, "--user", "verify", str(unit)],
        env=user.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on some errors (an unknown value is "ignored"): any message is a failure.
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == "", proc.stderr


def test_without_a_user_session_enabling_fails_in_one_line_and_the_unit_stays(
    tmp_path: Path,
) -> None:
    user = User(tmp_path)
    proc = user.mesh("service", "install", "--kind", "systemd")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "written but not enabled" in proc.stderr
    assert "systemctl --user enable --now mesh.service" in proc.stderr
    assert user.unit.is_file()


def test_status_then_uninstall(tmp_path: Path) -> None:
    user = User(tmp_path)
    out = user.mesh("service", "status", "--kind", "systemd").stdout
    assert "not installed" in out and "node      not running" in out
    user.mesh("service", "install", "--kind", "systemd", "--no-enable")
    out = user.mesh("service", "status", "--kind", "systemd").stdout
    assert f"file      {user.unit}\n" in out  # up to date: no note

    user.unit.write_text(user.unit.read_text().replace("RestartSec=5", "RestartSec=9"))
    assert "differs" in user.mesh("service", "status", "--kind", "systemd").stdout

    proc = user.mesh("service", "uninstall", "--kind", "systemd")
    assert proc.returncode == 0 and f"removed {user.unit}" in proc.stdout
    assert "warning" in proc.stderr  # systemctl could not be asked to stop it
    assert not user.unit.exists()
    assert "no service installed" in user.mesh("service", "uninstall").stdout


def test_install_writes_a_launchd_agent(tmp_path: Path) -> None:
    user = User(tmp_path)
    proc = user.mesh("service", "install", "--kind", "launchd", "--no-enable")
    assert proc.returncode == 0, proc.stderr
    agent = tmp_path / "Library" / "LaunchAgents" / "mesh.node.plist"
    plist = plistlib.loads(agent.read_bytes())
    assert plist["Label"] == "mesh.node"
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    command, *args = plist["ProgramArguments"]
    assert Path(command).is_absolute() and os.access(command, os.X_OK)
    assert args == ["--home", str(user.mesh_home), "up"]
    assert plist["StandardErrorPath"] == str(tmp_path / "Library" / "Logs" / "mesh.log")
    if shutil.which("plutil"):
        subprocess.run(["plutil", "-lint", str(agent)], check=True, timeout=30)


def test_deploy_holds_the_files_install_writes() -> None:
    # A change to service_units.py: python -m mesh.cli.service_units deploy
    for name, text in service_units.examples().items():
        assert (DEPLOY / name).read_text() == text, name
