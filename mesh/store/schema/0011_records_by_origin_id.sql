-- The records table without the 32-byte origin repeated in every row and every index entry
-- (issue 19: an initial sync of 100k entries wrote 13 MB of WAL and a 39 MB table; now ~8
-- and ~23). Origins are numbered in `origins`; a record's key is stored past its kind and
-- origin (both columns of their own), so the full key is kind || origin || key.
--
-- Rows live in a rowid table, in the order they were written (a sync appends), with a
-- unique index on what identifies a record (kind, origin, key: "the live record of a key",
-- and a kind's records of one origin as a range) and one on (origin, epoch, seq) for "what
-- changed after seq N". The former partial index on kinds 7 and 8 is the key index's
-- prefix now.

CREATE TABLE origins (
    id     INTEGER PRIMARY KEY,
    origin BLOB NOT NULL UNIQUE
);

INSERT INTO origins (origin) SELECT DISTINCT origin FROM records ORDER BY origin;

CREATE TABLE records_by_id (
    id          INTEGER PRIMARY KEY,
    kind        INTEGER NOT NULL,
    origin_id   INTEGER NOT NULL,
    key         BLOB NOT NULL,
    epoch_ms    INTEGER NOT NULL,
    epoch_nonce INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    body        BLOB NOT NULL,
    signature   BLOB NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0
);

INSERT INTO records_by_id (kind, origin_id, key, epoch_ms, epoch_nonce, seq, body, signature,
                           deleted)
    SELECT r.kind, o.id, substr(r.key, 34), r.epoch_ms, r.epoch_nonce, r.seq, r.body,
           r.signature, r.deleted
    FROM records AS r JOIN origins AS o ON o.origin = r.origin
    ORDER BY o.id, r.epoch_ms, r.epoch_nonce, r.seq;

DROP TABLE records;
ALTER TABLE records_by_id RENAME TO records;

CREATE UNIQUE INDEX records_by_key ON records (kind, origin_id, key);
-- "What changed after seq N of this origin": a range scan.
CREATE INDEX records_by_origin ON records (origin_id, epoch_ms, epoch_nonce, seq);
CREATE INDEX records_tombstones ON records (origin_id, epoch_ms, epoch_nonce, seq)
    WHERE deleted = 1;
