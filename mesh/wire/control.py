"""Control messages (CLI <-> its own daemon) to and from core values."""

from __future__ import annotations

from mesh.core.entries import IndexedEntry, LibraryEntry
from mesh.core.folders import FileProgress
from mesh.core.ids import NodeId
from mesh.core.progress import ScanProgress
from mesh.core.status import (
    InviteInfo,
    LibraryInfo,
    LoanLine,
    MemberRef,
    MemberView,
    NodeStatus,
    RemovalPlan,
    RequestLine,
)
from mesh.v1 import control_pb2 as pb


def library_to_wire(info: LibraryInfo) -> pb.LibraryInfo:
    return pb.LibraryInfo(
        name=info.name,
        root=info.root,
        open=info.open,
        files=info.files,
        bytes=info.bytes,
        last_seq=info.last_seq,
        changed_ms=info.changed_ms,
        watch=info.watch,
        borrowers=info.borrowers,
        ask=ask_to_wire(info.ask),
    )


def ask_to_wire(ask: bool | None) -> int:
    return 0 if ask is None else (1 if ask else 2)


def ask_from_wire(ask: int) -> bool | None:
    return None if ask == 0 else ask == 1


def library_from_wire(msg: pb.LibraryInfo) -> LibraryInfo:
    return LibraryInfo(
        name=msg.name,
        root=msg.root,
        open=msg.open,
        files=msg.files,
        bytes=msg.bytes,
        last_seq=msg.last_seq,
        changed_ms=msg.changed_ms,
        watch=msg.watch,
        borrowers=tuple(msg.borrowers),
        ask=ask_from_wire(msg.ask),
    )


def status_to_wire(s: NodeStatus) -> pb.NodeStatus:
    return pb.NodeStatus(
        name=s.name,
        node_id=s.node_id.raw,
        port=s.port,
        uptime_s=s.uptime_s,
        libraries=[library_to_wire(lib) for lib in s.libraries],
        home=s.home,
        pid=s.pid,
        version=s.version,
        addresses=list(s.addresses),
        removed_by=s.removed_by,
        removed_ms=s.removed_ms,
    )


def status_from_wire(msg: pb.NodeStatus) -> NodeStatus:
    return NodeStatus(
        name=msg.name,
        node_id=NodeId(msg.node_id),
        home=msg.home,
        port=msg.port,
        running=True,
        uptime_s=msg.uptime_s,
        pid=msg.pid,
        version=msg.version,
        libraries=tuple(library_from_wire(lib) for lib in msg.libraries),
        addresses=tuple(msg.addresses),
        removed_by=msg.removed_by,
        removed_ms=msg.removed_ms,
    )


def progress_to_wire(p: ScanProgress) -> pb.ScanProgress:
    return pb.ScanProgress(
        files_seen=p.files_seen,
        files_to_hash=p.files_to_hash,
        files_hashed=p.files_hashed,
        bytes_to_hash=p.bytes_to_hash,
        bytes_hashed=p.bytes_hashed,
        added=p.added,
        changed=p.changed,
        removed=p.removed,
        unchanged=p.unchanged,
        warnings=list(p.warnings),
        done=p.done,
    )


def progress_from_wire(msg: pb.ScanProgress) -> ScanProgress:
    return ScanProgress(
        files_seen=msg.files_seen,
        files_to_hash=msg.files_to_hash,
        files_hashed=msg.files_hashed,
        bytes_to_hash=msg.bytes_to_hash,
        bytes_hashed=msg.bytes_hashed,
        added=msg.added,
        changed=msg.changed,
        removed=msg.removed,
        unchanged=msg.unchanged,
        warnings=list(msg.warnings),
        done=msg.done,
    )


def entry_to_wire(item: IndexedEntry) -> pb.EntryView:
    e = item.entry
    return pb.EntryView(
        library=e.library,
        path=e.path,
        size=e.size,
        mtime_ns=e.mtime_ns,
        hash=e.hash,
        seq=item.seq,
        deleted=e.deleted,
        node_id=item.node_id.raw if item.node_id is not None else b"",
        node=item.node,
    )


def entry_from_wire(msg: pb.EntryView) -> IndexedEntry:
    return IndexedEntry(
        entry=LibraryEntry(
            library=msg.library,
            path=msg.path,
            size=msg.size,
            mtime_ns=msg.mtime_ns,
            hash=msg.hash,
            chunk_root=b"",
            deleted=msg.deleted,
        ),
        seq=msg.seq,
        node_id=NodeId(msg.node_id) if msg.node_id else None,
        node=msg.node,
    )


def invite_to_wire(i: InviteInfo) -> pb.InviteReply:
    return pb.InviteReply(
        code=i.code,
        hosts=list(i.hosts),
        port=i.port,
        expires_ms=i.expires_ms,
        cancelled=i.cancelled,
        replaced=i.replaced,
        announced=i.announced,
    )


