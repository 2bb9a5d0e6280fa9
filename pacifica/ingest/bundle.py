"""A safe reader of tar bundles: only regular files under data/ plus metadata.txt.

Headers are read once with ``tarfile`` (pax, GNU long names and all); member
bytes are then read straight from the bundle file at their offsets, so no
member is ever extracted by tarfile and no link is ever followed.
"""
from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass

from .archive import Extent
from .errors import BundleError, MetadataError
from .metadata import DATA_ROOT, split_path

METADATA_NAME = "metadata.txt"
BLOCK = 512


@dataclass(frozen=True)
class BundleLimits:
    """Bounds that keep a hostile bundle from costing more than it should."""

    max_members: int = 1_000_000
    max_metadata_size: int = 64 * 1024**2
    max_total_size: int = 0  # 0: no limit beyond the bundle's own size


@dataclass(frozen=True)
class Member:
    """A regular file in the bundle."""

    name: str  # normalised: 'data/a/b/foo.txt'
    size: int
    offset: int  # where its bytes start in the bundle file
    mtime: float


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


class Bundle:
    """An opened, checked tar bundle on disk."""

    def __init__(self, path: str, members: dict[str, Member], metadata: Member | None):
        self.path = path
        self.members = members
        self.metadata_member = metadata
        self._file = open(path, "rb")  # pylint: disable=consider-using-with

    def close(self) -> None:
        """Release the bundle file."""
        self._file.close()

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def data_members(self) -> set[str]:
        """Names of the regular files under data/."""
        return set(self.members)

    def read_metadata(self) -> bytes:
        """The bytes of metadata.txt."""
        if self.metadata_member is None:
            raise MetadataError("the bundle has no metadata.txt at its top level")
        return self.open(self.metadata_member).read()

    def open(self, member: Member) -> io.BufferedReader:
        """A reader of one member's bytes (its buffer no bigger than the member needs)."""
        return io.BufferedReader(MemberReader(self._file, member),
                                 buffer_size=min(max(member.size, 8192), 1024 * 1024))

    def extent(self, member: Member) -> Extent:
        """Where a member's bytes lie in the open bundle file, for kernel copies."""
        return Extent(self._file.fileno(), member.offset)

    @classmethod
    def open_path(cls, path: str, limits: BundleLimits = BundleLimits()) -> "Bundle":
        """Open and check a bundle; raise BundleError listing every unsafe member."""
        members, metadata = scan(path, limits)
        return cls(path, members, metadata)


def scan(path: str, limits: BundleLimits) -> tuple[dict[str, Member], Member | None]:
    """Read every header and check each member is safe and the file is complete."""
    try:
        file_size = os.path.getsize(path)
    except OSError as err:
        raise BundleError(f"the bundle file is not on the volume ({err.strerror}): {path}") from err
    if file_size == 0:
        raise BundleError("the upload is empty: a bundle is a tar holding data/... and metadata.txt")
    problems: list[str] = []
    members: dict[str, Member] = {}
    metadata: Member | None = None
    seen: set[str] = set()
    total = 0
    try:
        with tarfile.open(path, mode="r:") as tar:
            for count, info in enumerate(_iterate(tar), start=1):
                if count > limits.max_members:
                    raise BundleError(f"the bundle has more than {limits.max_members} members "
                                      "(the configured limit)")
                name = _normalise(info.name, problems)
                if name is None:
                    continue
                if info.isdir() or not name:
                    seen.add(name)
                    continue
                if name in seen:
                    problems.append(f"{info.name}: appears more than once in the bundle")
                    continue
                seen.add(name)
                kind = _unsafe_kind(info)
                if kind:
                    problems.append(f"{info.name}: is a {kind}; a bundle may hold only regular "
                                    "files and directories")
                    continue
                if info.offset_data + info.size > file_size:
                    problems.append(f"{info.name}: truncated, needs {info.size} bytes but the "
                                    f"bundle ends {max(file_size - info.offset_data, 0)} bytes in")
                    continue
                member = Member(name, info.size, info.offset_data, float(info.mtime or 0))
                total += info.size
                if name == METADATA_NAME:
                    metadata = member
                elif name.startswith(DATA_ROOT + "/"):
                    members[name] = member
                else:
                    problems.append(f"{info.name}: unexpected member; a bundle holds metadata.txt "
                                    "and files under data/ only")
            end_of_data = tar.offset
    except tarfile.ReadError as err:
        raise BundleError(_read_error_message(err, problems)) from err
    except (EOFError, tarfile.TarError) as err:
        raise BundleError(f"the bundle is not a readable tar: {err}") from err
    if not seen:
        raise BundleError("the upload is not a tar archive (no tar headers found)")
    if not problems and not _has_end_marker(path, end_of_data, file_size):
        problems.append("the bundle is truncated: it stops without the tar end-of-archive "
                        "marker (was the upload cut short?)")
    if problems:
        raise BundleError("the bundle is not acceptable:", problems)
    if metadata is None:
        raise MetadataError("the bundle has no metadata.txt at its top level")
    if metadata.size > limits.max_metadata_size:
        raise MetadataError(f"metadata.txt is {metadata.size} bytes, over the "
                            f"{limits.max_metadata_size}-byte limit")
    if limits.max_total_size and total > limits.max_total_size:
        raise BundleError(f"the bundle's members claim {total} bytes, over the "
                          f"{limits.max_total_size}-byte limit")
    return members, metadata


def _iterate(tar: tarfile.TarFile):
    while True:
        info = tar.next()
        if info is None:
            return
        yield info


def _read_error_message(err: Exception, problems: list[str]) -> str:
    text = str(err)
    if "unexpected end of data" in text or "truncated" in text:
        return "the bundle is truncated: the tar ends in the middle of a member"
    if problems:
        return "the bundle is not a readable tar after some members: " + text
    return f"the upload is not a tar archive ({text})"


def _normalise(raw: str, problems: list[str]) -> str | None:
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
