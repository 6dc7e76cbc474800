"""Every command and group's --help shows an example of itself, and shell completion installs
and completes (in a temporary HOME, with the real bash)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mesh.cli.app import app


def command_paths() -> Iterator[list[str]]:
    def walk(command: Any, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


PATHS = list(command_paths())


def test_the_walk_sees_groups_and_their_commands() -> None:
    names = {" ".join(p) for p in PATHS}
    assert {"", "lend", "peer", "peer add", "config set", "service install", "demo"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "mesh")
def test_every_help_has_an_example_of_its_command(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="mesh")
    assert result.exit_code == 0, result.output
    _, sep, examples = result.output.partition("Examples")
    assert sep, f"no Examples in `mesh {' '.join(path)} --help`"
    command = " ".join(["mesh", *path])
    lines = [x.strip() for x in examples.splitlines()]
    assert any(x == command or x.startswith(command + " ") for x in lines), result.output


def test_the_root_offers_completion() -> None:
    out = CliRunner().invoke(app, ["--help"], prog_name="mesh").output
    assert "--install-completion" in out and "--show-completion" in out


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_install_completion_for_bash_completes_commands(tmp_path: Path) -> None:
    # Without it typer finds the shell among the test's ancestors, and there may be none
    # (a suite started in the background and left by its shell): then it takes "bash" here.
    detect = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash", **detect}
    proc = subprocess.run(
        [sys.executable, "-m", "mesh", "--install-completion", "bash"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "source" in (tmp_path / ".bashrc").read_text()
    # What Tab runs in a new shell: the completion function, calling this mesh.
    bin_dir = Path(sys.executable).parent
    script = (
        "source ~/.bashrc; "
        "COMP_WORDS=(mesh service in); COMP_CWORD=2; _mesh_completion mesh; "
        'echo "${COMPREPLY[@]}"'
    )
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["bash", "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert re.fullmatch(r"install\s*", done.stdout), done.stdout + done.stderr
