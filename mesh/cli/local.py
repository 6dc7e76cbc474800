"""Commands about this node and its libraries: init, id, share, unshare, scan, ls."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from mesh.cli.browse_cmds import print_entries
from mesh.cli.context import CliContext
from mesh.cli.output import human_duration, plural, safe
from mesh.cli.progress import scan_bar
from mesh.core.errors import InvalidArgumentError
from mesh.core.progress import ScanProgress
from mesh.core.status import LibraryInfo
from mesh.home import locked
from mesh.node.api import NodeApi


def _ctx(ctx: typer.Context) -> CliContext:
    obj = ctx.obj
    assert isinstance(obj, CliContext)
    return obj


def init(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="This node's name in the mesh (default: host name)."),
    ] = None,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="Start over as a new node (new id, out of any mesh); the old state is kept "
            "in a folder of the home, the shared folders are shared again.",
        ),
    ] = False,
) -> None:
    """Make this computer a node: a key, a certificate and an empty store.

    Run again with --name to rename the node (before it joins a mesh).

    \b
    Examples:
      mesh init --name tower
      mesh init --name laptop-old      # rename
      mesh init --reset                # a new identity, e.g. to join another mesh
    """
    from mesh.node.local import LocalNode

    home = _ctx(ctx).home
    with locked(home, "cli"):
        if reset and home.exists():
            node, result, kept = LocalNode.reset(home, name)
            libraries = [lib.name for lib in node.libraries()]
            node.close()
            typer.echo(f"new node {result.name!r}; the old identity and store are in {kept}")
            typer.echo(f"id: {result.node_id}")
            if libraries:
                typer.echo(f"shared again: {', '.join(libraries)} (run `mesh scan` to index them)")
            return
        node, result = LocalNode.init(home, name)
        node.close()
    if result.created:
        typer.echo(f"created node {result.name!r} in {home.root}")
    elif result.renamed_from is not None:
        typer.echo(f"renamed node {result.renamed_from!r} to {result.name!r}")
    else:
        typer.echo(f"node {result.name!r} already exists in {home.root}")
    typer.echo(f"id: {result.node_id}")


def id_(
    ctx: typer.Context,
    short: Annotated[bool, typer.Option("--short", help="Only the first block.")] = False,
) -> None:
    """Print this node's id (the SHA-256 of its certificate, with check characters).

    \b
    Examples:
      mesh id
      mesh id --short
    """
    with _ctx(ctx).node() as node:
        node_id = node.status().node_id
    typer.echo(node_id.short() if short else str(node_id))


def share(
    ctx: typer.Context,
    folder: Annotated[
        str,
        typer.Argument(
            help="The folder to share (or a shared folder or library, to change who may "
            "borrow from it).",
            show_default=False,
        ),
    ],
    as_: Annotated[
        str | None,
        typer.Option("--as", help="The library's name (default: the folder's name)."),
    ] = None,
    scan: Annotated[bool, typer.Option(help="Index the folder right away.")] = True,
    open_: Annotated[
        bool | None,
        typer.Option(
            "--open/--no-open",
            help="Open it: members it is shared with may borrow its files (`mesh borrow`) "
            "at once, and nodes holding them may pass them on.",
            show_default=False,
        ),
    ] = None,
    with_: Annotated[
        list[str] | None,
        typer.Option(
            "--with",
            help="Share it with these members only (names or short ids, comma-separated): "
            "only they may borrow from it. Every member still sees its file list.",
            show_default=False,
        ),
    ] = None,
    everyone: Annotated[
        bool, typer.Option("--everyone", help="Share it with every member again.")
    ] = False,
    ask: Annotated[
        bool | None,
        typer.Option(
            "--ask/--no-ask",
            help="Borrow requests for it wait for `mesh approve` (or not), whatever "
            "lending.ask_first says.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Share a folder as a library, and index it; or change who may borrow from a shared one.

    By default every member may borrow from a library (a request is granted at once, unless
    lending.ask_first is on). --with limits that to the members named; --ask makes requests
    for it wait for your approval.

    \b
    Examples:
      mesh share ~/Movies
      mesh share /mnt/photos --as photos
      mesh share ~/Public --open
      mesh share ~/Work --with laptop,air --ask
      mesh share Work --with laptop       # change it later (by folder or library name)
      mesh share Work --everyone
      mesh share -- -odd-name          # a folder whose name starts with '-'
    """
    if everyone and with_:
        raise InvalidArgumentError("--with and --everyone say opposite things; give one")
    borrowers: list[str] | None = None
    if with_ is not None:
        borrowers = [n.strip() for item in with_ for n in item.split(",") if n.strip()]
        if not borrowers:
            raise InvalidArgumentError("--with needs member names; --everyone shares with all")
    elif everyone:
        borrowers = []
    # The daemon may run elsewhere in the file system: send it an absolute path.
    path = Path(folder).expanduser()
    root = str(path.absolute()) if path.exists() else folder
    with _ctx(ctx).node() as node:
        before = {lib.name for lib in node.status().libraries}
        library = node.share(root, as_, open_to_mesh=open_, borrowers=borrowers, ask=ask)
        if library.name in before:
            typer.echo(f"library {safe(library.name)!r}: {_sharing(library)}")
        else:
            typer.echo(
                f"shared {safe(library.root)} as library {safe(library.name)!r} "
                f"({_sharing(library)})"
            )
            if scan:
                _run_scan(node, [library.name])


