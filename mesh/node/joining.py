"""Joining, on the daemon: the invitations this node opens, and joining another's mesh.

One invitation at a time: a new `mesh invite` replaces the open one. The invitation's own
life and the pairing listener are node/pairing.py's; this wires them to the store, to
membership and to the LAN announcement (which goes the moment the invitation closes).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mesh.core.errors import InvalidArgumentError
from mesh.core.ids import NodeId
from mesh.core.pairing import InvitationState
from mesh.core.status import InviteInfo, MemberView
from mesh.node import roster
from mesh.node.pairing import (
    DEFAULT_TTL_S,
    Admitted,
    Invitation,
    PairingDesk,
    join_announced_or_closed,
    places_at,
)
from mesh.node.pairing import join as pairing_join
from mesh.security import invite_code

if TYPE_CHECKING:
    from mesh.node.daemon import Daemon

log = logging.getLogger(__name__)


class Joining:
    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon
        self._desk: PairingDesk | None = None

    def _the_desk(self) -> PairingDesk:
        if self._desk is None:
            # The port after the node's, so that a firewall rule can name both and `--at
            # HOST:NODEPORT` finds it; when the system chose the node's port, any free one if
            # the next is taken.
            s = self._d.settings
            self._desk = PairingDesk(s.listen, self._d.port + 1, any_port=not s.port)
        return self._desk

    async def close(self) -> None:
        """At shutdown: the open invitation is cancelled and the listener closed."""
        if self._desk is not None:
            await self._desk.stop()

    async def invite(self, ttl_s: float, cancel: bool) -> InviteInfo:
        desk = self._the_desk()
        current = desk.current
        was_open = current is not None and current.state is InvitationState.OPEN
        if cancel:
            if current is not None:
                current.close(InvitationState.CANCELLED)
            return InviteInfo(
                code=current.code if current else "",
                hosts=(),
                port=0,
                expires_ms=0,
                cancelled=was_open,
            )
        await self._d.store(self._d.local.found_mesh)
        await self._d.reload_members()
        await self._d.publish_addresses()
        invitation = Invitation(self._admit_joiner, ttl_s=ttl_s or DEFAULT_TTL_S)
        await desk.open(invitation)
        announced = await self._d.discovery.invitation_opened(
            desk.port, invitation.nameplate, invitation.closed
        )
        log.info("invitation open on port %d until it is used or expires", desk.port)
        return InviteInfo(
            code=invitation.code,
            hosts=self._d.advertised_hosts(),
            port=desk.port,
            expires_ms=invitation.expires_ms,
            replaced=current.code if current is not None and was_open else "",
            announced=announced,
        )

    async def _admit_joiner(self, certificate: bytes, name: str) -> Admitted:
        d = self._d
        await d.store(d.local.admit, certificate, name)
        await d.reload_members()
        root, records, members = await d.store(d.local.pairing_answer)
        return Admitted(
            certificate=d.identity.cert_der,
            name=d.name,
            root=root,
            records=records,
            members=members,
            hosts=d.advertised_hosts(),
            port=d.port,
        )

    async def join(self, code: str, host: str, port: int) -> tuple[NodeId, list[MemberView]]:
        d = self._d
        await d.check_member()  # a removed node says so, not "already in a mesh"
        if await d.store(d.local.in_mesh):
            raise InvalidArgumentError(
                "this node is already in a mesh; `mesh init --reset` makes a new node to join "
                "another"
            )
        code = invite_code.normalize(code)
        me = d.identity.cert_der
        if host:
            joined = await pairing_join(code, places_at(host, port), certificate=me, name=d.name)
        else:  # `mesh join CODE` without --at: the invitations announced on the LAN

            async def desks() -> list[tuple[str, int]]:
                return d.discovery.desks()

            joined = await join_announced_or_closed(
                code,
                lambda: d.discovery.find_invitation(invite_code.nameplate(code)),
                desks,
                certificate=me,
                name=d.name,
            )
        await d.store(d.local.join_mesh, joined.root, joined.records)
        await d.reload_members()
        await d.publish_addresses()
        for inviter_host in (joined.host, *joined.hosts):
            await d.store(d.local.remember_address, joined.inviter_id, inviter_host, joined.port)
            d.peers.add_address(inviter_host, joined.port)
        log.info("joined the mesh of %s", joined.inviter_name)
        return await roster.member_views(d)
