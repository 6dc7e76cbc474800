-- How far a pull's whole-file hash got (the chunks before `hashed` went into it) and its
-- saved state, so a resumed pull goes on hashing instead of reading back what it verified.
-- Empty where the state could not be saved: that pull reads its chunks back.
ALTER TABLE pulls ADD COLUMN hashed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pulls ADD COLUMN hash_state BLOB NOT NULL DEFAULT x'';
