"""The Control calls of issue 21 (mount, unmount, stream, pin, unpin), and what `mesh loans`
adds for copies kept for the mount: thin, as the other handlers (node/control.py)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from mesh.core.errors import InvalidArgumentError
from mesh.core.status import LoanLine

if TYPE_CHECKING:
    from mesh.node.daemon import Daemon


async def mount_action(d: Daemon, action: str, target: str) -> tuple[str, str, str]:
    """(folder, url, message) for one of the actions."""
    await d.check_member()
    if action == "mount":
        folder = await d.mounting.mount(target)
        return folder, "", f"the mesh is mounted at {folder}"
    if action == "unmount":
        gone = await d.mounting.unmount()
        if gone is None:
            return "", "", "the mesh was not mounted"
        return gone, "", f"unmounted the mesh from {gone}"
    if action == "stream":
        url = await d.stream(target)
        return d.mounting.folder or "", url, ""
    if action in ("pin", "unpin"):
        listed = await d.mounting.listed(target)
        message = await d.opened.pin(listed, pin=action == "pin")
        return d.mounting.folder or "", "", message
    raise InvalidArgumentError(f"unknown mount action {action!r}")


async def kept_lines(d: Daemon, lines: list[LoanLine]) -> list[LoanLine]:
    """The ledger's lines, with the borrower's copies kept for the mount marked so."""
    kept = await d.store(d.opened.kept.all)
    how = {(k.lender, k.library, k.path): "pinned" if k.pinned else "cached" for k in kept}
    if not how:
        return lines
    me = d.node_id
    return [
        dataclasses.replace(line, kept=how.get((line.lender, line.library, line.path), ""))
        if line.borrower == me
        else line
        for line in lines
    ]


__all__ = ["kept_lines", "mount_action"]
