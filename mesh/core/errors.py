"""One error tree for mesh.

`LocalError`s are things the user or this machine got wrong (a bad path, a missing library,
a daemon that is not running); the CLI prints them as one line. `RemoteError`s are what a
peer did wrong or refused; they carry the peer in their message. Every boundary maps the
errors below it into this tree with `raise ... from exc`.
"""

from __future__ import annotations


class MeshError(Exception):
    """Base of every error mesh raises on purpose."""


class LocalError(MeshError):
    """A mistake of the user or a condition of this machine."""


class NotFoundError(LocalError):
    """A library, node, entry or loan that does not exist."""


class AlreadyExistsError(LocalError):
    """A name or path that is taken."""


class InvalidArgumentError(LocalError):
    """A value the user gave that cannot be used."""


class InvalidPathError(InvalidArgumentError):
    """A path that is unsafe or escapes its root."""


class ConfigError(InvalidArgumentError):
    """A bad configuration value; names the key and what is allowed."""


class NotInitializedError(LocalError):
    """The node's home holds no identity yet."""


class DaemonNotRunningError(LocalError):
    """A command needs the daemon and it is not running."""


class HomeBusyError(LocalError):
    """Another mesh process holds the home's lock."""


class StoreError(LocalError):
    """The local database is unusable (corrupt, newer schema, disk full)."""


class PlacementError(LocalError):
    """A borrowed file could not be staged, placed or removed; says what and where."""


class UserFileInTheWayError(PlacementError):
    """Something that is not mesh's copy holds the name a borrowed file needs."""


class NoSpaceError(PlacementError):
    """The borrowed folder's disk (or the user's quota on it) is full."""


class NothingStagedError(PlacementError):
    """The staging file a pull verified is gone (deleted by hand, a folder moved)."""


class RemovedFromMeshError(LocalError):
    """This node was removed from its mesh: what needs the mesh cannot be done."""


class RemoteError(MeshError):
    """A peer sent something invalid, or refused us."""


class ProtocolError(RemoteError):
    """A peer's message breaks the protocol (malformed, out of order, oversized)."""


class RefusedError(RemoteError):
    """A peer refused a request (not a member, not allowed, incompatible)."""


class UnsupportedError(RemoteError):
    """A peer does not know a call (it runs an older mesh): the caller uses an older one."""


class PeerUnavailableError(RemoteError):
    """A peer cannot be reached, or its stream ended."""


class RemovalNoticeError(RefusedError):
    """A member refused this node because it was removed from the mesh. `records` are the
    membership records that show it (serialized envelopes, unchecked until applied)."""

    def __init__(self, message: str, records: tuple[bytes, ...]) -> None:
        super().__init__(message)
        self.records = records
