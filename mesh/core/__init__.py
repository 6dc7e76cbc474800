"""Pure domain: ids, entries, records, vectors, replica merge. Stdlib only, no I/O, no clock."""
