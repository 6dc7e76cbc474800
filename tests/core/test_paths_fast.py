"""check_relative's fast path must accept exactly what the per-name rule accepts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh.core.errors import InvalidPathError
from mesh.core.paths import MAX_PATH_BYTES, check_name, check_relative

names = st.one_of(
    st.text(alphabet="ab./\\\x00\x1b é", max_size=6),
    st.sampled_from([".", "..", "", "x" * 255, "x" * 256, "é" * 128]),
)
paths = st.one_of(
    st.lists(names, min_size=1, max_size=5).map("/".join),
    st.text(alphabet="ab./\\\x00", max_size=12),
)


def by_the_rule(path: str) -> bool:
    if not path or path.startswith("/"):
        return False
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return False
    try:
        for name in path.split("/"):
            check_name(name)
    except InvalidPathError:
        return False
    return True


@given(paths)
def test_the_fast_path_agrees_with_the_rule(path: str) -> None:
    try:
        check_relative(path)
        accepted = True
    except InvalidPathError:
        accepted = False
    assert accepted == by_the_rule(path), repr(path)
