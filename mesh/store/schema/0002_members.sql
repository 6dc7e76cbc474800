-- The members of this node's mesh as this node currently sees them: the materialized
-- view of the membership records (the pairing and gossip code keep it in step). The
-- server's TLS trust and every call's authorization read it.
CREATE TABLE members (
    node_id     BLOB PRIMARY KEY,
    certificate BLOB NOT NULL,
    name        TEXT NOT NULL,
    since_ms    INTEGER NOT NULL,
    admitted_by BLOB
) WITHOUT ROWID;

CREATE UNIQUE INDEX members_by_name ON members (name);
