"""SHA-1 of a tar's big members, computed while the body arrives, so the worker need not re-read them.

The frontend feeds each piece of a POSTed body to a ``BodyDigester`` (a thread of its own:
``hashlib`` lets go of the GIL, so hashing runs beside the socket reads and disk writes).
It walks the tar's 512-byte headers as they stream past and hashes the data of every regular
member of at least ``MIN_MEMBER_SIZE`` bytes.  What it records is a plain fact about the
file, whatever the headers meant: *the bytes at [offset, offset + size) of this file hash to
H*.  So a header this walk reads differently from the worker's tar reader cannot mislead
anyone: the worker looks digests up by its own (offset, size) and uses only exact matches;
anything it does not find it hashes itself, as it always did.

The digests are written beside the bundle (``<bundle>.sha1``) before the bundle gets its
final name, with the bundle file's identity (inode, size, modification time): they count
only for that very file, never for another one written at the same path later.  Memory is bounded: one header, at most one pax header's data
(``MAX_EXTENSION_SIZE``), a few queued pieces, and one line per big member.
"""
from __future__ import annotations

import hashlib
import logging
import os
import queue
import tarfile
import threading

from .files import unlink_quietly, written_whole
from .volume import digests as digests_path, partial

logger = logging.getLogger(__name__)

