"""Hypothesis strategies for core values, shared by the wire, core and store tests."""

from __future__ import annotations

from hypothesis import strategies as st

from mesh.core.entries import LibraryEntry
from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.ids import NodeId
from mesh.core.records import (
    Addresses,
    Admission,
    Binding,
    BindingEnd,
    BorrowRequest,
    Content,
    Denial,
    Kind,
    LibraryRecord,
    LoanState,
    LoanStatus,
    ManifestFile,
    ManifestPage,
    Removal,
    VectorRecord,
)
from mesh.core.vector import Clock, VersionVector

U63 = (1 << 63) - 1

node_ids = st.binary(min_size=32, max_size=32).map(NodeId)
hashes = st.binary(min_size=16, max_size=16)
epochs = st.builds(Epoch, st.integers(0, U63), st.integers(0, U63))
seqs = st.integers(1, U63)
sizes = st.integers(0, U63)
times = st.integers(0, U63)

_name_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\x00")
names = (
    st.text(_name_chars, min_size=1, max_size=40)
    .filter(lambda s: s not in (".", ".."))
    .filter(lambda s: len(s.encode()) <= 255)
)
paths = st.lists(names, min_size=1, max_size=5).map("/".join)
node_names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
texts = st.text(max_size=200)
hosts = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}\Z"),
)

entries = st.builds(
    LibraryEntry,
    library=names,
    path=paths,
    size=sizes,
    mtime_ns=st.integers(-(1 << 63), U63),
    hash=hashes,
    chunk_root=hashes,
    deleted=st.booleans(),
)
contents = st.builds(Content, hash=hashes, size=sizes, chunk_root=hashes)
vectors = st.dictionaries(node_ids, st.builds(Clock, epochs, st.integers(0, U63)), max_size=6).map(
    VersionVector
)

records = st.one_of(
    entries,
    st.builds(LibraryRecord, name=names, open=st.booleans(), removed=st.booleans()),
    st.builds(
        Binding,
        borrower=node_ids,
        library=names,
        path=paths,
        content=contents,
        until_ms=times,
        ended=st.sampled_from(BindingEnd),
        created_ms=times,
        folder=st.booleans(),
        pages=st.lists(st.binary(min_size=32, max_size=32), max_size=3).map(tuple),
        files=sizes,
    ),
    st.builds(
        ManifestPage,
        borrower=node_ids,
        library=names,
        path=paths,
        index=st.integers(0, 2**32 - 1),
        files=st.lists(
            st.builds(ManifestFile, path=paths, size=sizes, hash=hashes, chunk_root=hashes),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(
        LoanStatus,
        lender=node_ids,
        library=names,
        path=paths,
        hash=hashes,
        state=st.sampled_from(LoanState),
        bytes_done=sizes,
        reason=st.text(max_size=100),
        updated_ms=times,
        files_done=sizes,
    ),
    st.builds(
        BorrowRequest,
        lender=node_ids,
        library=names,
        path=paths,
        duration_ms=times,
        created_ms=times,
    ),
    st.builds(
        Denial,
        borrower=node_ids,
        request_seq=seqs,
        library=names,
        path=paths,
        reason=st.text(max_size=100),
    ),
    st.builds(
        Admission,
        node_id=node_ids,
        certificate=st.binary(max_size=600),
        name=node_names,
        admitted_ms=times,
    ),
    st.builds(Removal, node_id=node_ids, last_epoch=epochs, last_seq=seqs, removed_ms=times),
    st.builds(
        Addresses,
        hosts=st.lists(hosts, max_size=5).map(tuple),
        port=st.integers(0, 65535),
        name=st.one_of(st.just(""), node_names),
    ),
    vectors.map(VectorRecord),
)

envelopes = st.builds(
    Envelope,
    origin=node_ids,
    epoch=epochs,
    seq=seqs,
    kind=st.sampled_from(list(Kind)),
    body=st.binary(max_size=300),
    signature=st.one_of(st.just(b""), st.binary(min_size=64, max_size=72)),
)
