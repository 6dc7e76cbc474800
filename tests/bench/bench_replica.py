"""Replica benchmark: applying and offering records, against bare loops in the same run.

    python tests/bench/bench_replica.py [--records 100000] [--rounds 3] [--batch-bytes 1048576]

One origin writes RECORDS library entries (unsigned, as entries are), a tenth of them
rewritten so the stream has holes. Then, in interleaved rounds on the in-memory store
(tests/core/fakes.py), it times:
  apply     a fresh replica applying every batch of the stream, vs two baselines: a bare
            dict insert of the same envelopes, and decode + key_of + dict insert (the work
            no replica can skip: a record's key is in its body);
  missing   producing every batch a peer with an empty vector lacks, vs a bare loop that
            cuts the same envelopes into batches of the same size;
  catch-up  what a peer 1% behind lacks (the cost must follow the change, not the store).
Rates are records per second; ratios are baseline time / replica time (1.0: as fast as the
baseline; lower: slower), medians over the rounds. The fixture is moved out of the cyclic
garbage collector's way (gc.freeze) once built, so no timing pays for rescanning it.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mesh.core.entries import LibraryEntry
from mesh.core.envelope import Envelope
from mesh.core.epoch import Epoch
from mesh.core.gossip import Batch
from mesh.core.records import key_of
from mesh.core.replica import Replica
from mesh.core.vector import Clock, VersionVector
from mesh.wire.records import decode
from tests.core.fakes import FakeSigner, MemoryStore, fake_verify, make_replica

ORIGIN = FakeSigner(b"origin")
PEER = FakeSigner(b"peer")


def replica(signer: FakeSigner, nonce: int) -> Replica:
    return make_replica(
        signer, root=ORIGIN.node_id, store=MemoryStore(), epoch=Epoch(1, nonce), verify=fake_verify
    )


def build(records: int) -> tuple[Replica, float]:
    """The origin's replica after writing `records` entries (and a tenth rewritten)."""
    source = replica(ORIGIN, 1)
    # Its genesis: peers check its clock proofs (and signed records) with its certificate.
    source.admit(ORIGIN.certificate, "origin", 1)
    started = time.perf_counter()
    for i in range(records):
        source.write(
            LibraryEntry(
                library="photos",
                path=f"2024/{i // 1000:03d}/IMG_{i:06d}.jpg",
                size=1_000_000 + i,
                mtime_ns=1_700_000_000_000_000_000 + i,
                hash=i.to_bytes(16, "big"),
                chunk_root=(i * 7).to_bytes(16, "big"),
            )
        )
    for i in range(0, records, 10):
        source.write(
            LibraryEntry(
                library="photos",
                path=f"2024/{i // 1000:03d}/IMG_{i:06d}.jpg",
                size=2_000_000 + i,
                mtime_ns=1_800_000_000_000_000_000 + i,
                hash=(i + 1).to_bytes(16, "big"),
                chunk_root=(i * 11).to_bytes(16, "big"),
            )
        )
    return source, time.perf_counter() - started


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def bare_batches(envelopes: list[Envelope], max_bytes: int) -> list[list[Envelope]]:
    batches: list[list[Envelope]] = []
    current: list[Envelope] = []
    size = 0
    for env in envelopes:
        if current and size + env.size > max_bytes:
            batches.append(current)
            current, size = [], 0
        current.append(env)
        size += env.size
    batches.append(current)
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-bytes", type=int, default=1 << 20)
    args = parser.parse_args()

    source, write_time = build(args.records)
    batches: list[Batch] = list(source.missing(VersionVector(), args.batch_bytes))
    envelopes = [env for batch in batches for env in batch.envelopes]
    live = len(envelopes)
    gc.collect()
    gc.freeze()
    seq = source.vector()[ORIGIN.node_id].seq
    print(
        f"{args.records} entries + {args.records // 10} rewrites: {live} live records, "
        f"{len(batches)} batches of <= {args.batch_bytes} bytes; "
        f"writes at {seq / write_time:,.0f}/s"
    )

    def apply_all() -> None:
        target = replica(PEER, 2)
        for batch in batches:
            target.apply(batch, ORIGIN.node_id)
        assert target.vector()[ORIGIN.node_id].seq == seq

    def dict_insert() -> None:
        table: dict[tuple[object, int], Envelope] = {}
        for env in envelopes:
            table[env.origin, env.seq] = env

    def decode_insert() -> None:
        table: dict[bytes, Envelope] = {}
        for env in envelopes:
            table[key_of(env.origin, decode(env.kind, env.body))] = env

    def offer_all() -> None:
        assert sum(len(b.envelopes) for b in source.missing(VersionVector(), args.batch_bytes))

    def bare_offer() -> None:
        bare_batches(envelopes, args.batch_bytes)

    behind = VersionVector({ORIGIN.node_id: Clock(Epoch(1, 1), seq - seq // 100)})

    def catch_up() -> None:
        list(source.missing(behind, args.batch_bytes))

    timings: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, action in (
            ("apply", apply_all),
            ("dict insert", dict_insert),
            ("decode + insert", decode_insert),
            ("missing", offer_all),
            ("bare batching", bare_offer),
            ("catch-up 1%", catch_up),
        ):
            timings.setdefault(name, []).append(timed(action))
    median = {name: statistics.median(times) for name, times in timings.items()}

    def rate(name: str, count: int) -> str:
        return f"{count / median[name]:>12,.0f} records/s  ({median[name] * 1000:8.1f} ms)"

    print(f"apply            {rate('apply', live)}")
    print(
        f"  vs dict insert {rate('dict insert', live)}  "
        f"ratio {median['dict insert'] / median['apply']:.3f}"
    )
    print(
        f"  vs decode+key  {rate('decode + insert', live)}  "
        f"ratio {median['decode + insert'] / median['apply']:.3f}"
    )
    print(f"missing          {rate('missing', live)}")
    print(
        f"  vs bare batch  {rate('bare batching', live)}  "
        f"ratio {median['bare batching'] / median['missing']:.3f}"
    )
    print(f"catch-up 1%      {rate('catch-up 1%', seq // 100)}")


if __name__ == "__main__":
    main()
