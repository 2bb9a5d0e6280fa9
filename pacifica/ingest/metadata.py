"""metadata.txt: parse, validate its structure, and settle which tar member each file names.

Pure functions: no network, no files opened here.  Every problem found is collected and
raised once, so a person fixes the whole bundle in one go.  A bundle's metadata.txt is read
as a stream (``load``), one entry at a time, so a million-file list is never held whole.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator

import ijson

from .checksum import digest_size_of
from .errors import MetadataError, Problems
from .protocol import DATA_ROOT, DESTINATION, FILES_TABLE, KEY_VALUE_TABLE, TRANSACTION

TRANSACTION_ID = TRANSACTION + "_id"  # the transaction id this service adds

REQUIRED_FILE_KEYS = ("name", "subdir", "size", "hashtype", "hashsum")
MAX_JSON_DEPTH = 64


@dataclass(frozen=True)
class FileEntry:
    """One ``Files`` entry of metadata.txt."""

    index: int  # position in the metadata list
    name: str
    subdir: str  # as written by the uploader
    size: int
    hashtype: str
    hashsum: str
    mtime: str | None = None
    source: str | None = None  # the move variant: a path already on the archive

    def label(self) -> str:
        """How a person would recognise this entry."""
        return f"{self.subdir.rstrip('/')}/{self.name}" if self.subdir.strip("/") else self.name


@dataclass(frozen=True)
class IngestMetadata:
    """The whole metadata list and its file entries."""

    entries: list
    files: list[FileEntry]


@dataclass(frozen=True)
class FilePlacement:
    """A file entry settled against the bundle: its tar member and its clipped subdir."""

    entry: FileEntry
    member: str  # e.g. "data/a/b/foo.txt"
    subdir: str  # relative to data/, e.g. "a/b"


def split_path(text: str) -> list[str]:
    """Path components with empty and '.' parts dropped ('data//a/./b/' -> ['data','a','b'])."""
    return [part for part in text.replace("\\", "/").split("/") if part not in ("", ".")]


# Escapes are dropped first, so a string is a quote, anything but a quote, and an optional
# closing quote (an unterminated one is consumed once, not rescanned from each quote in it).
# Neither pattern can backtrack or stack per character: linear time, constant extra memory.
_JSON_ESCAPE = re.compile(r"\\.", re.DOTALL)
_JSON_STRUCTURE = re.compile(r'"[^"]*"?|[\[\]{}]')


def _check_depth(text: str) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH before the parser recurses into it."""
    depth = 0
    for match in _JSON_STRUCTURE.finditer(_JSON_ESCAPE.sub("", text)):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise MetadataError(
                    f"metadata.txt nests deeper than {MAX_JSON_DEPTH} levels; it must be a flat "
                    "list of objects")
        elif token in ("]", "}"):
            depth -= 1


