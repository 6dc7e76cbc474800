"""The `mesh` command: the typer app, its global options, and one way of reporting errors.

Every failure a user can cause prints one line on stderr and exits non-zero; a traceback
means a bug in mesh.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from mesh import __version__
from mesh.cli.context import CliContext
from mesh.core.errors import InvalidArgumentError, MeshError

# The modules of commands, in the order `mesh --help` lists them.
_MODULES = (
    "local",
    "daemon_cmds",
    "status_cmds",
    "mesh_cmds",
    "peer_cmds",
    "loan_cmds",
    "mount_cmds",
    "config_cmds",
    "doctor_cmds",
    "service_cmds",
    "demo_cmds",
)
# Commands whose start-up time a user waits on (a daemon answering, a code to read out):
# run alone, they import only their own module. Every command of the module it names comes
# along, so `mesh up --help` and the like read the same; tests/cli checks the names.
FAST = {"up": "daemon_cmds", "invite": "mesh_cmds", "join": "mesh_cmds", "status": "status_cmds"}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mesh {__version__}")
        raise typer.Exit()


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


def make_app(modules: tuple[str, ...] = _MODULES) -> typer.Typer:
    """The `mesh` app with the commands of `modules` (all of them unless told)."""
    made = typer.Typer(
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

    made.callback()(_global)
    for module in modules:
        importlib.import_module(f"mesh.cli.{module}").register(made)
    return made


_whole: list[typer.Typer] = []


def __getattr__(name: str) -> typer.Typer:
    """`app`, every command registered, made on first use: `mesh up` does not import the
    modules of the other commands (a tenth of a second or more)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not _whole:
        _whole.append(make_app())
    return _whole[0]


def _command(argv: list[str]) -> str | None:
    """The command `argv` names, past the global options (None if it names none)."""
    args = iter(argv)
    for arg in args:
        if arg == "--home":
            next(args, None)
        elif not arg.startswith("-"):
            return arg
        elif not arg.startswith("--home="):
            return None  # --help, --version, completion: the whole app
    return None


def main() -> None:
    """Entry point of the `mesh` console script."""
    fast = FAST.get(_command(sys.argv[1:]) or "")
    command = typer.main.get_command(make_app((fast,)) if fast else __getattr__("app"))
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
