"""Build a bundle from files and directories without writing a temporary tar.

First pass: hash every file (the hashes go into ``metadata.txt``).  Then the tar is laid
out in advance -- header bytes from ``tarfile.TarInfo.tobuf``, file bytes read from disk
at their offsets, ``metadata.txt`` last, end blocks -- so its exact length is known before
the first byte is sent and ``BundleStream`` can serve it from any offset (a resumed tus
upload starts mid-way).  The bytes are those ``tarfile`` itself would write.
"""
from __future__ import annotations

import bisect
import dataclasses
import datetime
import hashlib
import io
import json
import logging
import mimetypes
import os
import stat
import tarfile
from typing import Callable, Iterable

from ..intake.files import unlink_quietly
from ..protocol import (DATA_ROOT, DESTINATION, FILES_TABLE, KEY_VALUE_TABLE, METADATA_NAME,
                        TRANSACTION)

logger = logging.getLogger(__name__)

TAR_FORMAT = tarfile.PAX_FORMAT
HASH_BLOCK = 1024 * 1024

OnBytes = Callable[[int], None]


class BundleInputError(ValueError):
    """The files given cannot make a bundle (missing, special, clashing names...)."""


class SourceChanged(OSError):
    """A file changed between hashing and sending; its hash in metadata.txt would be wrong."""


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One file on disk and the member it becomes (``data/<relative path>``)."""

    path: str
    relative: str  # below data/, '/'-separated
    size: int
    mtime: float
    ctime: float

    @property
    def member(self) -> str:
        """The tar member name."""
        return f"{DATA_ROOT}/{self.relative}"


def collect(paths: Iterable[str]) -> list[SourceFile]:
    """Files named, and files below directories named, each under its own basename."""
    found: dict[str, SourceFile] = {}
    for given in paths:
        path = os.path.abspath(given)
        if not os.path.exists(path):
            raise BundleInputError(f"{given}: no such file or directory")
        base = os.path.basename(path.rstrip(os.sep))
        if os.path.isdir(path):
            for folder, dirs, names in os.walk(path):
                dirs.sort()
                for name in dirs:
                    if os.path.islink(os.path.join(folder, name)):
                        logger.warning("not following the directory link %s",
                                       os.path.join(folder, name))
                for name in sorted(names):
                    full = os.path.join(folder, name)
                    relative = os.path.relpath(full, os.path.dirname(path))
                    _add(found, full, relative)
        else:
            _add(found, path, base)
    if not found:
        raise BundleInputError("no files to send: the paths given hold no regular file")
    return [found[key] for key in sorted(found)]


def _add(found: dict, path: str, relative: str) -> None:
    relative = relative.replace(os.sep, "/")
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise BundleInputError(f"{path!r}: the name is not valid UTF-8; rename it") from None
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise BundleInputError(f"{path}: not a regular file (only files can be archived)")
    if relative in found:
        raise BundleInputError(f"{path} and {found[relative].path} would both be stored as "
                               f"{DATA_ROOT}/{relative}; rename one of them")
    found[relative] = SourceFile(path, relative, info.st_size, info.st_mtime, info.st_ctime)


def hash_file(source: SourceFile, hashtype: str, on_bytes: OnBytes | None = None) -> str:
    """The hex digest of a file, read once in large blocks."""
    hasher = hashlib.new(hashtype)
    seen = 0
    with open(source.path, "rb") as handle:
        while True:
            block = handle.read(HASH_BLOCK)
            if not block:
                break
            hasher.update(block)
            seen += len(block)
            if on_bytes:
                on_bytes(len(block))
    if seen != source.size:
        raise SourceChanged(f"{source.path} changed size while it was read ({source.size} -> "
                            f"{seen} bytes); run again once it is complete")
    return hasher.hexdigest()


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(
        timespec="seconds")


def transaction_entries(fields: dict, key_values: Iterable[tuple[str, str]]) -> list[dict]:
    """``Transactions.<field>`` and ``TransactionKeyValue`` entries, in the uploaders' shape."""
    entries = [{DESTINATION: TRANSACTION + name, "value": value}
               for name, value in fields.items()]
    entries += [{DESTINATION: KEY_VALUE_TABLE, "key": key, "value": value}
                for key, value in key_values]
    return entries


