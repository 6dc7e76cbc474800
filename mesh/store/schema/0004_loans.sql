-- The borrower's local side of its loans: the copies it placed (so it removes only its
-- own files, and can serve them on), and pulls in progress with the chunks verified so far
-- (so a pull interrupted by a kill or a lost peer resumes where it stopped).

CREATE TABLE copies (
    binding_key  BLOB PRIMARY KEY,
    lender       BLOB NOT NULL,
    lender_name  TEXT NOT NULL,
    library      TEXT NOT NULL,
    path         TEXT NOT NULL,
    hash         BLOB NOT NULL,
    size         INTEGER NOT NULL,
    chunk_hashes BLOB NOT NULL,
    device       INTEGER NOT NULL,
    inode        INTEGER NOT NULL,
    mtime_ns     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX copies_by_hash ON copies (hash);

CREATE TABLE pulls (
    binding_key  BLOB PRIMARY KEY,
    staging      TEXT NOT NULL,
    hash         BLOB NOT NULL,
    size         INTEGER NOT NULL,
    chunk_hashes BLOB NOT NULL,
    verified     BLOB NOT NULL  -- one bit per chunk, chunk 0 in the low bit of byte 0
) WITHOUT ROWID;
