-- Copies this node borrowed by opening them through the mount or a stream (issue 21):
-- `pinned` 1 keeps one until `mesh unpin`; 0 is a cached copy, returned when the cache is
-- over its size or the copy went unread (`last_read_ms`) for borrowing.cache_idle.

CREATE TABLE kept_copies (
    lender BLOB NOT NULL,
    library TEXT NOT NULL,
    path TEXT NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    last_read_ms INTEGER NOT NULL,
    PRIMARY KEY (lender, library, path)
) WITHOUT ROWID;
