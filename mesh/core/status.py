"""What a node reports about itself."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.core.folders import FileProgress
from mesh.core.ids import NodeId


@dataclass(frozen=True, kw_only=True, slots=True)
class LibraryInfo:
    name: str
    root: str
    open: bool
    files: int
    bytes: int
    last_seq: int
    changed_ms: int = 0  # when its entries last changed (wall clock); 0: never
    watch: str = ""  # how a running node follows it: "events", "polling", "rescans"; "": not
    borrowers: tuple[str, ...] = ()  # the members it is shared with; empty: every member
    ask: bool | None = None  # over lending.ask_first where set


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeStatus:
    name: str
    node_id: NodeId
    home: str
    port: int
    running: bool  # whether this came from a running daemon
    uptime_s: float
    pid: int
    version: str
    libraries: tuple[LibraryInfo, ...]
    addresses: tuple[str, ...] = ()
    removed_by: str = ""  # the member that removed this node from the mesh, if one did
    removed_ms: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class InviteInfo:
    code: str
    hosts: tuple[str, ...]
    port: int  # the pairing listener's
    expires_ms: int
    cancelled: bool = False
    replaced: str = ""  # the code of the invitation a new one closed
    announced: bool = False  # on the LAN with mDNS: a joiner there needs no address


@dataclass(frozen=True, kw_only=True, slots=True)
class PeerCheck:
    """What `mesh peer add` learnt at an address: whose it is, or why it could not tell."""

    node_id: NodeId | None
    name: str = ""
    problem: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberView:
    node_id: NodeId
    name: str
    admitted_by: NodeId
    admitted_ms: int
    is_self: bool = False
    online: bool = False
    address: str = ""
    last_seen_s: float = 0.0  # seconds ago; 0 if never
    unacked: int = 0  # records sent to it and not acknowledged yet


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberRef:
    node_id: NodeId
    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RemovalPlan:
    """`mesh remove NAME`: the member, the members that stand only on its admissions (removed
    with it), and those of them kept (--keep-admitted)."""

    member: MemberRef
    admitted: tuple[MemberRef, ...] = ()
    kept: tuple[MemberRef, ...] = ()
    done: bool = False  # False for a preview

    @property
    def removed_with_it(self) -> tuple[MemberRef, ...]:
        kept = {m.node_id for m in self.kept}
        return tuple(m for m in self.admitted if m.node_id not in kept)


@dataclass(frozen=True, kw_only=True, slots=True)
class LoanLine:
    """One loan as the ledger shows it (what `mesh loans` prints)."""

    id: str
    lender: NodeId
    lender_name: str
    borrower: NodeId
    borrower_name: str
    library: str
    path: str
    size: int
    hash: bytes
    phase: str  # a core.loans.Phase value
    bytes_done: int
    until_ms: int
    reason: str
    created_ms: int
    updated_ms: int
    # On this node's own loans: the other side is unreachable, last heard from then (wall
    # clock ms); 0 while it is reachable. What the ledger says of it is as of then.
    silent_since_ms: int = 0
    silent_name: str = ""  # which side that is
    kept: str = ""  # "pinned" or "cached": kept by the borrower for the mount (issue 21)
    # A folder loan: `path` is its pattern as users see it ('Season 1/', '*.mkv').
    folder: bool = False
    files: int = 1
    files_done: int = 0
    file_list: tuple[FileProgress, ...] = ()  # a folder loan's files, when asked for


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestLine:
    """One borrow request and its answer (what `mesh requests` prints)."""

    id: str
    borrower: NodeId
    borrower_name: str
    lender: NodeId
    lender_name: str
    library: str
    path: str
    duration_ms: int
    created_ms: int
    answer: str  # "" while pending
