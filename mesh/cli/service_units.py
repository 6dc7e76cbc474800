"""The text of the service files that run `mesh up` for one user: a systemd user unit and a
launchd agent.

Pure rendering, no I/O: `mesh service install` writes what these return, and deploy/ holds
the same files rendered for placeholder paths (a test keeps them equal), so there is one
source for both.
"""

from __future__ import annotations

import plistlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SYSTEMD_UNIT = "mesh.service"
LAUNCHD_LABEL = "mesh.node"

# Placeholders of the example files in deploy/.
_LINUX_EXAMPLE = ("/home/USER/.local/bin/mesh", "/home/USER/.local/share/mesh")
_MACOS_EXAMPLE = ("/Users/USER/.local/bin/mesh", "/Users/USER/Library/Application Support/mesh")
_MACOS_LOG = Path("/Users/USER/Library/Logs/mesh.log")

# systemd splits ExecStart like a shell but expands % (specifiers) and $ (variables): a
# path holding them, or a blank or quote, must be quoted and escaped to mean itself.
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """What the service runs: the `mesh` command (absolute) and the node's home."""

    command: Sequence[str]
    home: Path

    def argv(self) -> list[str]:
        return [*self.command, "--home", str(self.home), "up"]


def _systemd_word(word: str) -> str:
    escaped = word.replace("%", "%%").replace("$", "$$")
    if _PLAIN.fullmatch(word):
        return escaped
    escaped = escaped.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def systemd_unit(spec: ServiceSpec) -> str:
    """A systemd user unit: started at login, restarted when it fails."""
    exec_start = " ".join(_systemd_word(w) for w in spec.argv())
    return f"""\
# mesh: lend files between your own computers. Written by `mesh service install`;
# `mesh service uninstall` removes it. Logs: journalctl --user -u {SYSTEMD_UNIT}
[Unit]
Description=mesh node (lend files between your own computers)

[Service]
Type=simple
ExecStart={exec_start}
# SIGTERM stops mesh cleanly within a few seconds; it loses nothing either way.
TimeoutStopSec=30
Restart=on-failure
RestartSec=5

[Install]
WantedBy=default.target
"""


def launchd_agent(spec: ServiceSpec, log: Path) -> str:
    """A launchd agent: started at login (RunAtLoad), started again if it exits failing."""
    plist = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": spec.argv(),
        "RunAtLoad": True,
        # Keep it alive only after a failure: a clean exit (a stop) stays stopped.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 5,
        "ProcessType": "Background",
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
    }
    return plistlib.dumps(plist, sort_keys=False).decode()


def examples() -> dict[str, str]:
    """deploy/'s files: the service files for placeholder paths, by file name."""
    linux = ServiceSpec(command=_LINUX_EXAMPLE[:1], home=Path(_LINUX_EXAMPLE[1]))
    macos = ServiceSpec(command=_MACOS_EXAMPLE[:1], home=Path(_MACOS_EXAMPLE[1]))
    return {
        SYSTEMD_UNIT: systemd_unit(linux),
        f"{LAUNCHD_LABEL}.plist": launchd_agent(macos, _MACOS_LOG),
    }


if __name__ == "__main__":
    # python -m mesh.cli.service_units deploy: rewrite the examples after a change here.
    import sys

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "deploy")
    for name, text in examples().items():
        (folder / name).write_text(text)
