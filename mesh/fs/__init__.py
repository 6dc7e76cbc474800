"""Files: scanning and hashing libraries; chunk reads and writes; staging and safe paths."""
