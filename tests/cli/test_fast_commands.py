"""`mesh up`, `mesh invite`, `mesh join` and `mesh status` run with their own module of
commands only (start-up time); the map must name the module each really lives in."""

from __future__ import annotations

import typer

from mesh.cli import app as app_module


def commands(app: typer.Typer) -> set[str]:
    group = typer.main.get_group(app)
    return set(group.commands)


def test_each_fast_command_is_in_the_module_the_map_names() -> None:
    for name, module in app_module.FAST.items():
        assert name in commands(app_module.make_app((module,))), (name, module)


def test_the_whole_app_still_has_every_command() -> None:
    whole = commands(app_module.app)
    assert set(app_module.FAST) <= whole
    assert {"init", "share", "lend", "doctor", "demo", "config"} <= whole


def test_the_command_is_found_past_the_global_options() -> None:
    find = app_module._command
    assert find(["up", "--port", "7000"]) == "up"
    assert find(["--home", "/tmp/x", "invite"]) == "invite"
    assert find(["--home=/tmp/x", "status"]) == "status"
    assert find(["--help"]) is None
    assert find(["--version"]) is None
    assert find([]) is None
