"""`mesh service install|uninstall|status`: run `mesh up` as this user's service, started at
login and restarted when it fails (a systemd user unit on Linux, a launchd agent on macOS).

Installing writes the file first and enables it second, so a machine without a user
session manager (a container, a root shell over ssh) still gets the file, and the error
says what to run once there is one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mesh.cli.context import CliContext
from mesh.cli.service_units import (
    LAUNCHD_LABEL,
    SYSTEMD_UNIT,
    ServiceSpec,
    launchd_agent,
    systemd_unit,
)
from mesh.core.errors import InvalidArgumentError, LocalError

service_app = typer.Typer(
    help=(
        "Run the node as this user's service: started at login, restarted if it fails.\n\n"
        "\b\nExamples:\n"
        "  mesh service install\n"
        "  mesh service status\n"
        "  mesh service uninstall"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)

_TOOL_TIMEOUT_S = 30


class Kind(StrEnum):
    systemd = "systemd"
    launchd = "launchd"


def _ctx(ctx: typer.Context) -> CliContext:
    obj = ctx.obj
    assert isinstance(obj, CliContext)
    return obj


def _default_kind() -> Kind:
    if sys.platform == "darwin":
        return Kind.launchd
    if sys.platform.startswith("linux"):
        return Kind.systemd
    raise InvalidArgumentError(
        f"mesh service does not know {sys.platform}; the README's 'Running a node' says how "
        "to start `mesh up` at login on Windows"
    )


def _mesh_command() -> tuple[str, ...]:
    """The `mesh` of this very installation, by absolute path (a service has no PATH)."""
    # sys.executable is not resolved: in a venv the symlink is what selects the venv.
    bin_dir = Path(sys.executable).absolute().parent
    script = bin_dir / ("mesh.exe" if sys.platform == "win32" else "mesh")
    if script.is_file():
        return (str(script),)
    return (str(Path(sys.executable).absolute()), "-m", "mesh")


@dataclass(frozen=True)
class Service:
    """One kind of service file for this user: where it goes, what it says, how to run it."""

    kind: Kind
    spec: ServiceSpec

    @property
    def path(self) -> Path:
        if self.kind is Kind.launchd:
            return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config) / "systemd" / "user" / SYSTEMD_UNIT

    def text(self) -> str:
        if self.kind is Kind.launchd:
            log = Path.home() / "Library" / "Logs" / "mesh.log"
            return launchd_agent(self.spec, log)
        return systemd_unit(self.spec)

    def enable_commands(self) -> list[list[str]]:
        if self.kind is Kind.launchd:
            return [["launchctl", "bootstrap", f"gui/{os.getuid()}", str(self.path)]]
        return [
            ["systemctl", "--user", "daemon-reload"],
            ["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT],
        ]

    def disable_commands(self) -> list[list[str]]:
        if self.kind is Kind.launchd:
            return [["launchctl", "bootout", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"]]
        return [["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT]]

    def state_command(self) -> list[str]:
        if self.kind is Kind.launchd:
            return ["launchctl", "print", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"]
        return ["systemctl", "--user", "is-active", SYSTEMD_UNIT]


def _service(ctx: typer.Context, kind: Kind | None) -> Service:
    spec = ServiceSpec(command=_mesh_command(), home=_ctx(ctx).home.root)
    return Service(kind or _default_kind(), spec)


def _run(cmd: list[str]) -> str | None:
    """Run a service manager's command: None when it worked, else why not (one line)."""
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        return f"{cmd[0]} is not installed"
    except subprocess.TimeoutExpired:
        return f"`{' '.join(cmd)}` did not answer in {_TOOL_TIMEOUT_S} s"
    if proc.returncode == 0:
        return None
    lines = [x.strip() for x in (proc.stderr + proc.stdout).splitlines() if x.strip()]
    why = lines[0] if lines else f"exit status {proc.returncode}"
    return f"`{' '.join(cmd)}` failed: {why}"


def _ask(cmd: list[str]) -> str:
    """What a service manager says about the service, in one line."""
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S, check=False
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        return f"cannot ask {cmd[0]}: {exc}"
    lines = [x.strip() for x in (proc.stdout + proc.stderr).splitlines() if x.strip()]
    if cmd[0] == "launchctl":
        # `launchctl print` is long; its "state = running" line is the answer.
        lines = [x for x in lines if x.startswith("state =")] or lines
    return lines[0] if lines else f"exit status {proc.returncode}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text)
    staging.replace(path)


KindOption = Annotated[
    Kind | None,
    typer.Option(
        "--kind",
        help="systemd (Linux) or launchd (macOS); default: this system's.",
        show_default=False,
    ),
]


@service_app.command()
def install(
    ctx: typer.Context,
    kind: KindOption = None,
    no_enable: Annotated[
        bool, typer.Option("--no-enable", help="Only write the file; do not enable or start it.")
    ] = False,
) -> None:
    """Write the service file that runs `mesh up` for this node's home, then enable and
    start it: systemd user unit ~/.config/systemd/user/mesh.service, or launchd agent
    ~/Library/LaunchAgents/mesh.node.plist. Running it again updates the file.

    \b
    Examples:
      mesh service install
      mesh service install --no-enable
      mesh --home /srv/mesh service install
    """
    service = _service(ctx, kind)
    _write(service.path, service.text())
    typer.echo(f"wrote {service.path}")
    typer.echo(f"it runs: {' '.join(service.spec.argv())}")
    enable = " && ".join(" ".join(c) for c in service.enable_commands())
    if no_enable:
        typer.echo(f"enable and start it with: {enable}")
        return
    home = service.spec.home
    if home.exists() and _ctx(ctx).daemon_running():
        typer.echo(
            f"note: a `mesh up` already runs for {home}; the service takes over once it stops",
            err=True,
        )
    for cmd in service.enable_commands():
        if why := _run(cmd):
            raise LocalError(
                f"the service file is written but not enabled: {why}; in a login session run "
                f"{enable} (or `mesh up` yourself)"
            )
    typer.echo("enabled: mesh runs now and starts at every login")


@service_app.command()
def uninstall(
    ctx: typer.Context,
    kind: KindOption = None,
) -> None:
    """Stop the service, disable it and remove its file (the node's home stays).

    \b
    Examples:
      mesh service uninstall
    """
    service = _service(ctx, kind)
    if not service.path.exists():
        typer.echo(f"no service installed ({service.path} does not exist)")
        return
    for cmd in service.disable_commands():
        if why := _run(cmd):
            typer.echo(f"mesh: warning: {why}", err=True)
    service.path.unlink()
    if service.kind is Kind.systemd:
        _run(["systemctl", "--user", "daemon-reload"])  # only tidies systemd's view
    typer.echo(f"removed {service.path}")


@service_app.command()
def status(
    ctx: typer.Context,
    kind: KindOption = None,
) -> None:
    """Say whether the service file is installed, up to date and running.

    \b
    Examples:
      mesh service status
    """
    service = _service(ctx, kind)
    if not service.path.exists():
        typer.echo(f"file      not installed ({service.path}); `mesh service install`")
    else:
        current = service.path.read_text() == service.text()
        note = "" if current else "; differs from this installation's, `mesh service install`"
        typer.echo(f"file      {service.path}{note}")
        typer.echo(f"{service.kind.value:<9} {_ask(service.state_command())}")
    home = service.spec.home
    running = home.exists() and _ctx(ctx).daemon_running()
    typer.echo(f"node      {'running' if running else 'not running'} on {home}")


def register(parent: typer.Typer) -> None:
    parent.add_typer(service_app, name="service")