def _sharing(library: LibraryInfo) -> str:
    """Who may borrow from a library, in words: 'every member may borrow, at once'."""
    who = ", ".join(safe(n) for n in library.borrowers) or "every member"
    if library.ask is None:
        how = "as lending.ask_first says"
    else:
        how = "after you approve" if library.ask else "at once"
    return f"{who} may borrow, {how}" + ("; open" if library.open else "")


def unshare(
    ctx: typer.Context,
    library: Annotated[str, typer.Argument(help="The library's name.", show_default=False)],
) -> None:
    """Stop sharing a library. Its files stay where they are; the mesh sees them deleted.

    \b
    Examples:
      mesh unshare Movies
    """
    with _ctx(ctx).node() as node:
        count = node.unshare(library)
    typer.echo(f"unshared {safe(library)!r} ({plural(count, 'entry', 'entries')} now deleted)")


def scan(
    ctx: typer.Context,
    libraries: Annotated[
        list[str] | None,
        typer.Argument(help="Libraries to scan (default: all).", show_default=False),
    ] = None,
) -> None:
    """Index new, changed and removed files of the shared folders.

    Unchanged files (same size, mtime and inode) are not read again.

    \b
    Examples:
      mesh scan
      mesh scan Movies photos
    """
    with _ctx(ctx).node() as node:
        _run_scan(node, libraries or [])


def _run_scan(node: NodeApi, libraries: list[str]) -> ScanProgress:
    started = time.monotonic()
    with scan_bar() as on_progress:
        result = node.scan(libraries, on_progress)
    for warning in result.warnings:
        typer.echo(f"warning: {safe(warning)}", err=True)
    typer.echo(
        f"scanned {plural(result.files_seen, 'file')} in "
        f"{human_duration(time.monotonic() - started)}: {result.added} added, "
        f"{result.changed} changed, {result.removed} removed, {result.unchanged} unchanged"
    )
    return result


def ls(
    ctx: typer.Context,
    libraries: Annotated[
        list[str] | None,
        typer.Argument(help="Libraries to list (default: all).", show_default=False),
    ] = None,
    node_name: Annotated[
        str | None,
        typer.Option(
            "--node",
            help="List another member's libraries (its name or short id), as gossip last "
            "told this node.",
            show_default=False,
        ),
    ] = None,
    whole_mesh: Annotated[
        bool, typer.Option("--mesh", help="List the libraries of every member, this one too.")
    ] = False,
    json_: Annotated[
        bool,
        typer.Option(
            "--json",
            help="JSON for scripts: a list of {library, path, size, mtime_ns, hash, seq, "
            "deleted}, plus {node, node_id} with --node or --mesh; hash is xxh3-128 in "
            "lowercase hex. These keys are stable.",
        ),
    ] = False,
    deleted: Annotated[bool, typer.Option("--deleted", help="Include deleted entries.")] = False,
) -> None:
    """List the files this node shares, or those of other members, with their xxh3-128
    hashes.

    Each hash equals what `xxh128sum FILE` prints. Other members' files come from the
    index this node holds by gossip, so this works while they are offline too.

    \b
    Examples:
      mesh ls
      mesh ls Movies --deleted
      mesh ls --node laptop
      mesh ls --mesh
      mesh ls --json | jq '.[] | select(.size > 1e9) | .path'
    """
    if node_name is not None or whole_mesh:
        if node_name is not None and whole_mesh:
            raise InvalidArgumentError("--node and --mesh do not go together; pick one")
        if deleted:
            raise InvalidArgumentError("--deleted lists this node's own files only")
        with _ctx(ctx).node() as node:
            items = node.browse(node_name)
        if libraries:
            items = [i for i in items if i.entry.library in libraries]
        whose = f"{node_name} shares" if node_name is not None else "the mesh holds"
        print_entries(items, json_=json_, empty=f"no files that {whose} are known here")
        return
    with _ctx(ctx).node() as node:
        entries = node.entries(include_deleted=deleted, libraries=libraries or [])
        names = [lib.name for lib in node.status().libraries]
    hint = "; share a folder with `mesh share DIR`" if not names else ""
    print_entries(entries, json_=json_, empty=f"no files{hint}")


def find(
    ctx: typer.Context,
    pattern: Annotated[
        str,
        typer.Argument(
            help="A name or glob ('heat', '*.mkv', 'Movies/19*/*'), matched without regard "
            "to case against file names and library/path; or 8+ hex digits of a hash.",
            show_default=False,
        ),
    ],
    node_name: Annotated[
        str | None,
        typer.Option("--node", help="Search one member only.", show_default=False),
    ] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="JSON for scripts (the keys of `mesh ls --json`).")
    ] = False,
) -> None:
    """Search every member's libraries (this node's too) for files by name or hash.

    \b
    Examples:
      mesh find heat
      mesh find '*.mkv' --node tower
      mesh find 3f2a9c1e
    """
    with _ctx(ctx).node() as node:
        items = node.browse(node_name, pattern)
    print_entries(items, json_=json_, empty=f"nothing in the mesh matches {safe(pattern)!r}")


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command("id")(id_)
    app.command()(share)
    app.command()(unshare)
    app.command()(scan)
    app.command("ls")(ls)
    app.command()(find)
