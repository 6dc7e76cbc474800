"""A loan as a borrower or a source sees it: the binding with its lender and signed
envelope (`Lent`), the key a folder loan's files have in the loan book, and where a copy
lands."""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh.core.entries import LibraryEntry
from mesh.core.envelope import Envelope
from mesh.core.ids import NodeId
from mesh.core.loans import binding_key
from mesh.core.paths import lender_folder
from mesh.core.records import Binding, BindingEnd, Content, ManifestFile


@dataclass(frozen=True, kw_only=True, slots=True)
class Lent:
    """A binding with its lender and envelope (the signed proof a source can check)."""

    lender: NodeId
    binding: Binding
    envelope: Envelope
    # A file of a folder loan: the folder binding's key (`binding` is then the file's
    # share of it, made here: path and content from the lender's signed manifest).
    folder_key: bytes = b""

    @property
    def key(self) -> bytes:
        if self.folder_key:
            return member_key(self.folder_key, self.binding.path)
        return binding_key(self.lender, self.binding)

    def member(self, file: ManifestFile, folder_key: bytes = b"") -> Lent:
        """The loan of one file of this folder loan (`folder_key`: its key, if known)."""
        b = self.binding
        binding = Binding(
            borrower=b.borrower,
            library=b.library,
            path=file.path,
            content=Content(hash=file.hash, size=file.size, chunk_root=file.chunk_root),
            until_ms=b.until_ms,
            ended=b.ended,
            created_ms=b.created_ms,
        )
        return Lent(
            lender=self.lender,
            binding=binding,
            envelope=self.envelope,
            folder_key=folder_key or self.key,
        )


@dataclass(kw_only=True, slots=True)
class FolderMembers:
    """A folder loan's file keys and the loans of its files still to pull, as the plan
    last made them, kept across passes for as long as the folder loan is `lent`: a pass
    over 10,000 files then makes neither 10,000 keys nor thousands of loans again."""

    lent: Lent
    keys: dict[str, bytes] = field(default_factory=dict)
    members: dict[str, Lent] = field(default_factory=dict)

    def key(self, path: str) -> bytes:
        key = self.keys.get(path)
        if key is None:
            key = self.keys[path] = member_key(self.lent.key, path)
        return key

    def member(self, file: ManifestFile) -> Lent:
        member = self.members.get(file.path)
        if member is not None:
            c = member.binding.content
            if (c.hash, c.size, c.chunk_root) == (file.hash, file.size, file.chunk_root):
                return member
        member = self.members[file.path] = self.lent.member(file, self.lent.key)
        return member


def member_key(folder_key: bytes, path: str) -> bytes:
    """The key of a folder loan's file in the loan book (copies, pulls): the folder's
    key, a separator no binding key has there, and the path."""
    return folder_key + MEMBER_SEPARATOR + path.encode()


MEMBER_SEPARATOR = b"\0/"


def content_of(entry: LibraryEntry) -> Content:
    return Content(hash=entry.hash, size=entry.size, chunk_root=entry.chunk_root)


def active(binding: Binding, now_ms: int) -> bool:
    return binding.ended is BindingEnd.NONE and not (
        binding.until_ms and now_ms >= binding.until_ms
    )


def copy_parts(lender: NodeId, binding: Binding) -> list[str]:
    """Where a copy lands: under its lender's folder, which is its node id's for good (the
    user sees it by the lender's name: fs/lender_links.py)."""
    return [lender_folder(lender), binding.library, *binding.path.split("/")]


__all__ = ["MEMBER_SEPARATOR", "Lent", "active", "content_of", "copy_parts", "member_key"]
