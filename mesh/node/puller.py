"""One pull: a verified copy of a binding's content, resumable, from the allowed sources.

Theory of operation. Check the borrower's policy (quota, free-space reserve) first; a
refusal is a status, and the agent tries again later. Then ask a source for the
`Manifest` and check it against the binding (hash, size, chunk root). Chunks go into a
staging file, each verified against its hash before it counts; the set of verified chunks
is saved (after the staging file is synced) at most once per progress interval, with a
loan status saying how far it got, so a kill, a lost peer or a dead link costs at most
that interval's chunks. A source that fails or sends a bad chunk is left for the next one.
When every chunk is verified, the whole file is hashed again, fsynced and renamed into
place (fs/borrowed.py), and the status says held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import xxhash

from mesh.config import Settings
from mesh.core.chunks import HASH_BYTES, chunk_count, chunk_span
from mesh.core.errors import PeerUnavailableError, ProtocolError, RefusedError
from mesh.core.ids import NodeId
from mesh.core.loans import refusal
from mesh.core.records import LoanState
from mesh.core.transfer import FetchRequest, Manifest, ManifestRequest
from mesh.fs.borrowed import BorrowedFolder, FileId, NoSpaceError, PlacementError, StagingFile
from mesh.node.channels import Channels
from mesh.node.lending import Lending, Lent, copy_parts
from mesh.node.local import now_ms
from mesh.store.loans import Copy, Pull

log = logging.getLogger(__name__)
T = TypeVar("T")
_FETCH_RUN = 64  # chunks asked for in one Fetch call


class PullHost(Protocol):
    node_id: NodeId
    settings: Settings
    channels: Channels

    @property
    def lending(self) -> Lending: ...

    @property
    def borrowed(self) -> BorrowedFolder: ...

    async def store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...


class Bitmap:
    """Which chunks are verified: one bit each, as the pulls table stores it."""

    def __init__(self, count: int, data: bytes = b"") -> None:
        self.count = count
        self.bits = bytearray(data[: (count + 7) // 8].ljust((count + 7) // 8, b"\0"))

    def __contains__(self, index: int) -> bool:
        return bool(self.bits[index // 8] & (1 << (index % 8)))

    def add(self, index: int) -> None:
        self.bits[index // 8] |= 1 << (index % 8)

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if i not in self]


def _runs(indexes: list[int], longest: int) -> list[tuple[int, int]]:
    """Consecutive chunk indexes as (first, count) runs of at most `longest`."""
    runs: list[tuple[int, int]] = []
    for i in indexes:
        if runs and runs[-1][0] + runs[-1][1] == i and runs[-1][1] < longest:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


class Puller:
    def __init__(self, host: PullHost, lent: Lent) -> None:
        self._host = host
        self.lent = lent
        self.bytes_done = 0
        self._last_saved = 0.0

    @property
    def _key_hex(self) -> str:
        return self.lent.key.hex()[:40]

    async def _status(self, state: LoanState, *, reason: str = "") -> None:
        lending, lent = self._host.lending, self.lent
        await self._host.store(
            lending.write_status,
            lent.lender,
            lent.binding,
            state,
            now_ms(),
            bytes_done=self.bytes_done,
            reason=reason,
        )

    async def run(self) -> bool:
        """Pull until held (True), or until it fails or is refused (False, status says why)."""
        content = self.lent.binding.content
        why = await self._host.store(self._policy)
        if why:
            log.info("refused the loan of %s: %s", self.lent.binding.path, why)
            await self._status(LoanState.REFUSED, reason=why)
            return False
        pull = await self._host.store(self._host.lending.book.pull, self.lent.key)
        if pull is not None and pull.hash != content.hash:
            # The lender changed the file: what was verified belongs to the old content.
            await asyncio.to_thread(self._host.borrowed.discard, pull.staging)
            pull = None
        verified = Bitmap(chunk_count(content.size), pull.verified if pull else b"")
        self.bytes_done = sum(
            chunk_span(content.size, i)[1] for i in range(verified.count) if i in verified
        )
        if self.bytes_done:
            log.info(
                "resuming the pull of %s: %d of %d chunks already verified",
                self.lent.binding.path,
                verified.count - len(verified.missing()),
                verified.count,
            )
        await self._status(LoanState.FETCHING)
        problems: list[str] = []
        sources = await self._host.store(self._host.lending.holders, self.lent, now_ms())
        for source in sources:
            try:
                hashes = await self._pull_from(source, verified, pull)
            except (PeerUnavailableError, RefusedError, ProtocolError) as exc:
                problems.append(f"{self._host.lending.name_of(source)}: {exc}")
                log.info("pull of %s from %s: %s", self.lent.binding.path, source.short(), exc)
                if isinstance(exc, PeerUnavailableError):
                    await self._host.channels.drop(source)
                continue
            except NoSpaceError as exc:
                await self._status(LoanState.FAILED, reason=str(exc))
                return False
            if hashes is not None:
                return await self._place(hashes)
        reason = "; ".join(problems) or "no source is online"
        await self._status(LoanState.FAILED, reason=f"no source could serve it: {reason}")
        return False

    def _policy(self) -> str:
        s = self._host.settings
        lending, content = self._host.lending, self.lent.binding.content
        held = lending.book.held_bytes()
        old = lending.book.copy(self.lent.key)
        if old is not None:
            held -= old.size  # the new version replaces it
        return refusal(
            content.size,
            held_bytes=held,
            quota=s.quota,
            free=self._host.borrowed.free_bytes(),
            reserve=s.reserve,
        )

    async def _pull_from(self, source: NodeId, verified: Bitmap, pull: Pull | None) -> bytes | None:
        """Fetch what is missing from `source`; the chunk list once all is verified."""
        lent, content = self.lent, self.lent.binding.content
        channel = await self._host.channels.get(source)
        if channel is None:
            raise PeerUnavailableError("not reachable")
        timeout = self._host.settings.handshake_timeout_s * 2
        manifest = await channel.manifest(
            ManifestRequest(hash=content.hash, lender=lent.lender, binding=lent.envelope), timeout
        )
        _check_manifest(manifest, lent)
        if pull is None:
            pull = Pull(
                binding_key=lent.key,
                staging=self._key_hex,
                hash=content.hash,
                size=content.size,
                chunk_hashes=manifest.chunk_hashes,
                verified=bytes(verified.bits),
            )
            await self._host.store(self._host.lending.book.save_pull, pull)
        hashes = manifest.chunk_hashes
        staging = await asyncio.to_thread(self._host.borrowed.staging, pull.staging, content.size)
        try:
            for first, count in _runs(verified.missing(), _FETCH_RUN):
                request = FetchRequest(
                    hash=content.hash,
                    lender=lent.lender,
                    first_chunk=first,
                    count=count,
                    binding=lent.envelope,
                )
                expected = first
                async for chunk in channel.fetch(request):
                    if chunk.index != expected:
                        raise ProtocolError(f"sent chunk {chunk.index}, {expected} was next")
                    expected += 1
                    want = hashes[chunk.index * HASH_BYTES : (chunk.index + 1) * HASH_BYTES]
                    await asyncio.to_thread(_write_verified, staging, chunk.index, chunk.data, want)
                    verified.add(chunk.index)
                    self.bytes_done += len(chunk.data)
                    await self._maybe_save(staging, pull, verified)
                if expected != first + count:
                    raise PeerUnavailableError(f"the stream ended at chunk {expected}")
            await self._save(staging, pull, verified)
        finally:
            await asyncio.to_thread(staging.close)
        return hashes

    async def _maybe_save(self, staging: StagingFile, pull: Pull, verified: Bitmap) -> None:
        if time.monotonic() - self._last_saved >= self._host.settings.progress_interval_s:
            await self._save(staging, pull, verified)
            await self._status(LoanState.FETCHING)

    async def _save(self, staging: StagingFile, pull: Pull, verified: Bitmap) -> None:
        # The bytes reach the disk before the record that says they are verified.
        await asyncio.to_thread(staging.sync)
        saved = Pull(
            binding_key=pull.binding_key,
            staging=pull.staging,
            hash=pull.hash,
            size=pull.size,
            chunk_hashes=pull.chunk_hashes,
            verified=bytes(verified.bits),
        )
        await self._host.store(self._host.lending.book.save_pull, saved)
        self._last_saved = time.monotonic()

    async def _place(self, hashes: bytes) -> bool:
        lent, host = self.lent, self._host
        lender_name = host.lending.name_of(lent.lender)
        parts = copy_parts(lender_name, lent.binding)
        old = await host.store(host.lending.book.copy, lent.key)
        replacing = None
        if old is not None:
            replacing = FileId(device=old.device, inode=old.inode, mtime_ns=old.mtime_ns)
            if old.parts != parts:
                # Same loan, other place (the lender was renamed): the old copy goes.
                await asyncio.to_thread(host.borrowed.remove, old.parts, replacing)
                replacing = None
        try:
            placed = await asyncio.to_thread(
                host.borrowed.place,
                self._key_hex,
                parts,
                lent.binding.content.hash,
                replacing=replacing,
            )
        except PlacementError as exc:
            log.warning("cannot place %s: %s", "/".join(parts), exc)
            await self._status(LoanState.FAILED, reason=str(exc))
            return False
        copy = Copy(
            binding_key=lent.key,
            lender=lent.lender,
            lender_name=lender_name,
            library=lent.binding.library,
            path=lent.binding.path,
            hash=lent.binding.content.hash,
            size=lent.binding.content.size,
            chunk_hashes=hashes,
            device=placed.device,
            inode=placed.inode,
            mtime_ns=placed.mtime_ns,
        )
        await host.store(host.lending.book.placed, copy)
        # Recorded: the staging name may go (until now it kept the copy findable).
        await asyncio.to_thread(host.borrowed.discard, self._key_hex)
        self.bytes_done = lent.binding.content.size
        await self._status(LoanState.HELD)
        log.info("holding %s from %s", "/".join(parts[1:]), lender_name)
        return True


def _check_manifest(manifest: Manifest, lent: Lent) -> None:
    content = lent.binding.content
    if manifest.hash != content.hash or manifest.size != content.size:
        raise ProtocolError("its manifest is for other content than the loan's")
    if xxhash.xxh3_128_digest(manifest.chunk_hashes) != content.chunk_root:
        raise ProtocolError("its chunk list does not match the loan's chunk root")


def _write_verified(staging: StagingFile, index: int, data: bytes, expected: bytes) -> None:
    if xxhash.xxh3_128_digest(data) != expected:
        raise ProtocolError(f"chunk {index} does not match its hash")
    staging.write_chunk(index, data)


__all__ = ["Bitmap", "Puller"]
