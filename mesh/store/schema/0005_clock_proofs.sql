-- Each origin's latest clock proof: its signature that its writes in an epoch reach a seq.
-- Kept (checked already) so that this node can relay the origin's records with it.

CREATE TABLE clock_proofs (
    origin      BLOB PRIMARY KEY,
    epoch_ms    INTEGER NOT NULL,
    epoch_nonce INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    signature   BLOB NOT NULL
) WITHOUT ROWID;
