"""A simulated LAN in network namespaces for tests (see `tests.lan.netns`)."""
