"""The node's home: one directory that holds all of a node's state, and its lock.

`MESH_HOME` names it when set; otherwise it is the platform's per-user data directory.
Everything that must survive a restart lives here; nothing of mesh lives elsewhere except
the borrowed folder (a setting) and, when the home's path is too long for a Unix socket,
the control socket's folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mesh.core.errors import HomeBusyError, LocalError, NotInitializedError

# sun_path holds 108 bytes with its NUL; leave room for the file name.
_MAX_SOCKET_PATH = 100


def default_home() -> Path:
    """The per-user data directory of this platform, or MESH_HOME."""
    if env := os.environ.get("MESH_HOME"):
        return Path(env).expanduser().absolute()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "mesh"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "mesh"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mesh"


@dataclass(frozen=True)
class Home:
    """Paths inside a node's home."""

    root: Path

    @classmethod
    def resolve(cls, root: Path | None = None) -> Home:
        return cls((root or default_home()).expanduser().absolute())

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def database(self) -> Path:
        return self.root / "mesh.db"

    @property
    def key_file(self) -> Path:
        return self.root / "node.key"

    @property
    def cert_file(self) -> Path:
        return self.root / "node.crt"

    @property
    def lock_file(self) -> Path:
        return self.root / "mesh.lock"

    @property
    def run_dir(self) -> Path:
        """The 0700 folder of the control socket (short enough for sun_path)."""
        inside = self.root / "run"
        if len(str(inside / "control.sock")) <= _MAX_SOCKET_PATH:
            return inside
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        return Path(base) / f"mesh-{os.getuid()}-{digest}"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "control.sock"

    def exists(self) -> bool:
        return self.cert_file.exists() and self.key_file.exists()

    def require_node(self) -> None:
        """Raise NotInitializedError, with the `mesh init` hint, unless a node lives here.

        Only `mesh init` makes a node (every other command, `mesh up` too, refuses and
        creates nothing): its name is fixed once it joins a mesh, and a mistyped --home or
        MESH_HOME must not quietly become a second node.
        """
        if not self.exists():
            raise NotInitializedError(
                f"no node in {self.root} yet; run `mesh init --name NAME` first"
            )

    def ensure(self) -> None:
        """Create the home (0700) and its socket folder (0700) if missing."""
        for folder in (self.root, self.run_dir):
            try:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise LocalError(f"cannot create {folder}: {exc.strerror}") from exc
            # mkdir's mode is filtered by the umask, and an existing folder keeps its mode.
            if (folder.stat().st_mode & 0o777) != 0o700:
                folder.chmod(0o700)


class HomeLock:
    """An flock on the home's lock file, naming its holder by pid and role.

    The daemon holds it for its whole life; a CLI command that works on the store directly
    holds it for the command. So the two never write at once, and a second daemon on the
    same home is refused instead of silently taking over the control socket.
    """

    def __init__(self, home: Home, role: str) -> None:
        self._home = home
        self._role = role
        self._fd: int | None = None

    def acquire_as_daemon(self) -> None:
        """Take the lock for a daemon: refuse if a daemon holds it, wait out a CLI command."""
        try:
            self.acquire()
        except HomeBusyError as exc:
            if self.holder()[1] == "daemon":
                raise HomeBusyError(f"mesh is already running: {exc}") from exc
            print(f"mesh: waiting: {exc}", file=sys.stderr, flush=True)
            self.acquire(wait=True)

    def acquire(self, *, wait: bool = False) -> None:
        self._home.ensure()
        fd = os.open(self._home.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise HomeBusyError(self.describe_holder()) from exc
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self._role}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def holder(self) -> tuple[str, str]:
        """(pid, role) written by whoever holds the lock; empty strings if unknown."""
        try:
            pid, _, role = self._home.lock_file.read_text().strip().partition(" ")
        except OSError:
            return "", ""
        return pid, role

    def describe_holder(self) -> str:
        """A sentence naming who holds the lock, for error messages."""
        pid, role = self.holder()
        who = "the mesh daemon" if role == "daemon" else "another mesh command"
        at = f" (pid {pid})" if pid else ""
        return f"{who}{at} is using {self._home.root}"

    def __enter__(self) -> HomeLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def locked(home: Home, role: str, *, wait: bool = False) -> Iterator[HomeLock]:
    lock = HomeLock(home, role)
    lock.acquire(wait=wait)
    try:
        yield lock
    finally:
        lock.release()
