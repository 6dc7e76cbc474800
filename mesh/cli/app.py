"""The `mesh` command: the typer app, its global options, and one way of reporting errors.

Every failure a user can cause prints one line on stderr and exits non-zero; a traceback
means a bug in mesh.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mesh import __version__
from mesh.cli import (
    config_cmds,
    daemon_cmds,
    demo_cmds,
    doctor_cmds,
    loan_cmds,
    local,
    mesh_cmds,
    peer_cmds,
    service_cmds,
    status_cmds,
)
from mesh.cli.context import CliContext
from mesh.core.errors import InvalidArgumentError, MeshError

app = typer.Typer(
    name="mesh",
    help=(
        "Lend files between your own computers, peer to peer.\n\n"
        "Each computer runs a node; nodes find each other on the LAN, share the index of "
        "their libraries, and a borrower pulls a lent file straight from the nodes that hold "
        "it, verified chunk by chunk.\n\n"
        "\b\nExamples, to start with:\n"
        "  mesh demo                   try it on this machine: three nodes, a loan, a recall\n"
        "  mesh init --name tower      make this computer a node\n"
        "  mesh share ~/Movies         share a folder (and index it)\n"
        "  mesh up                     run the node (keep it running)\n"
        "  mesh invite                 let another computer join (it runs `mesh join CODE`)\n"
        "  mesh lend FILE --to laptop  lend a file; `mesh loans` shows how it goes\n"
        "  mesh service install        run the node at every login\n"
        "  mesh --install-completion   complete commands with Tab in this shell"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mesh {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            envvar="MESH_HOME",
            help="The node's home folder (default: the per-user data folder).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    ctx.obj = CliContext(home_path=home)


local.register(app)
daemon_cmds.register(app)
status_cmds.register(app)
mesh_cmds.register(app)
peer_cmds.register(app)
loan_cmds.register(app)
config_cmds.register(app)
doctor_cmds.register(app)
service_cmds.register(app)
demo_cmds.register(app)


def main() -> None:
    """Entry point of the `mesh` console script."""
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="mesh", standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.TyperException as exc:
        # Usage errors (a typo in an option, a missing argument): typer's own click.
        exc.show()  # type: ignore[attr-defined]
        code = getattr(exc, "exit_code", 2)
    except (typer.Abort, KeyboardInterrupt):
        print("\nmesh: interrupted", file=sys.stderr)
        code = 130
    except InvalidArgumentError as exc:
        print(f"mesh: {exc}", file=sys.stderr)
        code = 2
    except MeshError as exc:
        print(f"mesh: {exc}", file=sys.stderr)
        code = 1
    except BrokenPipeError:
        # `mesh ls | head`: the reader left; that is not an error of ours.
        sys.stderr.close()
        code = 0
    sys.exit(code if isinstance(code, int) else 0)
