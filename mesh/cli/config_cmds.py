"""`mesh config`: show and change the settings in the home's config.toml."""

from __future__ import annotations

from typing import Annotated

import typer

from mesh import config
from mesh.cli.context import CliContext
from mesh.cli.output import print_json
from mesh.home import HomeLock

app = typer.Typer(
    help=(
        "Show or change settings (the home's config.toml).\n\n"
        "\b\nExamples:\n"
        "  mesh config show\n"
        "  mesh config set borrowing.folder ~/Borrowed"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _ctx(ctx: typer.Context) -> CliContext:
    obj = ctx.obj
    assert isinstance(obj, CliContext)
    return obj


def _daemon_running(ctx: typer.Context) -> bool:
    lock = HomeLock(_ctx(ctx).home, "cli")
    return lock.holder()[1] == "daemon" and _locked(lock)


def _locked(lock: HomeLock) -> bool:
    try:
        lock.acquire()
    except Exception:
        return True
    lock.release()
    return False


@app.command()
def show(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
) -> None:
    """Print every setting and its value (defaults included) and where the file is.

    \b
    Examples:
      mesh config show
      mesh config show --json
    """
    home = _ctx(ctx).home
    values = config.display(config.load(home.config_file))
    if json_:
        print_json(values)
        return
    typer.echo(f"# {home.config_file}")
    for key, value in values.items():
        typer.echo(f"{key} = {config.toml_value(value)}")


@app.command("set")
def set_(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="A key from `mesh config show`.", show_default=False)],
    value: Annotated[str, typer.Argument(help="Its new value.", show_default=False)],
) -> None:
    """Change one setting (checked before it is saved).

    Lists take a comma-separated value or a TOML list; sizes take units (500MB, 2GiB).

    \b
    Examples:
      mesh config set node.port 7000
      mesh config set peers.static 192.168.1.20,10.8.0.3:7000
      mesh config set borrowing.quota 200GB
      mesh config set network.limit 20MB
    """
    home = _ctx(ctx).home
    home.ensure()
    settings = config.with_value(config.load(home.config_file), key, value)
    config.save(settings, home.config_file)
    shown = config.toml_value(config.display(settings)[key])
    typer.echo(f"{key} = {shown}")
    if _daemon_running(ctx):
        typer.echo("restart `mesh up` for this to take effect", err=True)


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="config")
