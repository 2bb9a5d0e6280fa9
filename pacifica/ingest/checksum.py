"""Hashing while bytes stream, and the check that follows."""
from __future__ import annotations

import functools
import hashlib
from typing import BinaryIO, Callable

from .errors import ChecksumMismatch, SizeMismatch

# Variable-length digests need a length hashlib cannot know from the name alone.
_UNSUPPORTED = {"shake_128", "shake_256"}


def digest_size_of(name: str) -> int | None:
    """Bytes in a digest of this hashlib algorithm, or None if hashlib does not know it."""
    if not isinstance(name, str) or len(name) > 64:
        return None
    return _digest_size(name.lower())


@functools.lru_cache(maxsize=64)  # asked twice for each of a bundle's entries
def _digest_size(name: str) -> int | None:
    if name in _UNSUPPORTED:
        return None
    try:
        return hashlib.new(name).digest_size
    except (ValueError, TypeError):
        return None


def new_hasher(name: str):
    """A fresh hashlib object for a name metadata.txt gives."""
    return hashlib.new(name.lower())


class Tally:
    """Hashes and counts bytes as they pass; ``verify`` checks them against the metadata."""

    def __init__(self, size: int, hashtype: str, on_bytes: Callable[[int], None] | None = None):
        self.remaining = size
        self.hasher = new_hasher(hashtype)
        self.count = 0
        self.on_bytes = on_bytes

    def update(self, view) -> None:
        """Count and hash bytes read."""
        self.hasher.update(view)
        self.count += len(view)
        self.remaining -= len(view)
        if self.on_bytes:
            self.on_bytes(len(view))


    def passed_unread(self, count: int, sha1: str) -> None:
        """Count bytes copied without reading them, whose SHA-1 was computed as they arrived."""
        self.hasher = KnownDigest("sha1", sha1)
        self.count += count
        self.remaining -= count
        if self.on_bytes:
            self.on_bytes(count)

    def verify(self, path: str, expected_size: int, expected_hash: str) -> None:
        """Raise unless exactly the declared bytes, with the declared hash, went through."""
        if self.count != expected_size:
            raise SizeMismatch(path, expected_size, self.count)
        found = self.hasher.hexdigest()
        if found != expected_hash.lower():
            raise ChecksumMismatch(path, self.hasher.name, expected_hash.lower(), found)


class KnownDigest:
    """A digest computed earlier over the same bytes, standing where a hasher would."""

    def __init__(self, name: str, hexdigest: str):
        self.name = name
        self._hexdigest = hexdigest.lower()

    def hexdigest(self) -> str:
        """The digest, as hashlib spells it."""
        return self._hexdigest


class HashingReader(Tally):
    """Reads at most ``size`` bytes from a stream, hashing and counting what passes."""

    def __init__(self, stream: BinaryIO, size: int, hashtype: str,
                 on_bytes: Callable[[int], None] | None = None):
        super().__init__(size, hashtype, on_bytes)
        self.stream = stream

    def readinto(self, buffer) -> int:
        """Fill (part of) a buffer; 0 at the end."""
        view = memoryview(buffer)[: max(min(len(buffer), self.remaining), 0)]
        if not len(view):
            return 0
        got = self.stream.readinto(view)
        if got:
            self.update(view[:got])
        return got or 0

    def read(self, size: int = -1) -> bytes:
        """Read up to size bytes (all that is left with -1)."""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        if size <= 0:
            return b""
        data = self.stream.read(size)
        if data:
            self.update(data)
        return data

    def __iter__(self):
        while True:
            chunk = self.read(1024 * 1024)
            if not chunk:
                return
            yield chunk
