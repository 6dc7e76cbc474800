"""Commands about the daemon: up (`mesh status` is in status_cmds)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from mesh import config
from mesh.cli.context import CliContext
from mesh.core.errors import ConfigError
from mesh.home import Home, HomeLock

if TYPE_CHECKING:
    from mesh.node.daemon import Daemon


def _ctx(ctx: typer.Context) -> CliContext:
    obj = ctx.obj
    assert isinstance(obj, CliContext)
    return obj


def _prepare(home: Home, settings: config.Settings) -> type[Daemon]:
    """What comes before building the daemon: its logging (named after the node), the
    allocator's tuning, and the import of the daemon and most of mesh with it."""
    from mesh.node import allocator, logs
    from mesh.node.local import LocalNode

    node = LocalNode.open(home)
    name = node.name
    node.close()
    logs.setup(name, settings.log_level)
    allocator.tune_for_transfers()
    return _daemon_class()


def _daemon_class() -> type[Daemon]:
    # Imported on use: gRPC costs a tenth of a second that most commands do not need.
    from mesh.node.daemon import Daemon

    return Daemon


def up(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            "-p",
            help=f"TCP port for peers (default {config.DEFAULT_PORT}).",
            show_default=False,
        ),
    ] = None,
    peer: Annotated[
        list[str] | None,
        typer.Option(
            "--peer", help="Also reach this node, HOST[:PORT] (repeatable).", show_default=False
        ),
    ] = None,
    interface: Annotated[
        list[str] | None,
        typer.Option(
            "--interface",
            "-i",
            help="Announce on this interface only (repeatable).",
            show_default=False,
        ),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            help='Accept peers on this address only (default "::": all).',
            show_default=False,
        ),
    ] = None,
    no_mdns: Annotated[bool, typer.Option("--no-mdns", help="Do not use mDNS discovery.")] = False,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="debug, info, warning or error.", show_default=False),
    ] = None,
    limit: Annotated[
        str | None,
        typer.Option(
            "--limit",
            help="Cap serving and pulling at this many bytes per second each, "
            "e.g. 20MB (0: no cap; default: network.limit of the config).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run this node in the foreground until Ctrl-C (or SIGTERM).

    Serves peers on a TCP port over mutual TLS and the CLI on a Unix socket in the home.
    Settings come from the home's config.toml (`mesh config show`); options override them.

    \b
    Examples:
      mesh up
      mesh up --port 7000 --peer 192.168.1.20
      mesh up --no-mdns --listen 127.0.0.1 --log-level debug
      mesh up --limit 20MB          # leave room on a slow uplink
    """
    home = _ctx(ctx).home
    settings = config.load(home.config_file)
    overrides: dict[str, object] = {}
    if port is not None:
        if not 0 <= port < 65536:
            raise ConfigError(f"--port {port} is not allowed; use a TCP port, 1-65535")
        overrides["port"] = port
    if peer:
        for p in peer:
            config.with_value(settings, "peers.static", p)
        overrides["static_peers"] = (*settings.static_peers, *peer)
    if interface:
        overrides["interfaces"] = tuple(interface)
    if no_mdns:
        overrides["mdns"] = False
    if log_level is not None:
        settings = config.with_value(settings, "node.log_level", log_level)
    if listen is not None:
        settings = config.with_value(settings, "node.listen", listen)
    if limit is not None:
        settings = config.with_value(settings, "network.limit", limit)
    settings = dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]

    home.require_node()  # as `mesh status` says: a node is made by `mesh init` only
    lock = HomeLock(home, "daemon")
    lock.acquire_as_daemon()
    try:
        if not home.config_file.exists():
            config.save(config.load(home.config_file), home.config_file)
        # The lock is held from here to the end: the control socket opens before the
        # daemon is built, and a second `mesh up` must not take it over meanwhile.
        asyncio.run(_serve(home, settings, lock))
    finally:
        lock.release()


async def _serve(home: Home, settings: config.Settings, lock: HomeLock) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal() -> None:
        if stop.is_set():
            # A second Ctrl-C: every store write is a transaction, so leaving now loses
            # nothing that was acknowledged.
            print("mesh: stopping now", file=sys.stderr, flush=True)
            os._exit(130)
        stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    # The control socket first: `mesh status` right after `mesh up` waits for the answer
    # instead of finding no daemon while the rest of mesh is imported (~0.3 s).
    from mesh.node.early_control import EarlyControl

    home.ensure()
    control = EarlyControl(home.control_socket)
    await control.start()
    try:
        # Off the loop, so calls already waiting on the socket are taken in.
        daemon_class = await asyncio.to_thread(_prepare, home, settings)
        if not stop.is_set():
            await daemon_class(home, settings, control=control, lock=lock).run(stop)
    finally:
        await control.stop(settings.shutdown_grace_s)
        for sig in signals:
            loop.remove_signal_handler(sig)


def register(app: typer.Typer) -> None:
    app.command()(up)
