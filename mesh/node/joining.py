"""Joining, on the daemon: the invitation this node has open, and joining another's mesh.

One invitation at a time: a new `mesh invite` closes the open one. The invitation's own
life (code, listener, attempts) is node/pairing.py's; this wires it to the store, to
membership and to the LAN announcement.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mesh.core.errors import InvalidArgumentError
from mesh.core.ids import NodeId
from mesh.core.status import InviteInfo, MemberView
from mesh.node import roster
from mesh.node.pairing import DEFAULT_TTL_S, Admitted, Invitation
from mesh.node.pairing import State as InviteState
from mesh.node.pairing import join as pairing_join

if TYPE_CHECKING:
    from mesh.node.daemon import Daemon

log = logging.getLogger(__name__)


class Joining:
    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon
        self._open: Invitation | None = None

    async def close(self) -> None:
        """At shutdown: the open invitation, if any, is cancelled."""
        if self._open is not None:
            await self._open.close(InviteState.CANCELLED)

    async def invite(self, ttl_s: float, cancel: bool) -> InviteInfo:
        current = self._open
        replaced = current.code if current and current.state is InviteState.OPEN else ""
        if current is not None:
            await current.close(InviteState.CANCELLED)
            self._open = None
        if cancel:
            return InviteInfo(
                code=current.code if current else "",
                hosts=(),
                port=0,
                expires_ms=0,
                cancelled=current is not None and current.state is InviteState.CANCELLED,
            )
        await self._d.store(self._d.local.found_mesh)
        await self._d.reload_members()
        await self._d.publish_addresses()
        port = self._d.settings.port + 1 if self._d.settings.port else 0
        invitation = Invitation(
            self._admit_joiner,
            ttl_s=ttl_s or DEFAULT_TTL_S,
            host=self._d.settings.listen,
            port=port,
        )
        await invitation.start()
        self._open = invitation
        await self._d.discovery.invitation_opened(invitation.port, invitation.closed)
        log.info("invitation open on port %d until it is used or expires", invitation.port)
        return InviteInfo(
            code=invitation.code,
            hosts=self._d.advertised_hosts(),
            port=invitation.port,
            expires_ms=invitation.expires_ms,
            replaced=replaced,
        )

    async def _admit_joiner(self, certificate: bytes, name: str) -> Admitted:
        await self._d.store(self._d.local.admit, certificate, name)
        await self._d.reload_members()
        root, records, members = await self._d.store(self._d.local.pairing_answer)
        return Admitted(
            certificate=self._d.identity.cert_der,
            name=self._d.name,
            root=root,
            records=records,
            members=members,
            hosts=self._d.advertised_hosts(),
            port=self._d.port,
        )

    async def join(self, code: str, host: str, port: int) -> tuple[NodeId, list[MemberView]]:
        if await self._d.store(self._d.local.in_mesh):
            raise InvalidArgumentError(
                "this node is already in a mesh; `mesh init --reset` makes a new node to join "
                "another"
            )
        if not host:  # `mesh join CODE` without --at: the invitation announced on the LAN
            host, port = await self._d.discovery.find_invitation()
        joined = await pairing_join(
            code, host, port, certificate=self._d.identity.cert_der, name=self._d.name
        )
        await self._d.store(self._d.local.join_mesh, joined.root, joined.records)
        await self._d.reload_members()
        await self._d.publish_addresses()
        for inviter_host in (host, *joined.hosts):
            await self._d.store(
                self._d.local.remember_address, joined.inviter_id, inviter_host, joined.port
            )
            self._d.peers.add_address(inviter_host, joined.port)
        log.info("joined the mesh of %s", joined.inviter_name)
        return await roster.member_views(self._d)
