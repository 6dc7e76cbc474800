-- Node state, libraries and the local index of their entries.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE libraries (
    name     TEXT PRIMARY KEY,
    root     TEXT NOT NULL UNIQUE,
    open     INTEGER NOT NULL DEFAULT 0,
    added_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- This node's own entries, with what the scanner needs to skip unchanged files
-- (size, mtime, inode). `seq`, the sequence number of the entry's latest write, is the
-- rowid: "what changed after seq N" is a range scan, and inserting in seq order appends.
CREATE TABLE entries (
    seq        INTEGER PRIMARY KEY,
    library    TEXT NOT NULL,
    path       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    inode      INTEGER NOT NULL,
    hash       BLOB NOT NULL,
    chunk_root BLOB NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX entries_by_path ON entries (library, path);

-- Chunk hashes of contents of more than one chunk (a one-chunk file's chunk hash is its
-- hash). Keyed by content, so copies of one file share a row.
CREATE TABLE chunk_lists (
    hash       BLOB PRIMARY KEY,
    chunk_root BLOB NOT NULL,
    hashes     BLOB NOT NULL
) WITHOUT ROWID;