MIN_MEMBER_SIZE = 4 * 1024 * 1024  # below this the worker's one read of a member is cheap
MAX_EXTENSION_SIZE = 1024 * 1024
FORMAT_LINE = "pacifica-ingest member sha1 1"
BLOCK = tarfile.BLOCKSIZE
_PAX = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE)
_SKIPPED_EXTENSIONS = (tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_QUEUED_PIECES = 8


class TarDigester:
    """Walks a tar fed in pieces and hashes its big regular members (not thread-safe)."""

    def __init__(self, min_size: int = MIN_MEMBER_SIZE):
        self.min_size = min_size
        self.records: list[tuple[int, int, str]] = []  # (offset, size, sha1 hex)
        self.position = 0  # bytes of the body seen so far
        self.stopped = False
        self._header = bytearray()
        self._skip = 0  # bytes to pass over (padding, extension data, small members)
        self._data_left = 0  # bytes of the member being hashed still to come
        self._hasher = None
        self._member: tuple[int, int] | None = None
        self._pax_left = 0
        self._pax = bytearray()
        self._pax_padding = 0
        self._pending_size: int | None = None

    def feed(self, piece) -> None:
        """Take the next bytes of the body."""
        view = memoryview(piece)
        while len(view) and not self.stopped:
            view = self._step(view)

    def _step(self, view: memoryview) -> memoryview:
        if self._data_left:
            taken = min(self._data_left, len(view))
            self._hasher.update(view[:taken])
            self._data_left -= taken
            if not self._data_left:
                offset, size = self._member
                self.records.append((offset, size, self._hasher.hexdigest()))
                self._hasher = None
            return self._advance(view, taken)
        if self._pax_left:
            taken = min(self._pax_left, len(view))
            self._pax += view[:taken]
            self._pax_left -= taken
            if not self._pax_left:
                self._pending_size = _pax_size(bytes(self._pax))
                self._pax = bytearray()
                self._skip = self._pax_padding
            return self._advance(view, taken)
        if self._skip:
            taken = min(self._skip, len(view))
            self._skip -= taken
            return self._advance(view, taken)
        taken = min(BLOCK - len(self._header), len(view))
        self._header += view[:taken]
        view = self._advance(view, taken)
        if len(self._header) == BLOCK:
            block, self._header = bytes(self._header), bytearray()
            self._header_block(block)
        return view

    def _advance(self, view: memoryview, taken: int) -> memoryview:
        self.position += taken
        return view[taken:]

    def _header_block(self, block: bytes) -> None:
        """Decide what the bytes after a header are: hashed, collected or passed over."""
        size = _size_field(block)
        if size is None:  # the end-of-archive zeros, or not a tar header at all
            self.stopped = True
            return
        kind = block[156:157]
        padding = -size % BLOCK
        if kind in _PAX:
            if size > MAX_EXTENSION_SIZE:
                self.stopped = True
                return
            self._pax_left, self._pax_padding = size, padding
            self._pending_size = None
            if not size:
                self._skip = padding
            return
        if kind in _SKIPPED_EXTENSIONS:
            self._skip = size + padding
            return
        if self._pending_size is not None:
            size, padding = self._pending_size, -self._pending_size % BLOCK
            self._pending_size = None
        if kind not in tarfile.REGULAR_TYPES and kind in tarfile.SUPPORTED_TYPES:
            return  # links, directories, devices: no data follows
        if size >= self.min_size:
            self._member = (self.position, size)
            self._hasher = hashlib.sha1()
            self._data_left = size
            self._skip = padding
        else:
            self._skip = size + padding


def _size_field(block: bytes) -> int | None:
    """A header's size, or None where the walk must stop (zeros, bad checksum, bad number)."""
    if not any(block):
        return None
    try:
        if tarfile.nti(block[148:156]) not in tarfile.calc_chksums(block):
            return None
        size = tarfile.nti(block[124:136])
    except tarfile.HeaderError:
        return None
    return size if size >= 0 else None


def _pax_size(data: bytes) -> int | None:
    """The ``size`` record of a pax header's data, if it holds a plain decimal one."""
    for record in data.split(b"\n"):
        _, _, field = record.partition(b" ")
        key, equals, value = field.partition(b"=")
        if equals and key == b"size" and value.isdigit() and len(value) <= 19:
            return int(value)
    return None


class BodyDigester:
    """Runs a TarDigester on its own thread, fed with the body's pieces as they arrive."""

    def __init__(self, min_size: int = MIN_MEMBER_SIZE):
        self.walk = TarDigester(min_size)
        self._pieces: queue.Queue = queue.Queue(_QUEUED_PIECES)
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="body-digests", daemon=True)
        self._thread.start()

    def feed(self, piece: bytes) -> None:
        """Queue a piece (bytes, not a reused buffer); waits when the hasher is behind."""
        if not self._failed:
            self._pieces.put(piece)

    def _run(self) -> None:
        while True:
            piece = self._pieces.get()
            if piece is None:
                return
            if self._failed:
                continue
            try:
                self.walk.feed(piece)
            except Exception:  # pylint: disable=broad-except
                logger.exception("hashing the body's members failed; the worker will hash them")
                self._failed = True

    def close(self) -> list[tuple[int, int, str]]:
        """Stop the thread; the (offset, size, sha1) of every big member it saw whole."""
        self._pieces.put(None)
        self._thread.join()
        return [] if self._failed else self.walk.records

    def save(self, body_fd: int, bundle_path: str) -> None:
        """Stop the thread; write its digests of the body open as ``body_fd`` (the file that
        is about to be named ``bundle_path``) durably beside that name, if there are any."""
        records = self.close()
        if not records:
            return
        target = digests_path(bundle_path)
        lines = [_identity(os.fstat(body_fd))]
        lines += [f"{offset} {size} {digest}" for offset, size, digest in records]
        with written_whole(target, partial(target), "w", encoding="ascii") as handle:
            handle.write("\n".join(lines) + "\n")


def _identity(stat: os.stat_result) -> str:
    return f"{FORMAT_LINE} {stat.st_ino} {stat.st_size} {stat.st_mtime_ns}"


def load(bundle_path: str, bundle_fd: int) -> dict[tuple[int, int], str]:
    """The digests kept beside a bundle, by (offset, size), if they were made of the very file
    open as ``bundle_fd``; empty otherwise."""
    try:
        with open(digests_path(bundle_path), encoding="ascii") as handle:
            lines = handle.read(64 * 1024 * 1024).splitlines()
        identity = _identity(os.fstat(bundle_fd))
    except (OSError, UnicodeDecodeError):
        return {}
    if not lines or lines[0] != identity:
        return {}
    digests = {}
    for line in lines[1:]:
        parts = line.split(" ")
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit() and len(parts[2]) == 40:
            digests[(int(parts[0]), int(parts[1]))] = parts[2]
    return digests


def discard(bundle_path: str) -> None:
    """Remove a bundle's digests (with the bundle)."""
    unlink_quietly(digests_path(bundle_path))
