"""SQLite: the one place a node's state is kept. Opened through `Database`, one writer."""
