-- Where members were reached: learnt from invitations, static peers and sessions, so a
-- restarted node finds its peers again without multicast.
CREATE TABLE addresses (
    node_id   BLOB NOT NULL,
    host      TEXT NOT NULL,
    port      INTEGER NOT NULL,
    source    TEXT NOT NULL,
    seen_ms   INTEGER NOT NULL,
    PRIMARY KEY (node_id, host, port)
) WITHOUT ROWID;
