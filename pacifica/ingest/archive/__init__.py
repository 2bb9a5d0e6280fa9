"""Archive backends: where verified files go.  The pipeline sees only ``ArchiveBackend``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Callable, Optional, Protocol

from ..checksum import HashingReader, Tally
from ..config import Settings
from ..extent import Extent


@dataclass(frozen=True)
class FileSource:
    """One file to store: how to (re)open its bytes and what they must hash to."""

    label: str  # the bundle path, for messages
    size: int
    mtime: float
    hashtype: str
    hashsum: str
    opener: Callable[[], BinaryIO]
    on_bytes: Optional[Callable[[int], None]] = None
    extent: Optional[Extent] = None  # set when the bytes sit in a file (a bundle member)
    known_sha1: Optional[str] = None  # the extent's SHA-1, computed as the body arrived

    def open(self) -> HashingReader:
        """A fresh reader that hashes and counts as it goes (call again to retry)."""
        return HashingReader(self.opener(), self.size, self.hashtype, self.on_bytes)

    def tally(self) -> Tally:
        """A fresh hasher and counter for bytes a backend reads from ``extent`` itself."""
        return Tally(self.size, self.hashtype, self.on_bytes)

    def verify(self, reader: Tally) -> None:
        """Raise SizeMismatch/ChecksumMismatch unless the reader saw exactly the declared bytes."""
        reader.verify(self.label, self.size, self.hashsum)


class ArchiveBackend(Protocol):
    """Stores, moves and removes files by file id."""

    def store(self, file_id: int, source: FileSource) -> None:
        """Copy the source's bytes; verify them before the file becomes visible (if it can)."""

    def move(self, file_id: int, path: str, source: FileSource) -> None:
        """Take a checked file at ``path``, held open as ``source``, under a new file id."""

    def remove(self, file_id: int) -> bool:
        """Delete a stored file; False when the backend cannot delete."""

    def sync(self) -> None:
        """Make everything stored so far durable."""

    def read(self, file_id: int) -> BinaryIO:
        """The stored bytes of a file (a fixity audit reads them back)."""

    def describe(self) -> str:
        """Where the files go, for messages."""


def from_settings(settings: Settings) -> ArchiveBackend:
    """The archive the settings name: the Archive Interface URL if set, else a local directory."""
    if settings.services.archiveinterface:
        from .http import HttpArchive  # pylint: disable=import-outside-toplevel
        return HttpArchive.from_settings(settings)
    from .local import LocalArchive  # pylint: disable=import-outside-toplevel
    return LocalArchive.from_settings(settings)
