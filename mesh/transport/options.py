"""gRPC options every channel and server of mesh uses (why each: FIELD-NOTES.md)."""

from __future__ import annotations

MAX_PEER_MESSAGE = 8 << 20  # a 1 MiB chunk or a bounded gossip batch, with room to spare
MAX_CONTROL_MESSAGE = 64 << 20
MAX_TRAILERS = 1 << 20  # the records of a removal (see auth.py), a few kB in practice
IDLE_CONNECTION_S = 30.0


def keepalive(keepalive_s: float, ping_timeout_s: float) -> list[tuple[str, int]]:
    """Client keepalive while calls are in flight: a dead link under a pull or a gossip
    stream is seen within keepalive + timeout, not a minute. An idle channel (one kept for
    the next pull) is not pinged (permit_without_calls 0)."""
    return [
        ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(ping_timeout_s * 1000)),
        ("grpc.http2.ping_timeout_ms", int(ping_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def server_options(keepalive_s: float, ping_timeout_s: float) -> list[tuple[str, int]]:
    return [
        # A leftover server on the same port would silently take half the connections.
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", MAX_PEER_MESSAGE),
        ("grpc.max_send_message_length", MAX_PEER_MESSAGE),
        # Accept the clients' frequent pings instead of closing healthy streams (also an
        # older client's, which pings without calls: bad pings are borne, strikes 0).
        # Ping only connections with calls: an idle one is closed below.
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", int(keepalive_s * 500)),
        ("grpc.http2.min_ping_interval_without_data_ms", int(keepalive_s * 500)),
        ("grpc.http2.max_ping_strikes", 0),
        # The server pings too: a gossip stream's link must be watched at both ends (an
        # end that misses a dead link keeps reporting the peer online), and gRPC's pings,
        # answered inside its core, cost far less than the session's own (node/session.py).
        ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(ping_timeout_s * 1000)),
        # The wait for a ping's ack, as the client's: without it the server waited gRPC's
        # default minute for a dialler that stopped but whose kernel still acknowledged
        # TCP (a wedged or suspended process), and showed it online all that time.
        ("grpc.http2.ping_timeout_ms", int(ping_timeout_s * 1000)),
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
    """`gossip`: a channel for a gossip stream, which gRPC does not probe for bandwidth:
    gRPC answers a message received on a quiet link with a probing ping (BDP), which
    tripled an idle mesh's packets. A gossip stream needs no window beyond the default
    64 KiB: an initial sync is bound by CPU, not by the window (bench_gossip: the same time
    either way). Transfer channels keep probing: their pulls want the window."""
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
        *([("grpc.http2.bdp_probe", 0)] if gossip else []),
        *keepalive(keepalive_s, ping_timeout_s),
    ]


def control_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", MAX_CONTROL_MESSAGE),
        ("grpc.max_send_message_length", MAX_CONTROL_MESSAGE),
    ]
