"""mesh: lend files between your own computers, peer to peer."""

__version__ = "0.1.0"
