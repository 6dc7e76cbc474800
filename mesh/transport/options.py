"""gRPC options every channel and server of mesh uses (why each: FIELD-NOTES.md)."""

from __future__ import annotations

MAX_PEER_MESSAGE = 8 << 20  # a 1 MiB chunk or a bounded gossip batch, with room to spare
MAX_CONTROL_MESSAGE = 64 << 20
MAX_TRAILERS = 1 << 20  # the records of a removal (see auth.py), a few kB in practice
IDLE_CONNECTION_S = 30.0


def keepalive(keepalive_s: float, ping_timeout_s: float) -> list[tuple[str, int]]:
    """Client keepalive while calls are in flight: a dead link under a pull is seen within
    keepalive + timeout, not a minute. An idle channel is not pinged (permit_without_calls
    0): a gossip stream's liveness is its session's own pings (node/session.py), and an
    idle channel kept for the next pull needs none."""
    return [
        ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(ping_timeout_s * 1000)),
        ("grpc.http2.ping_timeout_ms", int(ping_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def server_options(keepalive_s: float) -> list[tuple[str, int]]:
    return [
        # A leftover server on the same port would silently take half the connections.
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", MAX_PEER_MESSAGE),
        ("grpc.max_send_message_length", MAX_PEER_MESSAGE),
        # Accept the clients' frequent pings instead of closing healthy streams.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", int(keepalive_s * 500)),
        ("grpc.http2.min_ping_interval_without_data_ms", int(keepalive_s * 500)),
        ("grpc.http2.max_ping_strikes", 0),
        # The server pings nobody: the dialler of a gossip stream pings it at the session
        # level, which both ends hear (gRPC's pings are invisible to the application), and
        # a pull's client pings while it pulls. Two more pings per link every keepalive
        # were most of an idle mesh's traffic.
        # A connection left without calls is closed: a dialler's channel can outlive its
        # close when grpc still holds one of its calls, and would stay open for good.
        ("grpc.max_connection_idle_ms", int(IDLE_CONNECTION_S * 1000)),
        # What a server receives is gossip and small requests (bulk data flows to the
        # client): no bandwidth probing, see `channel_options`.
        ("grpc.http2.bdp_probe", 0),
    ]


def channel_options(
    keepalive_s: float, ping_timeout_s: float, *, gossip: bool = False
) -> list[tuple[str, int | str]]:
    """`gossip`: a channel for a gossip stream, which gRPC neither pings (the session
    does) nor probes: gRPC answers every message received with a bandwidth-probing ping
    (BDP) once the link is quiet, which tripled an idle mesh's packets (its pings' every
    frame drew one). A gossip stream needs no window beyond the default 64 KiB: an
    initial sync is bound by CPU, not by the window (bench_gossip: the same time either
    way). Transfer channels keep both: their pulls want the window, and keepalive sees a
    dead source while a pull waits on it."""
    # Here, not at the top: the control server needs this module before `mesh up` has
    # loaded `cryptography` (a twentieth of a second), which the certificates bring.
    from mesh.security.identity import SAN_NAME

    return [
        ("grpc.ssl_target_name_override", SAN_NAME),
        ("grpc.default_authority", SAN_NAME),
        ("grpc.max_receive_message_length", MAX_PEER_MESSAGE),
        ("grpc.max_send_message_length", MAX_PEER_MESSAGE),
        # One connection per peer, never shared with another channel's subchannel pool.
        ("grpc.use_local_subchannel_pool", 1),
        # A member that refuses a removed node sends the records that show it as trailers.
        ("grpc.max_metadata_size", MAX_TRAILERS),
        ("grpc.absolute_max_metadata_size", MAX_TRAILERS),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 5000),
        *([("grpc.http2.bdp_probe", 0)] if gossip else keepalive(keepalive_s, ping_timeout_s)),
    ]


def control_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", MAX_CONTROL_MESSAGE),
        ("grpc.max_send_message_length", MAX_CONTROL_MESSAGE),
    ]
