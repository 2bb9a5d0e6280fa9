"""Error types: each carries a message a person can act on.

The worker turns an ``IngestError`` into a ``FAILED`` job in one place; the web
layer turns the HTTP-facing ones into status codes in one place.
"""
from __future__ import annotations

from typing import Iterable

MAX_DETAILS = 50  # problems listed in a message; the rest are counted


class Problems:
    """Problems found in one pass: the first ``keep`` kept, every one counted.

    Hostile input can hold millions of problems; a list of them all would cost memory
    in proportion, so only the ones a message shows are built up.
    """

    def __init__(self, keep: int = MAX_DETAILS):
        self.keep = keep
        self.kept: list[str] = []
        self.total = 0

    def append(self, problem: str) -> None:
        """Count a problem; keep it if fewer than ``keep`` are kept."""
        self.total += 1
        if len(self.kept) < self.keep:
            self.kept.append(problem)

    def __len__(self) -> int:
        return self.total

    def __iter__(self):
        return iter(self.kept)


class IngestError(Exception):
    """Base of every expected failure; ``str(err)`` is the message shown to the client."""

    def __init__(self, message: str, details: Iterable[str] | None = None):
        self.message = message
        self.details = list(details or [])
        self.omitted = len(details) - len(self.details) if details else 0  # counted, not kept
        super().__init__(message)

    def __str__(self) -> str:
        return self.full_message()

    def full_message(self) -> str:
        """The message, followed by one line per detail."""
        if not self.details:
            return self.message
        shown = self.details[:MAX_DETAILS]
        more = len(self.details) - len(shown) + self.omitted
        lines = [self.message] + [f"  - {line}" for line in shown]
        if more:
            lines.append(f"  ... and {more} more")
        return "\n".join(lines)


class BundleError(IngestError):
    """The uploaded bundle is not a safe, complete tar of the expected shape."""


class MetadataError(IngestError):
    """metadata.txt is missing, malformed or disagrees with the bundle."""


class ChecksumMismatch(IngestError):
    """A file's bytes do not match the size or hash its metadata declares."""

    def __init__(self, path: str, algorithm: str, expected: str, found: str):
        self.path, self.algorithm, self.expected, self.found = path, algorithm, expected, found
        super().__init__(f"{path}: {algorithm} mismatch, expected {expected} got {found}")


class SizeMismatch(IngestError):
    """A file holds a different number of bytes than declared."""

    def __init__(self, path: str, expected: int, found: int):
        self.path, self.expected, self.found = path, expected, found
        super().__init__(f"{path}: size mismatch, metadata says {expected} bytes, bundle has {found}")


class PolicyRejected(IngestError):
    """The policy check refused the bundle."""


class ArchiveError(IngestError):
    """The archive could not store, move or remove a file."""


class MetadataSinkError(IngestError):
    """The metadata could not be recorded."""


class ServiceUnavailable(IngestError):
    """A remote service could not be reached after the retries; worth retrying later."""


class UploadError(IngestError):
    """The HTTP upload itself went wrong (client gone, too large, disk full)."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


class JobNotFound(IngestError):
    """No job has the asked-for id."""


class AdminRefused(IngestError):
    """An administrator's command would break the job state machine or lose data."""
