"""Translation between generated protobuf messages and core values, checking as it goes.

Everything decoded here came from a peer or a client and is hostile until checked: ids
and hashes have exact lengths, paths and names pass the core checks, counts are bounded.
Anything malformed raises ProtocolError naming what was wrong; nothing else escapes.
"""
