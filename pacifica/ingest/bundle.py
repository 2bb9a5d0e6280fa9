"""A safe reader of tar bundles: only regular files under data/ plus metadata.txt.

A tar of plain headers (regular files and folders, no extension headers: what our client
and most tools write) is read in one pass by ``tarheaders.plain_headers``.  Any other is
read twice: every header is first checked by our own streaming pre-scan
(``tarheaders.check_headers``), then read once with ``tarfile`` (pax, GNU long names and
all).  Both give the same members to the same checks below.  Member
bytes are then read straight from the bundle file at their offsets, so no
member is ever extracted by tarfile and no link is ever followed.

A compressed bundle (gzip, bzip2 or xz, told by its magic bytes) is first
decompressed, streaming, into an uncompressed copy beside it on the volume
(``<bundle>.unpacked``); the copy is capped (see ``BundleLimits``) so a
decompression bomb stops with a clear message long before it fills the disk.
Decompressing once keeps the rest of the reader unchanged: random access at
offsets, one pass per file, no seeking inside a compressed stream.
"""
from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import os
import shutil
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Iterator

from .config import IngestSettings
from .errors import BundleError, MetadataError, Problems
from .extent import Extent
from .filetable import MEMBER, OTHER, FileTable, Member
from .intake import member_digests
from .intake.files import unlink_quietly, written_whole
from .intake.volume import partial, unpacked
from .metadata import split_path
from .protocol import DATA_ROOT, METADATA_NAME
from .tarheaders import NotPlain, check_headers, plain_headers

logger = logging.getLogger(__name__)

BLOCK = 512
UNPACK_CHUNK = 1024 * 1024

# magic bytes -> (format name, opener of a decompressing reader)
COMPRESSIONS = (
    (b"\x1f\x8b", "gzip", gzip.open),
    (b"BZh", "bzip2", bz2.open),
    (b"\xfd7zXZ\x00", "xz", lzma.open),
)
DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


@dataclass(frozen=True)
class BundleLimits:
    """Bounds that keep a hostile bundle from costing more than it should ([ingest] settings
    of the same names; their defaults).  A 0 limit is no limit."""

    max_members: int = IngestSettings.max_members
    max_metadata_size: int = IngestSettings.max_metadata_size
    max_total_size: int = IngestSettings.max_total_size  # beyond the bundle's own size
    max_bundle_size: int = IngestSettings.max_bundle_size  # caps a decompressed bundle too
    max_unpack_ratio: int = IngestSettings.max_unpack_ratio  # decompressed/compressed size
    min_free_space: int = IngestSettings.min_free_space  # left free when decompressing

    @classmethod
    def from_settings(cls, ingest: IngestSettings) -> "BundleLimits":
        """The limits the settings give."""
        return cls(**{item.name: getattr(ingest, item.name) for item in fields(cls)})


class Members(Mapping):
    """The bundle's regular files under data/ by normalised name, read from its file table."""

    def __init__(self, table: FileTable):
        self.table = table

    def __getitem__(self, name: str) -> Member:
        member = self.table.member(name)
        if member is None:
            raise KeyError(name)
        return member

    def __iter__(self) -> Iterator[str]:
        return (member.name for member in self.table.members())

    def __len__(self) -> int:
        return self.table.member_count()


class MemberReader(io.RawIOBase):
    """Reads exactly one member's bytes from the bundle file."""

    def __init__(self, fileobj, member: Member):
        super().__init__()
        self._file = fileobj
        self._position = member.offset
        self._end = member.offset + member.size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self._end - self._position)
        if want <= 0:
            return 0
        got = os.preadv(self._file.fileno(), [memoryview(buffer)[:want]], self._position)
        self._position += got
        return got


