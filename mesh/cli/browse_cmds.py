"""Browsing the mesh's replicated index: `mesh ls --node/--mesh` and `mesh find`."""

from __future__ import annotations

import sys

import typer

from mesh.cli.output import human_size, plural, print_json, safe
from mesh.core.entries import IndexedEntry


def entry_json(item: IndexedEntry) -> dict[str, object]:
    e = item.entry
    out: dict[str, object] = {
        "library": e.library,
        "path": e.path,
        "size": e.size,
        "mtime_ns": e.mtime_ns,
        "hash": e.hash.hex(),
        "seq": item.seq,
        "deleted": e.deleted,
    }
    if item.node_id is not None:
        out["node"] = item.node
        out["node_id"] = str(item.node_id)
    return out


def print_entries(items: list[IndexedEntry], *, json_: bool, empty: str) -> None:
    """One line per entry: hash, size, and node:library/path (node only when it varies)."""
    if json_:
        print_json([entry_json(i) for i in items])
        return
    if not items:
        typer.echo(empty, err=True)
        return
    nodes = {i.node for i in items}
    out = sys.stdout
    for item in items:
        e = item.entry
        where = f"{safe(item.node)}:" if len(nodes) > 1 or item.node_id is not None else ""
        mark = " (deleted)" if e.deleted else ""
        out.write(
            f"{e.hash.hex()}  {human_size(e.size):>8}  "
            f"{where}{safe(e.library)}/{safe(e.path)}{mark}\n"
        )
    total = sum(i.entry.size for i in items if not i.entry.deleted)
    on = f" on {plural(len(nodes), 'node')}" if len(nodes) > 1 else ""
    typer.echo(f"{plural(len(items), 'file')}, {human_size(total)}{on}", err=True)
