"""Library entries decoded in bulk (wire/records.decode_entries, used for gossip batches)
take and refuse exactly what `decode` takes and refuses, one by one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.core.entries import LibraryEntry
from mesh.core.errors import ProtocolError
from mesh.core.records import Kind
from mesh.v1 import records_pb2 as pb
from mesh.wire import checks
from mesh.wire import records as wire_records


def body(**fields: object) -> bytes:
    values: dict[str, object] = {
        "library": "photos",
        "path": "2024/IMG_1.jpg",
        "size": 3,
        "mtime_ns": 5,
        "hash": bytes(16),
        "chunk_root": bytes(range(16)),
    }
    values.update(fields)
    return pb.LibraryEntry(**values).SerializeToString()  # type: ignore[arg-type]


def one_by_one(bodies: list[bytes]) -> list[tuple[str, str, bool]]:
    out = []
    for data in bodies:
        entry = wire_records.decode(Kind.ENTRY, data)
        assert isinstance(entry, LibraryEntry)
        out.append((entry.library, entry.path, entry.deleted))
    return out


def test_the_same_facts_as_one_by_one() -> None:
    bodies = [
        body(),
        body(path="a/b/c", deleted=True),
        body(library="music", path="é/ü.flac"),  # not ASCII: checked path by path
        body(path="x" * 255 + "/" + "y" * 200, size=(1 << 63) - 1),
        body(path="long" + "/n" * 2000),
        body(path="a\nb"),  # odd, but a POSIX name
    ]
    assert wire_records.decode_entries(bodies) == one_by_one(bodies)
    assert wire_records.decode_entries([]) == []


BAD = [
    body(path=""),
    body(path="/etc/passwd"),
    body(path="a/"),
    body(path="a//b"),
    body(path="."),
    body(path="a/../../b"),
    body(path="a/./b"),
    body(path="a\\b"),
    body(path="a\x00b"),
    body(path="x" * 256),
    body(path="a/" + "y" * 256),
    body(path="n/" * 2100 + "n"),
    body(library=""),
    body(library="a/b"),
    body(library=".."),
    body(size=1 << 63),
    body(hash=bytes(15)),
    body(chunk_root=bytes(17)),
    b"\xff\xff\xff",
    body()[:-3],
]


@pytest.mark.parametrize("bad", BAD)
def test_one_bad_body_refuses_the_lot(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        wire_records.decode(Kind.ENTRY, bad)
    with pytest.raises(ProtocolError):
        wire_records.decode_entries([body(), bad, body(path="z")])


@given(st.lists(st.text(max_size=12), min_size=1, max_size=6))
def test_paths_in_bulk_agree_with_path_by_path(paths: list[str]) -> None:
    def alone(text: str) -> bool:
        try:
            checks.path(text)
        except ProtocolError:
            return False
        return True

    expected = all(alone(p) for p in paths)
    try:
        checks.paths(paths)
        got = True
    except ProtocolError:
        got = False
    assert got == expected


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["photos", "music"]),
            st.text(min_size=1, max_size=300),
            st.integers(0, (1 << 63) - 1),
            st.integers(-(1 << 63), (1 << 63) - 1),
            st.binary(min_size=16, max_size=16),
            st.binary(min_size=0, max_size=16),
            st.booleans(),
        ),
        max_size=20,
    )
)
def test_bodies_encoded_in_bulk_are_encode_s(
    rows: list[tuple[str, str, int, int, bytes, bytes, bool]],
) -> None:
    expected = [
        wire_records.encode(
            LibraryEntry(
                library=lib, path=path, size=size, mtime_ns=mtime, hash=h, chunk_root=r, deleted=d
            )
        )[1]
        for lib, path, size, mtime, h, r, d in rows
    ]
    assert wire_records.encode_entries(rows) == expected
