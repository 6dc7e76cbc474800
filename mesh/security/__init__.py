"""Identity (keys, certificates, node ids), signing, pairing, membership."""
