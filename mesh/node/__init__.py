"""Composition root: the node's parts wired together, locally and as a daemon."""
