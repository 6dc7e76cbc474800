"""The mesh as a folder and streams (issue 21): mount, unmount, stream, pin, unpin.

The daemon holds the mount and serves the streams; these commands ask it over the control
socket."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mesh.cli.context import CliContext
from mesh.cli.output import safe

_DEFAULT_FOLDER = "~/Mesh"
# The file `pin` and `unpin` take.
_MeshFile = Annotated[
    str,
    typer.Argument(help="NODE:LIBRARY/PATH, or a file in the mounted mesh.", show_default=False),
]


def _ctx(ctx: typer.Context) -> CliContext:
    obj = ctx.obj
    assert isinstance(obj, CliContext)
    return obj


def _ask(ctx: typer.Context, action: str, target: str = "") -> tuple[str, str, str]:
    with _ctx(ctx).daemon() as daemon:
        return daemon.mount(action, target)


def _file(spec: str) -> str:
    """NODE:LIBRARY/PATH as given; a path in the mount made absolute (the daemon's working
    folder is not this shell's)."""
    node, sep, _ = spec.partition(":")
    if sep and node and "/" not in node:
        return spec
    return str(Path(spec).expanduser().absolute())


def mount(
    ctx: typer.Context,
    folder: Annotated[
        str, typer.Argument(help="An empty folder to show the mesh in (made if missing).")
    ] = _DEFAULT_FOLDER,
) -> None:
    """Show every member's libraries, read-only, as FOLDER/MEMBER/LIBRARY/PATH. Opening a
    file borrows it and reads it while it arrives (the daemon holds the mount until
    `mesh unmount`, and mounts it again when it starts).

    \b
    Examples:
      mesh mount
      mpv ~/Mesh/tower/Movies/heat.mkv
    """
    _, _, message = _ask(ctx, "mount", str(Path(folder).expanduser().absolute()))
    typer.echo(safe(message))


def unmount(ctx: typer.Context) -> None:
    """Take the mesh's folder away (`mesh mount` shows it again).

    \b
    Examples:
      mesh unmount
    """
    _, _, message = _ask(ctx, "unmount")
    typer.echo(safe(message))


def stream(
    ctx: typer.Context,
    what: Annotated[
        str,
        typer.Argument(
            help="NODE:LIBRARY/PATH, as `mesh ls --node NODE` shows it.", show_default=False
        ),
    ],
) -> None:
    """Print an http URL on 127.0.0.1 that serves the file (with Range) while it arrives,
    for players: `mpv URL`, VLC, a browser. The URL's token is its only key: keep it to
    yourself.

    \b
    Examples:
      mesh stream tower:Movies/heat.mkv
      mpv "$(mesh stream tower:Movies/heat.mkv)"
    """
    _, url, _ = _ask(ctx, "stream", what)
    typer.echo(url)


def pin(
    ctx: typer.Context,
    path: _MeshFile,
) -> None:
    """Keep a copy of the file here until `mesh unpin` (borrowing it if need be); the
    cache of opened copies never returns it.

    \b
    Examples:
      mesh pin ~/Mesh/tower/Docs/tax.pdf
      mesh pin tower:Movies/heat.mkv
    """
    _, _, message = _ask(ctx, "pin", _file(path))
    typer.echo(safe(message))


def unpin(
    ctx: typer.Context,
    path: _MeshFile,
) -> None:
    """Let a pinned copy go back to the cache (returned once space is needed).

    \b
    Examples:
      mesh unpin tower:Movies/heat.mkv
    """
    _, _, message = _ask(ctx, "unpin", _file(path))
    typer.echo(safe(message))


def register(app: typer.Typer) -> None:
    app.command()(mount)
    app.command()(unmount)
    app.command()(stream)
    app.command()(pin)
    app.command()(unpin)
