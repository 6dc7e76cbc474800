"""Fixtures for simulated LANs (tests.lan.netns).

Test directories elsewhere use them with, in their conftest.py:
`from tests.lan.conftest import make_lan, stale_lans_removed  # noqa: F401`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lan.netns import (
    Lan,
    MakeLan,
    NetnsError,
    cached_unavailable_reason,
    cleanup_stale,
    require_netns,
)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # The marker carries the rule, so tests that build a Lan by hand skip (or fail under
    # MESH_REQUIRE_NETNS=1) just like the ones that use the fixture.
    if item.get_closest_marker("netns") is not None:
        require_netns()


@pytest.fixture(scope="session")
def stale_lans_removed() -> list[str]:
    """Once per run: delete namespaces that crashed runs left behind; their names."""
    if cached_unavailable_reason() is not None:
        return []
    return cleanup_stale()


@pytest.fixture
def make_lan(stale_lans_removed: list[str]) -> Iterator[MakeLan]:
    """`lan = make_lan(3)`: a LAN of 3 nodes, torn down after the test whatever happens."""
    require_netns()
    lans: list[Lan] = []

    def make(n: int = 2) -> Lan:
        lan = Lan(n)
        lans.append(lan)
        return lan

    yield make
    errors = []
    for lan in reversed(lans):
        try:
            lan.close()
        except NetnsError as error:  # close the others all the same
            errors.append(str(error))
    if errors:
        raise NetnsError("; ".join(errors))
