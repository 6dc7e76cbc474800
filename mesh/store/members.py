"""The members table: who this node trusts, by node id, certificate and name."""

from __future__ import annotations

from collections.abc import Iterable

from mesh.core.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from mesh.core.ids import NodeId
from mesh.core.members import Member
from mesh.store.database import Database


class MemberTable:
    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> list[Member]:
        rows = self._db.read(
            "SELECT node_id, certificate, name, since_ms, admitted_by FROM members ORDER BY name"
        )
        return [
            Member(
                node_id=NodeId(n),
                certificate=c,
                name=name,
                since_ms=since,
                admitted_by=NodeId(by) if by else None,
            )
            for n, c, name, since, by in rows
        ]

    def get(self, node_id: NodeId) -> Member | None:
        return next((m for m in self.all() if m.node_id == node_id), None)

    def by_name(self, name: str) -> Member:
        for m in self.all():
            if m.name == name:
                return m
        raise NotFoundError(f"no member named {name!r}; `mesh members` lists them")

    def add(self, member: Member) -> None:
        if NodeId.of_certificate(member.certificate) != member.node_id:
            raise InvalidArgumentError("a member's certificate must hash to its node id")
        with self._db.transaction() as conn:
            taken = conn.execute(
                "SELECT node_id FROM members WHERE name = ? AND node_id != ?",
                (member.name, member.node_id.raw),
            ).fetchone()
            if taken:
                raise AlreadyExistsError(f"the name {member.name!r} is taken in this mesh")
            conn.execute(
                "INSERT INTO members (node_id, certificate, name, since_ms, admitted_by) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET "
                "name = excluded.name",
                (
                    member.node_id.raw,
                    member.certificate,
                    member.name,
                    member.since_ms,
                    member.admitted_by.raw if member.admitted_by else None,
                ),
            )

    def replace_all(self, members: Iterable[Member]) -> None:
        """Make the table exactly `members` (recomputed from the membership records)."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM members")
            conn.executemany(
                "INSERT INTO members (node_id, certificate, name, since_ms, admitted_by) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        m.node_id.raw,
                        m.certificate,
                        m.name,
                        m.since_ms,
                        m.admitted_by.raw if m.admitted_by else None,
                    )
                    for m in members
                ],
            )

    def remove(self, node_id: NodeId) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM members WHERE node_id = ?", (node_id.raw,))