def invite_from_wire(msg: pb.InviteReply) -> InviteInfo:
    return InviteInfo(
        code=msg.code,
        hosts=tuple(msg.hosts),
        port=msg.port,
        expires_ms=msg.expires_ms,
        cancelled=msg.cancelled,
        replaced=msg.replaced,
        announced=msg.announced,
    )


def members_to_wire(root: NodeId, members: list[MemberView]) -> pb.MemberList:
    return pb.MemberList(
        root=root.raw,
        members=[
            pb.MemberView(
                node_id=m.node_id.raw,
                name=m.name,
                admitted_by=m.admitted_by.raw,
                admitted_ms=m.admitted_ms,
                online=m.online,
                is_self=m.is_self,
                address=m.address,
                last_seen_s=m.last_seen_s,
                unacked=m.unacked,
            )
            for m in members
        ],
    )


def members_from_wire(msg: pb.MemberList) -> tuple[NodeId, list[MemberView]]:
    return NodeId(msg.root), [
        MemberView(
            node_id=NodeId(m.node_id),
            name=m.name,
            admitted_by=NodeId(m.admitted_by),
            admitted_ms=m.admitted_ms,
            online=m.online,
            is_self=m.is_self,
            address=m.address,
            last_seen_s=m.last_seen_s,
            unacked=m.unacked,
        )
        for m in msg.members
    ]


def _ref_to_wire(m: MemberRef) -> pb.MemberRef:
    return pb.MemberRef(node_id=m.node_id.raw, name=m.name)


def _ref_from_wire(m: pb.MemberRef) -> MemberRef:
    return MemberRef(node_id=NodeId(m.node_id), name=m.name)


def removal_to_wire(plan: RemovalPlan) -> pb.RemoveReply:
    return pb.RemoveReply(
        member=_ref_to_wire(plan.member),
        admitted=[_ref_to_wire(m) for m in plan.admitted],
        kept=[_ref_to_wire(m) for m in plan.kept],
        done=plan.done,
    )


def removal_from_wire(msg: pb.RemoveReply) -> RemovalPlan:
    return RemovalPlan(
        member=_ref_from_wire(msg.member),
        admitted=tuple(_ref_from_wire(m) for m in msg.admitted),
        kept=tuple(_ref_from_wire(m) for m in msg.kept),
        done=msg.done,
    )


def loan_to_wire(line: LoanLine) -> pb.LoanView:
    return pb.LoanView(
        id=line.id,
        lender=line.lender.raw,
        lender_name=line.lender_name,
        borrower=line.borrower.raw,
        borrower_name=line.borrower_name,
        library=line.library,
        path=line.path,
        size=line.size,
        hash=line.hash,
        phase=line.phase,
        bytes_done=line.bytes_done,
        until_ms=line.until_ms,
        reason=line.reason,
        created_ms=line.created_ms,
        updated_ms=line.updated_ms,
        silent_since_ms=line.silent_since_ms,
        silent_name=line.silent_name,
        kept=line.kept,
        folder=line.folder,
        files=line.files,
        files_done=line.files_done,
        file_list=[
            pb.LoanFile(
                path=f.path, size=f.size, state=f.state, bytes_done=f.bytes_done, reason=f.reason
            )
            for f in line.file_list
        ],
    )


def loan_from_wire(msg: pb.LoanView) -> LoanLine:
    return LoanLine(
        id=msg.id,
        lender=NodeId(msg.lender),
        lender_name=msg.lender_name,
        borrower=NodeId(msg.borrower),
        borrower_name=msg.borrower_name,
        library=msg.library,
        path=msg.path,
        size=msg.size,
        hash=msg.hash,
        phase=msg.phase,
        bytes_done=msg.bytes_done,
        until_ms=msg.until_ms,
        reason=msg.reason,
        created_ms=msg.created_ms,
        updated_ms=msg.updated_ms,
        silent_since_ms=msg.silent_since_ms,
        silent_name=msg.silent_name,
        kept=msg.kept,
        folder=msg.folder,
        files=msg.files if msg.folder else 1,
        files_done=msg.files_done,
        file_list=tuple(
            FileProgress(
                path=f.path, size=f.size, state=f.state, bytes_done=f.bytes_done, reason=f.reason
            )
            for f in msg.file_list
        ),
    )


def request_to_wire(line: RequestLine) -> pb.RequestView:
    return pb.RequestView(
        id=line.id,
        borrower=line.borrower.raw,
        borrower_name=line.borrower_name,
        lender=line.lender.raw,
        lender_name=line.lender_name,
        library=line.library,
        path=line.path,
        duration_ms=line.duration_ms,
        created_ms=line.created_ms,
        answer=line.answer,
    )


def request_from_wire(msg: pb.RequestView) -> RequestLine:
    return RequestLine(
        id=msg.id,
        borrower=NodeId(msg.borrower),
        borrower_name=msg.borrower_name,
        lender=NodeId(msg.lender),
        lender_name=msg.lender_name,
        library=msg.library,
        path=msg.path,
        duration_ms=msg.duration_ms,
        created_ms=msg.created_ms,
        answer=msg.answer,
    )
