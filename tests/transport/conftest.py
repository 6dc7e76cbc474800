"""Fixtures of the transport tests: a bare peer server (tests/security has it)."""

from tests.security.conftest import serve  # noqa: F401 - the fixture