def file_entries(files: list[SourceFile], hashsums: list[str], hashtype: str) -> list[dict]:
    """``Files`` entries with ``subdir`` in the ``data/...`` form docs/PROTOCOL.md shows.

    That form is what the original server's rule (drop one leading ``data``) reads right
    for every file.  Our server prefers ``data/<subdir>/<name>`` when such a member exists,
    so where a file's ``data/...`` form would name another member (a folder literally named
    ``data`` holding the same path), that entry is written without the prefix instead.
    """
    members = {source.member for source in files}
    entries = []
    for source, hashsum in zip(files, hashsums):
        directory, _, name = source.relative.rpartition("/")
        subdir = f"{DATA_ROOT}/{directory}/" if directory else f"{DATA_ROOT}/"
        if f"{DATA_ROOT}/{subdir}{name}" in members:
            subdir = directory
        entries.append({
            DESTINATION: FILES_TABLE,
            "name": name,
            "subdir": subdir,
            "size": source.size,
            "hashtype": hashtype,
            "hashsum": hashsum,
            "mimetype": mimetypes.guess_type(name)[0] or "application/octet-stream",
            "ctime": _iso(source.ctime),
            "mtime": _iso(source.mtime),
        })
    return entries


def _header(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o644
    return info.tobuf(TAR_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    return tarfile.NUL * (-size % tarfile.BLOCKSIZE)


@dataclasses.dataclass(frozen=True)
class Segment:
    """A run of the tar: literal bytes, or the bytes of a file on disk."""

    start: int
    length: int
    data: bytes | None = None
    source: SourceFile | None = None


class BundleLayout:
    """A bundle laid out in advance: its metadata, its exact length, its bytes on demand."""

    def __init__(self, files: list[SourceFile], metadata: list):
        self.files = files
        self.metadata = metadata
        self.metadata_bytes = json.dumps(metadata, ensure_ascii=False).encode("utf-8")
        self.segments: list[Segment] = []
        self.length = 0
        for source in files:
            self._literal(_header(source.member, source.size, source.mtime))
            self._file(source)
            self._literal(_padding(source.size))
        self._literal(_header(METADATA_NAME, len(self.metadata_bytes), _latest(files)))
        self._literal(self.metadata_bytes + _padding(len(self.metadata_bytes)))
        end = tarfile.NUL * (2 * tarfile.BLOCKSIZE)
        self._literal(end + tarfile.NUL * (-(self.length + len(end)) % tarfile.RECORDSIZE))
        self._starts = [segment.start for segment in self.segments]

    @classmethod
    def build(cls, paths: Iterable[str], transaction: dict | None = None,
              key_values: Iterable[tuple[str, str]] = (), hashtype: str = "sha1",
              on_hashed: OnBytes | None = None) -> "BundleLayout":
        """Collect the files, hash them, and lay the bundle out."""
        return cls.from_files(collect(paths), transaction, key_values, hashtype, on_hashed)

    @classmethod
    def from_files(cls, files: list[SourceFile], transaction: dict | None = None,
                   key_values: Iterable[tuple[str, str]] = (), hashtype: str = "sha1",
                   on_hashed: OnBytes | None = None) -> "BundleLayout":
        """Hash collected files and lay the bundle out."""
        try:
            hashlib.new(hashtype)
        except ValueError:
            raise BundleInputError(f"unknown hash type {hashtype!r}") from None
        sums = [hash_file(source, hashtype, on_hashed) for source in files]
        metadata = (transaction_entries(transaction or {}, key_values)
                    + file_entries(files, sums, hashtype))
        return cls(files, metadata)

    def _literal(self, data: bytes) -> None:
        if data:
            self.segments.append(Segment(self.length, len(data), data=data))
            self.length += len(data)

    def _file(self, source: SourceFile) -> None:
        if source.size:
            self.segments.append(Segment(self.length, source.size, source=source))
            self.length += source.size

    def fingerprint(self) -> str:
        """Names the exact byte stream: same files, contents, times and fields, same value."""
        return hashlib.sha256(self.metadata_bytes).hexdigest()

    def open(self) -> "BundleStream":
        """A seekable, read-only file object over the bundle's bytes."""
        return BundleStream(self)

    def segment_at(self, offset: int) -> Segment:
        """The segment holding byte ``offset``."""
        return self.segments[bisect.bisect_right(self._starts, offset) - 1]

    def write_to(self, target, on_bytes: OnBytes | None = None, block: int = HASH_BLOCK) -> int:
        """Write the whole bundle to a binary file object; return the byte count."""
        written = 0
        with self.open() as stream:
            while True:
                data = stream.read(block)
                if not data:
                    return written
                target.write(data)
                written += len(data)
                if on_bytes:
                    on_bytes(len(data))


def save(bundle: BundleLayout, target: str, on_bytes: OnBytes | None = None) -> None:
    """Write the bundle to the path ``target`` without following a link planted there.

    A new or regular file is written as ``TARGET.part`` (created afresh, never through a
    link) and renamed over ``TARGET``; an existing FIFO or device (``/dev/null``) is
    written directly and stays what it is; a symbolic link is refused.
    """
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISLNK(mode):
        raise BundleInputError(f"{target} is a symbolic link; give the path it points to "
                               "(or '-' for standard output)")
    if mode is not None and not stat.S_ISREG(mode):
        descriptor = os.open(target, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        if stat.S_ISREG(os.fstat(descriptor).st_mode):  # swapped since the lstat
            os.close(descriptor)
            raise BundleInputError(f"{target} changed while it was being opened; try again")
        with os.fdopen(descriptor, "wb") as handle:
            bundle.write_to(handle, on_bytes)
        return
    partial = target + ".part"
    unlink_quietly(partial)  # a leftover of ours, or a link someone put there: not followed
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            bundle.write_to(handle, on_bytes)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        unlink_quietly(partial)
        raise


def _latest(files: list[SourceFile]) -> float:
    return max((source.mtime for source in files), default=0.0)


class BundleStream(io.RawIOBase):
    """The bundle's bytes as a file: ``read`` from any position, ``len()`` is the total."""

    def __init__(self, bundle: BundleLayout):
        super().__init__()
        self.bundle = bundle
        self.position = 0
        self._handle = None
        self._handle_source: SourceFile | None = None

    def __len__(self) -> int:
        return self.bundle.length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.bundle.length}
        self.position = max(0, base[whence] + offset)
        return self.position

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the current position (never crossing a segment)."""
        if self.position >= self.bundle.length or size == 0:
            return b""
        segment = self.bundle.segment_at(self.position)
        inside = self.position - segment.start
        want = segment.length - inside if size is None or size < 0 else min(
            size, segment.length - inside)
        if segment.data is not None:
            data = segment.data[inside:inside + want]
        else:
            data = self._read_file(segment.source, inside, want)
        self.position += len(data)
        return data

    def _read_file(self, source: SourceFile, offset: int, count: int) -> bytes:
        if self._handle_source is not source:
            self._close_handle()
            self._handle = open(source.path, "rb")  # pylint: disable=consider-using-with
            self._handle_source = source
        data = os.pread(self._handle.fileno(), count, offset)
        if len(data) < count:
            raise SourceChanged(f"{source.path} shrank after it was hashed (it had {source.size} "
                                f"bytes); run again once it is complete")
        return data

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._handle_source = None

    def close(self) -> None:
        self._close_handle()
        super().close()


class Window(io.RawIOBase):
    """``count`` bytes of a stream from ``offset`` on: one tus PATCH body, with progress."""

    def __init__(self, stream, offset: int, count: int, on_bytes: OnBytes | None = None):
        super().__init__()
        self.stream = stream
        self.remaining = count
        self.count = count
        self.on_bytes = on_bytes
        stream.seek(offset)

    def __len__(self) -> int:
        return self.count

    def tell(self) -> int:
        # requests sends len() - tell() as Content-Length
        return self.count - self.remaining

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        want = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self.stream.read(want)
        self.remaining -= len(data)
        if self.on_bytes and data:
            self.on_bytes(len(data))
        return data