class OpenedBundle:
    """An opened, checked tar bundle on disk; its members are listed in ``table``."""

    def __init__(self, path: str, table: FileTable, metadata: Member | None,
                 limits: BundleLimits = BundleLimits(), tar_path: str | None = None):
        self.path = path
        self.limits = limits
        self.tar_path = tar_path or path  # the uncompressed tar actually read
        self.table = table
        self.members = Members(table)
        self.metadata_member = metadata
        self._file = open(self.tar_path, "rb")  # pylint: disable=consider-using-with
        # the frontend's digests count for the very file it received, never a decompressed copy
        self._digests = (member_digests.load(path, self._file.fileno())
                         if self.tar_path == path else {})

    def close(self) -> None:
        """Release the bundle file and its file table; drop a decompressed copy made for it."""
        self._file.close()
        self.table.close()
        if self.tar_path != self.path:
            unlink_quietly(self.tar_path)

    def __enter__(self) -> "OpenedBundle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read_metadata(self) -> bytes:
        """The bytes of metadata.txt (whole: see ``metadata_reader`` for a big one)."""
        return self.metadata_reader().read()

    def metadata_reader(self) -> io.BufferedReader:
        """A reader of metadata.txt, once its size is checked against the limit."""
        if self.metadata_member is None:
            raise MetadataError("the bundle has no metadata.txt at its top level")
        if self.metadata_member.size > self.limits.max_metadata_size:
            raise MetadataError(f"metadata.txt is {self.metadata_member.size} bytes, over the "
                                f"{self.limits.max_metadata_size}-byte limit")
        return self.open(self.metadata_member)

    def open(self, member: Member) -> io.BufferedReader:
        """A reader of one member's bytes (its buffer no bigger than the member needs)."""
        return io.BufferedReader(MemberReader(self._file, member),
                                 buffer_size=min(max(member.size, 8192), 1024 * 1024))

    def extent(self, member: Member) -> Extent:
        """Where a member's bytes lie in the open bundle file, for kernel copies."""
        return Extent(self._file.fileno(), member.offset)

    def known_sha1(self, member: Member) -> str | None:
        """The member's SHA-1 if the frontend computed it as the body arrived."""
        return self._digests.get((member.offset, member.size))

    @classmethod
    def open_path(cls, path: str, limits: BundleLimits = BundleLimits()) -> "OpenedBundle":
        """Open and check a bundle (decompressing it first if need be); raise BundleError."""
        tar_path = decompress(path, limits)
        table = FileTable()
        try:
            _, metadata = scan(tar_path, limits, table)
            return cls(path, table, metadata, limits, tar_path)
        except BaseException:
            table.close()
            if tar_path != path:
                unlink_quietly(tar_path)
            raise


