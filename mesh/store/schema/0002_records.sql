-- The replicated records: the live envelope of every key, of every origin, with the body
-- bytes exactly as their origin wrote them; and each origin's clock (epoch, last seq held).

CREATE TABLE records (
    key         BLOB PRIMARY KEY,
    origin      BLOB NOT NULL,
    epoch_ms    INTEGER NOT NULL,
    epoch_nonce INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    kind        INTEGER NOT NULL,
    body        BLOB NOT NULL,
    signature   BLOB NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- "What changed after seq N of this origin": a range scan.
CREATE INDEX records_by_origin ON records (origin, epoch_ms, epoch_nonce, seq);
CREATE INDEX records_tombstones ON records (origin, epoch_ms, epoch_nonce, seq)
    WHERE deleted = 1;
-- Admissions (7) and removals (8), read whole at start-up.
CREATE INDEX records_membership ON records (kind) WHERE kind IN (7, 8);

CREATE TABLE clocks (
    origin      BLOB PRIMARY KEY,
    epoch_ms    INTEGER NOT NULL,
    epoch_nonce INTEGER NOT NULL,
    seq         INTEGER NOT NULL
) WITHOUT ROWID;
