"""What two nodes exchange when one joins the other's mesh, once the code is proven."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mesh.core.ids import NodeId


class InvitationState(enum.Enum):
    """An invitation's life: OPEN, then closed for one of the other reasons, for good."""

    OPEN = "open"
    USED = "used"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REPLACED = "replaced"  # a newer `mesh invite` on the same node closed it
    LOCKED = "locked"  # five wrong codes


class Refusal(enum.Enum):
    """What kind of error an inviter answers a joiner with."""

    OTHER = "other"  # the text says all of it
    WRONG_CODE = "wrong code"
    CLOSED = "closed"
    OTHER_CODE = "another code"  # the invitation here has a code with another number


@dataclass(frozen=True, kw_only=True, slots=True)
class MemberInfo:
    node_id: NodeId
    certificate: bytes
    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PairingPayload:
    certificate: bytes
    name: str
    protocol_version: int
    members: tuple[MemberInfo, ...] = ()
    records: tuple[bytes, ...] = ()  # serialized envelopes (membership, addresses)
    refusal: str = ""
    hosts: tuple[str, ...] = ()
    port: int = 0
    root: NodeId | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class PairingFrame:
    """One message of the pairing stream: exactly one field is set."""

    spake: bytes = b""
    confirm: bytes = b""
    sealed: bytes = b""
    error: str = ""
    nameplate: int | None = None  # with the joiner's spake: its code's (public) number
    refusal: Refusal = Refusal.OTHER  # with an error
    tries_left: int = 0  # with WRONG_CODE
    closed: InvitationState = InvitationState.OPEN  # with CLOSED: why
    closed_ms: int = 0  # with CLOSED: when