def compression_of(path: str):
    """The (name, opener) of a compressed bundle, or None for a plain tar."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
    except OSError as err:
        raise BundleError(f"the job's bundle file is not on the volume ({err.strerror})") from err
    for magic, name, opener in COMPRESSIONS:
        if head.startswith(magic):
            return name, opener
    return None


def unpack_cap(compressed_size: int, free_space: int, limits: BundleLimits) -> tuple[int, str]:
    """The most bytes a decompressed bundle may take, and the words for what sets it.

    The volume's free space is not told to clients (nor is any path on the server).
    """
    caps = [(max(free_space - limits.min_free_space, 0),
             "more than the volume has room for now (less min_free_space)")]
    if limits.max_bundle_size:
        caps.append((limits.max_bundle_size, f"more than {limits.max_bundle_size} bytes, "
                     "over max_bundle_size, which applies to the decompressed tar as to an "
                     "uncompressed upload"))
    if limits.max_unpack_ratio:
        cap = limits.max_unpack_ratio * max(compressed_size, BLOCK)
        caps.append((cap, f"more than {cap} bytes, over max_unpack_ratio: "
                     f"{limits.max_unpack_ratio} times the compressed size"))
    return min(caps)


def decompress(path: str, limits: BundleLimits) -> str:
    """Return the path of the uncompressed tar: ``path`` itself, or a capped decompressed copy."""
    kind = compression_of(path)
    if kind is None:
        return path
    name, opener = kind
    target = unpacked(path)
    folder = os.path.dirname(os.path.abspath(path))
    cap, reason = unpack_cap(os.path.getsize(path), shutil.disk_usage(folder).free, limits)
    written = 0
    try:  # a scratch copy, removed after the ingest: whole or absent, no fsync needed
        with opener(path, "rb") as source, written_whole(target, partial(target),
                                                         durable=False) as sink:
            while True:
                chunk = source.read(UNPACK_CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if written > cap:
                    raise BundleError(f"the {name}-compressed bundle decompresses to {reason}; "
                                      "refusing it (a decompression bomb?)")
                try:
                    sink.write(chunk)
                except OSError as err:
                    raise BundleError(f"the volume could not hold the decompressed bundle after "
                                      f"{written} bytes: {err.strerror}") from err
    except DECOMPRESSION_ERRORS as err:
        if isinstance(err, EOFError):
            raise BundleError(f"the {name}-compressed bundle is truncated: its compressed stream "
                              "ends early (was the upload cut short?)") from err
        raise BundleError(f"the {name}-compressed bundle is corrupt after {written} "
                          f"decompressed bytes: {err}") from err
    return target


def scan(path: str, limits: BundleLimits, table: FileTable | None = None,
         one_pass: bool = True) -> tuple[Members, Member | None]:
    """Read every header and check each member is safe and the file is complete; the
    members are written to ``table`` (a new one if not given) as the headers go by.

    ``one_pass=False`` always reads the headers with the pre-scan and ``tarfile`` (tests
    check both ways give the same members and the same refusals)."""
    try:
        file_size = os.path.getsize(path)
    except OSError as err:
        raise BundleError(f"the job's bundle file is not on the volume ({err.strerror})") from err
    if file_size == 0:
        raise BundleError("the upload is empty: a bundle is a tar holding data/... and metadata.txt")
    if file_size < BLOCK:  # tarfile would call it a member cut short
        raise BundleError(f"the upload is not a tar archive: {file_size} bytes is too short to be "
                          f"one (a tar starts with a {BLOCK}-byte header); send the bundle's tar "
                          "file itself")
    table = table if table is not None else FileTable()
    try:  # one pass over plain headers, which end in a zero block by construction
        if not one_pass:
            raise NotPlain("asked to read the headers with tarfile")
        found = _collect(plain_headers(path, file_size, limits.max_members), table, file_size,
                         Problems())
        end_marker = True
    except NotPlain as why:  # the full check, then tarfile, read every header
        logger.debug("%s: not plain tar headers (%s); reading them with tarfile", path, why)
        table.forget_names()
        check_headers(path, file_size, limits.max_members)
        found, end_marker = _tarfile_collect(path, table, file_size)
    problems, seen, total, metadata = found
    if not seen:
        raise BundleError("the upload is not a tar archive (no tar headers found)")
    if not problems and not end_marker:
        problems.append("the bundle is truncated: it stops without the tar end-of-archive "
                        "marker (was the upload cut short?)")
    if problems:
        raise BundleError("the bundle is not acceptable:", problems)
    if limits.max_total_size and total > limits.max_total_size:
        raise BundleError(f"the bundle's members claim {total} bytes, over the "
                          f"{limits.max_total_size}-byte limit")
    return Members(table), metadata


def _collect(headers, table: FileTable, file_size: int, problems: Problems):
    """Check each header and write its member to ``table``; ``(problems, seen any,
    total size, metadata.txt's member)``.  ``headers`` yields
    ``(name, is folder, size, data offset, mtime, unsafe kind or None)``."""
    metadata: Member | None = None
    seen = False
    total = 0
    member_root = DATA_ROOT + "/"
    for raw, is_directory, size, offset_data, mtime, kind in headers:
        name = _normalise(raw, problems)
        if name is None:
            continue
        seen = True
        if is_directory or not name:
            table.add_directory(name)
            continue
        member = Member(name, size, offset_data, float(mtime or 0))
        place = MEMBER if name.startswith(member_root) else OTHER
        if not table.add_name(member, place):
            problems.append(f"{raw}: appears more than once in the bundle")
            continue
        if kind:
            problems.append(f"{raw}: is a {kind}; a bundle may hold only regular "
                            "files and directories")
            continue
        if offset_data + size > file_size:
            problems.append(f"{raw}: truncated, needs {size} bytes but the "
                            f"bundle ends {max(file_size - offset_data, 0)} bytes in")
            continue
        total += size
        if name == METADATA_NAME:
            metadata = member
        elif place == OTHER:
            problems.append(f"{raw}: unexpected member; a bundle holds metadata.txt "
                            "and files under data/ only")
    return problems, seen, total, metadata


def _tarfile_collect(path: str, table: FileTable, file_size: int):
    """``_collect`` over the headers as ``tarfile`` reads them (pax, GNU long names, links),
    and whether a zero block follows the last one."""
    problems = Problems()
    try:
        with tarfile.open(path, mode="r:") as tar:
            headers = ((info.name, info.isdir(), info.size, info.offset_data, info.mtime,
                        _unsafe_kind(info)) for info in _iterate(tar))
            found = _collect(headers, table, file_size, problems)
            end_of_data = tar.offset
    except tarfile.ReadError as err:
        raise BundleError(_read_error_message(err, problems)) from err
    except (EOFError, tarfile.TarError) as err:
        raise BundleError(f"the bundle is not a readable tar: {err}") from err
    return found, _has_end_marker(path, end_of_data, file_size)


def _iterate(tar: tarfile.TarFile):
    """The headers one by one, none kept: tarfile would list every one in ``tar.members``."""
    while True:
        info = tar.next()
        if info is None:
            return
        tar.members.clear()
        yield info


def _read_error_message(err: Exception, problems: Problems) -> str:
    text = str(err)
    if "unexpected end of data" in text or "truncated" in text:
        return "the bundle is truncated: the tar ends in the middle of a member"
    if problems:
        return "the bundle is not a readable tar after some members: " + text
    return f"the upload is not a tar archive ({text})"


def _normalise(raw: str, problems: Problems) -> str | None:
    """'./data//a/b' -> 'data/a/b'; None (with a problem noted) for unsafe names."""
    if raw.startswith("/") or raw.startswith("\\") or (len(raw) > 1 and raw[1] == ":"):
        problems.append(f"{raw}: absolute path; member names must be relative")
        return None
    parts = split_path(raw)
    if ".." in parts:
        problems.append(f"{raw}: contains '..'; member names must stay inside the bundle")
        return None
    if "\0" in raw:
        problems.append(f"{raw!r}: contains a NUL byte")
        return None
    return "/".join(parts)


def _unsafe_kind(info: tarfile.TarInfo) -> str | None:
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device"
    if info.isfifo():
        return "FIFO"
    if info.issparse():
        return "sparse file"
    if not info.isreg():
        return f"member of type {info.type!r}"
    return None


def _has_end_marker(path: str, offset: int, file_size: int) -> bool:
    """True when a zero block follows the last member, as every tar writer puts there."""
    if offset + BLOCK > file_size:
        return False
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(BLOCK) == bytes(BLOCK)
