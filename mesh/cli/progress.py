"""Progress bars on a terminal, silence when piped."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mesh.core.progress import ScanProgress


def interactive() -> bool:
    return sys.stderr.isatty()


@contextmanager
def scan_bar() -> Iterator[Callable[[ScanProgress], None]]:
    """A callback that draws a scan's progress on stderr, if stderr is a terminal."""
    if not interactive():
        yield lambda _p: None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=False),
        TransferSpeedColumn(),
        TextColumn("{task.fields[files]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task: TaskID = progress.add_task("scanning", total=None, files="")

    def update(p: ScanProgress) -> None:
        progress.update(
            task,
            total=p.bytes_to_hash or None,
            completed=p.bytes_hashed,
            files=f"{p.files_hashed}/{p.files_to_hash} to hash, {p.files_seen} seen",
        )

    with progress:
        yield update