def parse(raw: bytes | str, require_source: bool = False) -> IngestMetadata:
    """Parse and check metadata.txt; raise MetadataError listing every problem."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise MetadataError(f"metadata.txt is not UTF-8 text: {err}") from err
    _check_depth(raw)
    try:
        entries = json.loads(raw)
    except ValueError as err:
        raise MetadataError(f"metadata.txt is not valid JSON: {err}") from err
    return validate(entries, require_source)


def validate(entries, require_source: bool = False) -> IngestMetadata:
    """Check an already-decoded metadata list."""
    if not isinstance(entries, list):
        raise MetadataError(
            f"metadata.txt must hold a JSON list of objects, not a {type(entries).__name__}")
    problems = Problems()
    files: list[FileEntry] = []
    for index, entry in enumerate(entries):
        parsed = check_entry(index, entry, require_source, problems)
        if parsed:
            files.append(parsed)
    if problems:
        raise MetadataError("metadata.txt has problems:", problems)
    return IngestMetadata(entries=entries, files=files)


def check_entry(index: int, entry, require_source: bool, problems: Problems) -> FileEntry | None:
    """Note what is wrong with one entry of the list; a good Files entry comes back parsed."""
    where = f"entry {index}"
    if not isinstance(entry, dict):
        problems.append(f"{where}: is a {type(entry).__name__}, not an object")
        return None
    table = entry.get(DESTINATION)
    if not isinstance(table, str) or not table:
        problems.append(f"{where}: has no destinationTable")
    elif table == FILES_TABLE:
        return _file_entry(index, entry, require_source, problems)
    elif table == KEY_VALUE_TABLE:
        if not isinstance(entry.get("key"), str) or "value" not in entry:
            problems.append(f"{where}: TransactionKeyValue needs a string 'key' and a 'value'")
    elif table.startswith(TRANSACTION) and "value" not in entry:
        problems.append(f"{where}: {table} has no 'value'")
    return None


def _file_entry(index: int, entry: dict, require_source: bool, problems: Problems):
    where = f"Files entry {index}"
    if isinstance(entry.get("name"), str):
        where = f"Files entry {index} ({entry.get('subdir', '')!s}/{entry['name']})"
    missing = [key for key in REQUIRED_FILE_KEYS if key not in entry]
    if require_source and "source" not in entry:
        missing.append("source")
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
        return None
    name, subdir, size = entry["name"], entry["subdir"], entry["size"]
    hashtype, hashsum = entry["hashtype"], entry["hashsum"]
    before = len(problems)
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
        problems.append(f"{where}: name must be a plain file name, got {name!r}")
    if not isinstance(subdir, str) or "\0" in subdir:
        problems.append(f"{where}: subdir must be a string, got {subdir!r}")
    elif ".." in split_path(subdir):
        problems.append(f"{where}: subdir {subdir!r} climbs out of the bundle with '..'")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        problems.append(f"{where}: size must be a whole number of bytes, got {size!r}")
    if not isinstance(hashtype, str) or digest_size_of(hashtype) is None:
        problems.append(f"{where}: unknown hashtype {hashtype!r} (use one hashlib knows, "
                        "e.g. sha1, sha256, md5)")
    elif not isinstance(hashsum, str) or not re.fullmatch(
            "[0-9a-fA-F]{%d}" % (2 * digest_size_of(hashtype)), hashsum):
        problems.append(f"{where}: hashsum {hashsum!r} is not a {hashtype} hex digest")
    if require_source and not (isinstance(entry["source"], str) and entry["source"]):
        problems.append(f"{where}: source must be a path on the archive")
    if len(problems) > before:
        return None
    mtime = entry.get("mtime")
    return FileEntry(index=index, name=name, subdir=subdir, size=size,
                     hashtype=hashtype.lower(), hashsum=hashsum.lower(),
                     mtime=mtime if isinstance(mtime, str) else None,
                     source=entry.get("source"))


def candidates(entry: FileEntry) -> list[tuple[str, str]]:
    """The members an entry may name, best first, each with its subdir relative to data/.

    Prefer ``data/<subdir>/<name>``; else drop one leading ``data`` component of subdir.
    """
    parts = split_path(entry.subdir)
    options = [parts]
    if parts and parts[0] == DATA_ROOT:
        options.append(parts[1:])
    return [("/".join([DATA_ROOT, *option, entry.name]), "/".join(option)) for option in options]


def place_files(files: Iterable[FileEntry], members: set[str]) -> list[FilePlacement]:
    """Settle each entry's tar member (docs/PROTOCOL.md) and check the bundle has exactly those files.

    ``members`` are the normalised names of the bundle's regular files under data/.
    (A bundle's own files are matched the same way in ``filetable``, on disk.)
    """
    problems = Problems()
    placements: list[FilePlacement] = []
    claimed: dict[str, FileEntry] = {}
    for entry in files:
        options = candidates(entry)
        found = next(((name, subdir) for name, subdir in options if name in members), None)
        if found is None:
            tried = " or ".join(name for name, _ in options)
            problems.append(f"{entry.label()}: listed in metadata.txt but the bundle has no "
                            f"member {tried}")
            continue
        member, subdir = found
        if member in claimed:
            problems.append(f"{member}: listed twice in metadata.txt (entries "
                            f"{claimed[member].index} and {entry.index})")
            continue
        claimed[member] = entry
        placements.append(FilePlacement(entry=entry, member=member, subdir=subdir))
    for extra in sorted(members - set(claimed)):
        problems.append(f"{extra}: in the bundle but not listed in metadata.txt")
    if problems:
        raise MetadataError("metadata.txt does not match the bundle's files:", problems)
    return placements


def with_ids(entries: list, placements: list[FilePlacement], first_id: int,
             job_id: int) -> list:
    """The list sent on to Policy and Metadata: file ``_id``s, clipped subdirs, Transactions._id."""
    by_index = {p.entry.index: (first_id + n, p.subdir) for n, p in enumerate(placements)}

    def placed():
        for index, entry in enumerate(entries):
            if index in by_index:
                file_id, subdir = by_index[index]
                entry = dict(entry, _id=file_id, subdir=subdir)
            yield entry

    return list(sent_on(placed(), job_id))


def sent_on(entries: Iterable, job_id: int) -> Iterator:
    """The entries without an uploader's own ``Transactions._id``, then the job's: the job id
    is the transaction id."""
    for entry in entries:
        if isinstance(entry, dict) and entry.get(DESTINATION) == TRANSACTION_ID:
            continue
        yield entry
    yield {DESTINATION: TRANSACTION_ID, "value": job_id}


class _Unstreamable(Exception):
    """metadata.txt is not a list the streaming reader can take: parse it whole for the why."""


class _DepthGuard:
    """A reader that refuses JSON nested deeper than MAX_JSON_DEPTH as its bytes go by.

    Works on bytes (JSON's structure characters are ASCII; UTF-8 never reuses those bytes),
    skipping strings and escapes across reads: constant memory, linear time.
    """

    def __init__(self, reader: BinaryIO):
        self._reader = reader
        self._depth = 0
        self._in_string = False
        self._carry = b""

    def read(self, size: int = -1) -> bytes:
        """Read on, checking what was read."""
        chunk = self._reader.read(size)
        self._feed(chunk)
        return chunk

    def _feed(self, chunk: bytes) -> None:
        data = self._carry + chunk
        odd = (len(data) - len(data.rstrip(b"\\"))) % 2
        data, self._carry = (data[:-1], data[-1:]) if odd and chunk else (data, b"")
        data = _BYTES_ESCAPE.sub(b"", data)
        if self._in_string:
            end = data.find(b'"')
            if end < 0:
                return
            data, self._in_string = data[end + 1:], False
        data = _BYTES_STRING.sub(b"", data)
        quote = data.find(b'"')
        if quote >= 0:
            data, self._in_string = data[:quote], True
        for token in _BYTES_BRACKETS.findall(data):
            if token in b"[{":
                self._depth += 1
                if self._depth > MAX_JSON_DEPTH:
                    raise _Unstreamable("nests too deep")
            else:
                self._depth -= 1


_BYTES_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_BYTES_STRING = re.compile(rb'"[^"]*"')
_BYTES_BRACKETS = re.compile(rb"[\[\]{}]")


def load(reader: BinaryIO, table, read_whole: Callable[[], bytes]) -> list[tuple[int, dict]]:
    """Read metadata.txt entry by entry, checking each as ``validate`` does, into ``table``
    (a ``filetable.FileTable``): the Files entries go there, the others (a few) come back
    with their positions.  Memory stays flat however many files it lists.

    A document the streaming reader cannot take (not a list, not JSON, nested too deep) is
    parsed whole with ``read_whole()`` (within max_metadata_size), so its message is the
    one ``parse`` gives.
    """
    problems = Problems()
    others: list[tuple[int, dict]] = []
    try:
        head = reader.read(3)
        head = b"" if head == b"\xef\xbb\xbf" else head.lstrip()
        while not head:
            head = reader.read(64 * 1024)
            if not head:
                break
            head = head.lstrip()
        if head[:1] != b"[":
            raise _Unstreamable("not a list")
        entries = ijson.items(_DepthGuard(_Prefixed(head, reader)), "item", use_float=True)
        for index, entry in enumerate(entries):
            parsed = check_entry(index, entry, False, problems)
            if parsed is not None:
                if not problems:
                    table.add_file(parsed, candidates(parsed), entry)
            elif isinstance(entry, dict) and entry.get(DESTINATION) != FILES_TABLE:
                others.append((index, entry))
    except (_Unstreamable, ijson.JSONError, UnicodeDecodeError) as err:
        parse(read_whole())
        raise MetadataError(f"metadata.txt is not valid JSON: {err}") from err
    if problems:
        raise MetadataError("metadata.txt has problems:", problems)
    return others


class _Prefixed:
    """A reader that first gives back bytes already read."""

    def __init__(self, head: bytes, reader: BinaryIO):
        self._head, self._reader = head, reader

    def read(self, size: int = -1) -> bytes:
        """The held bytes first, then the reader's."""
        if self._head and size != 0:  # ijson asks for 0 bytes to see what the reader gives
            head, self._head = self._head, b""
            return head
        return self._reader.read(size)
