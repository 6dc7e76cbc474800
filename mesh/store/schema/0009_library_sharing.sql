-- Who may borrow from each library: `borrowers` holds the hex node ids of the members it is
-- shared with, space-separated, empty for every member; `ask` is 1 or 0 where the library
-- overrides lending.ask_first, NULL where it follows it.

ALTER TABLE libraries ADD COLUMN borrowers TEXT NOT NULL DEFAULT '';
ALTER TABLE libraries ADD COLUMN ask INTEGER;
