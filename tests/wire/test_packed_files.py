"""The packed messages of a FetchFiles answer: what a packing source sends is read back
file by file, and a message whose count or lengths do not add up is refused."""

from __future__ import annotations

import struct

import pytest

from mesh.core.chunks import CHUNK_SIZE
from mesh.core.errors import ProtocolError
from mesh.wire import transfer as wire


def test_a_pack_is_read_back_file_by_file_with_the_unserved_ones_as_none() -> None:
    files = [b"a" * 10, b"", b"c" * CHUNK_SIZE, b"d"]
    got = wire.files_from_pack(wire.pack_files(files), most=4)
    assert [None if f is None else bytes(f) for f in got] == [files[0], None, files[2], files[3]]


@pytest.mark.parametrize(
    "data",
    [
        b"",  # no count
        struct.pack(">I", 0),  # no files
        struct.pack(">II", 1, 3) + b"abcd",  # one byte more than its length says
        struct.pack(">II", 1, 5) + b"abcd",  # one byte short
        struct.pack(">I", 1000),  # a count with no lengths
        struct.pack(">II", 1, CHUNK_SIZE + 1) + bytes(CHUNK_SIZE + 1),  # over a chunk
    ],
)
def test_a_malformed_pack_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        wire.files_from_pack(data, most=4)


def test_a_pack_of_more_files_than_were_still_asked_is_refused() -> None:
    with pytest.raises(ProtocolError):
        wire.files_from_pack(wire.pack_files([b"a", b"b", b"c"]), most=2)
