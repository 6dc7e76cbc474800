"""`mesh demo`: try mesh on one machine, with three throw-away nodes."""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from mesh import config
from mesh.core.errors import InvalidArgumentError, LocalError


def demo(
    size: Annotated[
        str, typer.Option("--size", help="Size of the big file that is lent.")
    ] = "200MB",
    keep: Annotated[
        bool,
        typer.Option(
            "--keep", help="Keep the three nodes running afterwards, to explore, until Ctrl-C."
        ),
    ] = False,
) -> None:
    """Show mesh at work on this machine: three nodes (tower, laptop, desk) join one mesh,
    the tower shares a generated folder and lends a file to the laptop with a live progress
    bar, the desk shows the ledger, the tower recalls the loan and the laptop's copy goes.

    Nothing reaches the network: the nodes listen on 127.0.0.1 with mDNS off, their homes
    live in a temporary folder, and all of it is removed at the end, also on Ctrl-C. Your
    own node (if any) is not touched.

    \b
    Examples:
      mesh demo
      mesh demo --size 1GB
      mesh demo --keep
    """
    try:
        big = config.parse_size(size)
    except ValueError as exc:
        raise InvalidArgumentError(f"--size: {exc}") from exc
    if big < 1:
        raise InvalidArgumentError("--size must be at least 1 byte")

    from mesh.cli.demo import Demo

    show = Demo(Path(tempfile.mkdtemp(prefix="mesh-demo-")), big)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        # Ctrl-C, and SIGTERM (a closed terminal, `kill`), only raise the demo's flag: it
        # stops at its next wait, never in the middle of a call to a node (see demo.py).
        # A second Ctrl-C changes nothing; the clean-up is bounded anyway.
        show.interrupt()

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    exploring = False
    try:
        try:
            show.play()
        except LocalError:
            print(show.logs(), file=sys.stderr)
            raise
        if keep:
            exploring = True
            _explore(show)
        else:
            typer.echo("\nThat was mesh. To set it up on your own computers, see the README.")
    except KeyboardInterrupt:
        if not exploring:
            raise  # interrupted mid-demo: exit 130 once cleaned up
    finally:
        typer.echo(f"\nStopping the three nodes and removing {show.root}", err=True)
        show.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _explore(show: object) -> None:
    from mesh.cli.demo import Demo

    assert isinstance(show, Demo)
    tower = show.nodes[0]
    typer.echo(
        "\nThe three nodes keep running. In another terminal, try:\n"
        f"  export MESH_HOME={tower.home}\n"
        "  mesh members; mesh ls; mesh lend Films/README.txt --to desk --wait; mesh loans\n"
        "(each node's home is beside it: laptop, desk). Ctrl-C here stops them all."
    )
    while True:
        show.pause(1.0)
        for node in show.nodes:
            if node.daemon is not None and node.daemon.poll() is not None:
                raise LocalError(f"{node.name}'s `mesh up` exited ({node.daemon.returncode})")


def register(app: typer.Typer) -> None:
    app.command()(demo)
