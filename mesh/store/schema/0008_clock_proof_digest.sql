-- A clock proof names the digest of its origin's covered records (core/clock_proof.py);
-- empty for the proofs signed before digests existed.

ALTER TABLE clock_proofs ADD COLUMN digest BLOB NOT NULL DEFAULT x'';
