"""Running the real `mesh` command in a subprocess, against a temporary home."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Mesh:
    home: Path
    user: str | None = None

    def run(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MESH_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "mesh", *args]
        if self.user is not None:
            cmd = [
                "setpriv",
                f"--reuid={self.user}",
                f"--regid={self.user}",
                "--clear-groups",
                *cmd,
            ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        assert "Traceback" not in proc.stderr, proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError(f"mesh {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    return Mesh(home=tmp_path / "home")
