-- When each library's entries last changed (a file new, changed or gone), for `mesh status`;
-- 0 until its first scan finds something.
ALTER TABLE libraries ADD COLUMN changed_ms INTEGER NOT NULL DEFAULT 0;
